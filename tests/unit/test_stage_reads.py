"""The stage declarations (tasks/pipeline.py) checked against what the stages do, not against themselves.

Every stage of STAGES runs once on a tiny project, through the same walk as the flow (flows/walk.py)
but with an executor calling the plain functions, with its parameters wrapped in `Recorded`: a dict
that notes every lookup of a key it does not hold (`get` with a default and `in` included, which hide
an undeclared read from a plain dict) and every leaf read from it; a stage that reads its parameters
typed (`curate.config.declared`) gets a view that notes every attribute path it reads. Then:
- no stage looked up a parameter it does not declare;
- every declared leaf was read by its stage (a stage keyed on a parameter it never reads re-runs for
  nothing when that parameter changes);
- the stage's real cache key (tasks/caching.py `Stage.key`, on the arguments it ran with) moves
  with every declared leaf and with no other.
Reads made by the key computation itself (tasks/caching.py, tasks/pipeline.py) are not the stage's.
"""
from __future__ import annotations

import copy
import sys
from importlib import import_module
from collections import defaultdict
from pathlib import Path

import mlflow
import pytest

import tasks.caching
import tasks.pipeline
from pydantic import BaseModel

from curate.config import Declared, Params
from curate.config import declared as real_declared
from curate.demo.pool import write_demo
from flows.walk import Inputs, walk
from tasks.caching import REGISTRY
from tasks.dedup import dedup
from tasks.embed import embed
from tasks.executor import calls
from tasks.pipeline import SPECS, STAGES, UNKEYED, pick, stage_params
from tasks.ranking import rank_pool
from tasks.score import rescore_window, score_pool

# the smallest settings that run every stage (the shards' ones included) and every branch of its
# parameters that the demo settings take
TINY = {
    "base_model": {"vocab_size": 512, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                   "max_positions": 128, "pretrain": {"steps": 5, "batch_size": 4, "seq_len": 32, "corpus_rows": 100}},
    "dedup": {"semantic": {"enabled": True}},
    "embed": {"max_length": 32},
    "scoring": {"max_length": 64, "contrast_partners": 1},
    "selection": {"rounds": 2, "ratio": 0.2, "mismatch_gate": "off"},
    "training": {"batch_size": 4, "max_length": 64},
    "evaluation": {"max_rows_per_skill": 2, "anchor_rows": 2},
    "execution": {"shards": 2},
}
MERGING = {"dedup": dedup, "embed": embed, "score": score_pool, "rescore": rescore_window}  # stages that merge shards
BOOKKEEPING = {tasks.caching.__file__, tasks.pipeline.__file__}


def _bookkeeping() -> bool:
    """Is this read made on behalf of the key computation (a frame of tasks/caching.py or pipeline.py)?"""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename in BOOKKEEPING:
            return True
        frame = frame.f_back
    return False


def _leaves(d: dict, prefix: str = "") -> set[str]:
    return {p for k, v in d.items() for p in (_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"})}


def _reading_all(name: str):
    """The dict method `name`, noting first that its caller reads the whole section."""
    def method(self):
        self._all_read()
        return getattr(dict, name)(self)
    return method


class Recorded(dict):
    """A stage's parameters that note each leaf read (into `reads`) and each lookup of a key they do not
    hold (into `undeclared`: `[]` raises KeyError as the plain dict would, `get` and `in` answer as it
    would, so the stage runs on and every such lookup is listed). Iterating a section (copying it,
    hashing it, validating it) reads all of it."""

    def __init__(self, data: dict, reads: set[str], undeclared: list[str], prefix: str = ""):
        super().__init__(data)
        self._reads, self._undeclared, self._prefix = reads, undeclared, prefix

    def _missing(self, key) -> bool:
        if super().__contains__(key):
            return False
        self._undeclared.append(f"{self._prefix}{key}")
        return True

    def __getitem__(self, key):
        if self._missing(key):
            raise KeyError(f"undeclared parameter {self._prefix}{key}")
        value = super().__getitem__(key)
        if isinstance(value, dict):
            return Recorded(value, self._reads, self._undeclared, f"{self._prefix}{key}.")
        if not _bookkeeping():
            self._reads.add(f"{self._prefix}{key}")
        return value

    def get(self, key, default=None):
        return default if self._missing(key) else self[key]

    def __contains__(self, key) -> bool:
        return not self._missing(key)

    def _all_read(self) -> None:
        if not _bookkeeping():
            self._reads.update(_leaves(dict(super().items()), self._prefix))

    items, values, keys, __iter__ = (_reading_all(name) for name in ("items", "values", "keys", "__iter__"))


class View:
    """A typed parameter view (curate.config.Declared) that notes every leaf path the stage reads. A wholly
    declared section comes back as its model (a TrainingParams, say), which stages hand on whole (to pydantic,
    to the trainer): reading it counts as reading every leaf of it."""

    def __init__(self, inner: Declared, reads: set[str], path: str = ""):
        self._inner, self._reads, self._path = inner, reads, path

    def __getattr__(self, name: str):
        value = getattr(self._inner, name)
        if isinstance(value, Declared):
            return View(value, self._reads, f"{self._path}{name}.")
        if isinstance(value, BaseModel):
            self._reads.update(_leaves(value.model_dump(mode="json"), f"{self._path}{name}."))
        else:
            self._reads.add(f"{self._path}{name}")
        return value


def _plain(values):
    """A Recorded dict as plain dicts, read through dict's own methods (nothing noted)."""
    return {k: _plain(v) for k, v in dict.items(values)} if isinstance(values, dict) else values


class Calls:
    """An executor (tasks/executor.py) that runs each stage's plain function with Recorded parameters, and keeps
    every call's arguments (with the plain parameters) for the key checks."""

    shards = 2
    current: list[str] = []

    def __init__(self):
        self.reads: dict[str, set[str]] = defaultdict(set)
        self.undeclared: dict[str, list[str]] = defaultdict(list)
        self.arguments: dict[str, list[dict]] = defaultdict(list)

    def call(self, task, note_round=None, **kwargs) -> dict:
        self.arguments[task.name].append(copy.deepcopy(kwargs))
        params = Recorded(kwargs["params"], self.reads[task.name], self.undeclared[task.name])
        self.current.append(task.name)
        try:
            return task.fn(**{**kwargs, "params": params})
        finally:
            self.current.pop()

    def map(self, task, mapped: dict[str, list], note_round=None, **constant) -> list[dict]:
        return [self.call(task, **kw) for kw in calls(mapped, constant)]

    def declared(self, values):
        """curate.config.declared for the stage running now: its view notes what the stage reads (outside a
        stage's call, e.g. a binding hook choosing the previous artifact, nothing is noted)."""
        view = real_declared(_plain(values))  # validating the dict is not the stage reading it
        return View(view, self.reads[self.current[-1]]) if self.current else view


def _params(**over) -> Params:
    data = Params().model_dump(mode="json")
    for section, values in {**TINY, **over}.items():
        for key, value in values.items():
            if isinstance(value, dict):
                data[section][key].update(value)
            else:
                data[section][key] = value
    return Params.model_validate(data)


def _pipeline(project: str, p: Params, call: Calls, elsewhere: str) -> None:
    """Every stage once, in the flow's order (the flow's walk, record included), with execution.shards 2, plus
    the ranking stage of both its strategies, the holdout stage without held-out files (it then reads its share)
    and the stages that merge shards once more unsharded (in the project `elsewhere`, whose store and row score
    cache are empty: their keys ignore the shards)."""
    raw = Path(project) / p.raw.dir
    run = {"flow_run_id": "test", "params_file": "params.yaml", "overrides": [], "dvc_lock": None}
    walked = walk(STAGES, call, Inputs(project, p, raw=raw, raw_eval=Path(project) / p.raw.eval_dir, run=lambda: run),
                  checks=False).results
    walk(STAGES, call, Inputs(project, p, raw=raw, raw_eval=None), only=["holdout"], checks=False, done=walked)
    for strategy in ("longest", "rds"):
        ranked = _params(selection={**TINY["selection"], "strategy": strategy})
        call.call(rank_pool, project=project, pool=call.arguments["score"][0]["pool"], model=walked["base_model"],
                  heldout=call.arguments["evaluate"][0]["heldout"], params=stage_params(ranked, "ranking"))
    for name, task in MERGING.items():  # and unsharded, where the merging stage computes everything itself (in
        unsharded = {k: v for k, v in call.arguments[name][0].items() if k != "shards"}  # another project: no cache)
        call.call(task, **{**unsharded, "project": elsewhere})


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[Calls, Params]:
    project = tmp_path_factory.mktemp("stage-reads")
    p = _params()
    write_demo(project / p.raw.dir, size=80, eval_per_skill=4)
    (project / "params.yaml").write_text("{}\n")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    call = Calls()
    with pytest.MonkeyPatch.context() as mp:
        for module in {import_module(s.import_name) for s in STAGES}:  # a stage reads typed parameters by `declared`
            if getattr(module, "declared", None) is real_declared:
                mp.setattr(module, "declared", call.declared)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            _pipeline(str(project), p, call, str(tmp_path_factory.mktemp("unsharded")))
        finally:
            mlflow.set_tracking_uri(None)
    return call, p


def test_every_stage_ran(ran):
    call, _ = ran
    assert set(call.arguments) == set(SPECS) == set(REGISTRY)


def test_no_stage_reads_a_parameter_it_does_not_declare(ran):
    call, _ = ran
    found = {name: sorted(set(keys)) for name, keys in call.undeclared.items() if keys}
    assert found == {}, found


@pytest.mark.parametrize("name", [s.name for s in STAGES])
def test_a_stage_reads_every_parameter_it_is_keyed_on(ran, name):
    call, p = ran
    declared = _leaves(stage_params(p, name))
    assert declared - call.reads[name] == set(), f"{name} is keyed on parameters it never read"


@pytest.mark.parametrize("name", [s.name for s in STAGES])
def test_a_stage_key_moves_with_its_declared_leaves_only(ran, name):
    """Each leaf of the whole parameter set changed in turn, the key recomputed on the stage's first call."""
    call, p = ran
    stage = REGISTRY[name]
    arguments = call.arguments[name][0]
    full = p.model_dump(mode="json")
    declared = _leaves(stage_params(p, name))
    base_key = stage.key({**arguments, "params": pick(full, SPECS[name].params)})
    for path in _leaves(full):
        if path.split(".")[0] in UNKEYED:
            continue
        data = copy.deepcopy(full)
        *parents, leaf = path.split(".")
        node = data
        for k in parents:
            node = node[k]
        node[leaf] = ["changed", node[leaf]]
        moved = stage.key({**arguments, "params": pick(data, SPECS[name].params)}) != base_key
        assert moved == (path in declared), (name, path)

