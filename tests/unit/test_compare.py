"""Metric helpers of `curate compare`: composition, overlap, mean ± std, IFD histograms, the spec,
step matching for `full`, and the aggregation over seeds."""
from __future__ import annotations

import math

import pytest

from curate.compare import model_aware
from curate.compare.metrics import IFD_BINS, beats, composition, ifd_histogram, mean_std, overlap, shares
from curate.compare.facts import match_full_steps
from curate.training.schedule import steps_per_round
from curate.compare.spec import CompareSpec, merge
from curate.compare.summary import summarise_strategy
from curate.config import Params, ParamsError
from curate.selection.iterit import selection_budget


def test_composition_counts_labels_and_names_missing_ones():
    assert composition(["clean", "shuffled", "clean", None]) == {"clean": 2, "shuffled": 1, "unknown": 1}
    assert composition([]) == {}
    assert shares({"a": 1, "b": 3}) == {"a": 0.25, "b": 0.75}


def test_overlap_kept_and_jaccard():
    o = overlap(["a", "b", "c", "d"], ["c", "d", "e", "f"])
    assert o == {"kept": 0.5, "jaccard": pytest.approx(2 / 6)}
    assert overlap(["a"], ["a"]) == {"kept": 1.0, "jaccard": 1.0}
    assert overlap(["a"], ["b"])["kept"] == 0.0


def test_mean_std_is_sample_std_and_skips_non_finite():
    r = mean_std([1.0, 2.0, 3.0, float("nan"), None])
    assert r["mean"] == 2.0 and r["std"] == pytest.approx(1.0) and r["n"] == 3
    assert mean_std([4.0]) == {"mean": 4.0, "std": None, "n": 1}
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}


def test_beats_needs_a_gap_of_more_than_two_stds():
    random = {"mean": 1.36, "std": 0.03}
    assert not beats({"mean": 1.32, "std": 0.01}, random)  # 0.04 < 2 * 0.03
    assert beats({"mean": 1.29, "std": 0.01}, random)  # 0.07 > 0.06
    assert not beats({"mean": 1.0, "std": None}, random)  # one seed: no claim


def test_ifd_histogram_splits_by_label_and_clips_to_the_last_bin():
    h = ifd_histogram([0.01, 0.02, 5.0, float("nan"), 0.5], ["clean", "clean", "garbage", "clean", None])
    assert set(h) == {"clean", "garbage", "unknown"}
    assert sum(h["clean"]) == 2 and h["clean"][0] == 2
    assert h["garbage"][-1] == 1
    assert len(h["clean"]) == len(IFD_BINS) - 1


def test_spec_overrides_apply_in_order_and_fail_fast():
    spec = CompareSpec(pools={"p": {}}, strategies={"random": {"selection": {"strategy": "random"}},
                                                     "gate": {"selection": {"strategy": "iterit", "mismatch_gate": "on"}}},
                       seeds=[7], budget=0.2, rounds=2, params={"training": {"batch_size": 4}}).check()
    p = spec.run_params(Params(), "gate", 7)
    assert (p.selection.strategy, p.selection.mismatch_gate, p.selection.ratio, p.selection.rounds) == ("iterit", "on", 0.2, 2)
    assert p.project.seed == 7 and p.training.batch_size == 4
    assert spec.pool_params(Params()).project.seed == spec.base_seed
    assert model_aware(spec, Params()) == ["gate"]
    bad = CompareSpec(pools={"p": {}}, strategies={"random": {"selection": {"strategy": "nope"}}}, seeds=[1])
    with pytest.raises(ParamsError, match="selection.strategy"):
        bad.check()
    with pytest.raises(ParamsError, match="baseline"):
        CompareSpec(pools={"p": {}}, strategies={"x": {}}, seeds=[1]).check()
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


@pytest.mark.parametrize("pool_rows,batch,epochs", [(1860, 16, 2), (1000, 8, 1), (4450, 16, 1), (285, 8, 1)])
def test_full_is_step_matched_to_the_k_row_strategies(pool_rows, batch, epochs):
    p = Params.model_validate({"selection": {"strategy": "full", "ratio": 0.1},
                               "training": {"batch_size": batch, "epochs_per_round": epochs}})
    k_steps = steps_per_round(selection_budget(pool_rows, 0.1), batch, 1, epochs)
    full = match_full_steps(p, pool_rows)
    assert full.training.epochs_per_round == 1 and full.training.grad_accum > 1
    full_steps = steps_per_round(pool_rows, batch, full.training.grad_accum, 1)
    assert k_steps - 1 <= full_steps <= k_steps  # equal up to the rounding of the last accumulated step


def _run(seed, losses, truth):
    sets = {"a": {"loss": losses[-1], "exact_match": 0.0}, "b": {"loss": losses[-1] + 1, "exact_match": 0.5}}
    rounds = [{"round": r, "selected": sum(truth[r].values()), "truth": truth[r], "skill": {"a": 1},
               "eval": {"mean_loss": l, "mean_exact_match": 0.25, "sets": sets},
               "overlap_prev": None if r == 0 else {"kept": 0.5, "jaccard": 0.3},
               "train": {"steps": 3, "tokens": 100, "response_tokens": 40, "seconds": 1.0}, "rescore": None}
              for r, l in enumerate(losses)]
    cost = {"tokens": 10.0, "seconds": 5.0, "parts": {"score": {"tokens": 10.0, "seconds": 5.0}}}
    return {"seed": seed, "rounds": rounds, "final": rounds[-1]["eval"], "steps": 3 * len(losses), "wall_seconds": 2.0,
            "selection_cost": cost}


def test_summary_averages_over_seeds():
    truth = [{"clean": 3, "shuffled": 1}, {"clean": 4}]
    runs = [_run(1, [2.0, 1.0], truth), _run(2, [2.2, 1.2], truth)]
    s = summarise_strategy(runs, {"sets": {"a": {}, "b": {}}})
    assert s["final_loss"]["mean"] == pytest.approx(1.1) and s["final_loss"]["std"] == pytest.approx(math.sqrt(0.02))
    assert [x["mean"] for x in s["loss_by_round"]] == pytest.approx([2.1, 1.1])
    assert s["overlap_by_round"][0] is None and s["overlap_by_round"][1]["mean"] == 0.5
    assert s["truth_all"] == {"clean": pytest.approx(7 / 8), "shuffled": pytest.approx(1 / 8)}
    assert s["truth_by_round"][0] == {"clean": 0.75, "shuffled": 0.25}
    assert s["skills"]["b"]["loss"]["mean"] == pytest.approx(2.1)
    assert s["steps"] == [6]


def test_demo_pool_skill_mix_sets_the_clean_skill_shares():
    from collections import Counter

    from curate.demo.pool import generate_pool

    mix = {"arithmetic": 0.6, "sort_numbers": 0.1, "word_transform": 0.1, "fact_lookup": 0.1, "animal_description": 0.1}
    noise = {"shuffled": 0.1, "garbage": 0.05}
    rows = generate_pool(400, seed=5, noise=noise, skill_mix=mix)
    clean = Counter(r["skill"] for r in rows if r["truth"] == "clean")
    assert sum(clean.values()) == 340 and clean["arithmetic"] == 204 and clean["fact_lookup"] == 34
    assert Counter(r["truth"] for r in rows)["shuffled"] == 40
    assert generate_pool(400, seed=5, noise=noise, skill_mix=mix) == rows  # deterministic
    assert generate_pool(400, seed=5, noise=noise) != rows
    with pytest.raises(ValueError, match="sum to 1"):
        generate_pool(100, skill_mix={"arithmetic": 0.5})
    with pytest.raises(ValueError, match="unknown skills"):
        generate_pool(100, skill_mix={"cooking": 1.0})
    with pytest.raises(ValueError, match="holds only"):
        generate_pool(2000, noise={}, skill_mix={"animal_description": 1.0})


def test_strategy_names_become_valid_mlflow_keys():
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name

    from curate.compare.tracking import mlflow_key

    key = mlflow_key("strategies.iterit-clean-gate+adapt.selection.strategy")
    assert key == "strategies.iterit-clean-gate_adapt.selection.strategy"
    _validate_param_name(key)
    _validate_metric_name(mlflow_key("noisy.random+filter-then-weight.final_loss.mean"))


def test_a_strategy_switching_the_online_policy_replaces_the_base_policy_section():
    from curate.compare.spec import CompareSpec
    from curate.config import Params

    base = Params.model_validate({"training": {"online": {"policy": "adapt", "tau": 2.0}}})
    spec = CompareSpec.model_validate({"pools": {"p": {"size": 10}}, "seeds": [1], "strategies": {
        "random": {}, "greats": {"training": {"online": {"policy": "greats", "keep_ratio": 0.25}}},
        "adapt-tau": {"training": {"online": {"tau": 3.0}}}}})
    assert spec.run_params(base, "greats", 1).training.online.keep_ratio == 0.25  # adapt's tau dropped, no error
    assert spec.run_params(base, "adapt-tau", 1).training.online.tau == 3.0  # same policy: merged
    assert spec.run_params(base, "random", 1).training.online.tau == 2.0


def test_the_readme_spec_for_your_own_pool_is_valid():
    from pathlib import Path

    import yaml

    from curate.compare.spec import CompareSpec, PoolFile

    readme = (Path(__file__).resolve().parents[2] / "docs" / "compare.md").read_text()
    block = readme.split("e.g. `params/compare-mine.yaml`")[1].split("```yaml")[1].split("```")[0]
    spec = CompareSpec.model_validate(yaml.safe_load(block)).check()
    assert isinstance(spec.pools["chats"], PoolFile) and spec.baseline == "random"
    assert {spec.run_params(Params(), s, 1).selection.strategy for s in spec.strategies} == {"random", "longest", "rds", "iterit"}


def test_the_compute_matched_arm_by_hand():
    """Selection compute 90,000 forward tokens, a training token = 3 forward tokens, 150 tokens per training row:
    90,000 / (3 x 150) = 200 extra rows; 2 rounds of K = 40 become 40 + 100 = 140 rows per round."""
    from curate.compare.matched import extra_rows, matched_budget, matched_plan, tokens_per_row

    assert extra_rows(90_000, 150, 3.0) == 200 and extra_rows(449, 150, 3.0) == 0
    assert matched_budget(40, 2, 200, 1000) == (140, False)
    assert matched_budget(40, 2, 201, 1000) == (141, False)  # ceil(201 / 2) = 101
    assert matched_budget(40, 2, 2000, 1000) == (500, True)  # every round must still find new rows
    baseline = {"rounds": [{"selected": 40, "train": {"tokens": 6000}}, {"selected": 40, "train": {"tokens": 6000}}]}
    assert tokens_per_row(baseline) == 150
    plan = matched_plan({"strategy": "iterit", "selection_cost": {"compute": 90_000.0}}, baseline, 40, 2, 1000, 3.0)
    assert plan["k_matched"] == 140 and plan["extra_rows"] == 200 and not plan["capped_by_pool"]
    with pytest.raises(ValueError):
        extra_rows(1.0, 0.0, 3.0)


def test_the_spec_checks_primary_and_compute_matched_arms():
    base = {"pools": {"p": {}}, "seeds": [1], "strategies": {"random": {"selection": {"strategy": "random"}},
                                                              "iterit": {"selection": {"strategy": "iterit"}}}}
    spec = CompareSpec.model_validate({**base, "primary": "random-matched",
                                       "compute_matched": {"random-matched": "iterit"}}).check()
    assert spec.arms == ["random", "iterit", "random-matched"]
    for bad in ({"primary": "random"}, {"primary": "nope"}, {"compute_matched": {"iterit": "iterit"}},
                {"compute_matched": {"m": "random"}}, {"compute_matched": {"m": "nope"}}):
        with pytest.raises(ParamsError):
            CompareSpec.model_validate({**base, **bad}).check()
