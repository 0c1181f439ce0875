"""Report pages: the comparison page states the conclusion computed from the numbers, and the
single-run page leaves out the ground-truth plots when the pool has no `truth`."""
from __future__ import annotations

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


def _results(aware_losses: list[float], random_losses: list[float]) -> dict:
    runs = []
    for strategy, losses, truth in (("random", random_losses, {"clean": 8, "shuffled": 2}),
                                    ("iterit-clean", aware_losses, {"clean": 10})):
        for seed, loss in enumerate(losses):
            rounds = [_round(r, loss + 0.2 * (1 - r), truth, strategy != "random") for r in range(2)]
            cost = 0.0 if strategy == "random" else 1800.0
            parts = {"score": {"tokens": cost, "seconds": cost}, "select": {"tokens": 0.0, "seconds": 0.0}}
            runs.append({"pool": "noisy", "strategy": strategy, "seed": seed, "rounds": rounds, "final": rounds[-1]["eval"],
                         "steps": 8, "wall_seconds": 3.0, "grad_accum": 1,
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
    assert "**iterit-clean** beats random: +0.1000 nats of held-out loss" in text
    assert "after correcting for 1 variants tried" in text
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
    """p of this margin is ~0.01 for one variant; declared earlier tries multiply it past 0.05."""
    results = _results([1.37, 1.38, 1.36], [1.40, 1.41, 1.39])
    alone = summarise(results)["noisy"]["iterit-clean"]["verdict"]
    assert alone["p_corrected"] < 0.05
    results["spec"]["tried_before"] = 9
    results["spec"]["chosen_after_results"] = {"iterit-clean": "the gate margin"}
    judged = summarise(results)["noisy"]["iterit-clean"]["verdict"]
    assert judged["p_corrected"] == min(1.0, alone["p"] * 10) and judged["p_corrected"] >= 0.05
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
