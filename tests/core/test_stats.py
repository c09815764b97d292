"""bench.core.stats: the intervals and tests the report's confirmed ranking rests on."""

import math

import numpy as np
import pytest

from bench.core import stats

T_975_DF2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom (tables)


def test_mean_interval_of_three_values():
    summary = stats.mean_interval([1.0, 2.0, 3.0])
    assert (summary["n"], summary["mean"], summary["sd"]) == (3, 2.0, 1.0)
    half = T_975_DF2 * 1.0 / math.sqrt(3)
    assert (summary["low"], summary["high"]) == pytest.approx((2.0 - half, 2.0 + half))


def test_one_value_has_no_interval_and_equal_values_a_zero_width_one():
    one = stats.mean_interval([0.99])
    assert one["mean"] == 0.99 and math.isnan(one["sd"]) and math.isnan(one["low"])
    same = stats.mean_interval([0.99, 0.99, 0.99])
    assert (same["sd"], same["low"], same["high"]) == pytest.approx((0.0, 0.99, 0.99))


def _correct(n: int, wrong: range) -> np.ndarray:
    right = np.ones(n, dtype=bool)
    right[list(wrong)] = False
    return right


def test_mcnemar_uses_only_the_discordant_digits():
    # 35 digits only A got right, 5 only B: chi-square with continuity correction
    # (|35 - 5| - 1)^2 / 40 = 21.025, p = 4.5e-6 on one degree of freedom.
    a, b = _correct(10_000, range(35, 40)), _correct(10_000, range(0, 35))
    result = stats.mcnemar_pair(a, b)
    assert (result["a_only"], result["b_only"]) == (35, 5)
    assert result["p_value"] == pytest.approx(4.5333e-6, rel=1e-3)


def test_mcnemar_is_exact_for_few_discordant_digits():
    # 12 against 10: the two-sided binomial test with p = 1/2 gives 0.8318.
    a, b = _correct(1000, range(12, 22)), _correct(1000, range(0, 12))
    assert stats.mcnemar_pair(a, b)["p_value"] == pytest.approx(0.8318, abs=1e-4)
    assert stats.mcnemar_pair(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError, match="cover"):
        stats.mcnemar_pair(a, a[:10])
