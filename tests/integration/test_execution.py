"""`execution:` (README: Execution): the pool scored and round 1's window re-scored in 2 shards each on a real
Dask LocalCluster of 2 worker processes publish the bytes of an unsharded local run, a rerun with the local
runner is fully cached, and a run killed after one shard resumes from the other."""
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


def test_dask_shards_publish_the_bytes_of_a_local_run(make_project, tmp_path):
    pids = tmp_path / "shard-pids"
    runs, published = {}, {}
    for name, execution in (("local", {"runner": "local"}),
                            ("dask", {"runner": "dask", "shards": 2, "workers": 2, "threads_per_worker": 1})):
        project = make_project(name)
        project.set_params({"selection": {"rounds": 2}, "execution": execution})
        project.env["CURATE_SHARD_PIDS"] = str(pids)
        project.curate("demo-data", "--size", "200")
        runs[name], flow_pid = _run(project)
        published[name] = _files(project.root / "data")

    assert published["local"] == published["dask"]
    stages = {name: {(c["stage"], c["round"]): c["digest"] for c in run["stages"] if c["stage"] not in ("record", "score_shard")}
              for name, run in runs.items()}
    assert stages["local"] == stages["dask"] and {("score", None), ("rescore", 1)} <= set(stages["dask"])
    shards = [c for c in runs["dask"]["stages"] if c["stage"] == "score_shard"]  # the pool's 2, then the window's 2
    assert len(shards) == 4 and all(c["executed"] for c in shards)
    assert not any(c["stage"] == "score_shard" for c in runs["local"]["stages"])
    shard_pids = [int(line) for line in pids.read_text().split()]
    assert len(shard_pids) == 4 and flow_pid not in shard_pids, (shard_pids, flow_pid)  # computed on the workers

    project.set_params({"execution": {"runner": "local", "shards": 1}})
    again, _ = _run(project)
    assert [c for c in again["stages"] if c["executed"]] == [], again["stages"]
    assert again["artifacts"] == runs["dask"]["artifacts"]

    # a run killed after its first shard: the score entry, the second shard's and the row score cache are gone
    store = project.root / ".curate" / "store"
    shutil.rmtree(store / "score")
    shutil.rmtree(next(d for d in (store / "score_shard").iterdir() if Ref.of(d).digest == shards[1]["digest"]))
    shutil.rmtree(project.root / ".curate" / "score-cache")
    project.set_params({"execution": {"shards": 2}})
    resumed, _ = _run(project)
    executed = [(c["stage"], c["digest"]) for c in resumed["stages"] if c["executed"]]
    assert executed == [("score_shard", shards[1]["digest"]), ("score", runs["dask"]["artifacts"]["score"])], executed


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
