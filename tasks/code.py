"""A stage's code, read off the import graph: its task module and every module of `curate/` and `tasks/`
it imports, directly or through another, lazily inside a function included (docs/architecture.md §4).

The same set is hashed into the stage's cache key (tasks/caching.py) and listed as its deps in
`dvc.yaml` (flows/dvc_yaml.py), so an edit of any module a stage runs re-keys it and `dvc status`
sees it. Pure: `ast` and paths, no import of the modules it reads.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("curate", "tasks")  # the project's own code; third-party code is pinned by constraints.txt

# Modules a stage imports that never change what it computes, each with its reason. Everything else it
# imports is in its code.
INFRASTRUCTURE = {
    "tasks/caching.py": "the key machinery itself: how a key is made, never what a stage writes",
    "tasks/code.py": "this file: which files the key hashes",
    "tasks/pipeline.py": "the declarations: the parameters they name are in the key by value, the inputs by digest",
    "tasks/executor.py": "the executor interface: where a stage runs, never what it computes",
    "tasks/retry.py": "the retry policy of tasks that reach MLflow or the DVC remote",
    "curate/progress.py": "progress lines on stderr",
    "curate/env.py": "where the project's state lives and the offline/telemetry switches",
}


def _module_file(name: str) -> str | None:
    """`curate.dedup.exact` -> "curate/dedup/exact.py" (or the package's __init__.py); None outside PACKAGES."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT / name.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py").relative_to(ROOT).as_posix()
    if (base / "__init__.py").is_file():
        return (base / "__init__.py").relative_to(ROOT).as_posix()
    return None


def _package(rel: str) -> str:
    """The dotted package a file's relative imports start from."""
    parts = Path(rel).with_suffix("").parts
    return ".".join(parts[:-1])


def _imported(rel: str) -> set[str]:
    """The dotted names a file imports (`from a import b`: both `a` and `a.b`, which may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / rel).read_text(), rel)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package(rel).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _with_parents(name: str) -> list[str]:
    """A module and the packages above it (importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py`)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.lru_cache(maxsize=None)
def imports_of(rel: str) -> frozenset[str]:
    """Every file of PACKAGES that `rel` (a path relative to the project root) imports, transitively, itself
    included; INFRASTRUCTURE is left out, and so is what only it imports."""
    seen, todo = {rel}, [rel]
    while todo:
        for name in _imported(todo.pop()):
            for module in _with_parents(name):
                path = _module_file(module)
                if path and path not in seen and path not in INFRASTRUCTURE:
                    seen.add(path)
                    todo.append(path)
    return frozenset(seen)


def stage_code(task_module: str) -> tuple[str, ...]:
    """The files a stage's cache key hashes and `dvc.yaml` lists: `imports_of` its task module, sorted."""
    return tuple(sorted(imports_of(task_module)))
