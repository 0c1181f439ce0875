"""A toy pipeline for tests/unit/test_walk.py: plain functions behind `.fn`, as the walker's Direct executor calls
them, with the hooks a stage module may have (bind, step, check)."""
from __future__ import annotations

from types import SimpleNamespace


def _task(name, fn):
    return SimpleNamespace(fn=fn, name=name)


first = _task("first", lambda project, raw, params: {"path": raw["path"], "digest": "first"})
double = _task("double", lambda project, rows, params, factor: {"path": rows["path"], "digest": rows["digest"] * factor})
each = _task("each", lambda project, rows, params, index: {"path": rows["path"], "digest": f"{rows['digest']}-{index}"})


def with_factor(arguments: dict) -> dict:
    return {**arguments, "factor": 2}


def mapped(run, arguments: dict) -> list:
    return run.map(each, {"index": [0, 1, 2]}, project=arguments["project"], rows=arguments["rows"],
                   params=arguments["params"])


def warn_twice(p, value) -> list[str]:
    return [f"saw {value('double')['digest']}", "second"]
