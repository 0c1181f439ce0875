"""The stage cache key: content digests + parameter slice + code version; never paths or run ids."""
import ast
import importlib
import inspect
from pathlib import Path

import pytest
from prefect import Task

import tasks.caching as caching
from tasks.caching import ROOT, Stage, code_version, stage_key
from tasks.code import INFRASTRUCTURE

S = Stage("ingest")
# tasks/ modules a task may import from without them shaping its output: the cache machinery, the
# stage declarations, the published-path layout, the retry policy and `model_path` (which only resolves a directory)
NOT_OUTPUT_CODE = {path[: -len(".py")].replace("/", ".") for path in INFRASTRUCTURE}


def all_stages() -> list[tuple[object, Stage]]:
    """(module, stage) for every Stage defined in a tasks/ module, including ones added later."""
    found = {}
    for path in sorted((ROOT / "tasks").glob("*.py")):
        module = importlib.import_module(f"tasks.{path.stem}")
        for v in vars(module).values():
            if isinstance(v, Stage) and f'Stage("{v.name}"' in path.read_text():  # defined here, not imported
                found[id(v)] = (module, v)
    return list(found.values())


def stage_tasks() -> list[tuple[Stage, Task]]:
    """Every Prefect task a Stage decorates, found by the task name (= stage name) in the stage's module."""
    pairs = []
    for module, stage in all_stages():
        tasks = [v for v in vars(module).values() if isinstance(v, Task) and v.name == stage.name]
        assert tasks, f"no task named {stage.name!r} in {module.__name__}"
        pairs += [(stage, t) for t in tasks]
    return pairs


def test_key_ignores_paths_and_project():
    params = {"ingest": {"max_bytes": 1}}
    a = S.key({"project": "/a", "raw": {"path": "/a/data/raw", "digest": "d1"}, "params": params})
    b = S.key({"project": "/b", "raw": {"path": "/b/elsewhere", "digest": "d1"}, "params": params})
    assert a == b


def test_key_changes_with_content_and_params():
    base = {"raw": {"path": "p", "digest": "d1"}, "params": {"ingest": {"max_bytes": 1}}}
    assert S.key(base) != S.key({**base, "raw": {"path": "p", "digest": "d2"}})
    assert S.key(base) != S.key({**base, "params": {"ingest": {"max_bytes": 2}}})


def test_code_version_covers_helpers_not_only_the_task():
    assert code_version("curate/ingest") != code_version("curate/dedup")
    assert stage_key("s", ("curate/ingest",), {}) != stage_key("s", ("curate/dedup",), {})


def test_code_version_hashes_file_contents_not_only_names(tmp_path, monkeypatch):
    monkeypatch.setattr(caching, "ROOT", tmp_path)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("X = 1\n")
    (pkg / "notes.txt").write_text("not code")

    def version() -> str:
        code_version.cache_clear()
        return code_version("pkg", "pkg/a.py")

    try:
        before = version()
        (pkg / "a.py").write_text("X = 2\n")  # same path, new bytes
        edited = version()
        (pkg / "notes.txt").write_text("still not code")
        assert version() == edited  # only .py files count
        (pkg / "a.py").rename(pkg / "b.py")
        with pytest.raises(FileNotFoundError, match="pkg/a.py"):
            version()
    finally:
        code_version.cache_clear()
    assert before != edited


def test_code_version_covers_sub_packages(tmp_path, monkeypatch):
    """A declared package's code is every .py file under it, however deep."""
    monkeypatch.setattr(caching, "ROOT", tmp_path)
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("Y = 1\n")

    def version() -> str:
        code_version.cache_clear()
        return code_version("pkg")

    try:
        before = version()
        (tmp_path / "pkg" / "sub" / "b.py").write_text("Y = 2\n")
        after = version()
    finally:
        code_version.cache_clear()
    assert before != after


def test_prefect_cache_key_is_the_store_key_within_its_project():
    """Prefect's cached result names the project's paths and runs: two projects never share one, while the
    store key (the content part) is the same for both."""
    from tasks.ingest import ingest

    arguments = {"raw": {"path": "data/raw", "digest": "d1"}, "params": {"ingest": {"max_bytes": 1}}}
    a, b = ({**arguments, "project": p} for p in ("/projects/a", "/projects/b"))
    key_a, key_b = ingest.cache_key_fn(None, a), ingest.cache_key_fn(None, b)
    assert key_a != key_b and key_a == ingest.cache_key_fn(None, dict(a))
    assert key_a.endswith(S.key(a)) and key_b.endswith(S.key(b)) and S.key(a) == S.key(b)


def test_code_version_refuses_a_missing_path():
    code_version.cache_clear()
    with pytest.raises(FileNotFoundError, match="tasks/no_such_stage.py"):
        code_version("curate/ingest", "tasks/no_such_stage.py")
    with pytest.raises(KeyError, match="declared"):
        Stage("no_such_stage").key({})


def test_every_stage_code_path_exists():
    stages = all_stages()
    assert {s.name for _, s in stages} >= {"ingest", "dedup", "embed", "semdedup", "base_model", "score", "rescore",
                                            "select", "train", "evaluate", "record"}
    for _, stage in stages:
        missing = [p for p in stage.all_code if not (ROOT / p).exists()]
        assert not missing, (stage.name, missing)
        code_version.cache_clear()
        code_version(*stage.all_code)


def test_every_task_file_is_in_its_stage_code():
    for stage, task in stage_tasks():
        source = Path(inspect.getsourcefile(task.fn)).resolve().relative_to(ROOT).as_posix()
        assert source in stage.all_code, (stage.name, source, stage.all_code)


def test_tasks_helpers_a_stage_imports_are_in_its_code():
    for module, stage in all_stages():
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("tasks.")}
        for name in sorted(imported - NOT_OUTPUT_CODE):
            assert name.replace(".", "/") + ".py" in stage.all_code, (stage.name, name)


def test_ignored_arguments_do_not_change_the_key():
    rec = Stage("record", ignore=("flow_run_id",))
    assert rec.key({"flow_run_id": "a", "x": 1}) == rec.key({"flow_run_id": "b", "x": 1})
