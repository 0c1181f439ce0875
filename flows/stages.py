"""One stage at a time without Prefect: the commands `dvc repro` runs (see dvc.yaml).

An input is the store entry its `data/` path was published from (`.curate/published.json`), so the
keys are the flow's and a stage whose inputs and parameters did not change finds its output in the
content store and only re-publishes it. Without that entry (a fresh clone after `dvc pull`) the
published copy is the input; a round's published checkpoint lacks the optimizer state, so its
digest, and the keys of the stages that read it, differ from the flow's and those stages re-run.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from curate import published
from curate.artifacts import Ref
from curate.config import load_params
from flows.steps import (check_pool_rows, check_scorer_fit, holdout_arguments, pool_and_heldout, publish_evaluations,
                         publish_rounds, run_evaluations, run_rounds)
from tasks.base_model import base_model, scoring_models
from tasks.dedup import dedup, previous_dedup
from tasks.embed import embed
from tasks.holdout import holdout
from tasks.ingest import ingest
from tasks.pipeline import stage_params
from tasks.publish import LAYOUT, publish, publish_base_model
from tasks.score import score_pool
from tasks.semdedup import previous_semdedup, semdedup


def direct(task, **kwargs) -> dict:
    return task.fn(**kwargs)


def run_stage(project: str, name: str, params_file: str, overrides: Sequence[str] = ()) -> None:
    p = load_params(Path(project) / params_file, overrides)

    def ws(rel: str) -> dict:
        return Ref.of(published.source(project, rel) or Path(project) / rel).to_dict()

    def base() -> dict:
        return ws(LAYOUT["base_model"]) if p.base_model.source == "tiny" else direct(
            base_model, project=project, params=stage_params(p, "base_model"))

    if name == "ingest":
        publish(project, direct(ingest, project=project, raw=ws(p.raw.dir), params=stage_params(p, "ingest")), LAYOUT[name])
    elif name == "dedup":
        rows = ws(LAYOUT["ingest"])
        ref = direct(dedup, project=project, rows=rows, previous=previous_dedup(project, rows, stage_params(p, "dedup")),
                     params=stage_params(p, "dedup"))
        publish(project, ref, LAYOUT[name])
    elif name == "embed":
        publish(project, direct(embed, project=project, rows=ws(LAYOUT["dedup"]), params=stage_params(p, "embed")), LAYOUT[name])
    elif name == "semdedup":
        rows, embeddings = ws(LAYOUT["dedup"]), ws(LAYOUT["embed"])
        ref = direct(semdedup, project=project, rows=rows, embeddings=embeddings, params=stage_params(p, "semdedup"),
                     previous=previous_semdedup(project, rows, embeddings, stage_params(p, "semdedup")))
        publish(project, ref, LAYOUT[name])
    elif name == "holdout":
        ref = direct(holdout, project=project, pool=ws(LAYOUT["semdedup"]), **holdout_arguments(project, p))
        publish(project, ref, LAYOUT[name])
        check_pool_rows(p, {**{s: ws(LAYOUT[s]) for s in ("ingest", "dedup", "semdedup")},
                            "holdout": pool_and_heldout(project, p, ref)[0]}, budget=True)
    elif name == "base_model":
        ref = direct(base_model, project=project, params=stage_params(p, "base_model"))
        publish_base_model(project, ref, p.base_model.source)
    elif name == "score":
        pool, _ = pool_and_heldout(project, p, ws(LAYOUT["holdout"]))
        ref = direct(score_pool, project=project, pool=pool, params=stage_params(p, "score"),
                     **scoring_models(direct, project, p, base()))
        publish(project, ref, LAYOUT[name])
        check_scorer_fit(p, ref)
    elif name == "rounds":
        pool, heldout = pool_and_heldout(project, p, ws(LAYOUT["holdout"]))
        publish_rounds(project, run_rounds(direct, project, p, pool, ws(LAYOUT["score"]), base(), heldout))
    elif name == "evaluate":
        rounds_dir = Path(project) / LAYOUT["rounds"]
        checkpoints = [ws(f"{LAYOUT['rounds']}/round-{r}/train") for r in range(p.selection.rounds)
                       if (rounds_dir / f"round-{r}" / "train").is_dir()]
        _, heldout = pool_and_heldout(project, p, ws(LAYOUT["holdout"]))
        publish_evaluations(project, run_evaluations(direct, project, p, heldout, base(), checkpoints))
    else:
        raise ValueError(f"unknown stage {name!r}")
