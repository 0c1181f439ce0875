"""The held-out split by row_id hash: deterministic, the right share, disjoint, stable as the pool grows."""
import math

import numpy as np
import pytest

from curate.evaluation.split import holdout_mask

IDS = [f"row-{i:06d}" for i in range(20_000)]


def test_share_is_within_binomial_tolerance():
    share = 0.05
    held = int(holdout_mask(IDS, share).sum())
    mean, std = share * len(IDS), math.sqrt(len(IDS) * share * (1 - share))
    assert abs(held - mean) < 5 * std, (held, mean, std)  # 5 sigma: fails by chance with p < 1e-6


def test_split_is_deterministic_and_stable_when_the_pool_grows():
    first = holdout_mask(IDS[:5_000], 0.1)
    assert np.array_equal(first, holdout_mask(IDS[:5_000], 0.1))
    assert np.array_equal(first, holdout_mask(IDS, 0.1)[:5_000])  # old rows keep their side
    assert np.array_equal(first[::-1], holdout_mask(IDS[:5_000][::-1], 0.1))  # order does not matter


def test_pool_and_heldout_are_disjoint_and_cover_the_rows():
    mask = holdout_mask(IDS, 0.2)
    held = {r for r, m in zip(IDS, mask) if m}
    kept = {r for r, m in zip(IDS, mask) if not m}
    assert held and kept and not held & kept and held | kept == set(IDS)


def test_larger_share_holds_out_a_superset():
    small, large = holdout_mask(IDS, 0.05), holdout_mask(IDS, 0.2)
    assert not (small & ~large).any()


def test_zero_share_holds_out_nothing_and_bad_shares_fail():
    assert not holdout_mask(IDS, 0.0).any()
    with pytest.raises(ValueError, match="evaluation.holdout"):
        holdout_mask(IDS, 1.0)


def test_split_is_the_same_in_another_process():
    """Nightly runs are separate processes: the split must not depend on per-process hash salts."""
    import subprocess
    import sys

    code = ("from curate.evaluation.split import holdout_mask; "
            "print(''.join('1' if m else '0' for m in holdout_mask([f'row-{i:06d}' for i in range(2000)], 0.1)))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout.strip() for seed in ("1", "2")}
    here = "".join("1" if m else "0" for m in holdout_mask(IDS[:2000], 0.1))
    assert outs == {here}
