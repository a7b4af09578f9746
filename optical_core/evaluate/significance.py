"""Paired statistics over queries and seeds: the one implementation the analysis, the curves, the report and
the pages share.

- `PerQueryStore.matrix`: a metric's [seeds x queries] scores from per-query CSV files (queries by id); one
  store per analysis reads each file once.
- `bootstrap_means`: the seed x query bootstrap. Each draw resamples seeds and, independently, queries, and
  takes the mean over resampled seeds of the mean over resampled queries. Paired matrices get the same draws
  (`bootstrap_indices` once, `resampled_means` per matrix).
- `sign_flip_p`: the two-sided paired randomisation test of mean(a - b) (each query's difference keeps or flips
  its sign), the same p-value as `scipy.stats.permutation_test(permutation_type="samples")` with the same
  generator, at a fraction of its cost.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np


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
    from scipy import stats  # a second to import: a reader of published tables never needs it

    ci = stats.bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=level,
                         method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
    return float(values.mean()), float(ci.low), float(ci.high)


def paired_comparison(a, b, n_resamples: int = 5000, seed: int = 0) -> PairedComparison:
    """Bootstrap 95% CI of mean(a - b) and a two-sided paired randomisation (sign-flip) test p-value."""
    a, b = _paired(a, b)
    mean, low, high = mean_ci(a - b, n_resamples, seed)
    return PairedComparison(float(a.mean()), float(b.mean()), mean, low, high, sign_flip_p(a, b, n_resamples, seed),
                            len(a))


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired comparison needs two equal-length, non-empty score lists ({a.shape} vs {b.shape})")
    return a, b


def sign_flip_p(a, b, n_resamples: int = 5000, seed: int = 0) -> float:
    """Two-sided p-value of mean(a - b) under the null that each query's pair is exchangeable: the share of sign
    flips of the differences whose mean is as extreme (Good, Permutation Tests, 2005, ch. 3). Every one of the
    2^n flips when 2^n <= n_resamples (exact), else n_resamples random flips with the add-one correction
    (Phipson & Smyth, 2010). Values within 100 float64 epsilons (relative) of the observed mean count as equal
    to it. The flips, the correction and the tolerance are scipy's `permutation_test(permutation_type=
    "samples")` with `rng=np.random.default_rng(seed)`, so the p-values equal its."""
    return sign_flip_ps([(a, b)], n_resamples, seed)[0]


def sign_flip_ps(pairs: list[tuple], n_resamples: int = 5000, seed: int = 0) -> list[float]:
    """`sign_flip_p` of each (a, b) pair; the pairs of n queries share one matrix product with the flips."""
    p_values, by_size = [1.0] * len(pairs), {}
    for i, (a, b) in enumerate(pairs):
        a, b = _paired(a, b)
        diff = a - b  # b - a is -(a - b) exactly, so a flip is a sign change
        if not (np.all(diff == 0) or len(diff) == 1):  # one pair: both signs are as extreme, p = 1 exactly
            by_size.setdefault(len(diff), []).append((i, diff))
    for n, tests in by_size.items():
        exact = 2**n <= n_resamples
        flips, as_float = sign_flips(n, None if exact else n_resamples, seed)
        flipped_sums = as_float @ np.column_stack([diff for _, diff in tests])  # [flips, tests]
        adjustment = 0 if exact else 1
        total = len(flips) + adjustment
        for (i, diff), flipped in zip(tests, flipped_sums.T):
            observed = diff.mean()
            gamma = abs(np.finfo(float).eps * 100 * observed)
            null = flipped_means(diff, flips, flipped, observed, gamma)
            below = (np.count_nonzero(null <= observed + gamma) + adjustment) / total
            above = (np.count_nonzero(null >= observed - gamma) + adjustment) / total
            p_values[i] = float(min(max(min(below, above) * 2, 0.0), 1.0))
    return p_values


def flipped_means(diff: np.ndarray, flips: np.ndarray, flipped_sums: np.ndarray, centre: float,
                  width: float) -> np.ndarray:
    """Per row of `flips`, the mean of `diff` with the flipped entries negated, bit for bit as numpy sums each
    row (the sums a permutation test compares), from `flipped_sums` (the flipped entries' sum per row, one
    matrix product): (sum - 2 x flipped sum) / n rounds differently from a row's pairwise sum, by less than
    n eps sum|diff|, so only rows that close to [centre - width, centre + width] can fall on another side of
    its ends: those rows are summed as numpy sums them."""
    n = len(diff)
    null = (diff.sum() - 2 * flipped_sums) / n
    near = np.abs(null - centre) <= width + n * np.finfo(float).eps * np.abs(diff).sum()
    null[near] = np.where(flips[near], -diff, diff).mean(axis=1)
    return null


@functools.lru_cache(maxsize=8)
def sign_flips(n: int, n_resamples: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[flips, n] booleans (True: the query's pair is swapped) and the same as 0.0/1.0: all 2^n flips when
    `n_resamples` is None, else the random flips of scipy's paired permutation test with `default_rng(seed)`
    (`Generator.permuted` of each query's two indices), drawn without its per-pair loop: shuffling two items
    draws one 32-bit number and swaps them when its lowest bit is 0, and PCG64 hands out each 64-bit output as
    two 32-bit numbers, low half first (checked against scipy in tests/test_significance.py). The same for
    every test of n queries: kept for the next one."""
    if n_resamples is None:
        flips = np.array(list(product((False, True), repeat=n)))
    else:
        total = n_resamples * n
        raw = np.random.default_rng(seed).bit_generator.random_raw((total + 1) // 2)
        flips = ((raw.astype("<u8").view("<u4")[:total] & 1) == 0).reshape(n_resamples, n)
    as_float = flips.astype(float)
    flips.flags.writeable = as_float.flags.writeable = False
    return flips, as_float


# --- the seed x query bootstrap ------------------------------------------------------------------------------

def bootstrap_indices(n_seeds: int, n_queries: int, n_boot: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Resampled seed rows [n_boot, n_seeds], then resampled query columns [n_boot, n_queries] (in this order:
    the published numbers depend on it)."""
    return rng.integers(0, n_seeds, (n_boot, n_seeds)), rng.integers(0, n_queries, (n_boot, n_queries))


def resampled_means(matrix: np.ndarray, seeds_idx: np.ndarray, query_idx: np.ndarray) -> np.ndarray:
    """Per draw: the mean over resampled seeds of each seed's mean over the resampled queries. A seed's mean
    adds its resampled queries left to right (with one seed, pairwise: numpy's order for `matrix[:, q].mean(1)`,
    in which the published numbers were computed)."""
    matrix = np.asarray(matrix, dtype=float)
    n_seeds, n_queries = matrix.shape
    if n_seeds == 1:
        per_seed = np.take(matrix[0], query_idx).mean(axis=1)[:, None]  # [boot, 1]
    else:  # [queries, boot, seeds], summed over its first axis: one query after the other
        per_seed = np.add.reduce(np.take(np.ascontiguousarray(matrix.T), query_idx.T, axis=0), axis=0) / n_queries
    return np.take_along_axis(per_seed, seeds_idx, axis=1).mean(axis=1)


def bootstrap_means(matrix: np.ndarray, rng, n_boot: int) -> np.ndarray:
    """`n_boot` seed x query bootstrap means of a [seeds, queries] matrix, drawing from `rng`."""
    return resampled_means(matrix, *bootstrap_indices(*np.shape(matrix), n_boot, rng))


# --- per-query files -----------------------------------------------------------------------------------------

class PerQueryStore:
    """The per-query CSV files of one study directory (a `qid` column, one column per metric), each read once:
    a publish reads every file for many tables. Rows sorted by qid; values read-only (shared by every caller).
    `metrics`: the only columns kept (None: all)."""

    def __init__(self, root: Path | str, metrics: tuple[str, ...] | None = None):
        self.root, self.metrics = Path(root), metrics
        self._files: dict[str, dict[str, np.ndarray]] = {}

    def scores(self, file: Path | str) -> dict[str, np.ndarray]:
        """Column -> values of the file at `file` (relative to the root), rows sorted by qid."""
        key = str(file)
        if key not in self._files:
            self._files[key] = read_per_query(self.root / file, self.metrics)
        return self._files[key]

    def matrix(self, runs, metric: str) -> tuple[np.ndarray, list[int]]:
        """[seeds, queries] of a metric from the runs of one system ((seed, per-query file) pairs, `runs_of`),
        rows ordered by seed, queries by qid."""
        runs = sorted(runs, key=lambda run: run[0])
        return np.vstack([self.scores(file)[metric] for _, file in runs]), [seed for seed, _ in runs]


def runs_of(rows) -> list[tuple[int, str]]:
    """(seed, per-query file) of each row of a results table, in its order."""
    return list(zip(rows["seed"].tolist(), rows["per_query_file"].tolist()))


def per_query_store(source: PerQueryStore | Path | str) -> PerQueryStore:
    """`source` itself when it is a store (shared by the tables of one analysis), else a store of that folder."""
    return source if isinstance(source, PerQueryStore) else PerQueryStore(source)


def read_per_query(path: Path | str, metrics: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Column -> values of one per-query CSV (the `metrics` columns only, when given), rows sorted by qid (query
    ids are unique within a file). Values are parsed as Python parses floats, as pandas' default parser does
    for these files."""
    with open(path, newline="", encoding="utf-8") as handle:
        header, *rows = [row for row in csv.reader(handle) if row]  # pandas skips blank lines too
    rows.sort(key=lambda row: row[0])
    columns = {"qid": np.array([row[0] for row in rows], dtype=object)}
    for j, name in enumerate(header[1:], start=1):
        if metrics is None or name in metrics:
            values = np.array([float(row[j]) if row[j] else math.nan for row in rows])
            values.flags.writeable = False
            columns[name] = values
    return columns
