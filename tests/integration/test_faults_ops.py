"""Ordinary mistakes and faults on a real project (Prefect's ephemeral server, MLflow on SQLite, DVC):
a run killed while it records, a run that fails in a stage, `gc` after them, `export` onto existing
files, unknown ids and bad paths, a `--project` that is no project, `curate stage` during a run.

One project for the whole file (module fixture): a finished run, a run SIGKILLed while it records its
lineage (its MLflow parent run stays RUNNING), and a run that fails in the base_model stage.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from curate.lock import project_lock

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
SERVER_GONE_WITHIN = 60  # seconds: a generous bound for the kernel and uvicorn to take a killed run's server down


def _parent_run(stdout: str) -> str:
    return re.search(r"parent run ([0-9a-f]{32})", stdout).group(1)


def _model_uri(stdout: str) -> str:
    return re.search(r"curate audit checkpoint (models:/m-[0-9a-f]+)", stdout).group(1)


def _recording(db: Path) -> bool:
    """Does an MLflow parent run exist that is still RUNNING (a run in its record stage)?"""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT 1 FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = 'curate.kind' "
                               "AND t.value = 'parent' AND r.status = 'RUNNING'").fetchone() is not None
    except sqlite3.OperationalError:  # not created yet, or briefly locked by the writer
        return False


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()] if tasks.is_dir() else []


def _prefect_server(pid: int) -> tuple[int, int] | None:
    """(pid, port) of the uvicorn child serving Prefect's ephemeral API for process `pid`."""
    for child in _children(pid):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"prefect.server.api.server:create_app" in argv:
            return child, int(argv[argv.index(b"--port") + 1])
    return None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited (nobody reaped it yet)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _kill_while_recording(project, *args: str) -> dict:
    """Start `curate run ARGS`, SIGKILL it once its MLflow parent run exists; the Prefect server it started."""
    db = project.root / ".curate" / "mlflow.db"
    with open(project.root / "killed.log", "w") as log:
        proc = subprocess.Popen([str(BIN / "curate"), "run", *args],
                                cwd=project.root, env=project.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while not _recording(db):
            assert proc.poll() is None, f"the run ended before it recorded: {(project.root / 'killed.log').read_text()[-3000:]}"
            assert time.time() < deadline, "the run did not reach its record stage in 10 minutes"
            time.sleep(0.05)
        server = _prefect_server(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert server is not None, "the run had no ephemeral Prefect server child"
    return {"server_pid": server[0], "port": server[1]}


@pytest.fixture(scope="module")
def ops(module_ephemeral_project):
    project = module_ephemeral_project
    assert "PREFECT_API_URL" not in project.env
    project.set_params({"selection": {"rounds": 1}})
    project.curate("demo-data", "--size", "200")
    finished = project.curate("run").stdout
    # a second run with other evaluation settings (its evaluate entries differ), killed while it records
    killed = _kill_while_recording(project, "--set", "evaluation.max_rows_per_skill=8")
    failed = project.curate("run", "--set", "base_model.source=/nonexistent/model", check=False)
    yield SimpleNamespace(project=project, run=_parent_run(finished), model_uri=_model_uri(finished), killed=killed,
                          failed=failed)
    if _alive(killed["server_pid"]):  # a leftover server (before the fix): do not leave it to the machine
        os.kill(killed["server_pid"], signal.SIGKILL)


def test_a_killed_run_leaves_no_prefect_server(ops):
    pid, port = ops.killed["server_pid"], ops.killed["port"]
    deadline = time.time() + SERVER_GONE_WITHIN
    while (_alive(pid) or _listening(port)) and time.time() < deadline:
        time.sleep(0.5)
    assert not _alive(pid), f"the killed run's Prefect server (pid {pid}) still runs {SERVER_GONE_WITHIN} s later"
    assert not _listening(port), f"something still listens on 127.0.0.1:{port}"


def test_a_failing_run_prints_one_error_and_the_traceback_once(ops):
    failed = ops.failed
    assert failed.returncode == 1
    err = failed.stderr
    assert "Traceback" not in err, err  # Prefect's task and flow logs printed it twice
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stage 'base_model' failed" in errors[0] and "/nonexistent/model" in errors[0], err
    assert "curate resume" in err.splitlines()[-1]  # the last line says how to go on
    kept = Path(re.search(r"The traceback is in (\S+)\.$", err, re.M).group(1)).read_text()  # once, in a file
    assert kept.startswith("Traceback (most recent call last)") and "/nonexistent/model" in kept


def test_stage_refuses_while_a_run_holds_the_project_lock(ops):
    with project_lock(ops.project.root / ".curate"):
        held = ops.project.curate("stage", "ingest", check=False)
    assert held.returncode == 3, held.stdout + held.stderr
    assert "another run holds" in held.stderr and "Traceback" not in held.stderr


def test_export_never_overwrites_without_force(ops):
    out = ops.project.root / "exported"
    ops.project.curate("export", "--run", ops.run, "--out", str(out))
    mine = {name: (out / name).read_text() for name in ("train.jsonl", "manifest.json")}
    (out / "train.jsonl").write_text("my own edits\n")

    again = ops.project.curate("export", "--run", ops.run, "--out", str(out), check=False)
    assert again.returncode == 2
    assert "train.jsonl" in again.stderr and "manifest.json" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert (out / "train.jsonl").read_text() == "my own edits\n"  # nothing was touched

    ops.project.curate("export", "--run", ops.run, "--out", str(out), "--force")
    assert {name: (out / name).read_text() for name in mine} == mine

    a_file = ops.project.root / "a-file"
    a_file.write_text("x")
    onto_file = ops.project.curate("export", "--run", ops.run, "--out", str(a_file), check=False)
    assert onto_file.returncode == 2 and "Traceback" not in onto_file.stderr, onto_file.stderr
    assert str(a_file) in onto_file.stderr and a_file.read_text() == "x"


BAD = {  # command -> what its one-line error must name
    "export --run bogus": "bogus",
    "audit verify bogus": "bogus",
    "audit checkpoint bogus": "bogus",
    "audit checkpoint models:/m-bogus": "m-bogus",
    "audit diff bogus bogus2": "bogus",
    "audit row no-such-row": "no-such-row",
    "report bogus": "bogus",
    "resume 00000000-0000-0000-0000-000000000000": "00000000-0000-0000-0000-000000000000",
    "run --params params": "params",
    "demo-data --params nope.yaml": "nope.yaml",
    "export --run {run} --round 7": "round 7",
    "report {run} --out {a_file}": "a-file",
}


@pytest.mark.parametrize("command", sorted(BAD))
def test_an_unknown_id_or_bad_path_is_a_one_line_usage_error(ops, command):
    a_file = ops.project.root / "a-file"
    a_file.write_text("x")
    proc = ops.project.curate(*command.format(run=ops.run, a_file=a_file).split(), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and BAD[command] in errors[0], proc.stderr


def test_a_pool_row_that_trained_nothing_is_not_an_unknown_row(ops):
    pool = pq.read_table(ops.project.root / "data" / "semdedup" / "rows.parquet", columns=["row_id"])["row_id"].to_pylist()
    audited = json.loads(ops.project.curate("audit", "checkpoint", ops.model_uri, "--json").stdout)
    never = sorted(set(pool) - {r["row_id"] for r in audited["rows"]})[0]
    proc = ops.project.curate("audit", "row", never)
    assert "trained no recorded checkpoint" in proc.stdout and "in the pool" in proc.stdout, proc.stdout


@pytest.mark.parametrize("command", [["run"], ["gc", "--keep-runs", "1"], ["audit", "verify"]])
def test_project_must_be_a_project(ops, tmp_path, command):
    typo = tmp_path / "no-such-project"
    proc = ops.project.curate("--project", str(typo), *command, check=False)
    assert proc.returncode == 2 and "curate init" in proc.stderr and str(typo) in proc.stderr, proc.stderr
    assert not typo.exists()  # nothing was created


def test_gc_after_a_killed_run_keeps_the_latest_finished_run(ops):
    """Last in this file: it removes what no kept run needs."""
    gc = json.loads(ops.project.curate("gc", "--keep-runs", "1", "--json").stdout)
    verify = ops.project.curate("audit", "verify", check=False)  # the default: the latest finished run
    assert verify.returncode == 0 and ops.run in verify.stdout, verify.stdout + verify.stderr
    # the checkpoint the summary told the user to audit still resolves to its files
    fetch = subprocess.run(
        [str(BIN / "python"), "-c",
         "import sys, mlflow; mlflow.set_tracking_uri(sys.argv[2]); "
         "print(mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[3]))",
         ops.model_uri, ops.project.tracking_uri, str(ops.project.root / "fetched")],
        cwd=ops.project.root, env=ops.project.env, capture_output=True, text=True)
    assert fetch.returncode == 0, fetch.stderr[-3000:]
    assert any(f.suffix == ".safetensors" for f in Path(fetch.stdout.strip().splitlines()[-1]).rglob("*")), fetch.stdout
    assert ops.project.curate("audit", "checkpoint", ops.model_uri).returncode == 0
    assert ops.run in gc["kept_runs"] and len(gc["kept_runs"]) == 2, gc["kept_runs"]  # and the killed run, newer
