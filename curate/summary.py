"""The one-screen summary printed at the end of `curate run`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.artifacts import ref_json
from curate.config import Params
from curate.disk_usage import describe


def _fmt(x: Any, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def _heldout_line(p: Params, split: dict) -> str:
    decontaminated = (f"; {split.get('removed_heldout_overlap', 0)} pool rows overlapping a held-out row removed "
                      f"(decontamination, `curate audit row`)" if p.decontamination.enabled else
                      "; decontamination off")
    if split.get("eval_files", True):
        return f"  held out           the held-out files in {p.raw.eval_dir}{decontaminated}"
    return (f"  held out           {split.get('heldout', 0)} rows ({split.get('share', 0):.0%} of the pool by row_id hash; "
            f"never selected nor trained): no held-out files in {p.raw.eval_dir}{decontaminated}")


def _proxy_lines(score: dict) -> list[str]:
    """With a proxy scorer (scoring.model): its size against the trained model's, and how well it ranks as that one would."""
    proxy = score.get("proxy")
    if not proxy:
        return []
    size = (f"  scorer proxy       {proxy['model']}: {proxy['scorer_parameters'] / 1e6:.1f}M parameters, the trained model "
            f"{proxy['trained_parameters'] / 1e6:.1f}M")
    f = proxy.get("fidelity")
    if not f or f.get("spearman") is None:
        return [size + " (no fidelity check: scoring.fidelity_share 0)"]
    return [size, f"  proxy fidelity     Spearman {f['spearman']:.2f}, top {f['top_share']:.0%} overlap {f['top_overlap']:.0%} "
                  f"(unrelated rankings: {f['random_overlap']:.0%}) on {f['rows']} rows scored by both models"]


def _truncated_line(p: Params, score: dict, trains: list[dict], base_eval: dict) -> str:
    """Rows cut to the token budget (oldest turns first, the response keeps its head) per stage."""
    trained = sum(t.get("rows_truncated", 0) for t in trains)
    return (f"  truncated          {score.get('rows_truncated', '-')} scored rows (scoring.max_length "
            f"{p.scoring.max_length}), {trained} trained rows over {len(trains)} rounds (training.max_length "
            f"{p.training.max_length}), {base_eval.get('rows_truncated', '-')} held-out rows")


def _call_name(call: dict) -> str:
    r = call.get("round")
    if r is None:
        return call["stage"]
    return f"{call['stage']}[{'base' if r < 0 else r}]"


def stages_line(calls: list[dict]) -> list[str]:
    """Which stages executed this run and which came from the cache, by name (`train[1]`: round 1)."""
    executed = [_call_name(c) for c in calls if c["executed"]]
    cached = [_call_name(c) for c in calls if not c["executed"]]
    return [f"  stages executed    {', '.join(executed) or 'none'}",
            f"  from cache         {', '.join(cached) or 'none'}"]


def summary_json(p: Params, result: dict) -> dict[str, Any]:
    """`curate run --json`: the run's stages (executed or cached, output digest), artifact digests, the
    MLflow and Prefect ids and the summary's numbers."""
    refs, rounds = result["refs"], result["rounds"]
    ing, ded, sco = ref_json(refs["ingest"]), ref_json(refs["dedup"]), ref_json(refs["score"])
    sem, base_eval = ref_json(refs.get("semdedup")), ref_json(refs["evaluate_base"], "metrics.json")
    lineage = result.get("lineage") or {}
    recorded = lineage.get("rounds") or []
    per_round = []
    for r, rd in enumerate(rounds):
        sel, tr, ev = ref_json(rd["select"]), ref_json(rd["train"]), ref_json(rd.get("evaluate"), "metrics.json")
        per_round.append({"round": r, "k": sel.get("k"), "selected": sel.get("selected"), "rows_trained": tr.get("rows_trained"),
                          "steps": tr.get("steps"), "train_loss": tr.get("final_loss"), "heldout_loss": ev.get("mean_loss"),
                          "checkpoint_digest": rd["train"]["digest"],
                          "model_uri": (recorded[r].get("model_uri") if r < len(recorded) else None)})
    return {
        "strategy": p.selection.strategy, "base_model": p.base_model.source,
        "stages": result.get("stages", []),
        "artifacts": {name: ref["digest"] for name, ref in refs.items() if ref},
        "mlflow_parent_run_id": lineage.get("parent_run_id"), "mlflow_experiment": p.project.experiment,
        "prefect_flow_run_id": result.get("flow_run_id"),
        "rows_in": ing.get("rows_in"), "quarantined_ingest": ing.get("quarantined"), "nan_scores": sco.get("nan", 0),
        "removed_exact": ded.get("removed_exact", 0), "removed_near": ded.get("removed_near", 0),
        "removed_semantic": sem.get("removed_semantic", 0), "pool": sem.get("kept", ded.get("kept")),
        "eligible_share": sco.get("eligible_share"), "base_heldout_loss": base_eval.get("mean_loss"),
        "rounds": per_round, "dvc": result.get("version"), "disk": result.get("disk"),
        "warnings": list(result.get("warnings", [])) + ([sco["warning"]] if sco.get("warning") else []),
    }


def _round_lines(p: Params, rounds: list[dict], base_eval: dict) -> tuple[list[str], list[str]]:
    """The summary's table (base, then a line per round) and the warnings it raises (a round short of K rows)."""
    online = p.training.online.policy
    lines = ["", "  round  selected  steps  train loss  held-out loss  vs base   exact match",
             f"  base   {'':8}  {'':5}  {'':10}  {_fmt(base_eval.get('mean_loss')):>13}  {'':7}  {_fmt(base_eval.get('mean_exact_match'), '.1%'):>11}"]
    base_loss = base_eval.get("mean_loss")
    warnings: list[str] = []
    for r, rd in enumerate(rounds):
        sel, tr, ev = ref_json(rd["select"]), ref_json(rd["train"]), ref_json(rd.get("evaluate"), "metrics.json")
        loss = ev.get("mean_loss")
        delta = f"{loss - base_loss:+.3f}" if isinstance(loss, float) and isinstance(base_loss, float) else "-"
        lines.append(f"  {r:<5}  {sel.get('selected', '-'):>8}  {tr.get('steps', '-'):>5}  {_fmt(tr.get('final_loss')):>10}  "
                     f"{_fmt(loss):>13}  {delta:>7}  {_fmt(ev.get('mean_exact_match'), '.1%'):>11}")
        if online != "uniform" and "fraction_kept" in tr:
            lines.append(f"  {'':5}  online: {tr.get('rows_trained', '-')} of {sel.get('selected', '-')} rows trained, "
                         f"{tr['fraction_kept']:.0%} of step candidates kept, total weight {_fmt(tr.get('weight_sum'), '.1f')}")
        if isinstance(sel.get("k"), int) and sel.get("selected", 0) < sel["k"] and p.selection.strategy != "full":
            warnings.append(f"round {r} selected {sel.get('selected')} of K={sel['k']} rows: only {sel.get('eligible')} eligible "
                            f"({sel.get('ifd_ge_max', 0)} with IFD >= {p.selection.ifd_max}, {sel.get('gated_mismatch', 0)} failed the mismatch gate, "
                            f"{sel.get('trained_before', 0)} trained in an earlier round)")
    return lines, warnings


def _where_lines(project: Path, p: Params, result: dict) -> list[str]:
    """The summary's closing lines: DVC, MLflow, disk, Prefect, the stages executed, where to look."""
    lineage, version = result.get("lineage") or {}, result.get("version") or {}
    last = (lineage.get("rounds") or [{}])[-1]
    return [
        "",
        f"  DVC                {'dvc.lock updated, ' if version.get('committed') else ''}status {'clean' if version.get('clean') else 'NOT clean'}"
        f"{', pushed to ' + p.tracking.dvc_remote if version.get('pushed') else ''}",
        f"  MLflow             experiment '{p.project.experiment}', parent run {lineage.get('parent_run_id', '-')}",
        f"  disk added         {describe(result['disk']) if result.get('disk') else '-'}",
        "                     (free the disk of older runs with `curate gc --keep-runs N`)",
        f"  Prefect            flow run {result.get('flow_run_id', '-')}",
        *stages_line(result.get("stages", [])),
        "",
        "  where to look:",
        f"    mlflow ui --backend-store-uri sqlite:///{project}/.curate/mlflow.db --port 5000",
        f"    PREFECT_HOME={project}/.curate/prefect prefect server start --host 127.0.0.1",
        f"    curate audit checkpoint {last.get('model_uri') or last.get('run_id', '<run id>')}",
        "",
    ]


def render_summary(project: Path, p: Params, result: dict) -> str:
    refs, rounds = result["refs"], result["rounds"]
    ing, ded, sco = ref_json(refs["ingest"]), ref_json(refs["dedup"]), ref_json(refs["score"])
    sem = ref_json(refs.get("semdedup"))
    base_eval = ref_json(refs["evaluate_base"], "metrics.json")
    nan_rows = sco.get("nan", 0)
    lines = [
        "",
        f"curate run: strategy {p.selection.strategy} ({p.selection.mode}), {len(rounds)} rounds, base model {p.base_model.source}",
        f"  rows in            {ing.get('rows_in', '-')}",
        f"  quarantined        {ing.get('quarantined', '-')} at ingest, {nan_rows} at scoring (NaN score)",
        f"  removed by dedup   {ded.get('removed_exact', 0)} exact, {ded.get('removed_near', 0)} near-duplicate, "
        f"{sem.get('removed_semantic', 0)} semantic{'' if sem.get('enabled') else ' (off)'}",
        f"  dedup mode         {ded.get('mode', '-')}: {ded.get('new_rows', '-')} new rows examined, "
        f"{ded.get('previous_kept', 0)} kept on earlier nights{' (' + ded['reason'] + ')' if ded.get('reason') else ''}",
        f"  pool after dedup   {sem.get('kept', ded.get('kept', '-'))}",
        _heldout_line(p, ref_json(refs.get("holdout"))),
        f"  scorer fit         {_fmt(sco.get('eligible_share'), '.0%')} of rows eligible (IFD < 1), median IFD {_fmt(sco.get('median_ifd'))}",
        f"  scored             {sco.get('rows_scored', '-')} rows by {'the proxy ' + sco['proxy']['model'] if sco.get('proxy') else 'the base model'}, {sco.get('rows_from_cache', 0)} from the row score cache",
        *_proxy_lines(sco),
        _truncated_line(p, sco, [ref_json(rd["train"]) for rd in rounds], base_eval),
    ]
    if sco.get("warning"):
        lines.append(f"  WARNING            {sco['warning']}")
    lines += [f"  WARNING            {w}" for w in result.get("warnings", [])]
    online = p.training.online.policy
    if online != "uniform":
        lines.append(f"  online policy      {online}: every step trains on the rows it picks, with its loss weights "
                     f"(per-row weights in online_weights.parquet)")
    round_lines, warnings = _round_lines(p, rounds, base_eval)
    lines += round_lines
    lineage, version = result.get("lineage") or {}, result.get("version") or {}
    cmp = lineage.get("compare")
    if cmp:
        loss = f", held-out loss {cmp['heldout_loss_change']:+.3f}" if "heldout_loss_change" in cmp else ""
        lines += ["", f"  vs previous run    {cmp['previous_run_id']}: rows in {cmp['rows_in_change']:+.0f}, pool "
                      f"{cmp['pool_change']:+.0f}, trained-set overlap {cmp['trained_overlap']:.0%} "
                      f"({cmp['entered']} entered, {cmp['left']} left){loss}"]
        if cmp.get("regression"):
            warnings.append(f"REGRESSION: {cmp['regression']}")
    lines += [f"  WARNING            {w}" for w in warnings]
    lines += _where_lines(project, p, result)
    return "\n".join(lines)
