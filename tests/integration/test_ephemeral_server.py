"""The README's default: `curate run` with no PREFECT_API_URL starts Prefect's ephemeral server on the
project's own database (`.curate/prefect/`), and a second run finds every stage cached."""
from __future__ import annotations

import sqlite3

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAGES = ("ingest", "dedup", "embed", "semdedup", "holdout", "base_model", "score", "select", "train", "evaluate", "record")
ALWAYS_RUN = ("version", "disk usage")  # bookkeeping tasks that run every time: DVC commit/push, the disk report


def _flow_run_id(stdout: str) -> str:
    return [line for line in stdout.splitlines() if "Prefect            flow run" in line][0].split()[-1]


def _recorded(db, flow_run_id: str) -> tuple[str, dict[str, set[str]]]:
    """The flow run's state and its task runs' states by stage, read from the ephemeral server's database."""
    with sqlite3.connect(db) as con:
        (flow_state,) = con.execute("SELECT state_name FROM flow_run WHERE id = ?", (flow_run_id,)).fetchone()
        tasks = con.execute("SELECT name, state_name FROM task_run WHERE flow_run_id = ?", (flow_run_id,)).fetchall()
    by: dict[str, set[str]] = {}
    for name, state in tasks:
        by.setdefault(name.rsplit("-", 1)[0], set()).add(state)
    return flow_state, by


def test_default_run_uses_the_ephemeral_server(make_ephemeral_project):
    project = make_ephemeral_project()
    assert "PREFECT_API_URL" not in project.env
    project.set_params({"selection": {"rounds": 1}})
    project.curate("demo-data", "--size", "200")

    first = project.curate("run")
    assert "status clean" in first.stdout, first.stdout
    db = project.root / ".curate" / "prefect" / "prefect.db"
    assert db.is_file(), "the ephemeral server's database lives in the project"
    flow_state, states = _recorded(db, _flow_run_id(first.stdout))
    assert flow_state == "Completed"
    assert set(STAGES) <= set(states), states
    assert states["train"] == {"Completed"} and states["ingest"] == {"Completed"}, states

    # a second process starts a new ephemeral server on the same database and finds every stage cached
    second = project.curate("run")
    assert "status clean" in second.stdout
    flow_state, states = _recorded(db, _flow_run_id(second.stdout))
    assert flow_state == "Completed" and set(STAGES) <= set(states), states
    executed = {name: s for name, s in states.items() if s != {"Cached"} and name not in ALWAYS_RUN}
    assert not executed, states
