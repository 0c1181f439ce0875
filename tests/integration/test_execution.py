"""`execution:` (docs/execution.md). On a real Dask LocalCluster of 2 worker processes, the pool's MinHash
signatures computed, the pool embedded and scored and round 1's window re-scored in 2 shards each, and the base model and every checkpoint
evaluated on the workers, publish the bytes of a local run; a rerun with the local runner is fully
cached, and a run killed after one score shard resumes from the other. Both runs of that test train
every round in 2 torchrun processes (`training.processes`), so equal bytes also say that two such runs
agree bit for bit. The same check on a local Ray instance runs under `make test-ray`."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN
from curate.artifacts import TIMINGS, Ref

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != TIMINGS}


def _run(project) -> tuple[dict, int]:
    """`curate run --json` and the pid of the process the flow ran in."""
    proc = subprocess.Popen([str(BIN / "curate"), "run", "--json"], cwd=project.root, env=project.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, f"{out[-3000:]}\n{err[-6000:]}"
    return json.loads(out), proc.pid


def _local_then(runner: str, make_project, tmp_path, training: dict):
    """The same demo project run with the local runner, then with `runner` (2 shards, 2 workers of 1 thread):
    both publish the same bytes and the same stage digests, and every shard (MinHash signing, embedding, scoring, re-scoring)
    and evaluation of the second run computed in a worker process. Returns (the runs' JSON, the second project)."""
    runs, published, flow_pids = {}, {}, {}
    for name, execution in (("local", {"runner": "local"}),
                            (runner, {"runner": runner, "shards": 2, "workers": 2, "threads_per_worker": 1})):
        project = make_project(name)
        project.set_params({"selection": {"rounds": 2}, "training": training, "execution": execution})
        project.env["CURATE_TASK_PIDS"] = str(tmp_path / f"{name}-pids")
        project.curate("demo-data", "--size", "200")
        runs[name], flow_pids[name] = _run(project)
        published[name] = _files(project.root / "data")

    assert published["local"] == published[runner]
    stages = {name: {(c["stage"], c["round"]): c["digest"] for c in run["stages"] if c["stage"] not in ("record", "score_shard", "embed_shard", "minhash_shard")}
              for name, run in runs.items()}
    assert stages["local"] == stages[runner] and {("score", None), ("rescore", 1)} <= set(stages[runner])
    shards = [c for c in runs[runner]["stages"] if c["stage"] == "score_shard"]  # the pool's 2, then the window's 2
    assert len(shards) == 4 and all(c["executed"] for c in shards)
    assert [c["round"] for c in shards] == [None, None, 1, 1]  # the pool's, then round 1's window's
    assert not any(c["stage"] == "score_shard" for c in runs["local"]["stages"])
    # where every computing call ran: (stage, process id)
    noted = {name: [(stage, int(pid)) for stage, pid in map(str.split, (tmp_path / f"{name}-pids").read_text().splitlines())]
             for name in runs}
    assert noted["local"] == [("evaluate", flow_pids["local"])] * 3, noted  # the base model and 2 rounds, in the flow
    assert sorted(stage for stage, _ in noted[runner]) == (["embed_shard"] * 2 + ["evaluate"] * 3 + ["minhash_shard"] * 2
                                                  + ["score_shard"] * 4), noted
    assert flow_pids[runner] not in {pid for _, pid in noted[runner]}, (noted, flow_pids)  # all on the workers

    project.set_params({"execution": {"runner": "local", "shards": 1}})
    again, _ = _run(project)
    assert [c for c in again["stages"] if c["executed"]] == [], again["stages"]
    assert again["artifacts"] == runs[runner]["artifacts"]
    return runs, project


def test_dask_shards_publish_the_bytes_of_a_local_run(make_project, tmp_path):
    runs, project = _local_then("dask", make_project, tmp_path, {"processes": 2})
    shards = [c for c in runs["dask"]["stages"] if c["stage"] == "score_shard"]
    store = project.root / ".curate" / "store"
    trains = {c["digest"] for c in runs["dask"]["stages"] if c["stage"] == "train"}
    stats = [json.loads((d / "stats.json").read_text()) for d in (store / "train").iterdir()
             if d.is_dir() and Ref.of(d).digest in trains]
    assert len(stats) == len(trains) >= 2 and all(s["processes"] == 2 for s in stats), stats

    # a run killed after its first shard: the score entry, the second shard's and the row score cache are gone
    shutil.rmtree(store / "score")
    shutil.rmtree(next(d for d in (store / "score_shard").iterdir() if Ref.of(d).digest == shards[1]["digest"]))
    shutil.rmtree(project.root / ".curate" / "score-cache")
    project.set_params({"execution": {"shards": 2}})
    resumed, _ = _run(project)
    executed = [(c["stage"], c["digest"]) for c in resumed["stages"] if c["executed"]]
    assert executed == [("score_shard", shards[1]["digest"]), ("score", runs["dask"]["artifacts"]["score"])], executed


@pytest.mark.ray
def test_ray_shards_publish_the_bytes_of_a_local_run(make_project, tmp_path):
    """`make test-ray` (prefect-ray and ray from requirements-ray.txt): the same check on a local Ray instance."""
    _local_then("ray", make_project, tmp_path, {})


def test_dask_runner_without_a_prefect_server_stops_in_one_line(make_ephemeral_project):
    project = make_ephemeral_project()
    project.set_params({"execution": {"runner": "dask", "shards": 2}})
    project.curate("demo-data", "--size", "50")
    proc = project.curate("run", check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "error: execution.runner dask needs a Prefect API server: run `curate server` and set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api (or point it at your server)"], proc.stderr
    assert not (project.root / ".curate" / "store").exists()  # nothing ran
