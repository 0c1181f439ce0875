"""One stage at a time without Prefect: the commands `dvc repro` runs (see dvc.yaml), a walk of the declared
stages (flows/walk.py) with the Direct executor that runs only the stage asked for.

An input is the store entry its `data/` path was published from (`.curate/published.json`), so the
keys are the flow's and a stage whose inputs and parameters did not change finds its output in the
content store and only re-publishes it. Without that entry (a fresh clone after `dvc pull`) the
published copy is the input; a round's published checkpoint lacks the optimizer state, so its
digest, and the keys of the stages that read it, differ from the flow's and those stages re-run.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from curate.config import load_params
from flows.walk import Published, walk
from tasks.executor import Direct
from tasks.pipeline import LAYOUT, STAGES
from tasks.publish import publish_result


def run_stage(project: str, name: str, params_file: str, overrides: Sequence[str] = ()) -> None:
    if name not in LAYOUT:
        raise ValueError(f"unknown stage {name!r}")
    p = load_params(Path(project) / params_file, overrides)
    inputs = Published(project, p, raw=Path(project) / p.raw.dir, raw_eval=Path(project) / p.raw.eval_dir)
    walked = walk(STAGES, Direct(), inputs, only=[name], warn=lambda w: print(f"WARNING {w}", file=sys.stderr))
    publish_result(project, name, walked.results[name])
