"""The walker (flows/walk.py): the declared stages in order, each called as its binding says, through any
executor; `only` and `until` pick the steps; sources resolve from this walk, an earlier one, or the inputs."""
from __future__ import annotations

from pathlib import Path

import pytest

from curate.config import Params
from flows.walk import Inputs, resolver, walk
from tasks.executor import Direct
from tasks.pipeline import STAGES, LAYOUT, StageSpec, groups, units

TOY = (
    StageSpec("first", inputs=("raw",), params=(), output=None, module="walk_stages.py", args={"raw": "raw"}),
    StageSpec("double", inputs=("first",), params=(), output=None, module="walk_stages.py", args={"rows": "first"},
              bind="with_factor", check="warn_twice"),
    StageSpec("each", inputs=("double",), params=(), output=None, module="walk_stages.py", args={"rows": "double"},
              step="mapped"),
)


class Noting(Direct):
    def __init__(self):
        self.called = []

    def call(self, task, note_round=None, **arguments):
        self.called.append(task.name)
        return super().call(task, note_round, **arguments)


def _inputs(tmp_path) -> Inputs:
    (tmp_path / "raw").mkdir(exist_ok=True)
    return Inputs(str(tmp_path), Params(), raw=tmp_path / "raw")


def test_a_walk_calls_every_stage_in_order_as_bound(tmp_path):
    run, seen = Noting(), []
    walked = walk(TOY, run, _inputs(tmp_path), warn=seen.append)
    assert run.called == ["first", "double", "each", "each", "each"]  # Direct's map: one call per position
    assert walked.results["double"]["digest"] == "firstfirst"
    assert [r["digest"] for r in walked.results["each"]] == ["firstfirst-0", "firstfirst-1", "firstfirst-2"]
    assert walked.warnings == seen == ["saw firstfirst", "second"]


def test_only_and_until_pick_the_steps_and_an_earlier_walk_feeds_them(tmp_path):
    inputs = _inputs(tmp_path)
    head = walk(TOY, Direct(), inputs, until="double", checks=False)
    assert list(head.results) == ["first", "double"] and head.warnings == []
    tail = walk(TOY, Direct(), inputs, only=["each"], done=head.results)
    assert len(tail.results["each"]) == 3 and tail.warnings == []


def test_sources_fall_back_and_reach_parts(tmp_path):
    (tmp_path / "split" / "pool").mkdir(parents=True)
    (tmp_path / "split" / "pool" / "rows.txt").write_text("x")
    value = resolver({"holdout": {"path": str(tmp_path / "split"), "digest": "d"},
                      "rounds": [{"train": {"path": "a", "digest": "1"}}, {"train": {"path": "b", "digest": "2"}}]},
                     _inputs(tmp_path))
    assert value("raw_eval") is None  # no held-out files: the holdout stage's part is taken instead
    assert value("raw_eval|holdout/pool")["path"] == str(tmp_path / "split" / "pool")
    assert [r["digest"] for r in value("train")] == ["1", "2"]  # a group member: its artifact of every round
    assert set(value("*")) == {"holdout", "rounds"}


def test_the_walk_steps_are_the_dvc_stages_and_record():
    assert list(units()) == list(groups()) + ["record"] == list(LAYOUT) + ["record"]
    assert [s.name for s in units()["rounds"]] == [s.name for s in STAGES if s.group == "rounds"]


def test_direct_map_is_one_call_per_position():
    assert Direct().map(SimpleTask, {"x": [1, 2], "y": [3, 4]}, z=5) == [(1, 3, 5), (2, 4, 5)]


class SimpleTask:
    fn = staticmethod(lambda x, y, z: (x, y, z))
