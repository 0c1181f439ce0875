"""README "Curate your own data" (and docs/own-data.md), command for command: `curate init`, a pool of your own in data/raw/,
`curate --project DIR run --set ...`, `curate --project DIR audit checkpoint`. The project directory holds
no code: the flow, the stages and their code digests come from the installed package."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from curate.artifacts import local_path
from curate.versioning.objects import object_path

_spec = importlib.util.spec_from_file_location("integration_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
BIN, TEST_PARAMS = _conftest.BIN, _conftest.TEST_PARAMS  # the fast settings every integration test uses

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BROKEN_LINES = {17: '{"conversations": [{"from": "human", "value": "cut off mid-line', 41: "not json at all"}
WORDS = ("river garden engine planet violin harbor market ladder candle forest mirror rocket basket castle "
         "desert island jacket kettle lemon magnet needle orchard pencil quartz saddle tunnel velvet wagon "
         "yogurt zebra anchor bridge copper dragon falcon glacier hammer igloo jungle kayak lantern meadow").split()


def sharegpt_pool(n: int, seed: int = 0) -> list[str]:
    """`n` ShareGPT-format JSON Lines (one or two human/gpt exchanges each), with BROKEN_LINES in place."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        if i in BROKEN_LINES:
            lines.append(BROKEN_LINES[i])
            continue
        turns = []
        for _ in range(rng.choice((1, 1, 2))):
            a, b, c = rng.sample(WORDS, 3)
            turns += [{"from": "human", "value": f"Write one sentence that uses the words {a}, {b} and {c}."},
                      {"from": "gpt", "value": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) + "."}]
        lines.append(json.dumps({"id": f"conv-{i}", "conversations": turns}))
    return lines


def as_set_flags(params: dict, prefix: str = "") -> list[str]:
    """A nested params mapping as `--set dotted.key=value` arguments."""
    flags = []
    for key, value in params.items():
        if isinstance(value, dict):
            flags += as_set_flags(value, f"{prefix}{key}.")
        else:
            flags += ["--set", f"{prefix}{key}={json.dumps(value)}"]
    return flags


# --model -> (the --set flags of its run, some parameters the run must log to MLflow with those flags)
RUN_SETTINGS = {
    "tiny": (as_set_flags(TEST_PARAMS) + ["--set", "selection.ratio=12"],
             {"selection.ratio": "12.0", "selection.rounds": "2", "base_model.hidden_size": "64",
              "selection.mismatch_gate": "off"}),
    # the real model of its preset (LoRA), on small budgets: the path a user with their own model takes
    "smollm2-135m-instruct": (
        as_set_flags({"scoring": {"max_length": 128}, "training": {"max_length": 128},
                      "selection": {"ratio": 8, "rounds": 2, "mismatch_gate": "off"},
                      "evaluation": {"max_rows_per_skill": 10}, "embed": {"max_length": 64}}),
        {"base_model.source": "smollm2-135m-instruct", "training.lora.enabled": "True", "selection.ratio": "8.0",
         "scoring.max_length": "128"}),
}


def flow_run_parameters(api_url: str, flow_run_id: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).parameters


def curate(env: dict, cwd: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "curate"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"curate {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.mark.parametrize("model", sorted(RUN_SETTINGS))
def test_curate_your_own_data(tmp_path, prefect_api, model):
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for k in ("MLFLOW_TRACKING_URI", "PREFECT_HOME", "TMPDIR", "HF_HOME", "PREFECT_PROFILE"):
        env.pop(k, None)
    home = tmp_path / "home"  # the user's working directory: nothing may be written there but the project
    home.mkdir()
    pool = tmp_path / "chats.jsonl"
    pool.write_text("\n".join(sharegpt_pool(80)) + "\n")

    # curate init DIR --model M
    out = curate(env, home, "init", "myproject", "--model", model).stdout
    project = home / "myproject"
    assert f"curate --project {project} run" in out and str(project / "data" / "raw") in out
    assert sorted(p.name for p in home.iterdir()) == ["myproject"]
    assert not any((project / code).exists() for code in ("curate", "tasks", "flows"))

    # put your pool in DIR/data/raw/, then curate --project DIR run
    shutil.copy(pool, project / "data" / "raw" / "chats.jsonl")
    flags, logged = RUN_SETTINGS[model]
    summary = curate(env, home, "--project", str(project), "run", *flags).stdout
    assert "rows in            80" in summary, summary

    # exactly the broken lines are quarantined at ingest, each with a reason
    quarantine = pq.read_table(project / "data" / "ingest" / "quarantine.parquet").to_pylist()
    assert sorted(q["position"] for q in quarantine) == sorted(BROKEN_LINES), quarantine
    assert all(q["source"] == "chats.jsonl" and q["reason"] for q in quarantine)

    # MLflow: the merged parameters and the overrides themselves are recorded
    uri = f"sqlite:///{project / '.curate' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("curate")
    parent = client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'")[0]
    assert json.loads(parent.data.tags["curate.overrides"]) == flags[1::2]
    assert {k: parent.data.params[k] for k in logged} == logged
    rounds = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' "
                                                     "and tags.`curate.kind` = 'round'")
    assert len(rounds) == int(parent.data.params["selection.rounds"])

    # curate --project DIR audit checkpoint <ref>: the rows that trained the last checkpoint
    last = max(rounds, key=lambda r: int(r.data.tags["curate.round"]))
    audit = json.loads(curate(env, home, "--project", str(project), "audit", "checkpoint",
                              last.data.tags["curate.model_uri"], "--json").stdout)
    selected = {row for r in range(len(rounds)) for row in pq.read_table(
        project / "data" / "rounds" / f"round-{r}" / "select" / "selection.parquet")["row_id"].to_pylist()}
    assert audit["distinct_rows"] == len(selected) > 0

    # the published checkpoint is the store's file (a hard link; for an adapter, MLflow's artifacts too),
    # and the DVC cache holds a copy of its own; the optimizer state is not versioned
    checkpoint = project / "data" / "rounds" / f"round-{len(rounds) - 1}" / "train" / "model"
    assert not (checkpoint / "trainer_state").exists()
    weights = next(checkpoint.glob("*.safetensors"))
    assert weights.stat().st_nlink >= 2, "store and data/ should share the checkpoint's inode"
    cached = object_path(project / ".dvc" / "cache", hashlib.md5(weights.read_bytes()).hexdigest())
    assert cached.read_bytes() == weights.read_bytes() and cached.stat().st_ino != weights.stat().st_ino
    if logged.get("training.lora.enabled") == "True":
        model_id = last.data.tags["curate.model_uri"].removeprefix("models:/")
        logged_dir = local_path(client.get_logged_model(model_id).artifact_location)
        assert (logged_dir / weights.name).stat().st_ino == weights.stat().st_ino

    # curate resume FLOW_RUN_ID reads that run's --set values from Prefect and applies them again
    flow_run = [line for line in summary.splitlines() if "Prefect            flow run" in line][0].split()[-1]
    resumed = curate(env, home, "--project", str(project), "resume", flow_run).stdout
    assert resumed.startswith(f"resuming flow run {flow_run} (COMPLETED) with params/default.yaml --set ")
    again = [line for line in resumed.splitlines() if "Prefect            flow run" in line][0].split()[-1]
    assert flow_run_parameters(prefect_api, again)["overrides"] == flags[1::2]
    # a stage whose code did not change comes from the cache; any that re-ran used the same merged params
    for run in client.search_runs([exp.experiment_id], "tags.`curate.kind` = 'parent'"):
        assert run.data.params == parent.data.params and run.data.tags["curate.overrides"] == parent.data.tags["curate.overrides"]

    # the DVC pipeline of a project without code: clean after the run, and a stage runs from the package
    dvc_env = {**env, "DVC_NO_ANALYTICS": "1", "CI": "true"}
    status = subprocess.run([str(BIN / "python"), "-m", "dvc", "status"], cwd=project, env=dvc_env,
                            capture_output=True, text=True, check=True).stdout
    assert "up to date" in status, status
    curate(env, project, "stage", "ingest", *flags)
    assert sorted(q["position"] for q in pq.read_table(project / "data" / "ingest" / "quarantine.parquet")
                  .to_pylist()) == sorted(BROKEN_LINES)
    # a stage run by `dvc repro` reads the store artifacts the flow published: the flow's keys, so the
    # evaluations are cache hits (the published checkpoints lack the optimizer state: not their digests)
    evaluations = sorted((project / ".curate" / "store" / "evaluate").iterdir())
    curate(env, project, "stage", "evaluate", *flags)
    assert sorted((project / ".curate" / "store" / "evaluate").iterdir()) == evaluations
