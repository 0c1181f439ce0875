"""A stage's code is its task module's import graph inside curate/ and tasks/ (tasks/code.py): the files
its cache key hashes are the files `dvc.yaml` lists as its deps, and editing any of them re-keys it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tasks.caching as caching
import tasks.code as code
from flows.dvc_yaml import render
from tasks.caching import Stage
from tasks.code import INFRASTRUCTURE, stage_code
from tasks.pipeline import STAGES, groups

ROOT = Path(__file__).resolve().parents[2]
ARGUMENTS = {"project": "/p", "rows": {"path": "/x", "digest": "d"}}


def test_the_key_and_dvc_yaml_hash_the_same_files():
    stages = yaml.safe_load(render(with_code=True))["stages"]
    for name, members in groups().items():
        listed = {d for d in stages[name]["deps"] if d.endswith(".py")}
        assert listed == {f for m in members for f in Stage(m.name).all_code}, name


def _loaded(*modules: str) -> set[str]:
    """The files of curate/ and tasks/ that importing `modules` in a fresh interpreter loads."""
    script = f"import sys, {', '.join(modules)}; print('\\n'.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    return {code._module_file(m) for m in loaded if m.split(".")[0] in code.PACKAGES} - {None}


@pytest.mark.slow  # a fresh interpreter per task module (torch, transformers): about a minute
def test_a_stage_code_holds_every_module_its_task_module_loads():
    """What importing the task module really loads (inside curate/ and tasks/) is in its code, but for the
    named infrastructure modules and what they load."""
    infrastructure = _loaded(*(path[: -len(".py")].replace("/", ".") for path in INFRASTRUCTURE))
    for module in sorted({s.task_module for s in STAGES}):
        missing = _loaded(module[: -len(".py")].replace("/", ".")) - infrastructure - set(stage_code(module))
        assert not missing, (module, missing)


def test_helpers_outside_the_task_module_are_in_the_code():
    """The sharding helper embed's shards use, the artifacts helpers every stage writes with: once outside the key."""
    assert "curate/sharding.py" in Stage("embed").all_code
    assert "curate/artifacts.py" in Stage("score").all_code and "curate/progress.py" not in Stage("score").all_code


@pytest.fixture
def code_copy(tmp_path, monkeypatch):
    """A copy of curate/ and tasks/ that the key reads instead of the checkout."""
    for package in code.PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "templates"))
    monkeypatch.setattr(code, "ROOT", tmp_path)
    monkeypatch.setattr(caching, "ROOT", tmp_path)
    code.imports_of.cache_clear()
    caching.code_version.cache_clear()
    yield tmp_path
    code.imports_of.cache_clear()
    caching.code_version.cache_clear()


def test_editing_any_module_a_stage_imports_re_keys_it(code_copy):
    stages = [Stage(s.name) for s in STAGES]
    before = {s.name: s.key(ARGUMENTS) for s in stages}
    for path in sorted({f for s in stages for f in s.all_code}):
        target = code_copy / path
        original = target.read_bytes()
        target.write_bytes(original + b"\n# edited\n")
        caching.code_version.cache_clear()
        for s in stages:
            assert (s.key(ARGUMENTS) != before[s.name]) == (path in s.all_code), (path, s.name)
        target.write_bytes(original)
    caching.code_version.cache_clear()
    assert {s.name: s.key(ARGUMENTS) for s in stages} == before


def test_infrastructure_is_named_with_a_reason_and_exists():
    for path, reason in INFRASTRUCTURE.items():
        assert (ROOT / path).is_file() and len(reason) > 10, path
