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


# Third-party packages the task modules use, imported once before the per-module forks: none of them imports
# curate/ or tasks/, so preloading them changes nothing in what a task module loads from there.
PRELOAD = ("numpy", "pyarrow.parquet", "torch", "transformers", "prefect", "mlflow")
LOADED_BY_EACH = """
import os, sys
for name in {preload!r}:
    __import__(name)
for module in {modules!r}:
    read, write = os.pipe()
    if os.fork() == 0:  # a child with the parent's third-party imports and nothing from curate/ or tasks/
        os.close(read)
        __import__(module)
        os.write(write, "\\n".join(sys.modules).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        print(module, " ".join(pipe.read().split()))
    os.wait()
"""


def _loaded_by_each(*modules: str) -> dict[str, set[str]]:
    """Per module: the files of curate/ and tasks/ that importing it in a fresh interpreter loads (one
    interpreter imports the heavy third-party packages once, then forks a child per module)."""
    script = LOADED_BY_EACH.format(preload=PRELOAD, modules=modules)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert set(loaded) == set(modules), out
    return {m: {code._module_file(n) for n in names if n.split(".")[0] in code.PACKAGES} - {None}
            for m, names in loaded.items()}


@pytest.mark.slow  # torch and transformers imported once, then a forked child per task module: about 40 s
def test_a_stage_code_holds_every_module_its_task_module_loads():
    """What importing the task module really loads (inside curate/ and tasks/) is in its code, but for the
    named infrastructure modules and what they load."""
    infrastructure = {p[: -len(".py")].replace("/", ".") for p in INFRASTRUCTURE}
    task_modules = {s.import_name: s.task_module for s in STAGES}
    loaded = _loaded_by_each(*sorted(infrastructure), *sorted(task_modules))
    infrastructure_loads = set().union(*(loaded[m] for m in infrastructure))
    for module, path in sorted(task_modules.items()):
        missing = loaded[module] - infrastructure_loads - set(stage_code(path))
        assert not missing, (path, missing)
    assert any(len(loaded[m]) > 3 for m in task_modules), loaded  # the children really imported the modules


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
