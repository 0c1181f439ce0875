"""Kill a real `curate run` with SIGKILL at three points, resume, and get what an uninterrupted run gets
(full training and LoRA adapters)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from curate.artifacts import digest
from curate.models.loading import load_causal_lm

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESUME_PARAMS = {"training": {"save_every": 1}}
LORA_PARAMS = {"training": {"save_every": 1, "lora": {"enabled": True, "rank": 4, "alpha": 8}}}
KILL_POINTS = [
    r"^\[score pool\]",  # during scoring
    r"^\[train round 1: steps\] 1/",  # mid-training in a later round (after its first in-round checkpoint)
    r"^\[record\] 1/2",  # while recording (round 0 logged, round 1 not yet)
]


def _kill_when(project, pattern: str) -> None:
    proc = subprocess.Popen([str(Path(project.env["PATH"].split(os.pathsep)[0]) / "curate"), "run"], cwd=project.root,
                            env=project.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if re.search(pattern, line):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"run ended before {pattern!r}:\n{''.join(seen[-30:])}"


async def _flow_runs() -> list:
    async with get_client() as client:
        return await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)


def _outcome(project) -> dict[str, str]:
    rounds = project.root / "data" / "rounds"
    out = {}
    for r in sorted(rounds.iterdir()):
        model = r / "train" / "model"
        out[f"{r.name}/weights"] = digest(model / ("adapter_model.safetensors" if (model / "base.json").exists()
                                                   else "model.safetensors"))
        out[f"{r.name}/subset"] = digest(r / "select" / "selection.parquet")
    return out


@pytest.mark.parametrize("params", [RESUME_PARAMS, LORA_PARAMS], ids=["full", "lora"])
def test_sigkill_at_three_points_then_resume_gives_identical_results(make_project, params):
    reference = make_project("reference")
    reference.set_params(params)
    reference.curate("demo-data", "--size", "300")
    reference.curate("run")

    killed = make_project("killed")
    killed.set_params(params)
    killed.curate("demo-data", "--size", "300")
    for pattern in KILL_POINTS:
        _kill_when(killed, pattern)
    # resume by the killed flow run's id (its params file comes from Prefect)
    with temporary_settings({PREFECT_API_URL: killed.env["PREFECT_API_URL"]}):
        last = next(r for r in asyncio.run(_flow_runs()) if r.parameters.get("project") == str(killed.root))
    resumed = killed.curate("resume", str(last.id)).stdout
    assert f"resuming flow run {last.id}" in resumed
    assert "status clean" in resumed

    assert _outcome(killed) == _outcome(reference)
    assert not list((killed.root / ".curate" / "store").rglob(".tmp-*")), "half-written artifacts left behind"
    assert not list((killed.root / ".curate" / "store").rglob(".inprogress-*")), "in-round checkpoint not cleaned up"

    client = MlflowClient(tracking_uri=killed.tracking_uri)
    exp = client.get_experiment_by_name("curate")
    parents = client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'")
    finished = [r for r in parents if r.info.status == "FINISHED"]
    assert len(finished) == 1, [(r.info.run_id, r.info.status) for r in parents]
    killed_runs = [r.info.run_id for r in parents if r.info.status == "KILLED"]
    assert killed_runs and set(finished[0].data.tags["curate.resumes"].split(",")) == set(killed_runs)
    rounds = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{finished[0].info.run_id}'"
                                                     " and tags.`curate.kind` = 'round'")
    assert sorted(int(r.data.tags["curate.round"]) for r in rounds) == [0, 1]  # no round counted twice
    if params is LORA_PARAMS:
        _check_lora_lineage(killed, max(rounds, key=lambda r: int(r.data.tags["curate.round"])))


def _check_lora_lineage(project, last_round) -> None:
    """The logged model is the adapter with its base recorded; audit and `export --merged` work from it."""
    adapter = project.root / "data" / "rounds" / "round-1" / "train" / "model"
    assert not (adapter / "model.safetensors").exists()
    base = json.loads((adapter / "base.json").read_text())
    assert last_round.data.tags["curate.base_model.digest"] == base["digest"] == digest(base["path"])
    uri = last_round.data.tags["curate.model_uri"]
    audit = json.loads(project.curate("audit", "checkpoint", uri, "--json").stdout)
    assert audit["round"] == 1 and audit["distinct_rows"] > 0
    logged = MlflowClient(tracking_uri=project.tracking_uri).get_logged_model(uri[len("models:/"):])
    assert logged.tags["curate.base_model.path"] == base["path"]
    out = project.root / "export"
    manifest = json.loads(project.curate("export", "--merged", "--out", str(out), "--json").stdout)
    assert manifest["model"]["base_model"] == base
    merged, _ = load_causal_lm(out / "model", dtype="float32", device="cpu")
    adapted, _ = load_causal_lm(adapter, dtype="float32", device="cpu")
    for (name, a), (_, b) in zip(merged.state_dict().items(), adapted.state_dict().items()):
        assert torch.equal(a, b), name  # the exported model is the merged checkpoint, saved and read back exactly
