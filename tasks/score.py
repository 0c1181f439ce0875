"""Score stage: IFD complexity of rows, computed by the model being trained (docs/iterit.md §2; re-scoring: §6).

`score_pool` scores every kept row with the base model (round 0). `rescore_window` re-scores the
rows the previous selection put in the next round's window, with the latest checkpoint.
With execution.shards > 1 the flow plans the pool's scoring once (`plan_pool`: length batches and
contrast partners over all rows), scores each contiguous group of batches as its own cached task
(`score_shard`, on Dask workers with execution.runner dask), and `score_pool` merges them in pool order:
the same bits as one pass (docs/execution.md). A round's window is re-scored the same way (`plan_window`,
`score_shard`, merged by `rescore_window`).
Rows whose score is NaN (empty response span) are quarantined with a reason, never silently dropped.
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.artifacts import TIMINGS, Ref, atomic_path, read_json, text_digest, write_json, write_parquet
from curate.seal import sealed_entry
from curate.models.chat import Encoded
from curate.models.sources import found_model
from curate.models.loading import load_causal_lm, model_path, parameter_count
from curate.models.truncation import token_budget
from curate.config import declared
from curate.env import state_dir
from curate.progress import Progress
from curate.schema import QUARANTINE, SCORES
from curate.scoring.cache import RowScoreCache
from curate.scoring.fidelity import fidelity_sample, proxy_fidelity
from curate.scoring.fit import check_scores
from curate.scoring.ifd import ScoringPlan, batch_costs, finish_scoring, mean_span_losses, plan_scoring, score_rows
from curate.sharding import shard_batches
from tasks.caching import Stage, note_pid
from tasks.pipeline import pick

POOL = Stage("score", ignore=("shards",))  # the shards' results: the same bits as one pass
SHARD = Stage("score_shard")
WINDOW = Stage("rescore", ignore=("shards",))
PASSES = ("conditional", "prior", "contrast")  # the texts scored per row (contrast: with scoring.contrast)
NAN_REASON = "score is NaN (empty response span: the response renders to no tokens)"
PLAN_INFIX = "-plan-"  # .curate/tmp/<score|rescore>-plan-<digest>: a planned pass, dropped once merged


def _load(model_ref: dict, params: dict):
    bm = declared(params).base_model
    return load_causal_lm(model_path(model_ref), dtype=bm.dtype, trust_remote_code=bm.trust_remote_code,
                          chat_template=bm.chat_template)


def _cache(project: str, model_ref: dict, params: dict) -> RowScoreCache:
    # keyed on the scoring parameters as the stage was handed them (JSON), as the stage's own key is
    return RowScoreCache(state_dir(Path(project)) / "score-cache", model_ref["digest"],
                         {**params["scoring"], "chat_template": declared(params).base_model.chat_template})


def _score(project: str, rows: list[dict], model_ref: dict, params: dict, label: str,
           shards: dict | None = None) -> tuple[pa.Table, pa.Table, dict, dict]:
    """Scores, quarantined rows, stats (with the tokens each pass put through the model) and timings;
    rows found in the row score cache cost nothing. `shards`: the plan and its shards' results to merge
    (`plan_pool`, `score_shard`) instead of scoring here."""
    s = declared(params).scoring
    cache = _cache(project, model_ref, params)
    known = cache.lookup(r["row_id"] for r in rows)
    todo = [r for r in rows if r["row_id"] not in known]
    start, cost = time.perf_counter(), {pass_: 0 for pass_ in PASSES}
    if todo:
        if shards is None:
            model, tokenizer = _load(model_ref, params)
            res = score_rows(
                model, tokenizer, todo, system_prompt=s.system_prompt, max_length=s.max_length,
                batch_tokens=s.batch_tokens, variant=s.variant, precision=s.precision,
                contrast_seed=s.contrast_seed if s.contrast else None, contrast_partners=s.contrast_partners,
                progress=Progress(label, "rows"), response_share=s.response_share,
            )
        else:
            res = _merge(shards, todo, s)
        res.setdefault("loss_swapped", np.full(len(todo), np.nan))
        cost = {pass_: int(res.pop(f"tokens_{pass_}", np.zeros(1)).sum()) for pass_ in PASSES}
        fresh = [{"row_id": r["row_id"], **{k: v[i].item() for k, v in res.items()}} for i, r in enumerate(todo)]
        cache.add(fresh)
        known.update({f["row_id"]: f for f in fresh})
    records = [known[r["row_id"]] for r in rows]
    scores = pa.Table.from_pylist(
        [{**{k: rec[k] for k in SCORES.names if k in rec}, "scorer_digest": model_ref["digest"]} for rec in records],
        schema=SCORES,
    )
    nan = [i for i, rec in enumerate(records) if math.isnan(rec["ifd"])]
    quarantine = pa.Table.from_pylist(
        [{"source": rows[i]["source"], "position": rows[i]["position"], "stage": "score", "reason": NAN_REASON,
          "row_id": rows[i]["row_id"], "raw": None} for i in nan],
        schema=QUARANTINE,
    )
    stats = {**fit_report(scores, rows), "rows_scored": len(todo), "rows_from_cache": len(rows) - len(todo),
             "rows_truncated": sum(bool(rec.get("truncated")) for rec in records), "forward_tokens": cost}
    seconds = time.perf_counter() - start
    if shards is None or not todo:
        return scores, quarantine, stats, {"seconds": seconds}
    # the work of the pass: the merge here plus every shard's forwards (on whichever worker ran them)
    shard_seconds = [float(read_json(Path(r["path"]) / TIMINGS)["seconds"]) for r in shards["results"]]
    return scores, quarantine, stats, {"seconds": seconds + sum(shard_seconds), "merge_seconds": seconds,
                                       "shard_seconds": shard_seconds}


def fit_report(scores: pa.Table, rows: list[dict]) -> dict:
    """Scorer-fit check: share of eligible rows (IFD < 1) and median IFD, overall and per source.

    Fewer than half eligible means the scorer does not fit the chat template and IFD measures the
    template rather than the instruction.
    """
    ifd = np.asarray(scores["ifd"].to_pylist(), dtype=np.float64)
    sources = np.asarray([r["source"] for r in rows])

    def summary(mask):
        vals = ifd[mask & ~np.isnan(ifd)]
        return {"rows": int(mask.sum()), "eligible_share": float((vals < 1).mean()) if len(vals) else 0.0,
                "median_ifd": float(np.median(vals)) if len(vals) else float("nan")}

    overall = summary(np.ones(len(ifd), bool))
    report = {**overall, "nan": int(np.isnan(ifd).sum()),
              "per_source": {s: summary(sources == s) for s in sorted(set(sources.tolist()))}}
    if overall["eligible_share"] < 0.5:
        report["warning"] = (
            f"only {overall['eligible_share']:.0%} of rows have IFD < 1: the scorer does not fit the chat "
            f"template, so IFD measures the template rather than the instruction"
        )
    return report


def _write(out: Path, scores: pa.Table, quarantine: pa.Table, stats: dict, timings: dict) -> None:
    with sealed_entry(out) as tmp:
        write_parquet(scores, tmp / "scores.parquet")
        write_parquet(quarantine, tmp / "quarantine.parquet")
        write_json(stats, tmp / "stats.json")
        write_json(timings, tmp / TIMINGS)


def plan_pool(project: str, pool: dict, model: dict, params: dict, shards: int, trained: dict | None = None) -> dict | None:
    """The score stage's batches planned once over the rows left to score, split into `shards` contiguous
    groups: a Ref to a directory under .curate/tmp (`plan.parquet`: the sequences in batch order; `meta.json`).
    None when there is nothing to split: one shard, the stage's entry already stored, or no row left to score.
    `model`, `trained`: as for `score_pool`."""
    arguments = {"project": project, "pool": pool, "model": model, "params": params, "shards": None, "trained": trained}
    if shards == 1 or POOL.is_stored(arguments):
        return None
    rows = pq.read_table(Path(pool["path"]) / "rows.parquet").to_pylist()
    return _plan(project, "score", POOL.key(arguments), rows, model, params, shards)


def plan_window(project: str, pool: dict, model: dict, state: dict, params: dict, round_index: int,
                shards: int) -> dict | None:
    """`plan_pool` for the rows `rescore_window` re-scores with `model` (the newest checkpoint)."""
    arguments = {"project": project, "pool": pool, "model": model, "state": state, "params": params,
                 "round_index": round_index}
    if shards == 1 or WINDOW.is_stored(arguments):
        return None
    return _plan(project, "rescore", WINDOW.key(arguments), _window_rows(pool, state), model, params, shards)


def _plan(project: str, name: str, key: str, rows: list[dict], model: dict, params: dict, shards: int) -> dict | None:
    known = _cache(project, model, params).lookup(r["row_id"] for r in rows)
    todo = [r for r in rows if r["row_id"] not in known]
    if not todo:
        return None
    ids = [r["row_id"] for r in todo]
    out = state_dir(Path(project)) / "tmp" / f"{name}{PLAN_INFIX}{text_digest(key, shards, ids)[:24]}"
    if not out.exists():
        s = declared(params).scoring
        lm, tokenizer = _load(model, params)
        plan = plan_scoring(tokenizer, todo, s.system_prompt,
                            token_budget(s.max_length, getattr(lm.config, "max_position_embeddings", None)),
                            s.batch_tokens, s.contrast_seed if s.contrast else None, s.contrast_partners,
                            s.response_share)
        order = [(b, i) for b, batch in enumerate(plan.batches) for i in batch]
        table = pa.table({
            "batch": pa.array([b for b, _ in order], pa.int32()),
            "seq": pa.array([i for _, i in order], pa.int64()),
            "input_ids": pa.array([plan.seqs[i].input_ids for _, i in order], pa.list_(pa.int64())),
            "span_start": pa.array([plan.seqs[i].span_start for _, i in order], pa.int64()),
            "truncated": pa.array([plan.seqs[i].truncated for _, i in order], pa.bool_()),
        })
        groups = [[g.start, g.stop] for g in shard_batches(batch_costs(plan), min(shards, len(plan.batches)))]
        with atomic_path(out) as tmp:
            write_parquet(table, tmp / "plan.parquet")
            write_json({"row_ids": ids, "rows": plan.rows, "partners": plan.partners, "shards": groups}, tmp / "meta.json")
    return Ref.of(out).to_dict()


def shard_count(plan: dict) -> int:
    """How many shards `plan_pool` split the plan into (at most one per batch)."""
    return len(read_json(Path(plan["path"]) / "meta.json")["shards"])


def drop_plan(plan: dict) -> None:
    """Remove a merged plan (its shards' results stay in the store until `curate gc`)."""
    shutil.rmtree(plan["path"], ignore_errors=True)


def drop_stale_plans(project: str) -> int:
    """Remove the plans killed runs left in .curate/tmp; returns how many. Called before a run, under the
    project lock (no plan is in use then): a resumed run plans again, to the same bytes, so its shards keep
    their keys."""
    stale = list((state_dir(Path(project)) / "tmp").glob(f"*{PLAN_INFIX}*"))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def _sequences(table: pa.Table) -> list[Encoded]:
    return [Encoded(input_ids=ids, span_start=start, truncated=cut) for ids, start, cut in
            zip(table["input_ids"].to_pylist(), table["span_start"].to_pylist(), table["truncated"].to_pylist())]


@SHARD.task()
def score_shard(project: str, plan: dict, shard: int, model: dict, params: dict) -> dict:
    """Mean span loss of every sequence in one shard's batches of a plan (`means.parquet`: seq, mean)."""
    out = SHARD.out(project, locals())
    if not out.exists():
        note_pid(SHARD.name)
        lo, hi = read_json(Path(plan["path"]) / "meta.json")["shards"][shard]
        table = pq.read_table(Path(plan["path"]) / "plan.parquet")
        table = table.slice(*_span(table["batch"].to_numpy(), lo, hi))
        batch = table["batch"].to_numpy()
        batches = [np.flatnonzero(batch == b).tolist() for b in range(lo, hi)]
        start = time.perf_counter()
        lm, tokenizer = _load(model, params)
        means, _ = mean_span_losses(lm, _sequences(table), tokenizer.pad_token_id, batches=batches,
                                    progress=Progress(f"score shard {shard}", "sequences"))
        with sealed_entry(out) as tmp:
            write_parquet(pa.table({"seq": table["seq"], "mean": pa.array(means, pa.float64())}), tmp / "means.parquet")
            write_json({"seconds": time.perf_counter() - start}, tmp / TIMINGS)
    return SHARD.ref(out)


def _span(batch: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """(offset, length) of batches lo..hi-1 in the plan's rows (stored in batch order)."""
    start, stop = np.searchsorted(batch, [lo, hi])
    return int(start), int(stop - start)


def _merge(shards: dict, todo: list[dict], s) -> dict[str, np.ndarray]:
    """`score_rows`' result from a plan's shards: every planned sequence's mean, put back in plan order."""
    path = Path(shards["plan"]["path"])
    meta = read_json(path / "meta.json")
    if meta["row_ids"] != [r["row_id"] for r in todo]:
        raise RuntimeError(f"score plan {path} does not hold the rows left to score: plan again")
    table = pq.read_table(path / "plan.parquet")
    order = np.argsort(table["seq"].to_numpy())
    means, seen = np.full(len(table), np.nan), np.zeros(len(table), bool)
    for ref in shards["results"]:
        part = pq.read_table(Path(ref["path"]) / "means.parquet")
        seq = part["seq"].to_numpy()
        means[seq], seen[seq] = part["mean"].to_numpy(), True
    if not seen.all():
        raise RuntimeError(f"the shards of score plan {path} miss {int((~seen).sum())} sequences")
    plan = ScoringPlan(_sequences(table.take(order)), [], meta["rows"], meta["partners"])
    return finish_scoring(plan, means, s.variant, s.precision)


def proxy_check(rows: list[dict], scores: pa.Table, proxy: dict, trained: dict, params: dict) -> dict:
    """With a proxy scorer (scoring.model): its name, both models' parameter counts (a proxy's scoring tokens cost that
    ratio of the trained model's) and, on `scoring.fidelity_share` of the rows scored by the trained model too,
    the Spearman correlation and top overlap of the two IFDs (curate/scoring/fidelity.py)."""
    v = declared(params)
    s, remote_code = v.scoring, v.base_model.trust_remote_code
    out = {"model": s.model, "scorer_parameters": parameter_count(model_path(proxy), remote_code),
           "trained_parameters": parameter_count(model_path(trained), remote_code)}
    sample = fidelity_sample(len(rows), s.fidelity_share, s.fidelity_seed)
    if not sample:
        return {**out, "fidelity": None}
    start = time.perf_counter()
    model, tokenizer = _load(trained, params)
    res = score_rows(model, tokenizer, [rows[i] for i in sample], system_prompt=s.system_prompt,
                     max_length=s.max_length, batch_tokens=s.batch_tokens, variant=s.variant,
                     precision=s.precision, response_share=s.response_share)
    proxy_ifd = scores["ifd"].to_numpy(zero_copy_only=False)[sample]
    tokens = int(res["tokens_conditional"].sum() + res["tokens_prior"].sum())
    return {**out, "fidelity": {**proxy_fidelity(proxy_ifd, res["ifd"]), "sampled": len(sample), "forward_tokens": tokens,
                                "seconds": time.perf_counter() - start}}


@POOL.task()
def score_pool(project: str, pool: dict, model: dict, params: dict, shards: dict | None = None,
               trained: dict | None = None) -> dict:
    """`model`: the scorer (scoring.model; by default the base model); `trained`: the base model, when it is not the
    scorer (the proxy's fidelity check, `proxy_check`). `shards`: {"plan": `plan_pool`'s Ref, "results": the
    `score_shard` Refs} to merge instead of scoring here."""
    out = POOL.out(project, locals())
    if not out.exists():
        rows = pq.read_table(Path(pool["path"]) / "rows.parquet").to_pylist()
        scores, quarantine, stats, timings = _score(project, rows, model, params, "score pool", shards)
        if trained is not None and trained["digest"] != model["digest"]:
            stats["proxy"] = proxy_check(rows, scores, model, trained, params)
        _write(out, scores, quarantine, stats, timings)
    return POOL.ref(out)


def _window_rows(pool: dict, state: dict) -> list[dict]:
    """The pool rows (in pool order) the selection state put in the next round's window."""
    window = set(
        pq.read_table(Path(state["path"]) / "state.parquet", filters=[("in_next_window", "=", True)], columns=["row_id"])
        .column("row_id").to_pylist()
    )
    return [r for r in pq.read_table(Path(pool["path"]) / "rows.parquet").to_pylist() if r["row_id"] in window]


@WINDOW.task()
def rescore_window(project: str, pool: dict, model: dict, state: dict, params: dict, round_index: int,
                   shards: dict | None = None) -> dict:
    """`shards`: {"plan": `plan_window`'s Ref, "results": the `score_shard` Refs} to merge instead of scoring here."""
    out = WINDOW.out(project, locals())
    if not out.exists():
        rows = _window_rows(pool, state)
        scores, quarantine, stats, timings = _score(project, rows, model, params, f"rescore round {round_index}", shards)
        _write(out, scores, quarantine, {**stats, "round": round_index}, timings)
    return WINDOW.ref(out)


def _merged(run, plan: dict, task, arguments: dict) -> dict:
    """`task` (score_pool or rescore_window) merging the shards of `plan`, each scored by `score_shard` through
    executor `run` (on Dask or Ray workers with execution.runner dask or ray); then the plan is dropped."""
    results = run.map(score_shard, {"shard": list(range(shard_count(plan)))}, project=arguments["project"], plan=plan,
                      model=arguments["model"], params=pick(arguments["params"], SHARD.spec.params),
                      note_round=arguments.get("round_index"))
    merged = run.call(task, **arguments, shards={"plan": plan, "results": results})
    drop_plan(plan)
    return merged


def step(run, arguments: dict) -> dict:
    """The score stage through executor `run`; with `run.shards` > 1 its batches planned once, scored shard by
    shard (each shard cached on its own: a killed run resumes shard by shard), merged by `score_pool`. With
    `scoring.model`, that model (found by its source, curate/models/sources.py) scores the pool and the base
    model, the one trained, checks it on a sample (`proxy_check`)."""
    proxy = declared(arguments["params"]).scoring.model
    if proxy:
        arguments = {**arguments, "model": found_model(proxy), "trained": arguments["model"]}
    plan = plan_pool(shards=run.shards, **arguments)
    return run.call(score_pool, **arguments) if plan is None else _merged(run, plan, score_pool, arguments)


def rescore(run, arguments: dict) -> dict:
    """The rescore stage of a round through executor `run`, its window's batches sharded like `step`'s."""
    plan = plan_window(shards=run.shards, **arguments)
    return run.call(rescore_window, **arguments) if plan is None else _merged(run, plan, rescore_window, arguments)


def check(p, value) -> list[str]:
    """Stop right after scoring, with the cause and the fix, when the base model cannot score the pool."""
    check_scores(value("score")["path"], ifd_max=p.selection.ifd_max, min_eligible_share=p.scorer_fit.min_eligible_share,
                 max_nan_share=p.scorer_fit.max_nan_share, max_length=p.scoring.max_length, source=p.base_model.source)
    return []
