"""Mistakes on the command line that need no Prefect or MLflow: a `--project` that is no project, an export
onto existing files or a file, a name that would escape its directory, `curate stage` during a run. Each
gives one line naming the problem and the fix, with its exit code, and writes nothing."""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from app.cli import main, not_a_project
from curate.compare.spec import CompareSpec
from curate.errors import UsageError
from curate.export import check_out
from curate.names import check_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def own_environment(monkeypatch):
    """`main` configures the process for the project it runs on: keep that out of the other tests."""
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "params", root / "params")
    return root


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


@pytest.mark.parametrize("command", [["gc", "--keep-runs", "1"], ["audit", "verify"], ["run"], ["dvc-yaml", "--write"]])
def test_project_must_name_an_existing_project(tmp_path, capsys, command):
    typo = tmp_path / "no-such-project"
    assert main(["--project", str(typo), *command]) == 2
    error = _one_error(capsys)
    assert str(typo) in error and "does not exist" in error and "curate init" in error
    assert not typo.exists()

    stranger = tmp_path / "somewhere"  # a directory, but no project's
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert main(["--project", str(stranger), *command]) == 2
    assert "holds none of params, .curate, dvc.yaml" in _one_error(capsys)
    assert [p.name for p in stranger.iterdir()] == ["notes.txt"]

    assert main(["--project", str(stranger / "notes.txt"), *command]) == 2
    assert "is not a directory" in _one_error(capsys)


def test_a_project_of_curate_init_and_the_repository_are_projects(tmp_path, capsys):
    assert main(["init", str(tmp_path / "mine")]) == 0
    assert main(["--project", str(tmp_path / "mine"), "dvc-yaml", "--check"]) == 0
    assert not_a_project(str(ROOT)) is None  # the repository (a fresh clone: params/, dvc.yaml)


def test_export_refuses_existing_files_without_force(tmp_path):
    out = tmp_path / "out"
    check_out(out, "jsonl", merged=False, force=False)  # a new directory
    out.mkdir()
    (out / "notes.md").write_text("mine")
    check_out(out, "jsonl", merged=True, force=False)  # other files do not matter
    (out / "train.jsonl").write_text("mine")
    (out / "manifest.json").write_text("{}")
    with pytest.raises(UsageError, match=r"already holds train.jsonl, manifest.json: pass --force"):
        check_out(out, "jsonl", merged=False, force=False)
    with pytest.raises(UsageError, match="manifest.json"):
        check_out(out, "parquet", merged=False, force=False)  # another format writes the manifest too
    check_out(out, "jsonl", merged=False, force=True)


def test_export_onto_a_file_is_a_usage_error(project, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out in (a_file, a_file / "below"):
        assert main(["--project", str(project), "export", "--out", str(out)]) == 2
        error = _one_error(capsys)
        assert str(out) in error and "is a file, not a directory" in error
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", ".hidden", "", "a\\b", "x" * 101, " lead", "trail ", "a\nb"])
def test_a_name_that_would_leave_its_directory_is_refused(name):
    with pytest.raises(ValueError, match="use only letters, digits"):
        check_name(name, "pool name")


@pytest.mark.parametrize("name", ["curate", "random+adapt", "iterit-clean_gate.v2", "My Experiment", "expérience", "x" * 100])
def test_names_people_use_are_safe(name):
    assert check_name(name, "name") == name


def test_run_refuses_an_experiment_name_that_is_a_path(project, capsys):
    assert main(["--project", str(project), "run", "--set", "project.experiment=../../elsewhere"]) == 2
    error = _one_error(capsys)
    assert "project.experiment '../../elsewhere' cannot name a file or directory" in error
    assert not (project / ".curate" / "mlruns").exists() or not any((project / ".curate" / "mlruns").iterdir())


@pytest.mark.parametrize("field", ["name", "experiment", "pools", "strategies"])
def test_compare_spec_names_are_checked_with_the_field_named(field):
    spec = {"name": "ok", "experiment": "ok", "pools": {"p": {"size": 10}},
            "strategies": {"random": {"selection": {"strategy": "random"}}}, "seeds": [1]}
    spec[field] = {"../out": next(iter(spec[field].values()))} if isinstance(spec[field], dict) else "../out"
    with pytest.raises(Exception) as caught:
        CompareSpec.model_validate(spec)
    assert field in str(caught.value) and "'../out' cannot name a file or directory" in str(caught.value)


def test_the_shipped_compare_specs_use_safe_names():
    from curate.compare.spec import load_spec

    for spec in sorted((ROOT / "params").glob("compare*.yaml")):
        load_spec(spec)  # `random+adapt`, `iterit-clean-gate`, ...


def test_stage_refuses_while_another_process_holds_the_project_lock(project, capsys):
    lock = project / ".curate" / "run.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:  # another process's lock: a separate open file description
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["--project", str(project), "stage", "ingest"]) == 3
    assert "another run holds" in _one_error(capsys)
    assert not (project / "data").exists()  # the stage did not run


def test_a_params_file_that_is_a_directory_is_a_usage_error(project, capsys):
    assert main(["--project", str(project), "stage", "ingest", "--params", "params"]) == 2
    assert "params file not found" in _one_error(capsys)


def test_server_refuses_a_port_out_of_range(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["server", "--port", "99999"])
    assert exited.value.code == 2 and "a TCP port is 1 to 65535 (got 99999)" in capsys.readouterr().err
