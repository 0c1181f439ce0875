"""The scorer-fit gate: one message naming the cause and the fix, before any round."""
import numpy as np

from curate.demo.skills import SKILLS
from curate.scoring.fit import fit_problem, outside_demo

GATE = dict(ifd_max=1.0, min_eligible_share=0.2, max_nan_share=0.1, max_length=256)


def _ifd(eligible: int, ineligible: int, nan: int) -> np.ndarray:
    return np.r_[np.full(eligible, 0.8), np.full(ineligible, 1.2), np.full(nan, np.nan)]


def test_a_fitting_scorer_passes():
    assert fit_problem(_ifd(60, 38, 2), source="tiny", **GATE) is None
    assert fit_problem([], source="tiny", **GATE) is None


def test_truncated_responses_are_named_with_the_max_length_fix():
    msg = fit_problem(_ifd(10, 6, 84), source="smollm2-135m-instruct", **GATE)
    assert msg.startswith("84% of rows score NaN") and "raise scoring.max_length" in msg.lower()
    assert "256" in msg


def test_few_eligible_rows_name_the_model_fix():
    msg = fit_problem(_ifd(3, 97, 0), source="tiny", **GATE)
    assert msg.startswith("only 3% of rows are eligible") and "base_model.source: smollm2-135m-instruct" in msg
    other = fit_problem(_ifd(3, 97, 0), source="smollm2-135m-instruct", **GATE)
    assert "does not fit" in other and "use base_model.source: smollm2" not in other


def test_thresholds_are_strict_bounds_and_nan_rows_are_not_eligible():
    assert fit_problem(_ifd(80, 10, 10), source="tiny", **GATE) is None  # exactly max_nan_share: passes
    assert fit_problem(_ifd(79, 10, 11), source="tiny", **GATE).startswith("11% of rows score NaN")
    assert fit_problem(_ifd(20, 80, 0), source="tiny", **GATE) is None  # exactly min_eligible_share: passes
    assert fit_problem(_ifd(19, 81, 0), source="tiny", **GATE).startswith("only 19%")
    # NaN rows count against the eligible share: 15% eligible of all rows, though 15/92 > 16% of the scored ones
    assert fit_problem(_ifd(15, 77, 8), source="tiny", **{**GATE, "min_eligible_share": 0.16}).startswith("only 15%")


def test_ifd_max_sets_eligibility():
    ifd = np.full(100, 0.9)
    assert fit_problem(ifd, source="tiny", **GATE) is None
    assert fit_problem(ifd, source="tiny", **{**GATE, "ifd_max": 0.9}).startswith("only 0%")


def test_outside_demo_is_told_by_the_skill_labels():
    demo = list(SKILLS)
    assert not outside_demo(demo * 10 + [None] * 5, demo)
    assert outside_demo([None] * 50 + demo, demo)
    assert outside_demo(["coding", "chat"] * 20, demo)


def test_tiny_on_a_pool_that_is_not_the_demo_warns(tmp_path):
    import pyarrow as pa

    from curate.artifacts import write_parquet
    from curate.scoring.fit import pool_warnings

    def pool(skills):
        write_parquet(pa.table({"row_id": [str(i) for i in range(len(skills))], "skill": pa.array(skills, pa.string())}),
                      tmp_path / "rows.parquet")
        return tmp_path

    tiny, smol = "tiny", "smollm2-135m-instruct"
    [warning] = pool_warnings(pool([None] * 30), tiny)
    assert "base_model.source: smollm2-135m-instruct" in warning
    assert pool_warnings(pool([None] * 30), smol) == []
    assert pool_warnings(pool(list(SKILLS) * 6), tiny) == []
