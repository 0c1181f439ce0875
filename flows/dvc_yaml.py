"""`dvc.yaml`, generated from the stage declarations (tasks/pipeline.py): `curate dvc-yaml`.

One `dvc.yaml` stage per declared stage, except the rounds: re-score, select and train run as one
`rounds` stage (they alternate round by round). A stage's deps are the outputs of the stages it
reads, the raw data and its code: the files its cache key hashes (tasks/code.py, the import graph of
its task module); its params are its declared parameter paths. A test fails when the checked-in file
differs.
"""
from __future__ import annotations

from tasks.code import stage_code
from tasks.pipeline import SPECS, StageSpec, groups

HEADER = """\
# Generated from the stage declarations in tasks/pipeline.py by `curate dvc-yaml`: edit those, not this.
# The curation pipeline for `dvc repro` (no Prefect needed). `curate run` executes the same stages
# through Prefect and then runs `dvc commit`, so after a flow run `dvc status` is clean and
# `dvc repro` is a no-op. Each cmd reuses the content store, so re-running a stage whose inputs and
# params are unchanged only re-publishes its output.
"""
RAW = "data/raw"  # raw.dir; the held-out files (raw.eval_dir) live under it by default


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def _params(paths: list[str]) -> list[str]:
    """Declared paths, minus those already covered by a listed parent section."""
    return [p for p in paths if not any(p.startswith(q + ".") for q in paths if q != p)]


def _deps(members: list[StageSpec], with_code: bool) -> list[str]:
    deps = []
    for m in members:
        for i in m.inputs:
            if i in ("raw", "raw_eval"):
                deps.append(RAW)
            elif SPECS[i].output and SPECS[i].output != members[0].output:
                deps.append(SPECS[i].output)
    if with_code:
        deps += sorted({f for m in members for f in stage_code(m.task_module)})
    return _unique(deps)


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def render(with_code: bool = True, params_file: str = "params/default.yaml") -> str:
    """The text of `dvc.yaml`. `with_code=False`: no deps on code (a project of `curate init`, whose
    code is the installed package: a code change is seen by `curate run`'s keys, not by `dvc status`)."""
    lines = [HEADER.rstrip("\n")]
    if not with_code:
        lines.append("# The code is the installed `curate` package: a code change is seen by `curate run` (its cache\n"
                     "# keys hold code digests), not by `dvc status`.")
    lines.append("stages:")
    for name, members in groups().items():
        deps = _deps(members, with_code)
        params = _params(_unique(p for m in members for p in m.params + m.when))
        out = members[0].output
        outs = f"[{{{out}: {{persist: true}}}}]" if any(m.persist for m in members) else f"[{out}]"
        lines += [f"  {name}:", f"    cmd: curate stage {name}"]
        if deps:
            lines.append(f"    deps: {_flow(deps)}")
        lines += [f"    params: [{{{params_file}: {_flow(params)}}}]", f"    outs: {outs}"]
    return "\n".join(lines) + "\n"
