"""`curate report [RUN]`: the report page for one curation run, from the artifacts its MLflow parent
run points at (tags `curate.path.*`: the content store entries of the pool, the scores, every round's
selection, checkpoint and evaluation). No strategy comparison; the noise-kind plots are left out
when the pool carries no ground truth (`truth` column empty).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.compare.metrics import IFD_BINS, UNKNOWN
from curate.report import plots

PATH_TAG = "curate.path."


def _paths(tags: dict[str, str]) -> dict[str, dict]:
    """Artifact name -> Ref-like dict {path} for every `curate.path.*` tag (the store entry, or the
    published copy `dvc pull` restores when the entry is gone); fails fast if one is missing."""
    from curate.audit import artifact_path

    out = {}
    for key in tags:
        if key.startswith(PATH_TAG):
            name = key[len(PATH_TAG):]
            path = artifact_path(tags, name)
            if not path.exists():
                raise SystemExit(f"error: the run's artifact {name} is missing at {path} (run `curate report` in the "
                                 f"project that made the run, after `dvc pull`; `curate audit verify` checks it)")
            out[name] = {"path": str(path)}
    return out


def collect_run(tags: dict[str, str]) -> dict[str, Any]:
    """Pool facts and per-round metrics of a recorded run (same shapes as a comparison's)."""
    from curate.compare.facts import pool_facts, pool_labels, round_metrics

    refs = _paths(tags)
    for need in ("semdedup", "score", "evaluate_base", "round0.select"):
        if need not in refs:
            raise SystemExit(f"error: the run records no {need} artifact (tag {PATH_TAG}{need}); is it a curate run?")
    labels = pool_labels(refs["semdedup"])
    rounds, evaluations, r = [], [], 0
    while f"round{r}.select" in refs and f"round{r}.train" in refs and f"round{r}.evaluate" in refs:
        rounds.append({part: refs.get(f"round{r}.{part}") for part in ("select", "train", "rescore")})
        evaluations.append(refs[f"round{r}.evaluate"])
        r += 1
    facts = pool_facts(refs["semdedup"], refs["score"], refs["evaluate_base"], labels, contrast=False, score_seconds=0.0)
    return {"facts": facts, "rounds": round_metrics(rounds, evaluations, labels),
            "has_truth": any(t is not None for _, t in labels.values())}


def checkpoints(tags: dict[str, str]) -> dict[str, Path]:
    """The base model and every round's checkpoint directory of a run, by name."""
    from curate.models.loading import model_path

    refs = _paths(tags)
    out = {"base": model_path(refs["base_model"])} if "base_model" in refs else {}
    r = 0
    while f"round{r}.train" in refs:
        out[f"round {r}"] = model_path(refs[f"round{r}.train"])
        r += 1
    return out


def write_run_report(project: Path, run: str | None, out: Path | None = None, lm_eval_tasks: list[str] | None = None,
                     lm_eval_include: Path | None = None, lm_eval_limit: int | None = None) -> Path:
    """The run's page; with `lm_eval_tasks`, also every checkpoint's lm-eval metrics (curate.compare.lmeval)."""
    from curate.tracking.mlflow_tracking import parent_info

    info = parent_info(run)
    data = collect_run(info["tags"])
    if lm_eval_tasks:
        from curate.compare.lmeval import evaluate_checkpoints

        data["lm_eval"] = evaluate_checkpoints(checkpoints(info["tags"]), lm_eval_tasks, lm_eval_include, lm_eval_limit)
    out = out or project / "report" / info["run_id"]
    return write_page(data, info, out)


def lm_eval_table(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    columns = sorted({(t, m) for tasks in results.values() for t, ms in tasks.items() for m in ms})
    rows = ["| checkpoint | " + " | ".join(f"{t} {m}" for t, m in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, tasks in results.items():
        rows.append(f"| {name} | " + " | ".join(f"{tasks.get(t, {}).get(m, float('nan')):.4g}" for t, m in columns) + " |")
    return rows


def _figures(data: dict[str, Any], info: dict[str, Any], out: Path) -> list[tuple[str, Path]]:
    """The run's figures, drawn under `out`: (caption, PNG path)."""
    facts, rounds, truth = data["facts"], data["rounds"], data["has_truth"]
    strategy = info["tags"].get("curate.strategy", "run")
    shown = []
    series = {strategy: [{"mean": x["eval"]["mean_loss"], "std": None} for x in rounds]}
    shown.append(("Held-out loss over rounds", plots.loss_over_rounds(
        series, facts["base_eval"]["mean_loss"], out / "heldout_loss.png", f"run {info['run_id'][:8]}: held-out loss")))
    checkpoints = {"base": facts["base_eval"], **{f"round {x['round']}": x["eval"] for x in rounds}}
    metrics = [("loss", "loss", plots.LOSS_UNIT)] + ([("exact_match", "exact match", "exact match (fraction)")]
                                                     if facts["base_eval"]["mean_exact_match"] is not None else [])
    for metric, label, unit in metrics:
        values = {name: {s: {"mean": v[metric], "std": None} for s, v in ev["sets"].items()} for name, ev in checkpoints.items()}
        shown.append((f"Held-out {label} per skill", plots.grouped_bars(
            values, out / f"per_skill_{metric}.png", f"held-out {label} per set, per checkpoint", unit)))
    total = max(sum(facts["skill"].values()), 1)
    by_round = lambda key: {f"round {x['round']}": {k: v / max(x["selected"], 1) for k, v in x[key].items()} for x in rounds}
    shown.append(("Selected rows by skill", plots.stacked_shares(
        {"pool": {k: v / total for k, v in facts["skill"].items()}, **by_round("skill")},
        out / "composition_skill.png", "selected rows by skill", "skill")))
    if truth:
        total = max(sum(facts["truth"].values()), 1)
        shown.append(("Selected rows by noise kind", plots.stacked_shares(
            {"pool": {k: v / total for k, v in facts["truth"].items()}, **by_round("truth")},
            out / "composition_noise.png", "selected rows by noise kind", "noise kind", plots.TRUTH_COLOURS)))
    merge = (lambda h: h) if truth else (lambda h: {"all rows": [sum(c) for c in zip(*h.values())]})
    panels = [("base model, all rows", merge(facts["ifd_hist_base"]))] + [
        (f"round {x['round']}", merge(x["ifd_hist"])) for x in rounds]
    shown.append(("IFD histograms per round", plots.ifd_histograms(
        panels, IFD_BINS, out / "ifd.png", "IFD per round" + (" by noise kind" if truth else ""))))
    shown.append(("Round-to-round overlap", plots.overlap_over_rounds(
        {strategy: [x["overlap_prev"] and {"mean": x["overlap_prev"]["kept"], "std": None} for x in rounds]},
        out / "overlap.png", "overlap of consecutive rounds' selections")))
    return shown


def write_page(data: dict[str, Any], info: dict[str, Any], out: Path) -> Path:
    facts, rounds, truth = data["facts"], data["rounds"], data["has_truth"]
    strategy = info["tags"].get("curate.strategy", "run")
    shown = _figures(data, info, out)
    lines = [f"# Curation run {info['run_id']}", "",
             f"Strategy {strategy}, {len(rounds)} rounds, pool of {facts['rows_after_dedup']} rows after dedup"
             + ("" if truth else " (no ground truth: noise-kind plots left out)") + ".", "",
             "| checkpoint | selected | steps | train tokens | held-out loss | exact match | kept from previous round |",
             "|---|---|---|---|---|---|---|",
             f"| base | | | | {facts['base_eval']['mean_loss']:.3f} | {facts['base_eval']['mean_exact_match'] or 0:.3f} | |"]
    for x in rounds:
        kept = f"{100 * x['overlap_prev']['kept']:.0f}%" if x["overlap_prev"] else ""
        lines.append(f"| round {x['round']} | {x['selected']} | {x['train']['steps']} | {x['train']['tokens']} | "
                     f"{x['eval']['mean_loss']:.3f} | {x['eval']['mean_exact_match'] or 0:.3f} | {kept} |")
    final, base = rounds[-1]["eval"]["mean_loss"] if rounds else None, facts["base_eval"]["mean_loss"]
    if final is not None:
        lines += ["", f"The held-out loss went from {base:.3f} (base model) to {final:.3f} after round {len(rounds) - 1} "
                      f"({'lower' if final < base else 'not lower'}: {final - base:+.3f} nats/token)."]
    if truth:
        noisy = sum(v for x in rounds for k, v in x["truth"].items() if k not in ("clean", UNKNOWN))
        picked = sum(x["selected"] for x in rounds)
        pool_noisy = sum(v for k, v in facts["truth"].items() if k not in ("clean", UNKNOWN)) / max(sum(facts["truth"].values()), 1)
        lines.append(f"Noisy rows were {100 * noisy / max(picked, 1):.1f}% of the selections vs {100 * pool_noisy:.1f}% of the pool.")
    lines.append("")
    if data.get("lm_eval"):
        lines += ["## lm-eval (lm-evaluation-harness)", ""] + lm_eval_table(data["lm_eval"]) + [""]
    for caption, path in shown:
        lines += [f"## {caption}", "", f"![{caption}]({path.relative_to(out)})", ""]
    page = out / "report.md"
    tmp = page.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(page)
    return page
