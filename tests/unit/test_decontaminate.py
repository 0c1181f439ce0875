"""Decontamination (curate/evaluation/decontaminate.py and the holdout stage): pool rows that overlap a
held-out or benchmark row leave the pool with reason heldout_overlap; other rows stay."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.artifacts import Ref, write_parquet
from curate.config import Params
from curate.dedup.normalize import dedup_text
from curate.demo.overlap import jaccard
from curate.evaluation.decontaminate import first_prompt, heldout_overlaps
from curate.schema import ROWS
from flows.walk import Inputs, resolver, stage_arguments
from tasks.holdout import holdout
from tasks.pipeline import SPECS

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "po", "ra", "se", "tu", "vi", "zo") for b in ("ba", "de", "fi", "go", "hu",
                                                                                       "ja", "ke", "li", "mo", "ny")]


def _row(row_id: str, instruction: str, response: str, context=()) -> dict:
    return {"row_id": row_id, "source": "pool.jsonl", "position": int(row_id[1:]) if row_id[1:].isdigit() else 0,
            "system": "", "context": list(context), "instruction": instruction, "input": "", "response": response,
            "skill": None, "truth": None}


def _text(seed: int, n: int = 30) -> str:
    """n words drawn from 100 (seeded): two texts of different seeds share few word 3-grams."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _table(rows) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ROWS)


def _shingle_jaccard(a: dict, b: dict) -> float:
    """The similarity decontamination thresholds, computed independently: word 3-gram sets of the dedup texts."""
    from curate.demo.overlap import shingles

    def text(r):
        return dedup_text(r["instruction"], r["input"], r["response"], [t["content"] for t in r["context"]])
    return jaccard(shingles(text(a), 3), shingles(text(b), 3))


def test_near_duplicates_and_same_first_prompts_are_found_and_nothing_else():
    held = [_row("h0", "Explain " + _text(1, 12), _text(2)), _row("h1", "Write a short poem about the sea at night", "Waves.")]
    near = dict(held[0], row_id="p1", response=held[0]["response"] + " with a few extra words")
    same_prompt = _row("p2", "write a short poem about the  SEA at night", _text(3))  # a different answer
    short_prompt = _row("p3", "hi", "Hello!")  # a trivial prompt shared with a held-out row is not an overlap
    multi = _row("p4", "thanks", "You are welcome.", [{"role": "user", "content": "Write a short poem about the sea at night"},
                                                     {"role": "assistant", "content": "Waves."}])
    clean = [_row(f"p{10 + i}", "Explain " + _text(20 + i, 12), _text(40 + i)) for i in range(20)]
    pool = [near, same_prompt, short_prompt, multi] + clean
    found = heldout_overlaps(_table(pool), _table(held + [_row("h2", "hi", "Hey.")]), threshold=0.5)
    assert [(pool[o.position]["row_id"], o.reference, o.how) for o in found] == [
        ("p1", "h0", "near-duplicate"), ("p2", "h1", "same first prompt"), ("p4", "h1", "same first prompt")]
    assert found[0].similarity == pytest.approx(_shingle_jaccard(near, held[0]))
    assert found[0].similarity >= 0.5 and all(_shingle_jaccard(r, h) < 0.5 for r in clean for h in held)
    assert first_prompt(multi["context"], "thanks", "") == "write a short poem about the sea at night"


def test_the_threshold_decides_near_duplicates():
    a = _row("h0", "Explain " + _text(3, 12), _text(4))
    b = dict(a, row_id="p0", response=" ".join(a["response"].split()[:15]) + " " + _text(9, 15))
    j = _shingle_jaccard(a, b)
    assert 0.1 < j < 0.9
    below = heldout_overlaps(_table([b]), _table([a]), threshold=j + 0.01, min_prompt_words=100)
    above = heldout_overlaps(_table([b]), _table([a]), threshold=j - 0.01, min_prompt_words=100)
    assert below == [] and len(above) == 1 and above[0].similarity == pytest.approx(j)


def holdout_arguments(project: str, p: Params) -> dict:
    """The holdout stage's arguments but `project` and `pool`, bound by the walker (tasks/holdout.py `eval_files`)."""
    inputs = Inputs(project, p, raw=Path(project) / p.raw.dir, raw_eval=Path(project) / p.raw.eval_dir)
    bound = stage_arguments(SPECS["holdout"], inputs, resolver({}, inputs))
    return {k: v for k, v in bound.items() if k not in ("project", "pool")}


def _pool_ref(tmp_path: Path, rows) -> dict:
    write_parquet(_table(rows), tmp_path / "semdedup" / "rows.parquet")
    return Ref.of(tmp_path / "semdedup").to_dict()


def test_the_holdout_stage_removes_overlaps_with_held_out_files_and_benchmarks(tmp_path):
    project = tmp_path / "project"
    eval_dir = project / "data" / "raw" / "eval"
    eval_dir.mkdir(parents=True)
    held = {"instruction": "Explain " + _text(5, 12), "output": _text(6)}
    (eval_dir / "qa.jsonl").write_text(json.dumps(held) + "\n")
    bench = {"instruction": "Describe " + _text(7, 12), "output": _text(8)}
    (project / "bench.jsonl").write_text(json.dumps(bench) + "\n")
    pool = [_row("p0", held["instruction"], held["output"]), _row("p1", bench["instruction"], bench["output"] + " ok"),
            *[_row(f"p{2 + i}", "Explain " + _text(30 + i, 12), _text(50 + i)) for i in range(10)]]
    p = Params.model_validate({"decontamination": {"benchmarks": ["bench.jsonl"]}})
    ref = holdout.fn(project=str(project), pool=_pool_ref(tmp_path, pool), **holdout_arguments(str(project), p))
    kept = pq.read_table(Path(ref["path"]) / "pool" / "rows.parquet")["row_id"].to_pylist()
    removed = pq.read_table(Path(ref["path"]) / "removed.parquet").to_pylist()
    assert kept == [f"p{i}" for i in range(2, 12)]
    assert [(r["row_id"], r["reason"]) for r in removed] == [("p0", "heldout_overlap"), ("p1", "heldout_overlap")]
    assert removed[0]["similarity"] == 1.0 and removed[1]["similarity"] >= 0.6
    stats = json.loads((Path(ref["path"]) / "stats.json").read_text())
    assert stats["removed_heldout_overlap"] == 2 and stats["kept"] == 10
    off = Params.model_validate({"decontamination": {"enabled": False}})
    arguments = holdout_arguments(str(project), off)
    ref = holdout.fn(project=str(project), pool=_pool_ref(tmp_path, pool), **arguments)
    assert pq.read_table(Path(ref["path"]) / "pool" / "rows.parquet").num_rows == 12


def test_the_split_held_out_rows_decontaminate_the_pool_too(tmp_path):
    """Without held-out files the split's held-out rows are the reference: a near-copy of one left in the pool goes."""
    base = [_row(f"p{i}", "Explain " + _text(60 + i, 12), _text(80 + i)) for i in range(200)]
    p = Params.model_validate({"evaluation": {"holdout": 0.1}})
    first = holdout.fn(project=str(tmp_path / "a"), pool=_pool_ref(tmp_path / "a", base),
                       **holdout_arguments(str(tmp_path / "a"), p))
    held = pq.read_table(Path(first["path"]) / "heldout" / "rows.parquet").to_pylist()
    copy = dict(held[0], row_id="copy", response=held[0]["response"] + " (copied)")
    second = holdout.fn(project=str(tmp_path / "b"), pool=_pool_ref(tmp_path / "b", base + [copy]),
                        **holdout_arguments(str(tmp_path / "b"), p))
    removed = pq.read_table(Path(second["path"]) / "removed.parquet").to_pylist()
    if "copy" in pq.read_table(Path(second["path"]) / "heldout" / "rows.parquet")["row_id"].to_pylist():
        pytest.fail("the copy's row_id hashed into the held-out share: pick another id")
    assert [(r["row_id"], r["duplicate_of"]) for r in removed] == [("copy", held[0]["row_id"])]


def test_benchmark_paths_must_exist_and_stay_inside_the_project(tmp_path):
    with pytest.raises(ValueError, match="inside the project"):
        Params.model_validate({"decontamination": {"benchmarks": ["../elsewhere.jsonl"]}})
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        holdout_arguments(str(tmp_path), Params.model_validate({"decontamination": {"benchmarks": ["missing.jsonl"]}}))
