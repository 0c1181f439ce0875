"""The stage declarations (tasks/pipeline.py): complete, consistent with the code, the only source of
the stages' parameters and of dvc.yaml."""
from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest

from curate.config import Params
from flows.dvc_yaml import render
from tasks.caching import REGISTRY, Stage, code_version
from tasks.code import stage_code
from tasks.pipeline import SPECS, STAGES, groups, pick, stage_params

ROOT = Path(__file__).resolve().parents[2]
TASK_MODULES = sorted({s.import_name for s in STAGES})
# a new value for every leaf of these sections: what no stage but record may depend on
TRACKING_ONLY = {"project.experiment": "other", "tracking.dvc_remote": "elsewhere", "tracking.push": False,
                 "tracking.log_models": False, "tracking.regression_threshold": 0.5, "schedule.cron": "0 3 * * *",
                 "schedule.timezone": "Europe/Paris", "schedule.overlap": "enqueue", "schedule.deployment": "other",
                 "raw.incoming": "data/elsewhere", "scorer_fit.min_eligible_share": 0.5, "scorer_fit.max_nan_share": 0.5}


def _set(p: Params, path: str, value) -> Params:
    data = p.model_dump(mode="json")
    node = data
    *parents, leaf = path.split(".")
    for k in parents:
        node = node[k]
    node[leaf] = value
    return Params.model_validate(data)


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_checked_in_dvc_yaml_is_generated_from_the_declarations():
    assert (ROOT / "dvc.yaml").read_text() == render(with_code=True), "run `curate dvc-yaml --write`"


def test_every_declaration_resolves():
    p = Params()
    for s in STAGES:
        stage_params(p, s.name)  # every declared parameter path exists
        pick(p.model_dump(mode="json"), s.when)
        code_version(*stage_code(s.task_module))  # the stage's code (its task module's import graph) exists and holds Python
        module = importlib.import_module(s.import_name)
        for hook in (s.task or s.name if not s.group and not s.part_of else "", s.bind, s.step, s.check):
            assert not hook or callable(getattr(module, hook, None)), (s.name, hook)
        for i in s.inputs:
            assert i in SPECS or i in ("raw", "raw_eval"), (s.name, i)
        for source in s.args.values():  # a binding reads only declared inputs (or the walk's own sources)
            for one in source.split("|"):
                name = one.split("/")[0]
                assert name in s.inputs or name in ("*", "run"), (s.name, source)
    assert all(len({m.output for m in members}) == 1 for members in groups().values())


def test_every_task_is_keyed_by_its_declaration():
    for name in TASK_MODULES:
        importlib.import_module(name)
    assert set(REGISTRY) == set(SPECS)
    for name, stage in REGISTRY.items():
        assert stage.spec is SPECS[name] and stage.all_code == stage_code(SPECS[name].task_module)


def test_tracking_and_schedule_settings_reach_no_stage_but_record():
    base = Params()
    for path, value in TRACKING_ONLY.items():
        changed = _set(base, path, value)
        for s in STAGES:
            same = stage_params(changed, s.name) == stage_params(base, s.name)
            assert same != (s.name == "record"), (path, s.name)


def test_execution_settings_reach_no_stage():
    """Where a run computes is no stage's input, record's included: a change re-runs nothing."""
    base = Params()
    for path, value in {"execution.runner": "dask", "execution.address": "tcp://10.0.0.5:8786", "execution.workers": 8,
                        "execution.threads_per_worker": 4, "execution.shards": 3}.items():
        changed = _set(_set(base, "execution.runner", "dask"), path, value)
        for s in STAGES:
            assert stage_params(changed, s.name) == stage_params(base, s.name), (path, s.name)


@pytest.mark.parametrize("name", [s.name for s in STAGES if s.name != "record"])
def test_a_stage_gets_exactly_its_declared_leaves(name):
    """Every leaf of the declared paths changes the stage's parameters; no other leaf does."""
    full = Params().model_dump(mode="json")
    declared = {path for path, _ in _leaves(stage_params(Params(), name))}
    for path, value in _leaves(full):
        data = copy.deepcopy(full)
        node = data
        *parents, leaf = path.split(".")
        for k in parents:
            node = node[k]
        node[leaf] = ["changed"] if not isinstance(value, list) else value + ["changed"]
        changed = pick(data, SPECS[name].params) != pick(full, SPECS[name].params)
        assert changed == (path in declared), (name, path)


def test_undeclared_parameters_are_refused():
    with pytest.raises(KeyError, match="training.nope"):
        pick(Params().model_dump(mode="json"), ("training.nope",))
    stage = Stage("select")
    params = stage_params(Params(), "select")
    stage.key({"project": "/p", "params": params})
    with pytest.raises(ValueError, match="stage_params"):
        stage.key({"project": "/p", "params": {**params, "training": {"lr": 1.0}}})


def test_the_parameter_reference_is_generated_from_the_config():
    from curate.params_doc import PAGE, page_with, render

    assert PAGE.read_text() == page_with(render(), PAGE.read_text()), "run `python -m curate.params_doc --write`"
    for path, _ in _leaves(Params().model_dump(mode="json")):
        if not path.startswith("training.online."):
            assert f"| `{path}` |" in render(), path


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert readme.index("make demo") < readme.index("make test") < readme.index("## ")
    assert "docs/known-limits.md" in readme.split("## Known limits")[1]
