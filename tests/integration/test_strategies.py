"""Every selection strategy runs end to end from params, with the same lineage (docs/iterit.md §8)."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES = [("iterit", "faithful", "auto"), ("ifd-only", "clean", "on"), ("static-ifd", "clean", "auto"),
         ("diversity-only", "clean", "auto"), ("random", "clean", "auto"), ("full", "clean", "auto"), ("iterit", "clean", "auto"),
         ("longest", "clean", "auto"), ("rds", "clean", "auto")]


def test_each_strategy_runs_from_params(make_project):
    project = make_project()
    project.curate("demo-data", "--size", "300")
    pool = None
    for strategy, mode, revisit in CASES:
        project.set_params({"selection": {"strategy": strategy, "mode": mode, "revisit": revisit}})
        out = project.curate("run").stdout
        assert f"strategy {strategy} ({mode})" in out, out
        pool = pool or pq.read_table(project.root / "data" / "semdedup" / "rows.parquet").num_rows
        subsets = []
        for r in range(2):
            sel = pq.read_table(project.root / "data" / "rounds" / f"round-{r}" / "select" / "selection.parquet").to_pylist()
            assert sel and {s["strategy"] for s in sel} == {strategy} and all(s["reason"] for s in sel)
            assert sorted(s["rank"] for s in sel) == list(range(len(sel)))
            subsets.append([s["row_id"] for s in sel])
        if strategy == "full":
            assert len(subsets[0]) == pool
        else:
            assert all(len(s) <= int(pool * 0.1) for s in subsets)
        if strategy in ("static-ifd", "diversity-only", "random"):  # revisit auto = off in clean mode: fresh rows
            assert not set(subsets[0]) & set(subsets[1])
        if strategy == "iterit" and mode == "clean":  # revisit auto = off: no row trains twice; the state says why the round-0 rows were not eligible in round 1
            assert not set(subsets[0]) & set(subsets[1])
            state = pq.read_table(project.root / "data" / "rounds" / "round-1" / "select" / "state.parquet").to_pylist()
            why = {s["row_id"]: s["ineligible_reason"] for s in state}
            assert all(why[r] == "trained in round 0 (selection.revisit: off)" for r in subsets[0])
        if strategy in ("longest", "rds"):  # one ranking, published with round 0; round 1 takes its next rows
            ranking = pq.read_table(project.root / "data" / "rounds" / "round-0" / "ranking" / "ranking.parquet")
            key = dict(zip(ranking["row_id"].to_pylist(), ranking["key"].to_pylist()))
            assert len(key) == pool and not set(subsets[0]) & set(subsets[1])
            assert min(key[r] for r in subsets[0]) >= max(key[r] for r in subsets[1])
            state = pq.read_table(project.root / "data" / "rounds" / "round-1" / "select" / "state.parquet").to_pylist()
            passed_over = [s["row_id"] for s in state if s["eligible"] and s["row_id"] not in subsets[1]]
            assert passed_over and min(key[r] for r in subsets[1]) >= max(key[r] for r in passed_over)
