"""The base-model artifact: its digest is the model's content (weights, config, tokenizer), never timings."""
from pathlib import Path

import pytest

from curate.artifacts import TIMINGS, digest, read_json
from curate.config import Params
from curate.models.loading import model_path
from tasks.base_model import base_model
from tasks.pipeline import stage_params

SMALL = {"vocab_size": 300, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
         "max_positions": 64, "pretrain": {"steps": 3, "batch_size": 4, "seq_len": 32, "corpus_rows": 60}}


@pytest.mark.slow
def test_tiny_digest_is_the_model_content_not_the_pretraining_timings(tmp_path):
    params = stage_params(Params.model_validate({"base_model": SMALL}), "base_model")
    first = base_model.fn(project=str(tmp_path / "a"), params=params)
    second = base_model.fn(project=str(tmp_path / "b"), params=params)  # same build, other wall times
    assert first["digest"] == digest(first["path"]) == digest(model_path(first))
    assert (model_path(first) / "config.json").is_file() and not (model_path(first) / "stats.json").exists()
    assert first["digest"] == second["digest"]
    entry = Path(first["path"]).parent  # the store entry: stats without wall times, and the timings apart
    assert "wall_s" not in read_json(entry / "stats.json") and "wall_s" in read_json(entry / TIMINGS)
    assert digest(entry) == digest(Path(second["path"]).parent)
