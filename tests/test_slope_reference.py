"""The study's slope (analysis.ols_slope: OLS of y on x, one intercept per group, t-based CI and p) against
statsmodels' OLS on the same data, on noisy synthetic data where every number is non-trivial."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from optical_core.study.analysis import ols_slope

TOL = {"rel": 1e-10, "abs": 1e-12}


def synthetic(seed: int = 7) -> pd.DataFrame:
    """3 groups x 5 sizes: y = group offset + 0.05 x + noise (x like log10 of parameter counts)."""
    rng = np.random.default_rng(seed)
    sizes = np.log10([3.7e6, 7.4e6, 11.1e6, 14.8e6, 21.4e6])
    offsets = {"amh": -0.10, "swa": 0.02, "yor": 0.15}
    rows = [{"group": g, "x": x, "y": offset + 0.05 * x + rng.normal(0, 0.02)} for g, offset in offsets.items()
            for x in sizes]
    return pd.DataFrame(rows)


def reference(frame: pd.DataFrame, formula: str, level: float = 0.95) -> tuple[float, float, float, float]:
    fit = smf.ols(formula, frame).fit()
    low, high = fit.conf_int(alpha=1 - level).loc["x"]
    return fit.params["x"], low, high, fit.pvalues["x"]


@pytest.mark.parametrize("level", [0.95, 0.9])
def test_pooled_slope_with_group_intercepts_equals_statsmodels(level):
    frame = synthetic()
    slope, low, high, p = reference(frame, "y ~ x + C(group)", level)
    got = ols_slope(frame.x.to_numpy(), frame.y.to_numpy(), frame.group.to_numpy(), "pooled", "gain", level)
    assert (got.slope, got.ci_low, got.ci_high, got.p_value) == (pytest.approx(slope, **TOL), pytest.approx(low, **TOL),
                                                                 pytest.approx(high, **TOL), pytest.approx(p, **TOL))
    assert got.n == 15 and (got.scope, got.y) == ("pooled", "gain")
    # informative data: p = 0.0146 (a normal instead of the t with 11 dof would give about 0.0099)
    assert 0.01 < p < 0.02 and 0 < low < slope < high


def test_ungrouped_slope_equals_statsmodels():
    frame = synthetic(seed=11)
    slope, low, high, p = reference(frame, "y ~ x")
    got = ols_slope(frame.x.to_numpy(), frame.y.to_numpy())
    assert (got.slope, got.ci_low, got.ci_high, got.p_value) == (pytest.approx(slope, **TOL), pytest.approx(low, **TOL),
                                                                 pytest.approx(high, **TOL), pytest.approx(p, **TOL))
    assert got.n == 15


def test_group_intercepts_change_the_answer():
    """Offsets of +-0.1 between groups dwarf the noise: ignoring them (one intercept) widens the CI, so the two
    fits must differ; a slope that silently dropped the group dummies would fail the pooled test above."""
    frame = synthetic()
    pooled = ols_slope(frame.x.to_numpy(), frame.y.to_numpy(), frame.group.to_numpy())
    single = ols_slope(frame.x.to_numpy(), frame.y.to_numpy())
    assert (single.ci_high - single.ci_low) > 2 * (pooled.ci_high - pooled.ci_low)


def test_non_finite_rows_are_dropped_as_statsmodels_drops_missing_rows():
    frame = synthetic(seed=3)
    frame.loc[4, "y"] = np.nan  # e.g. a gain over a KD score of 0
    frame.loc[9, "x"] = np.inf
    finite = frame[np.isfinite(frame.x) & np.isfinite(frame.y)]
    slope, low, high, p = reference(finite, "y ~ x + C(group)")
    got = ols_slope(frame.x.to_numpy(), frame.y.to_numpy(), frame.group.to_numpy())
    assert got.n == 13
    assert (got.slope, got.ci_low, got.ci_high, got.p_value) == (pytest.approx(slope, **TOL), pytest.approx(low, **TOL),
                                                                 pytest.approx(high, **TOL), pytest.approx(p, **TOL))
