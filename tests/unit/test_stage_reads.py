"""The stage declarations (tasks/pipeline.py) checked against what the stages do, not against themselves.

Every stage of STAGES runs once on a tiny project, through the same steps as the flow (flows/steps.py)
but calling the plain functions, with its parameters wrapped in `Recorded`: a dict that notes every
leaf the stage reads and every lookup of a key it does not hold (`get` with a default and `in`
included, which hide an undeclared read from a plain dict). Then:
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
from collections import defaultdict
from pathlib import Path

import mlflow
import pytest

import tasks.caching
import tasks.pipeline
from curate.config import Params
from curate.demo.pool import write_demo
from flows.steps import pool_and_heldout, merge_shards, run_dedup, run_embed, run_evaluations, run_rounds
from tasks.base_model import base_model
from tasks.caching import REGISTRY
from tasks.holdout import holdout
from tasks.ingest import ingest
from tasks.pipeline import SPECS, STAGES, UNKEYED, pick, stage_params
from tasks.ranking import rank_pool
from tasks.record import record
from tasks.dedup import dedup
from tasks.embed import embed
from tasks.score import plan_pool, rescore_window, score_pool
from tasks.semdedup import previous_semdedup, semdedup

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


class Calls:
    """A `call` for flows/steps.py: runs each stage's plain function with Recorded parameters, and keeps
    every call's arguments (with the plain parameters) for the key checks."""

    def __init__(self):
        self.reads: dict[str, set[str]] = defaultdict(set)
        self.undeclared: dict[str, list[str]] = defaultdict(list)
        self.arguments: dict[str, list[dict]] = defaultdict(list)

    def __call__(self, task, note_round=None, **kwargs) -> dict:
        self.arguments[task.name].append(copy.deepcopy(kwargs))
        params = Recorded(kwargs["params"], self.reads[task.name], self.undeclared[task.name])
        return task.fn(**{**kwargs, "params": params})

    def map(self, task, execution, mapped: dict[str, list], note_round=None, **constant) -> list[dict]:
        return [self(task, **constant, **dict(zip(mapped, values))) for values in zip(*mapped.values())]


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
    """Every stage once, in the flow's order (flows/curate_run.py), with execution.shards 2, plus the ranking
    stage of both its strategies, the holdout stage without held-out files (it then reads its share) and
    the stages that merge shards once more unsharded (in the project `elsewhere`, whose store and row score
    cache are empty: their keys ignore the shards)."""
    raw = {"path": str(Path(project) / p.raw.dir), "digest": "raw"}
    rows = call(ingest, project=project, raw=raw, params=stage_params(p, "ingest"))
    deduped = run_dedup(call, p.execution, project, p, rows)
    embeddings = run_embed(call, p.execution, project, p, deduped)
    pool = call(semdedup, project=project, rows=deduped, embeddings=embeddings, params=stage_params(p, "semdedup"),
                previous=previous_semdedup(project, deduped, embeddings, stage_params(p, "semdedup")))
    call(holdout, project=project, pool=pool, params=stage_params(p, "holdout"), eval_files=False)
    split = call(holdout, project=project, pool=pool, params=stage_params(p, "holdout"), eval_files=True)
    selectable, heldout = pool_and_heldout(project, p, split)
    base = call(base_model, project=project, params=stage_params(p, "base_model"))
    plan = plan_pool(project, selectable, base, stage_params(p, "score"), p.execution.shards)
    scores = merge_shards(call, p.execution, project, p, plan, base, score_pool, pool=selectable,
                          params=stage_params(p, "score"))
    for strategy in ("longest", "rds"):
        ranked = _params(selection={**TINY["selection"], "strategy": strategy})
        call(rank_pool, project=project, pool=selectable, model=base, heldout=heldout,
             params=stage_params(ranked, "ranking"))
    rounds = run_rounds(call, project, p, selectable, scores, base, heldout, execution=p.execution)
    evaluations = run_evaluations(call, project, p, heldout, base, [r["train"] for r in rounds])
    for r, ev in zip(rounds, evaluations[1:]):
        r["evaluate"] = ev
    refs = {"ingest": rows, "dedup": deduped, "embed": embeddings, "semdedup": pool, "holdout": split,
            "base_model": base, "score": scores, "evaluate_base": evaluations[0]}
    call(record, project=project, refs=refs, rounds=rounds, params=stage_params(p, "record"), dvc_lock=None,
         flow_run_id="test", params_file="params.yaml")
    for name, task in MERGING.items():  # and unsharded, where the merging stage computes everything itself (in
        unsharded = {k: v for k, v in call.arguments[name][0].items() if k != "shards"}  # another project: no cache)
        call(task, **{**unsharded, "project": elsewhere})


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[Calls, Params]:
    project = tmp_path_factory.mktemp("stage-reads")
    p = _params()
    write_demo(project / p.raw.dir, size=80, eval_per_skill=4)
    (project / "params.yaml").write_text("{}\n")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    call = Calls()
    with pytest.MonkeyPatch.context() as mp:
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
    assert {name: found for name, found in call.undeclared.items() if found} == {}


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

