"""Statistics of repeated seeds: means with t confidence intervals, and McNemar's test."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
# Under this many discordant digits McNemar's chi-square approximation is poor, and
# statsmodels' exact binomial version is used instead.
EXACT_BELOW = 25
MCNEMAR = "McNemar's test (statsmodels; exact binomial under 25 discordant digits)"


def mean_interval(values) -> dict:
    """n, mean, sample standard deviation and the 95% t interval of the mean.

    One value has no spread: its sd and interval are NaN. Identical values give a
    zero-width interval.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "sd": math.nan, "low": math.nan, "high": math.nan}
    sd = float(values.std(ddof=1))
    if sd == 0.0:
        low = high = mean
    else:
        low, high = sps.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sps.sem(values))
    return {"n": n, "mean": mean, "sd": sd, "low": float(low), "high": float(high)}


def mcnemar_pair(correct_a, correct_b) -> dict:
    """McNemar's test of two classifiers on the same test digits (boolean "was right" arrays,
    one entry per digit, concatenated over matched seeds).

    Only the digits one got right and the other wrong count: a_only and b_only. p_value is
    the chance of a split at least this uneven if both were equally accurate.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the predictions cover {a.shape} and {b.shape} digits")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    table = [[int((a & b).sum()), a_only], [b_only, int((~a & ~b).sum())]]
    if a_only + b_only == 0:
        return {"a_only": 0, "b_only": 0, "p_value": 1.0}
    result = mcnemar(table, exact=a_only + b_only < EXACT_BELOW)
    return {"a_only": a_only, "b_only": b_only, "p_value": float(result.pvalue)}


def accuracy_interval(correct: int, total: int) -> tuple[float, float]:
    """95% Wilson interval of an accuracy measured on `total` independent test images."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(correct, total, alpha=ALPHA, method="wilson")
    return float(low), float(high)


BOOTSTRAP_RESAMPLES = 2000


def mean_bootstrap_interval(values, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of a mean (per-image test losses, say)."""
    values = np.asarray(values, dtype=np.float64)
    result = sps.bootstrap(
        (values,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
