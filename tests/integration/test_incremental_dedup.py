"""Two nights through the real flow (Prefect server, MLflow, DVC): night 2's dedup examines only its new
rows, copies of night-1 rows are removed as duplicates of them (even from a file that sorts first),
nothing kept on night 1 is removed, and a re-run with nothing changed is a cache hit."""
from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from test_pipeline import _states_by_stage, _task_states

from curate.demo.noise import near_duplicate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_second_night_dedups_only_new_rows(make_project, prefect_api):
    project = make_project()
    project.curate("demo-data", "--size", "300")
    project.curate("run")
    dedup_dir = project.root / "data" / "dedup"
    night1 = json.loads((dedup_dir / "stats.json").read_text())
    assert night1["mode"] == "full" and night1["index"] == "none"
    kept1 = pq.read_table(dedup_dir / "rows.parquet").to_pylist()
    removed1 = pq.read_table(dedup_dir / "removed.parquet").to_pylist()
    assert (dedup_dir / "index" / "manifest.json").is_file() and (dedup_dir / "cluster_sizes.png").is_file()
    client = MlflowClient(tracking_uri=project.tracking_uri)
    parent = client.search_runs([client.get_experiment_by_name("curate").experiment_id], "tags.`curate.kind` = 'parent'")[0]
    assert "dedup/cluster_sizes.png" in [a.path for a in client.list_artifacts(parent.info.run_id, "dedup")]

    # night 2: 12 fresh rows, a byte copy, a case-folded copy and a near copy of night-1 kept rows,
    # in a file that sorts before pool.jsonl (a keep-first pass over the whole pool would keep the copies)
    lines = (project.root / "data" / "raw" / "pool.jsonl").read_text().splitlines()
    clean = [r for r in kept1 if r["truth"] == "clean" and r["source"] == "pool.jsonl"]
    originals = [json.loads(lines[r["position"]]) for r in clean]
    rng = random.Random(0)
    near_index, near = next((i, d) for i, d in enumerate(near_duplicate(o, rng, 0.8) for o in originals[2:]) if d)
    copies = [
        originals[0],
        {**originals[1], "instruction": originals[1]["instruction"].upper(), "output": originals[1]["output"].upper()},
        {k: near[k] for k in ("instruction", "input", "output")},
    ]
    fresh = [{"instruction": f"Spell the code word number {i} backwards.", "input": "", "output": f"{i} rebmun drow edoc"}
             for i in range(12)]
    (project.root / "data" / "raw" / "night2.jsonl").write_text("\n".join(json.dumps(r) for r in fresh + copies) + "\n")
    project.curate("run")

    night2 = json.loads((dedup_dir / "stats.json").read_text())
    byte_copies_before = sum(r["row_id"] == r["duplicate_of"] for r in removed1)
    assert night2["mode"] == "incremental" and night2["index"] == "loaded", night2
    assert night2["previous_kept"] == len(kept1)
    assert night2["copies_of_kept"] == byte_copies_before + 1  # repeated row ids: not examined
    assert night2["carried_removed"] == len(removed1) - byte_copies_before
    assert night2["new_rows"] == 14  # the fresh rows, the case copy and the near copy
    assert night2["rows_signed"] == night2["rows_queried"] == 13  # the case copy matched a night-1 digest

    kept2 = pq.read_table(dedup_dir / "rows.parquet").to_pylist()
    assert {(r["row_id"], r["source"], r["position"]) for r in kept1} <= {(r["row_id"], r["source"], r["position"]) for r in kept2}
    removed2 = {(r["source"], r["position"]): r for r in pq.read_table(dedup_dir / "removed.parquet").to_pylist()}
    expected = [("exact", clean[0]), ("exact", clean[1]), ("near", clean[2 + near_index])]
    for position, (reason, original) in enumerate(expected, start=12):
        record = removed2[("night2.jsonl", position)]
        assert (record["reason"], record["duplicate_of"]) == (reason, original["row_id"]), record
    assert sum(r["source"] == "night2.jsonl" for r in kept2) == 12
    assert json.loads((project.root / "data" / "score" / "stats.json").read_text())["rows_scored"] == 12

    # a re-run with nothing changed: the dedup stage (and every other) is a cache hit
    out = project.curate("run").stdout
    flow_run = [line for line in out.splitlines() if "Prefect            flow run" in line][0].split()[-1]
    states = _states_by_stage(_task_states(prefect_api, flow_run))
    assert states["dedup"] == {"Cached"}, states
    assert json.loads((dedup_dir / "stats.json").read_text()) == night2
