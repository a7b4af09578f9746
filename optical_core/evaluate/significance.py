"""Paired comparison of two systems on the same queries."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PairedComparison:
    mean_a: float
    mean_b: float
    difference: float  # mean(a - b)
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def mean_ci(values, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and percentile bootstrap CI over queries."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0]), float(values[0])
    ci = stats.bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=level,
                         method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
    return float(values.mean()), float(ci.low), float(ci.high)


def paired_comparison(a, b, n_resamples: int = 5000, seed: int = 0) -> PairedComparison:
    """Bootstrap 95% CI of mean(a - b) and a two-sided paired randomisation (sign-flip) test p-value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired comparison needs two equal-length, non-empty score lists ({a.shape} vs {b.shape})")
    diff = a - b
    mean, low, high = mean_ci(diff, n_resamples, seed)
    if np.all(diff == 0) or len(diff) == 1:  # one pair: both sign flips are as extreme, so p = 1 exactly
        p = 1.0
    else:
        p = float(stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                         n_resamples=n_resamples, alternative="two-sided",
                                         random_state=np.random.default_rng(seed)).pvalue)
    return PairedComparison(float(a.mean()), float(b.mean()), mean, low, high, p, len(a))
