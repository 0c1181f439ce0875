"""The one walker: the declared stages (tasks/pipeline.py `STAGES`) executed in order.

The Prefect flow (flows/curate_run.py), `curate stage X` under `dvc repro` (flows/stages.py) and
`curate compare` (app/compare.py) are three walks of the same table with different executors
(tasks/executor.py: Prefect, Direct, Timed) and inputs (`Inputs`: where the raw files are, and, for
`curate stage`, the published artifacts of the stages before). A stage's binding (its task, where
each argument comes from, its hooks) is declared with it; the walker only follows it. The rounds
(re-score, select, train, round by round) are one group step (flows/rounds.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Iterable

from curate.artifacts import Ref
from curate.config import Params
from curate.evaluation.sets import has_heldout_files
from curate.seal import checked_ref
from flows.rounds import run_rounds
from tasks.executor import Executor
from tasks.pipeline import LAYOUT, SPECS, StageSpec, pick, units
from tasks.publish import published_ref, published_rounds

GROUP_STEPS = {"rounds": run_rounds}  # group -> its step: (executor, project, params, value) -> per-round artifacts


@dataclass
class Inputs:
    """What a walk reads besides its own results: the raw pool `raw`, the held-out files `raw_eval` (a directory;
    None, or one without held-out files: the holdout stage's rows are evaluated), `run` (the flow run's identity,
    for record)."""

    project: str
    params: Params
    raw: Path
    raw_eval: Path | None = None
    run: Callable[[], dict] | None = None

    def source(self, name: str) -> Any:
        if name == "raw":
            return Ref.of(self.raw).to_dict()
        if name == "raw_eval":
            return Ref.of(self.raw_eval).to_dict() if self.raw_eval and has_heldout_files(self.raw_eval) else None
        if name == "run":
            return self.run() if self.run else None
        return None


@dataclass
class Published(Inputs):
    """`curate stage X`: the stages before X are read where `data/` published them (tasks/publish.py)."""

    def source(self, name: str) -> Any:
        if name in ("raw", "raw_eval", "run"):
            return super().source(name)
        spec = SPECS[name]
        if spec.group:
            return published_rounds(self.project, spec.group, name, self.params.selection.rounds)
        return published_ref(self.project, LAYOUT[spec.unit])


@dataclass
class Walked:
    results: dict[str, Any] = field(default_factory=dict)  # step -> its result (a Ref, or per round / per model)
    warnings: list[str] = field(default_factory=list)  # what the stages' checks said


def walk(specs: Iterable[StageSpec], executor: Executor, inputs: Inputs, only: Iterable[str] = (),
         until: str | None = None, checks: bool = True, done: dict[str, Any] | None = None,
         warn: Callable[[str], None] | None = None) -> Walked:
    """Run the steps of `specs` in order through `executor` (`only`: just these steps; `until`: stop after
    this one), each stage's arguments resolved from this walk's results (`done`: results of an earlier walk),
    else from `inputs`; with `checks`, each stage's check hook after it (its warnings are collected, and handed
    to `warn` as they come)."""
    walked, only = Walked(dict(done or {})), set(only)
    value = resolver(walked.results, inputs)
    for unit, members in units(specs).items():
        if not only or unit in only:
            head = members[0]
            if unit in GROUP_STEPS:
                walked.results[unit] = GROUP_STEPS[unit](executor, inputs.project, inputs.params, value)
            else:
                walked.results[unit] = _run_stage(head, executor, inputs, value)
            if checks and head.check:
                for warning in getattr(import_module(head.import_name), head.check)(inputs.params, value):
                    walked.warnings.append(warning)
                    if warn is not None:
                        warn(warning)
        if unit == until:
            break
    return walked


def stage_arguments(spec: StageSpec, inputs: Inputs, value: Callable[[str], Any]) -> dict[str, Any]:
    """The keyword arguments a walk passes to `spec`'s task: the project, each declared argument resolved by
    `value`, the stage's parameters (stage_params), then the stage's binding hook, if it has one."""
    arguments = {"project": inputs.project, **{arg: value(src) for arg, src in spec.args.items()},
                 "params": pick(inputs.params.model_dump(mode="json"), spec.params)}  # stage_params, of this spec
    if spec.bind:
        arguments = getattr(import_module(spec.import_name), spec.bind)(arguments)
    return arguments


def _run_stage(spec: StageSpec, executor: Executor, inputs: Inputs, value: Callable[[str], Any]) -> Any:
    module = import_module(spec.import_name)
    arguments = stage_arguments(spec, inputs, value)
    if spec.step:
        return getattr(module, spec.step)(executor, arguments)
    return executor.call(getattr(module, spec.task or spec.name), **arguments)


def resolver(results: dict[str, Any], inputs: Inputs) -> Callable[[str], Any]:
    """source -> value: the first of `a|b|...` that is not None; `stage/part`: that sub-directory of the
    stage's artifact; `*`: every result so far; a member of a group step: its artifact of every round."""
    groups = {s.name: s.group for s in SPECS.values() if s.group}

    def one(source: str) -> Any:
        if source == "*":
            return dict(results)
        name, _, part = source.partition("/")
        if name in results:
            found = results[name]
        elif groups.get(name) in results:
            found = [rd[name] for rd in results[groups[name]] if rd.get(name)]
        else:
            found = inputs.source(name)
        return checked_ref(Path(found["path"]) / part).to_dict() if part and found else found

    def value(source: str) -> Any:
        return next((v for v in map(one, source.split("|")) if v is not None), None)

    return value
