"""The comparison report: one Markdown page (report.md) with PNG plots, per pool variant, and a
conclusion in plain words computed from the numbers (docs/compare.md).

Input: the comparison results (app/compare.py, with curate.compare.facts) and their summary (curate.compare.summary).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.compare.metrics import IFD_BINS, beats
from curate.compare.paired import ALPHA
from curate.report import plots

NOISE_FREE = ("clean", "unknown")


def fmt(ms: dict | None, digits: int = 3) -> str:
    if not ms or ms.get("mean") is None:
        return "n/a"
    return f"{ms['mean']:.{digits}f}" + (f" ± {ms['std']:.{digits}f}" if ms.get("std") is not None else "")


def noisy_share(shares: dict[str, float]) -> float:
    return sum(v for k, v in shares.items() if k not in NOISE_FREE)


def verdict(candidate: dict, baseline: dict) -> str:
    if beats(candidate, baseline):
        return "beats it by more than two standard deviations"
    if beats(baseline, candidate):
        return "is worse than it by more than two standard deviations"
    return "is within two standard deviations of it (no clear difference)"


def labelled(facts: dict) -> bool:
    """Does the pool carry ground truth (the demo's noise kinds)? Your own pool does not."""
    return any(k != "unknown" for k in facts["truth"])


def pool_conclusion(pool: str, facts: dict, summary: dict, baseline: str, model_aware: list[str]) -> tuple[list[str], str | None]:
    """Plain-words findings for one pool, and the best model-aware strategy (None if none ran)."""
    base = summary.get(baseline)
    aware = [s for s in model_aware if s in summary and summary[s]["final_loss"]["mean"] is not None]
    ranked = sorted(summary, key=lambda s: summary[s]["final_loss"]["mean"] if summary[s]["final_loss"]["mean"] is not None else float("inf"))
    lines = [f"Lowest final held-out loss: **{ranked[0]}** ({fmt(summary[ranked[0]]['final_loss'])})."]
    if base is not None:
        judged = [(s, x["verdict"]["words"]) for s, x in summary.items() if x.get("verdict")]
        lines.append("Against " + baseline + ": " + "; ".join(f"**{s}** {w}" for s, w in judged) + ".")
    best = min(aware, key=lambda s: summary[s]["final_loss"]["mean"]) if aware else None
    if best is None or base is None:
        return lines, best
    b, r = summary[best], base
    lines.append(
        f"Best model-aware strategy **{best}**: {fmt(b['final_loss'])} vs {baseline} {fmt(r['final_loss'])} "
        f"(ratio {r['final_loss']['mean'] / b['final_loss']['mean']:.3f}), after {fmt(b['selection_seconds'], 0)} s "
        f"of selecting against {fmt(b['train_seconds'], 0)} s of training.")
    if not labelled(facts):
        return lines, best
    pool_noise = noisy_share({k: v / max(sum(facts['truth'].values()), 1) for k, v in facts["truth"].items()})
    lines.append(
        f"Noisy rows (shuffled, garbage, truncated, empty, duplicates left after dedup): {100 * pool_noise:.1f}% of the "
        f"deduplicated pool, {100 * noisy_share(b['truth_all']):.1f}% of {best}'s selections, "
        f"{100 * noisy_share(r['truth_all']):.1f}% of {baseline}'s.")
    top_skill = max(facts["skill"], key=facts["skill"].get)
    pool_top = facts["skill"][top_skill] / max(sum(facts["skill"].values()), 1)
    lines.append(
        f"Largest skill of the pool, {top_skill}: {100 * pool_top:.0f}% of the pool, "
        f"{100 * b['skill_all'].get(top_skill, 0):.0f}% of {best}'s selections, "
        f"{100 * r['skill_all'].get(top_skill, 0):.0f}% of {baseline}'s.")
    better = [s for s in b["skills"] if beats(b["skills"][s]["loss"], r["skills"][s]["loss"])]
    worse = [s for s in b["skills"] if beats(r["skills"][s]["loss"], b["skills"][s]["loss"])]
    lines.append(f"Per skill, {best} is clearly better than {baseline} on {', '.join(better) or 'no skill'} and clearly "
                 f"worse on {', '.join(worse) or 'no skill'} (> 2 std).")
    return lines, best


def _strategy_table(summary: dict, baseline: str, facts: dict) -> list[str]:
    base = summary.get(baseline, {}).get("final_loss", {}).get("mean")
    rows = ["| strategy | final held-out loss | ratio vs " + baseline + " | exact match | noisy rows selected | "
            "steps | train tokens | train s | selection tokens | selection s | gain per selection-hour (nats) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, x in summary.items():
        ratio = f"{base / x['final_loss']['mean']:.3f}" if base and x["final_loss"]["mean"] else "n/a"
        gain = x.get("gain_per_selection_hour")
        noisy = f"{100 * noisy_share(x['truth_all']):.1f}%" if labelled(facts) else "n/a (no labels)"
        rows.append(f"| {s} | {fmt(x['final_loss'])} | {ratio} | {fmt(x['final_exact_match'])} | {noisy} | "
                    f"{'/'.join(map(str, x['steps']))} | {x['train_tokens']['mean']:.0f} | {x['train_seconds']['mean']:.1f} | "
                    f"{x['selection_tokens']['mean']:.0f} | {x['selection_seconds']['mean']:.1f} | "
                    f"{'n/a' if gain is None else f'{gain:+.4f}'} |")
    return rows


def _paired_table(summary: dict, baseline: str) -> list[str]:
    """Each arm against the baseline, row by row (curate/compare/verdict.py): the difference with its interval,
    the win rate, the p-values before and after Holm, the outcome, and what selecting and training cost."""
    rows = [f"| arm | held-out loss | vs {baseline}: difference (95% CI) | rows lower | p | Holm p | outcome | "
            f"equivalence (TOST, Holm p) | selection compute (fwd tokens) | training tokens |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for s, x in summary.items():
        v = x.get("verdict")
        cost = f"{x['selection_compute']['mean']:.0f} | {x['train_tokens']['mean']:.0f}"
        if v is None:
            rows.append(f"| {s} | {fmt(x['final_loss'], 4)} | baseline | | | | | | {cost} |")
            continue
        equivalent = "yes" if v["p_equivalence_holm"] < ALPHA else "no"
        rows.append(f"| {s}{' (primary)' if v['primary'] else ''} | {fmt(x['final_loss'], 4)} | {v['difference']:+.4f} "
                    f"({v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}) | {v['win_rate']:.0%} | {v['p']:.2g} | {v['p_holm']:.2g} | "
                    f"{v['outcome']} | {equivalent} within ±{v['margin']:g} ({v['p_equivalence_holm']:.2g}) | {cost} |")
    return rows


def _matched_lines(summary: dict, baseline: str) -> list[str]:
    """What the compute-matched arms trained: the selection compute they spend on more baseline rows."""
    lines = []
    for arm, x in summary.items():
        for plan in (x.get("matched") or [])[:1]:
            lines.append(f"- **{arm}**: {baseline} with {plan['k_matched']} rows per round instead of {plan['k']}: "
                         f"{plan['matched_to']}'s selection compute ({plan['selection_compute']:.0f} forward tokens, "
                         f"seed of the first run) bought {plan['extra_rows']} more rows at {plan['tokens_per_row']:.0f} "
                         f"tokens per row and {plan['train_forward_factor']:g} forward tokens per training token"
                         + (" (capped: every round must find rows not trained before)" if plan["capped_by_pool"] else "") + ".")
    return lines


def pool_plots(pool: str, facts: dict, summary: dict, runs: list[dict], out: Path) -> list[tuple[str, str]]:
    """Write the pool's PNGs under out/<pool>/; returns (caption, relative path) pairs."""
    d = out / pool
    shown = []
    p = plots.loss_over_rounds({s: x["loss_by_round"] for s, x in summary.items()}, facts["base_eval"]["mean_loss"],
                               d / "heldout_loss.png", f"{pool}: held-out loss (mean over skills; band = ± 1 std over seeds)")
    shown.append(("Held-out loss over rounds", p))
    p = plots.grouped_bars({s: {k: v["loss"] for k, v in x["skills"].items()} for s, x in summary.items()},
                           d / "per_skill_loss.png", f"{pool}: final held-out loss per skill (± 1 std over seeds)",
                           plots.LOSS_UNIT, {k: v["loss"] for k, v in facts["base_eval"]["sets"].items()})
    shown.append(("Final held-out loss per skill", p))
    if facts["base_eval"]["mean_exact_match"] is not None:  # evaluation.exact_match off: loss only
        p = plots.grouped_bars({s: {k: v["exact_match"] for k, v in x["skills"].items()} for s, x in summary.items()},
                               d / "per_skill_exact_match.png", f"{pool}: final exact match per skill (greedy decoding)",
                               "exact match (fraction of held-out rows)",
                               {k: v["exact_match"] for k, v in facts["base_eval"]["sets"].items()})
        shown.append(("Final exact match per skill", p))
    total = max(sum(facts["truth"].values()), 1)
    p = plots.stacked_shares({"pool": {k: v / total for k, v in facts["truth"].items()},
                              **{s: x["truth_all"] for s, x in summary.items()}},
                             d / "composition_noise.png", f"{pool}: selected rows by noise kind", "noise kind",
                             plots.TRUTH_COLOURS)
    shown.append(("Selected rows by noise kind (ground truth, read by the report only)", p))
    total = max(sum(facts["skill"].values()), 1)
    p = plots.stacked_shares({"pool": {k: v / total for k, v in facts["skill"].items()},
                              **{s: x["skill_all"] for s, x in summary.items()}},
                             d / "composition_skill.png", f"{pool}: selected rows by skill", "skill")
    shown.append(("Selected rows by skill", p))
    p = plots.overlap_over_rounds({s: x["overlap_by_round"] for s, x in summary.items()}, d / "overlap.png",
                                  f"{pool}: overlap of consecutive rounds' selections")
    shown.append(("Round-to-round overlap", p))
    for strategy in summary:
        run = next((r for r in runs if r["strategy"] == strategy and any(x["rescore"] for x in r["rounds"])), None)
        if run is None:
            continue
        panels = [("base model, all rows", facts["ifd_hist_base"])] + [
            (f"round {x['round']} (scores used to select)", x["ifd_hist"]) for x in run["rounds"]]
        p = plots.ifd_histograms(panels, IFD_BINS, d / f"ifd_{strategy}.png",
                                 f"{pool}, {strategy} (seed {run['seed']}): IFD by noise kind")
        shown.append((f"IFD histograms per round, {strategy}", p))
    return [(c, str(path.relative_to(out))) for c, path in shown]


def write_comparison_report(results: dict[str, Any], summary: dict[str, Any], out: Path, command: str) -> Path:
    """report.md + PNGs under `out`. Returns the page's path."""
    spec = results["spec"]
    baseline, model_aware = spec["baseline"], results["model_aware"]
    lines = [f"# Curation strategy comparison: {spec['name']}", "",
             f"Command: `{command}`", "",
             f"Strategies: {', '.join(spec['strategies'])} (model-aware: {', '.join(model_aware) or 'none'}). "
             f"Seeds {spec['seeds']} (training data order and random draws; the base model is pre-trained once with "
             f"seed {spec['base_seed']}). Budget: {spec['budget']} of the deduplicated pool per round, {spec['rounds']} "
             f"rounds, the same optimizer steps for every strategy (`full`: one pass over every row each round, gradient "
             f"accumulation raised so it takes the same steps, up to rounding). Held-out sets are weighted equally across skills. Std = sample std over "
             f"seeds. Every arm is evaluated on the same held-out rows, so each is compared with the baseline row by row: "
             f"the difference of final held-out loss (negative: better) with a 95% bootstrap interval over rows and "
             f"seeds ({spec.get('bootstrap_samples', 10000)} resamples, seed {spec.get('bootstrap_seed', 0)}), the share "
             f"of rows whose loss is lower, a two-sided bootstrap p-value, Holm-adjusted over the variants tried; an arm "
             f"\"beats\" the baseline when the adjusted p < {ALPHA}, and is \"equivalent\" when an equivalence test "
             f"(TOST, Holm-adjusted) puts the difference within ±{spec.get('equivalence_margin', 0.005):g} nats. "
             f"Selection cost: the scoring, re-scoring, ranking and selecting a strategy's choice needs; training cost: "
             f"its train stages.", "",
             "## Conclusion", ""]
    sections, bests = [], {}
    for pool, facts in results["pools"].items():
        primary = spec.get("primary")
        if primary and (summary[pool].get(primary) or {}).get("verdict"):
            lines.append(f"- **{pool}**, the question named before the run: **{primary}** "
                         f"{summary[pool][primary]['verdict']['words']}.")
        found, best = pool_conclusion(pool, facts, summary[pool], baseline, model_aware)
        bests[pool] = best
        lines += [f"- **{pool}** ({facts['description'] or 'pool'}): " + " ".join(found)]
        sections += [f"## Pool `{pool}`", "", facts["description"], "",
                     (f"{facts['generated']['pool_rows']} rows read from {facts['generated']['source']} (held out: "
                      f"{facts['generated']['heldout']}), {facts['rows_after_dedup']} selectable after dedup and the split; "
                      if "source" in facts["generated"] else
                      f"{facts['generated']['pool_rows']} rows generated, {facts['rows_after_dedup']} after dedup; ")
                     + f"noise kinds after dedup: {facts['truth']}; skills: {facts['skill']}. Base model held-out loss "
                     f"{facts['base_eval']['mean_loss']:.3f}. Scoring the pool: {facts['score']['rows']} rows x "
                     f"{facts['score']['texts_per_row']} texts, {facts['score']['response_tokens']} response tokens per "
                     f"text, {facts['score']['seconds']:.1f} s of wall time (0 when it came from the content cache).", ""]
        sections += _strategy_table(summary[pool], baseline, facts) + [""]
        sections += [f"### Paired comparison with {baseline}", ""] + _paired_table(summary[pool], baseline) + [""]
        sections += _matched_lines(summary[pool], baseline) + [""]
        for caption, rel in pool_plots(pool, facts, summary[pool], [r for r in results["runs"] if r["pool"] == pool], out):
            sections += [f"### {caption}", "", f"![{caption}]({rel})", ""]
    wins = [p for p, b in bests.items() if b and (summary[p][b].get("verdict") or {}).get("outcome") == "better"]
    in_spec = len(spec["strategies"]) - 1 + len(spec.get("compute_matched") or {})
    tried = in_spec + spec.get("tried_before", 0)
    lines += ["", ("A model-aware strategy beats " + baseline + " after correcting for the variants tried on: "
                   + ", ".join(wins) + ".") if wins else
              f"No model-aware strategy beats {baseline} after correcting for the variants tried on any pool.",
              "", f"Variants compared with {baseline}: {tried} ({in_spec} in this spec, "
              f"{spec.get('tried_before', 0)} tried on these pools before it)."]
    chosen = spec.get("chosen_after_results") or {}
    lines += (["Chosen after looking at earlier results: " + "; ".join(f"{s} ({why})" for s, why in chosen.items()) + "."]
              if chosen else ["No strategy of this spec was declared as chosen after looking at earlier results."]) + [""]
    page = out / "report.md"
    out.mkdir(parents=True, exist_ok=True)
    tmp = page.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines + [""] + sections) + "\n")
    tmp.replace(page)
    return page
