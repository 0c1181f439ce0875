"""Scorer fit, checked once right after the pool is scored (before any round).

A base model that does not fit the data makes IFD meaningless, and the run would fail later, at round
0's selection, with a message about eligibility. Two causes are told apart:

- many NaN scores: the response span is empty (truncation at `scoring.max_length` left no response
  token, or the chat template rewrote the response);
- few eligible rows (IFD < `selection.ifd_max`, NaN rows counted as not eligible): the model
  predicts the responses no better with their instructions than without, i.e. it does not know this
  data (typically the demo's `tiny` model on a real pool).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

from curate.demo.skills import SKILLS

REAL_MODEL = "smollm2-135m-instruct"


class ScorerDoesNotFit(RuntimeError):
    pass


def fit_problem(ifd: Sequence[float], *, ifd_max: float, min_eligible_share: float, max_nan_share: float,
                max_length: int, source: str) -> str | None:
    """The one message that stops the run (cause + fix), or None when the scorer fits the pool."""
    ifd = np.asarray(ifd, dtype=np.float64)
    if not len(ifd):
        return None
    nan_share = float(np.isnan(ifd).mean())
    if nan_share > max_nan_share:
        return (f"{nan_share:.0%} of rows score NaN (scorer_fit.max_nan_share: {max_nan_share:.0%}): no response token "
                f"is left to score, the response was truncated away at scoring.max_length={max_length} tokens (or the "
                f"chat template rewrote it). Raise scoring.max_length (e.g. {max_length * 4}) or shorten long "
                f"conversations; the rows and the reason are in the score stage's quarantine.parquet")
    eligible = float((ifd < ifd_max).mean())  # NaN compares False: not eligible
    if eligible < min_eligible_share:
        fix = (f"use base_model.source: {REAL_MODEL} or your own model (a local Hugging Face directory)"
               if source == "tiny" else
               "use a larger or instruction-tuned model that knows this kind of data (base_model.source: a local "
               "Hugging Face directory)")
        return (f"only {eligible:.0%} of rows are eligible (IFD < selection.ifd_max={ifd_max}; "
                f"scorer_fit.min_eligible_share: {min_eligible_share:.0%}): the base model '{source}' does not fit this "
                f"data, its IFD measures the chat template rather than the instructions. Fix: {fix}")
    return None


def outside_demo(skills: Sequence[str | None], demo_skills: Sequence[str]) -> bool:
    """True when most rows carry no demo skill label: the pool is not the synthetic demo pool."""
    known = set(demo_skills)
    return sum(s in known for s in skills) * 2 < len(skills)


def tiny_outside_demo_warning() -> str:
    return (f"base_model.source: tiny was pre-trained on the demo's five synthetic skills only, and most rows of "
            f"this pool carry no demo skill label: its scores say little about real data. Use base_model.source: "
            f"{REAL_MODEL} (or your own model) for your own data")


def check_scores(scores: str | Path, *, ifd_max: float, min_eligible_share: float, max_nan_share: float,
                 max_length: int, source: str) -> None:
    """Raise ScorerDoesNotFit, with the cause and the fix, when the scores of the score stage's artifact
    directory `scores` say the base model cannot score the pool (`fit_problem`)."""
    ifd = pq.read_table(Path(scores) / "scores.parquet", columns=["ifd"])["ifd"].to_numpy(zero_copy_only=False)
    problem = fit_problem(ifd, ifd_max=ifd_max, min_eligible_share=min_eligible_share, max_nan_share=max_nan_share,
                          max_length=max_length, source=source)
    if problem:
        raise ScorerDoesNotFit(problem)


def pool_warnings(pool: str | Path, source: str) -> list[str]:
    """Warnings about the pool (the artifact directory holding `rows.parquet`) and the base model `source`,
    given before scoring (and in the summary): the tiny model knows only the demo's skills."""
    if source != "tiny":
        return []
    skills = pq.read_table(Path(pool) / "rows.parquet", columns=["skill"])["skill"].to_pylist()
    return [tiny_outside_demo_warning()] if outside_demo(skills, list(SKILLS)) else []
