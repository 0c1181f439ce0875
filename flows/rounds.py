"""The rounds group step: IterIT's loop, round by round {re-score the window with the newest checkpoint ->
select -> train}; the baselines `longest` and `rds` first rank the pool once (the ranking stage). One step of
the walk (flows/walk.py), one `dvc.yaml` stage: the four stages alternate, so none can run on its own."""
from __future__ import annotations

from typing import Any, Callable

from curate.config import Params
from curate.selection.rounds import RANKED, RESCORING
from tasks.executor import Executor
from tasks.pipeline import HELDOUT, stage_params
from tasks.ranking import rank_pool
from tasks.score import rescore
from tasks.select import select
from tasks.train import needs_anchors, total_steps, train


def run_rounds(run: Executor, project: str, p: Params, value: Callable[[str], Any]) -> list[dict]:
    """Per round, its stages' artifacts: {"ranking" (round 0 of longest and rds), "rescore", "select", "train"}.
    The held-out sets (`HELDOUT`) are where anchor-based online policies and `rds` take their anchors."""
    pool, scores, base, heldout = value("holdout/pool"), value("score"), value("base_model"), value(HELDOUT)
    total = total_steps(p, pool)
    anchors = ({"heldout": heldout, "anchor_rows": p.evaluation.anchor_rows}
               if heldout is not None and needs_anchors(p.training.online) else {})
    ranking = (run.call(rank_pool, project=project, pool=pool, model=base, heldout=heldout,
                        params=stage_params(p, "ranking")) if p.selection.strategy in RANKED else None)
    checkpoint, previous, rounds = base, None, []
    for r in range(p.selection.rounds):
        window = None
        if r > 0 and p.selection.strategy in RESCORING:
            window = rescore(run, {"project": project, "pool": pool, "model": checkpoint, "state": previous,
                                   "params": stage_params(p, "rescore"), "round_index": r})
        previous = run.call(select, project=project, pool=pool, base_scores=scores, previous=previous,
                            window_scores=window, model=base, params=stage_params(p, "select"), round_index=r,
                            **({"ranking": ranking} if ranking else {}))
        checkpoint = run.call(train, project=project, pool=pool, selection=previous, checkpoint=checkpoint,
                              params=stage_params(p, "train"), round_index=r, total_steps=total, **anchors)
        rounds.append({"ranking": ranking if r == 0 else None, "rescore": window, "select": previous,
                       "train": checkpoint})
    return rounds
