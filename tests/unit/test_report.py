"""Report pages: the comparison page states the conclusion computed from the numbers, and the
single-run page leaves out the ground-truth plots when the pool has no `truth`."""
from __future__ import annotations

import pytest

from curate.compare.metrics import IFD_BINS
from curate.compare.summary import summarise
from curate.report.page import write_comparison_report
from curate.report.run_report import write_page

SKILLS = ("arithmetic", "fact_lookup")
NBINS = len(IFD_BINS) - 1


def _eval(loss: float) -> dict:
    return {"mean_loss": loss, "mean_exact_match": 0.1,
            "sets": {s: {"loss": loss + i * 0.1, "exact_match": 0.1} for i, s in enumerate(SKILLS)}}


def _round(r: int, loss: float, truth: dict, rescored: bool) -> dict:
    return {"round": r, "selected": sum(truth.values()), "eval": _eval(loss), "truth": truth,
            "skill": {"arithmetic": 3, "fact_lookup": sum(truth.values()) - 3},
            "overlap_prev": None if r == 0 else {"kept": 0.4, "jaccard": 0.25},
            "ifd_hist": {k: [1] * NBINS for k in truth},
            "train": {"steps": 4, "tokens": 500, "response_tokens": 200, "seconds": 0.5, "wall_seconds": 0.6},
            "rescore": {"rows": 30, "rows_scored": 30, "response_tokens": 300, "wall_seconds": 0.2} if rescored and r else None}


def _rows(loss: float) -> dict:
    """30 held-out rows, 10 tokens each, whose losses differ by row (the same for every arm) around `loss`: the
    paired difference of two runs is the difference of their losses on every row."""
    offsets = [(i - 14.5) / 50 for i in range(30)]
    return {"set": ["s"] * 30, "row_id": [f"h{i}" for i in range(30)], "loss": [loss + o for o in offsets],
            "tokens": [10] * 30}


def _results(aware_losses: list[float], random_losses: list[float]) -> dict:
    runs = []
    for strategy, losses, truth in (("random", random_losses, {"clean": 8, "shuffled": 2}),
                                    ("iterit-clean", aware_losses, {"clean": 10})):
        for seed, loss in enumerate(losses):
            rounds = [_round(r, loss + 0.2 * (1 - r), truth, strategy != "random") for r in range(2)]
            cost = 0.0 if strategy == "random" else 1800.0
            parts = {"score": {"tokens": cost, "seconds": cost}, "select": {"tokens": 0.0, "seconds": 0.0}}
            runs.append({"pool": "noisy", "strategy": strategy, "seed": seed, "rounds": rounds, "final": rounds[-1]["eval"],
                         "steps": 8, "wall_seconds": 3.0, "grad_accum": 1, "final_rows": _rows(loss),
                         "selection_cost": {"tokens": cost, "seconds": cost, "parts": parts}})
    facts = {"description": "test pool", "generated": {"pool_rows": 120}, "rows_after_dedup": 100,
             "skill": {"arithmetic": 50, "fact_lookup": 50}, "truth": {"clean": 80, "shuffled": 20},
             "score": {"rows": 100, "response_tokens": 1000, "seconds": 1.0, "texts_per_row": 3},
             "base_eval": _eval(2.5), "ifd_hist_base": {"clean": [2] * NBINS, "shuffled": [1] * NBINS}}
    spec = {"name": "t", "strategies": {"random": {}, "iterit-clean": {}}, "baseline": "random", "seeds": [0, 1, 2],
            "base_seed": 42, "budget": 0.1, "rounds": 2}
    return {"spec": spec, "pools": {"noisy": facts}, "runs": runs, "model_aware": ["iterit-clean"]}


def test_comparison_page_states_a_win_computed_from_the_numbers(tmp_path):
    results = _results([1.30, 1.31, 1.29], [1.40, 1.42, 1.38])
    page = write_comparison_report(results, summarise(results), tmp_path, "curate compare")
    text = page.read_text()
    assert "iterit-clean**: 1.300 ± 0.010 vs random 1.400 ± 0.020" in text
    assert "**iterit-clean** beats random: -0.1000 nats (95% CI -0.1" in text
    assert "lower on 100% of rows" in text and "over 1 variants" in text
    # the paired table: every one of the 30 rows is lower; the replicates never reach 0: p = 2 / 10001
    assert "| iterit-clean | 1.3000 ± 0.0100 | -0.1000 (" in text and "| 100% | 0.0002 | 0.0002 | better |" in text
    assert "beats random after correcting for the variants tried on: noisy" in text
    # 0.1 nats gained in half an hour of selecting: 0.2 nats per selection-hour; random spent none
    assert "| 1800.0 | +0.2000 |" in text and "| 0.0 | n/a |" in text
    assert "20.0% of the deduplicated pool, 0.0% of iterit-clean's selections, 20.0% of random's" in text
    for png in ("heldout_loss", "per_skill_loss", "per_skill_exact_match", "composition_noise", "composition_skill",
                "overlap", "ifd_iterit-clean"):
        assert (tmp_path / "noisy" / f"{png}.png").stat().st_size > 1000
        assert f"noisy/{png}.png" in text


def test_comparison_page_says_when_nothing_wins(tmp_path):
    results = _results([1.39, 1.45, 1.37], [1.40, 1.42, 1.38])
    text = write_comparison_report(results, summarise(results), tmp_path, "curate compare").read_text()
    assert "shows no clear difference from random" in text
    assert "No model-aware strategy beats random after correcting for the variants tried on any pool." in text


def test_variants_tried_before_can_take_a_win_away(tmp_path):
    """p of this difference is ~0.01 for one variant (a seed of each arm overlaps the other's); nine earlier
    tries make Holm multiply it by 10, past 0.05."""
    results = _results([1.37, 1.40, 1.36], [1.41, 1.42, 1.39])
    alone = summarise(results)["noisy"]["iterit-clean"]["verdict"]
    assert alone["p_holm"] == alone["p"] < 0.05 and alone["outcome"] == "better"
    results["spec"]["tried_before"] = 9
    results["spec"]["chosen_after_results"] = {"iterit-clean": "the gate margin"}
    judged = summarise(results)["noisy"]["iterit-clean"]["verdict"]
    assert judged["p_holm"] == min(1.0, alone["p"] * 10) and judged["p_holm"] >= 0.05 and judged["outcome"] != "better"
    text = write_comparison_report(results, summarise(results), tmp_path, "curate compare").read_text()
    assert "chosen after looking at earlier results (the gate margin)" in text
    assert "Variants compared with random: 10 (1 in this spec, 9 tried on these pools before it)" in text


def test_run_page_without_ground_truth_leaves_out_noise_plots(tmp_path):
    rounds = [_round(r, 2.0 - 0.1 * r, {"unknown": 10}, True) for r in range(2)]
    facts = {"rows_after_dedup": 100, "skill": {"arithmetic": 50, "fact_lookup": 50}, "truth": {"unknown": 100},
             "base_eval": _eval(2.5), "ifd_hist_base": {"unknown": [3] * NBINS}}
    info = {"run_id": "abcdef0123456789", "tags": {"curate.strategy": "iterit"}}
    page = write_page({"facts": facts, "rounds": rounds, "has_truth": False}, info, tmp_path)
    text = page.read_text()
    assert "no ground truth" in text and "noise kind" not in text.lower()
    assert not (tmp_path / "composition_noise.png").exists()
    assert (tmp_path / "ifd.png").exists() and (tmp_path / "heldout_loss.png").exists()
    assert "from 2.500 (base model) to 1.900 after round 1" in text


def test_plots_draw_set_and_skill_names_with_dollar_signs_as_text(tmp_path):
    from curate.report import plots

    names = ["q&a=1", "price $x^{$ #1", "$$"]  # held-out set names come from file names, skills from the data
    values = {"base": {n: {"mean": 1.0 + i, "std": None} for i, n in enumerate(names)}}
    assert plots.grouped_bars(values, tmp_path / "bars.png", "per set", "loss").stat().st_size > 0
    shares = {"pool": {n: 1 / len(names) for n in names}}
    assert plots.stacked_shares(shares, tmp_path / "shares.png", "by skill", "skill").stat().st_size > 0


def test_the_primary_contrast_leads_and_a_tiny_difference_is_called_equivalent(tmp_path):
    """A difference of +0.0001 nats with seeds 0.0002 apart: every bootstrap replicate lies inside ±0.005 nats, so
    the equivalence test says so (TOST p = 1 / 10001), and the question named before the run comes first."""
    results = _results([1.4001, 1.4003, 1.3999], [1.4000, 1.4002, 1.3998])
    results["spec"]["primary"] = "iterit-clean"
    judged = summarise(results)["noisy"]["iterit-clean"]["verdict"]
    assert judged["difference"] == pytest.approx(1e-4, abs=1e-12) and judged["outcome"] == "equivalent"
    assert judged["p_equivalence_holm"] == pytest.approx(1 / 10001) and judged["primary"]
    text = write_comparison_report(results, summarise(results), tmp_path, "curate compare").read_text()
    conclusion = text.split("## Conclusion", 1)[1]
    assert conclusion.lstrip().startswith("- **noisy**, the question named before the run: **iterit-clean** is "
                                          "equivalent to random within ±0.005 nats")
    assert "| iterit-clean (primary) |" in text and "| equivalent | yes within ±0.005 (0.0001) |" in text
