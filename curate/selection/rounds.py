"""Round-level selection: which rows train round r, for every strategy (docs/iterit.md §6-§8).

Positions are indices into the deduplicated pool. `order` is the current ranking of positions
(a permutation of the positions with a finite score), carried from round to round as IterIT's
reference carries its `order`. Strategies:

- `iterit`: re-score a window with the newest checkpoint, then complexity x diversity greedy
  (`reorder`, mode "both").
- `ifd-only`: the same rounds, ranked by complexity alone (mode "ifd").
- `static-ifd`: rank by base-model IFD once (Superfiltering-style); with revisit off each later round
  takes the next K eligible rows of that ranking, with revisit on every round trains the same rows.
- `diversity-only`: the greedy with every complexity set to 1 (TF-IDF diversity alone); with revisit
  off each later round runs it again over the rows not trained yet, with revisit on round 0's rows are reused.
- `random`: a fresh seeded random draw of K rows every round (with revisit off, from the rows not
  trained yet).
- `full`: every row, every round.
- `longest`, `rds`: a fixed ranking of the pool computed once (response length in tokens; RDS+
  similarity to the target rows, curate/selection/rds.py); every round takes the first K eligible
  rows of it. Eligibility here is a finite score and, with revisit off, not trained before: neither
  IFD nor the mismatch gate applies to these baselines.

Window for the next round: `faithful` takes the first update_ratio*K positions of the new order (the
reference: picked + parked ineligible + next best); `clean` takes the first update_ratio*K eligible
positions (score < 1), so the re-scored pool holds next-best candidates, not parked rows.

`revisit=False` (not in the reference; for every strategy but `full`; `selection.revisit`,
`SelectionParams.revisit_on`) makes every row trained in an earlier round ineligible
(`trained_before`), and leaves this round's picks out of the next window: each round then trains on
rows no earlier round trained, so every strategy sees the same number of distinct rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from curate.config import STRATEGIES
from curate.selection.iterit import ELIGIBLE_BELOW, Pick, greedy_select_detailed, reorder_detailed, rescore_window

Strategy = Literal["iterit", "ifd-only", "static-ifd", "diversity-only", "random", "full", "longest", "rds"]
RESCORING = ("iterit", "ifd-only")  # strategies whose later rounds re-score a window
RANKED = ("longest", "rds")  # strategies that follow a ranking fixed before round 0
UNGATED = RANKED + ("random", "diversity-only")  # strategies neither IFD nor the mismatch gate restricts
FRESH_CAPABLE = RESCORING + UNGATED + ("static-ifd",)  # strategies that `selection.revisit: off` keeps from re-picking trained rows


@dataclass
class Selected:
    position: int
    rank: int
    ifd: float
    diversity: float | None
    score: float
    reason: str


@dataclass
class RoundSelection:
    order: list[int]
    selected: list[Selected]
    next_window: list[int] = field(default_factory=list)


def eligibility(ifd: Sequence[float], margin: Sequence[float], ifd_max: float = ELIGIBLE_BELOW,
                gate: bool = False, margin_min: float = 0.3) -> tuple[np.ndarray, list[str | None]]:
    """Who may be selected, and why not: IFD >= ifd_max (the reference's bound is 1), or, with the
    misalignment gate on, a response barely more likely under its own prompt than under another's."""
    reasons: list[str | None] = []
    for i, m in zip(ifd, margin):
        if not i < ifd_max:
            reasons.append(f"ifd {i:.4f} >= {ifd_max} (the instruction does not make the response easier)")
        elif gate and not m >= margin_min:
            reasons.append(f"instruction does not help (possible mismatch): margin {m:.3f} < {margin_min} nat")
        else:
            reasons.append(None)
    return np.asarray([r is None for r in reasons], dtype=bool), reasons


class NothingToSelect(ValueError):
    """A round found no eligible row: training it would be a no-op, so the run stops and says why."""


INELIGIBLE_KINDS = {  # stats key -> (reason prefix, words for people)
    "trained_before": ("trained in round", "trained in an earlier round (selection.revisit is off)"),
    "ifd_ge_max": ("ifd ", "IFD >= selection.ifd_max"),
    "gated_mismatch": ("instruction does not help", "failed the mismatch gate"),
    "nan_score": ("score is NaN", "scored NaN (the baselines' ranking score)"),
}


def ineligible_counts(why_not: Sequence[str | None]) -> dict[str, int]:
    """How many rows are ineligible for each reason of `eligibility` and `trained_before`."""
    return {key: sum(1 for r in why_not if r and r.startswith(prefix)) for key, (prefix, _) in INELIGIBLE_KINDS.items()}


INELIGIBLE_FIXES = {  # stats key -> what makes such rows eligible again
    "trained_before": "lower selection.rounds or selection.ratio (fewer rows used up per round), or set selection.revisit: on",
    "ifd_ge_max": "set a higher selection.ifd_max",
    "gated_mismatch": "set selection.mismatch_gate: off",
    "nan_score": "raise scoring.max_length (a NaN score: the response was cut away)",
}


def nothing_to_select(round_index: int, why_not: Sequence[str | None]) -> NothingToSelect:
    """The error for a round with no eligible row, counting the reasons and naming, for the reasons that
    occur, the parameters to change."""
    counts = ineligible_counts(why_not)
    listed = ", ".join(f"{counts[key]} {words}" for key, (_, words) in INELIGIBLE_KINDS.items())
    fixes = [fix for key, fix in INELIGIBLE_FIXES.items() if counts[key]]
    if not why_not:
        fixes = ["the pool has no row: put data in raw.dir"]
    return NothingToSelect(f"round {round_index}: no eligible row left to select ({listed} of {len(why_not)} pool "
                           f"rows).{' To fix: ' + '; '.join(fixes) + '.' if fixes else ''}")


def finite_positions(scores: Sequence[float]) -> list[int]:
    return [p for p, s in enumerate(scores) if not math.isnan(float(s))]


def _next_window(order: list[int], eligible: Sequence[bool], k: int, update_ratio: float, mode: str,
                 exclude: set[int] = frozenset()) -> list[int]:
    size = rescore_window(len(order), k, update_ratio)
    if mode == "faithful":
        return [p for p in order if p not in exclude][:size]
    return [p for p in order if eligible[p] and p not in exclude][:size]


def trained_before(trained_round: Sequence[int | None], round_index: int) -> list[str | None]:
    """With `revisit` off: why each row trained in an earlier round is ineligible now (None = not trained)."""
    return [None if r is None or r >= round_index else f"trained in round {r} (selection.revisit: off)"
            for r in trained_round]


def _ranked(strategy: str, order: list[int], window: list[int], scores, eligible, responses, k: int,
            decay: float) -> tuple[list[int], list[Selected]]:
    """Move the window to the front (stable), rank it, and describe the first K candidates."""
    in_window = set(window)
    front = [p for p in order if p in in_window] + [p for p in order if p not in in_window]
    mode = "both" if strategy == "iterit" else "ifd"
    new_order, picks = reorder_detailed(front, scores, responses, len(window), k, mode, decay, eligible)
    n_candidates = sum(1 for p in window if eligible[p])
    chosen = new_order[: min(k, n_candidates)]
    selected = []
    for rank, p in enumerate(chosen):
        pick: Pick | None = picks.get(p)
        if pick is not None:
            reason = f"greedy pick {rank}: ifd {scores[p]:.4f} x diversity {pick.informativeness:.4f} = {pick.score:.4f}"
            selected.append(Selected(p, rank, float(scores[p]), pick.informativeness, pick.score, reason))
        else:
            reason = f"rank {rank} by ifd {scores[p]:.4f}"
            selected.append(Selected(p, rank, float(scores[p]), None, float(scores[p]), reason))
    return new_order, selected


def select_round(
    strategy: Strategy, mode: Literal["clean", "faithful"], round_index: int, order: list[int] | None,
    scores: Sequence[float], responses: Sequence[str], k: int, update_ratio: float, decay: float,
    seed: int, window: list[int] | None = None, previous: list[Selected] | None = None,
    eligible: Sequence[bool] | None = None, revisit: bool = True, ranking: Sequence[int] | None = None,
    ranking_key: Sequence[float] | None = None,
) -> RoundSelection:
    """Select round `round_index`. `order`/`window`/`previous` come from the previous round (None in round 0).

    `eligible[p]` defaults to the reference's `scores[p] < 1`; callers pass it to add gates (and, with
    `revisit` off, to exclude rows trained before: `trained_before`). `ranking`: the positions in the
    order of a RANKED strategy (`curate.selection.baselines.ranked_by`), `ranking_key` its key by position.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    positions = finite_positions(scores)
    if eligible is None:
        eligible = [float(x) < ELIGIBLE_BELOW for x in scores]
    order = positions if order is None else [p for p in order if not math.isnan(float(scores[p]))]

    if strategy == "full":
        sel = [Selected(p, r, float(scores[p]), None, float(scores[p]), "full data: every row") for r, p in enumerate(positions)]
        return RoundSelection(positions, sel)
    candidates = positions if revisit else [p for p in positions if eligible[p]]  # revisit off: untrained rows
    if strategy == "random":
        rng = np.random.default_rng([seed, round_index])
        chosen = rng.permutation(np.asarray(candidates, dtype=np.int64))[:k].tolist()
        sel = [Selected(p, r, float(scores[p]), None, float("nan"), f"random draw (seed {seed}, round {round_index})") for r, p in enumerate(chosen)]
        return RoundSelection(positions, sel)
    if strategy in RANKED:
        if ranking is None or ranking_key is None:
            raise ValueError(f"strategy {strategy!r} needs its ranking of the pool")
        alive = set(positions)
        chosen = [p for p in ranking if p in alive and eligible[p]][:k]
        what = "response tokens" if strategy == "longest" else "RDS+ similarity"
        sel = [Selected(p, r, float(scores[p]), None, float(ranking_key[p]),
                        f"{strategy} pick {r}: {what} {float(ranking_key[p]):.4g}") for r, p in enumerate(chosen)]
        return RoundSelection(positions, sel)
    if strategy in ("static-ifd", "diversity-only") and previous is not None and revisit:
        sel = [Selected(s.position, s.rank, s.ifd, s.diversity, s.score, f"{s.reason} (selected in round 0, reused)") for s in previous]
        return RoundSelection(order, sel)
    if strategy == "diversity-only":
        picks = greedy_select_detailed([responses[p] for p in candidates], [1.0] * len(candidates), k, decay)
        sel = [
            Selected(candidates[pk.index], r, float(scores[candidates[pk.index]]), pk.informativeness, pk.score,
                     f"diversity pick {r}: informativeness {pk.informativeness:.4f}")
            for r, pk in enumerate(picks)
        ]
        return RoundSelection(order, sel)

    rank_strategy = "ifd-only" if strategy == "static-ifd" else strategy
    alive = set(order)
    # a static ranking (static-ifd) has no re-scored window: every round ranks the whole pool by base IFD
    current_window = order if window is None or strategy not in RESCORING else [p for p in window if p in alive]
    new_order, sel = _ranked(rank_strategy, order, current_window, scores, eligible, responses, k, decay)
    exclude = set() if revisit else {x.position for x in sel}
    next_window = _next_window(new_order, eligible, k, update_ratio, mode, exclude) if strategy in RESCORING else []
    return RoundSelection(new_order, sel, next_window)
