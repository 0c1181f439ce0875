"""The demo's default selection path end to end: `selection.mismatch_gate: auto` (on in clean mode).

Every other integration project turns the gate off (tests/integration/conftest.py): the 40-step test
model conditions so little on the instruction that no row passes it (every margin is ~0.00-0.02 nat;
the run stops with "no eligible row left"). The smallest settings found that pass it on a 200-row
demo pool: the same tiny model pre-trained 400 steps on 2000 corpus rows (~8 s): about 60 of the
~180 rows then clear the 0.3-nat margin and IFD < 1.
"""
from __future__ import annotations

import json

import mlflow
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from curate.config import load_params
from curate.selection.round_state import advance
from tasks.select import current_scores, eos_string

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATE = {"selection": {"mismatch_gate": "auto"}, "base_model": {"pretrain": {"steps": 400, "corpus_rows": 2000}}}
GATE_REASON = "instruction does not help (possible mismatch)"


def _round_zero_again(root, s: dict, seed: int) -> list[str]:
    """Round 0's selection recomputed from the published pool, scores and base model, under selection `s`."""
    rows = pq.read_table(root / "data" / "holdout" / "pool" / "rows.parquet", columns=["row_id", "response"]).to_pylist()
    row_ids = [r["row_id"] for r in rows]
    eos = eos_string({"path": str(root / "data" / "models" / "base")})
    scores, margin = current_scores(row_ids, {"path": str(root / "data" / "score")}, None, None)
    picked = advance(s, seed, 0, row_ids, [r["response"] + eos for r in rows], scores, margin).selection
    return picked["row_id"].to_pylist()


def test_the_default_gate_removes_mismatched_rows_and_says_why(make_project, monkeypatch):
    project = make_project()
    project.set_params(GATE)
    p = load_params(project.root / "params" / "default.yaml")
    assert p.selection.mode == "clean" and p.selection.mismatch_gate == "auto" and p.selection.gate_on
    project.curate("demo-data", "--size", "200")
    project.curate("run")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.tracking_uri)
    mlflow.set_tracking_uri(project.tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name("curate")
    metrics = {int(r.data.tags["curate.round"]): r.data.metrics
               for r in client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'round'")}
    assert sorted(metrics) == [0, 1]
    margin_min = p.selection.mismatch_margin
    for r in (0, 1):
        select = project.root / "data" / "rounds" / f"round-{r}" / "select"
        stats = json.loads((select / "stats.json").read_text())
        state = {s["row_id"]: s for s in pq.read_table(select / "state.parquet").to_pylist()}
        gated = [s for s in state.values() if (s["ineligible_reason"] or "").startswith(GATE_REASON)]
        # the gate acted in every round, and each row it removed carries its margin in the reason
        assert len(gated) == stats["gated_mismatch"] == metrics[r]["gated_mismatch"] > 0
        for s in gated:
            assert not s["eligible"] and s["margin"] < margin_min and s["ifd"] < p.selection.ifd_max
            assert f"margin {s['margin']:.3f} < {margin_min} nat" in s["ineligible_reason"]
        # every trained row passed it
        selected = pq.read_table(select / "selection.parquet")["row_id"].to_pylist()
        assert len(selected) == stats["k"] and all(state[x]["margin"] >= margin_min for x in selected)

    # it changed what trained: round 0 recomputed from the same artifacts picks gated rows without the gate
    s, seed = p.selection.model_dump(), p.project.seed
    recorded = pq.read_table(project.root / "data" / "rounds" / "round-0" / "select" / "selection.parquet")
    assert _round_zero_again(project.root, s, seed) == recorded["row_id"].to_pylist()  # the recomputation is faithful
    state0 = pq.read_table(project.root / "data" / "rounds" / "round-0" / "select" / "state.parquet").to_pylist()
    gated0 = {x["row_id"] for x in state0 if (x["ineligible_reason"] or "").startswith(GATE_REASON)}
    assert set(_round_zero_again(project.root, {**s, "mismatch_gate": "off"}, seed)) & gated0
