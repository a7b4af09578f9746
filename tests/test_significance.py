"""The paired statistics (evaluate/significance.py) against the implementations they replace: scipy's paired
permutation test for the sign-flip p-value, and the per-draw loop the analysis and the curves used for the
seed x query bootstrap. Equal floats, not close ones: the published numbers depend on them."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from optical_core.evaluate.significance import (
    PerQueryStore,
    bootstrap_indices,
    bootstrap_means,
    flipped_means,
    paired_comparison,
    per_query_store,
    read_per_query,
    resampled_means,
    runs_of,
    sign_flip_p,
    sign_flips,
)

from .conftest import PROJECT


def scipy_p(a, b, n_resamples=5000, seed=0) -> float:
    """The p-value the analysis published before this module: scipy's test, one resample at a time."""
    if np.all(np.subtract(a, b) == 0) or len(a) == 1:
        return 1.0
    return float(stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                        n_resamples=n_resamples, alternative="two-sided",
                                        random_state=np.random.default_rng(seed)).pvalue)


def loop_means(matrix, seeds_idx, query_idx):
    """The per-draw loop of the analysis and the curves before they were merged."""
    per_seed = np.stack([matrix[:, q].mean(axis=1) for q in query_idx])
    return np.take_along_axis(per_seed, seeds_idx, axis=1).mean(axis=1)


def retrieval_pairs(rng, n):
    """Two systems' reciprocal ranks on n queries: many ties (0 and equal ranks), as in the study."""
    a = (1 / rng.integers(1, 11, n)) * (rng.random(n) < 0.7)
    b = a.copy()
    changed = rng.random(n) < rng.choice([0.05, 0.3, 0.9])
    b[changed] = 1 / rng.integers(1, 11, changed.sum())
    return a, b


@pytest.mark.parametrize("n", [2, 5, 9, 10, 40, 123, 500])
def test_sign_flip_p_equals_scipys_permutation_test(n):
    """Exact up to 2^n <= resamples (n = 9 of 999), random flips above; 999 resamples keep scipy's loop short."""
    rng = np.random.default_rng(n)
    for trial in range(4):
        a, b = retrieval_pairs(rng, n)
        for seed in (0, 7):
            assert sign_flip_p(a, b, 999, seed) == scipy_p(a, b, 999, seed), (n, trial, seed)
    x, y = rng.normal(size=n), rng.normal(size=n)  # no ties at all, and the analysis' 5000 resamples
    assert sign_flip_p(x, y) == scipy_p(x, y)


def test_sign_flip_p_by_hand():
    """Exact below 2^n <= resamples: n positive differences leave only the identity flip as extreme (p = 2/2^n)."""
    assert sign_flip_p(np.full(6, 0.3), np.full(6, 0.1)) == 2 / 64
    assert sign_flip_p([1.0, 0.0, 1.0], [0.0, 0.0, 0.0]) == 2 * 2 / 8  # a zero difference flips to itself
    assert sign_flip_p([0.2, 0.4], [0.2, 0.4]) == 1.0 and sign_flip_p([1.0], [0.0]) == 1.0
    big = sign_flip_p(np.ones(20), np.zeros(20))  # Monte Carlo: (0 + 1) extreme of 5000, + 1, two-sided
    assert big == 2 * 1 / 5001
    with pytest.raises(ValueError, match="equal-length"):
        sign_flip_p([1.0, 2.0], [1.0])


def test_the_flips_are_scipys_draws_and_are_drawn_once():
    flips, as_float = sign_flips(30, 100, 4)
    rng = np.random.default_rng(4)
    swapped = rng.permuted(np.tile(np.arange(2), (100, 30, 1)), axis=-1)[..., 0] == 1
    assert np.array_equal(flips, swapped) and np.array_equal(as_float, swapped.astype(float))
    odd, _ = sign_flips(3, 5, 4)  # an odd count of 32-bit draws: the last 64-bit output is half used
    assert np.array_equal(odd, np.random.default_rng(4).permuted(np.tile(np.arange(2), (5, 3, 1)), axis=-1)[..., 0])
    assert sign_flips(30, 100, 4)[0] is flips  # the same flips for every test of 30 queries
    assert sign_flips(3, None, 0)[0].tolist() == [[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    with pytest.raises(ValueError):
        flips[0, 0] = True  # shared: read-only


def test_paired_comparison_reports_the_sign_flip_p():
    rng = np.random.default_rng(11)
    a, b = retrieval_pairs(rng, 123)
    result = paired_comparison(a, b)
    assert result.p_value == scipy_p(a, b) and result.difference == pytest.approx(a.mean() - b.mean())
    assert result.n == 123 and result.ci_low <= result.difference <= result.ci_high


@pytest.mark.parametrize("seeds", [1, 2, 3])
@pytest.mark.parametrize("queries", [1, 7, 8, 9, 123, 500])
def test_resampled_means_equal_the_per_draw_loop(seeds, queries):
    rng = np.random.default_rng(seeds * 1000 + queries)
    matrix = rng.random((seeds, queries)) * rng.choice([1.0, 1e-3])
    s_idx, q_idx = bootstrap_indices(seeds, queries, 300, rng)
    assert np.array_equal(resampled_means(matrix, s_idx, q_idx), loop_means(matrix, s_idx, q_idx))


def test_bootstrap_draws_seeds_then_queries_from_one_generator():
    matrix = np.arange(10.0).reshape(2, 5)
    s_idx, q_idx = bootstrap_indices(2, 5, 50, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    assert np.array_equal(s_idx, rng.integers(0, 2, (50, 2))) and np.array_equal(q_idx, rng.integers(0, 5, (50, 5)))
    assert np.array_equal(bootstrap_means(matrix, np.random.default_rng(3), 50), loop_means(matrix, s_idx, q_idx))


def test_the_bootstrap_resamples_seeds():
    """Seed 0 scores 0.1 and seed 1 0.3 on every query: only resampling seeds moves the mean, to 0.1 (both
    draws seed 0), 0.2 or 0.3, each end a quarter of the draws. A bootstrap over queries alone gives 0.2 always."""
    matrix = np.array([[0.1] * 4, [0.3] * 4])
    boot = bootstrap_means(matrix, np.random.default_rng(0), 2000)
    assert set(np.round(boot, 12)) == {0.1, 0.2, 0.3}
    assert np.mean(np.isclose(boot, 0.1)) == pytest.approx(0.25, abs=0.03)
    assert (np.percentile(boot, 2.5), np.percentile(boot, 97.5)) == (pytest.approx(0.1), pytest.approx(0.3))


def test_the_bootstrap_resamples_queries_within_a_seed():
    """Queries (0, 0, 3) in one seed: the resampled mean is k/3 x 3 for k copies of the 3, from 0 to 3."""
    boot = bootstrap_means(np.array([[0.0, 0.0, 3.0]]), np.random.default_rng(1), 4000)
    assert set(np.round(boot, 12)) == {0.0, 1.0, 2.0, 3.0}
    assert (np.percentile(boot, 2.5), np.percentile(boot, 97.5)) == (0.0, 3.0)


def test_per_query_files_read_as_pandas_reads_them():
    files = sorted((PROJECT / "results" / "pilot" / "cells").glob("*-me5-L2-ot-s1/per_query/step*.csv"))
    assert files
    for file in files[:6]:
        expected = pd.read_csv(file).sort_values("qid")
        got = read_per_query(file)
        assert list(got) == list(expected.columns) and got["qid"].tolist() == expected.qid.tolist()
        for column in expected.columns[1:]:
            assert np.array_equal(got[column], expected[column].to_numpy()), (file, column)


def test_a_store_reads_each_file_once_and_orders_seeds_and_queries(tmp_path, monkeypatch):
    import optical_core.evaluate.significance as significance

    for seed, scores in ((1, {"q2": 0.5, "q10": 0.25, "q1": 1.0}), (0, {"q1": 0.0, "q2": 1.0, "q10": 0.5})):
        pd.DataFrame({"qid": list(scores), "mrr@10": list(scores.values())}).to_csv(tmp_path / f"s{seed}.csv",
                                                                                    index=False)
    (tmp_path / "s1.csv").write_text((tmp_path / "s1.csv").read_text() + "\n")  # a blank last line, as pandas skips
    reads = []

    def counted(path, *metrics):
        reads.append(path)
        return read_per_query(path, *metrics)

    monkeypatch.setattr(significance, "read_per_query", counted)
    store = PerQueryStore(tmp_path)
    rows = pd.DataFrame({"seed": [1, 0], "per_query_file": ["s1.csv", "s0.csv"]})
    matrix, seeds = store.matrix(runs_of(rows), "mrr@10")
    assert seeds == [0, 1] and matrix.tolist() == [[0.0, 0.5, 1.0], [1.0, 0.25, 0.5]]  # q1, q10, q2 (as strings)
    store.matrix(runs_of(rows), "mrr@10")
    assert len(reads) == 2 and per_query_store(store) is store and per_query_store(tmp_path) is not store
    pd.DataFrame({"qid": ["b", "a"], "mrr@10": [1.0, 0.5], "ndcg@10": [0.1, 0.2]}).to_csv(tmp_path / "two.csv",
                                                                                         index=False)
    assert list(PerQueryStore(tmp_path).scores("two.csv")) == ["qid", "mrr@10", "ndcg@10"]
    kept = PerQueryStore(tmp_path, ("ndcg@10",)).scores("two.csv")  # only the columns asked for are parsed
    assert list(kept) == ["qid", "ndcg@10"] and kept["ndcg@10"].tolist() == [0.2, 0.1]


def test_sign_flip_ps_defaults_to_seed_0_as_sign_flip_p():
    from optical_core.evaluate.significance import sign_flip_p, sign_flip_ps

    rng = np.random.default_rng(7)
    a, b = rng.random(20), rng.random(20)  # 2^20 flips > 5000: random flips, so the seed matters
    assert sign_flip_ps([(a, b)]) == [sign_flip_p(a, b, 5000, 0)] != [sign_flip_p(a, b, 5000, 1)]


def test_a_per_query_file_with_an_empty_score_reads_it_as_nan_and_hands_out_read_only_arrays(tmp_path):
    """An empty cell (a metric undefined for a query) is NaN, as pandas reads it; the arrays are shared by every
    table a publish computes from them, so none can be written by accident."""
    file = tmp_path / "per_query.csv"
    file.write_text("qid,mrr@10,ndcg@10\nq2,0.5,\nq1,1.0,0.25\n")
    got = read_per_query(file)
    assert got["qid"].tolist() == ["q1", "q2"] and got["mrr@10"].tolist() == [1.0, 0.5]
    assert got["ndcg@10"][0] == 0.25 and np.isnan(got["ndcg@10"][1])
    with pytest.raises(ValueError, match="read-only"):
        got["mrr@10"][0] = 0.0


def test_flipped_means_are_numpys_row_means_bit_for_bit_near_the_band_and_close_elsewhere():
    """The fast formula (sum - 2 x flipped sum) / n is within rounding of each row's mean; a row within rounding
    of [centre - width, centre + width] is numpy's own row mean, bit for bit (what decides its side)."""
    rng = np.random.default_rng(7)
    diff = rng.normal(size=23) / 7
    flips, as_float = sign_flips(23, 200, 0)
    exact = np.where(flips, -diff, diff).mean(axis=1)
    far = flipped_means(diff, flips, as_float @ diff, centre=10.0, width=0.0)  # no row near: the formula
    np.testing.assert_allclose(far, exact, rtol=0, atol=1e-14)
    assert not np.array_equal(far, exact)  # it does round differently on some rows
    for k in np.flatnonzero(far != exact)[:5]:  # a band's end on such a row: that row exactly as numpy sums it
        got = flipped_means(diff, flips, as_float @ diff, centre=float(exact[k]), width=0.0)
        assert got[k] == exact[k]
