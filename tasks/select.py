"""Select stage: the rows that train round r, with the reason each was chosen (the round's rules:
curate/selection/round_state.py)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from curate.artifacts import TIMINGS, read_json, write_json, write_parquet
from curate.config import declared
from curate.seal import sealed_entry
from curate.models.loading import model_path
from curate.scoring.misalignment import mismatch_margin
from curate.selection.round_state import advance
from tasks.caching import Stage

STAGE = Stage("select")


def eos_string(model: dict) -> str:
    config = Path(model_path(model)) / "tokenizer_config.json"
    eos = read_json(config).get("eos_token") if config.exists() else None
    return eos.get("content", "") if isinstance(eos, dict) else (eos or "")


def current_scores(row_ids: list[str], base_scores: dict, previous: dict | None,
                   window_scores: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """IFD and mismatch margin by pool position: the previous round's state, updated with the re-scored window."""
    if previous:
        table = pq.read_table(Path(previous["path"]) / "state.parquet", columns=["row_id", "ifd", "margin"])
        by_id = {r: (i, m) for r, i, m in zip(*(table[c].to_pylist() for c in ("row_id", "ifd", "margin")))}
    else:
        by_id = _score_table(Path(base_scores["path"]) / "scores.parquet")
    if window_scores:
        by_id.update(_score_table(Path(window_scores["path"]) / "scores.parquet"))
    pairs = [by_id.get(r, (float("nan"), float("nan"))) for r in row_ids]
    return np.asarray([p[0] for p in pairs], dtype=np.float64), np.asarray([p[1] for p in pairs], dtype=np.float64)


def ranking_key(ranking: dict | None, row_ids: list[str]) -> np.ndarray | None:
    """The ranking stage's key by pool position (None without a ranking: every strategy but longest and rds)."""
    if ranking is None:
        return None
    t = pq.read_table(Path(ranking["path"]) / "ranking.parquet")
    by_id = dict(zip(t["row_id"].to_pylist(), t["key"].to_pylist()))
    return np.asarray([by_id.get(r, float("nan")) for r in row_ids], dtype=np.float64)


def _score_table(path: Path) -> dict[str, tuple[float, float]]:
    t = pq.read_table(path, columns=["row_id", "ifd", "loss_cond", "loss_swapped"])
    margin = mismatch_margin(t["loss_swapped"].to_numpy(), t["loss_cond"].to_numpy())
    return dict(zip(t["row_id"].to_pylist(), zip(t["ifd"].to_pylist(), margin.tolist())))


@STAGE.task()
def select(project: str, pool: dict, base_scores: dict, previous: dict | None, window_scores: dict | None,
           model: dict, params: dict, round_index: int, ranking: dict | None = None) -> dict:
    """Reads the pool, the scores, the previous round's state and (longest, rds) the ranking; the round itself is
    `curate.selection.round_state.advance`; writes what it returns."""
    out = STAGE.out(project, locals())
    if not out.exists():
        v = declared(params)
        s = v.selection
        start = time.perf_counter()
        rows = pq.read_table(Path(pool["path"]) / "rows.parquet", columns=["row_id", "response"]).to_pylist()
        row_ids = [r["row_id"] for r in rows]
        eos = eos_string(model) if s.append_eos else ""
        scores, margin = current_scores(row_ids, base_scores, previous, window_scores)
        round_ = advance(s, v.project.seed, round_index, row_ids, [r["response"] + eos for r in rows],
                         scores, margin,
                         previous_state=pq.read_table(Path(previous["path"]) / "state.parquet") if previous else None,
                         previous_selection=pq.read_table(Path(previous["path"]) / "selection.parquet") if previous else None,
                         ranking_key=ranking_key(ranking, row_ids))
        with sealed_entry(out) as tmp:
            write_parquet(round_.selection, tmp / "selection.parquet")
            write_parquet(round_.state, tmp / "state.parquet")
            write_json(round_.stats, tmp / "stats.json")
            write_json({"seconds": time.perf_counter() - start}, tmp / TIMINGS)
    return STAGE.ref(out)
