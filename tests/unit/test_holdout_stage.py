"""The holdout stage: the pool the rounds see excludes the held-out rows, which evaluation reads as a set."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import Ref, write_parquet
from curate.config import Params
from curate.schema import ROWS
from flows.walk import Inputs, resolver
from curate.evaluation.sets import anchor_set, heldout_sets, read_heldout
from tasks.holdout import eval_files, holdout
from tasks.pipeline import HELDOUT, stage_params

N = 400


def _pool(tmp_path) -> dict:
    rows = [{"row_id": f"id-{i:04d}", "source": "pool.jsonl", "position": i, "system": "", "context": [],
             "instruction": f"Say {i}.", "input": "", "response": f"{i}", "skill": None, "truth": None} for i in range(N)]
    write_parquet(pa.Table.from_pylist(rows, schema=ROWS), tmp_path / "semdedup" / "rows.parquet")
    return Ref.of(tmp_path / "semdedup").to_dict()


def pool_and_heldout(project, p, ref) -> tuple[dict, dict]:
    """The walker's `holdout/pool` and held-out sets of a holdout artifact, the project's raw.eval_dir as the files."""
    value = resolver({"holdout": ref}, Inputs(project, p, raw=Path(project) / p.raw.dir,
                                              raw_eval=Path(project) / p.raw.eval_dir))
    return value("holdout/pool"), value(HELDOUT)


def holdout_arguments(project, p) -> dict:
    """The holdout stage's arguments as the walker binds them (its params, whether there are held-out files)."""
    raw_eval = Inputs(project, p, raw=Path(project) / p.raw.dir, raw_eval=Path(project) / p.raw.eval_dir).source("raw_eval")
    return eval_files({"project": project, "params": stage_params(p, "holdout"), "eval_files": raw_eval})


def _ids(path) -> list[str]:
    return pq.read_table(path / "rows.parquet")["row_id"].to_pylist()


def test_split_pool_and_heldout_are_disjoint_and_complete(tmp_path):
    project = tmp_path / "project"
    p = Params.model_validate({"evaluation": {"holdout": 0.25}})
    ref = holdout.fn(project=str(project), pool=_pool(tmp_path), params=stage_params(p, "holdout"), eval_files=False)
    pool, held = pool_and_heldout(str(project), p, ref)
    kept, out = _ids(Path(pool["path"])), _ids(Path(held["path"]))
    assert set(kept).isdisjoint(out) and sorted(kept + out) == [f"id-{i:04d}" for i in range(N)]
    assert 0.25 * N - 5 * (N * 0.25 * 0.75) ** 0.5 < len(out) < 0.25 * N + 5 * (N * 0.25 * 0.75) ** 0.5
    stats = json.loads((Path(pool["path"]) / "stats.json").read_text())
    assert stats["kept"] == len(kept) and stats["heldout"] == len(out)  # `kept` sizes the LR schedule
    sets = read_heldout(Path(held["path"]))
    assert list(sets) == ["holdout"] and [r["row_id"] for r in sets["holdout"]] == out
    evaluated = heldout_sets(Path(held["path"]), max_rows=1000, anchor_rows=5)["holdout"]
    anchors = anchor_set(Path(held["path"]), 5)
    assert len(anchors) == 5 and not {r["row_id"] for r in anchors} & {r["row_id"] for r in evaluated}


def test_held_out_files_mean_no_split(tmp_path):
    project = tmp_path / "project"
    (project / "data" / "raw" / "eval").mkdir(parents=True)
    p = Params.model_validate({"evaluation": {"holdout": 0.25}})
    nothing = {"heldout": None, "benchmarks": []}  # nothing to decontaminate against but the split's rows
    assert holdout_arguments(str(project), p) == {"project": str(project), "params": stage_params(p, "holdout"),
                                                  "eval_files": False, "references": nothing}
    (project / "data" / "raw" / "eval" / "qa.jsonl").write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    arguments = holdout_arguments(str(project), p)
    assert arguments == {"project": str(project), "params": stage_params(p, "holdout"), "eval_files": True,
                         "references": {"heldout": Ref.of(project / "data" / "raw" / "eval").to_dict(), "benchmarks": []}}
    ref = holdout.fn(pool=_pool(tmp_path), **arguments)
    pool, held = pool_and_heldout(str(project), p, ref)
    assert len(_ids(Path(pool["path"]))) == N
    assert held == Ref.of(project / "data" / "raw" / "eval").to_dict()
    assert list(read_heldout(project / "data" / "raw" / "eval")) == ["qa"]


def test_held_out_files_of_one_name_in_two_directories_are_two_sets(tmp_path):
    eval_dir = tmp_path / "eval"
    (eval_dir / "sub").mkdir(parents=True)
    for rel, n in (("qa.jsonl", 2), ("sub/qa.jsonl", 3), ("q&a=1.jsonl", 1), ("a.b.jsonl", 1)):
        (eval_dir / rel).write_text("".join(json.dumps({"instruction": f"{rel} {i}", "output": "a"}) + "\n"
                                            for i in range(n)))
    sets = read_heldout(eval_dir)
    assert {name: len(rows) for name, rows in sets.items()} == {"a.b": 1, "q&a=1": 1, "qa": 2, "sub/qa": 3}
    from curate.evaluation.sets import set_names

    assert set_names(["qa.json", "qa.jsonl", "ds"]) == {"qa.json": "qa.json", "qa.jsonl": "qa.jsonl", "ds": "ds"}
