"""Learning curves from a sweep's results: each method at each step, its difference from its own start,
and the difference between two methods, with CIs over seeds x queries and paired tests.

The primary numbers are absolute differences (Huang et al.'s question is a difference of methods); a
relative gain is only meaningful where the baseline itself has learned something.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optical_core.evaluate.significance import paired_comparison

CELL = ["family", "layers", "lang"]


def _matrix(out_dir: Path, rows: pd.DataFrame, metric: str) -> tuple[np.ndarray, list[int]]:
    """[seeds, queries] of a metric from per-query files, rows ordered by seed, queries by qid."""
    rows = rows.sort_values("seed")
    frames = [pd.read_csv(out_dir / f).sort_values("qid")[metric].to_numpy() for f in rows["per_query_file"]]
    return np.vstack(frames), rows["seed"].tolist()


def _bootstrap_means(matrix: np.ndarray, rng, n_boot: int) -> np.ndarray:
    """Means over a resample of seeds and, independently, of queries (the same draws for paired matrices
    come from the same rng state: call with a fresh rng of the same seed)."""
    n_seeds, n_queries = matrix.shape
    seeds = rng.integers(0, n_seeds, (n_boot, n_seeds))
    queries = rng.integers(0, n_queries, (n_boot, n_queries))
    per_seed = np.stack([matrix[:, q].mean(axis=1) for q in queries])  # [boot, seeds]
    return np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)


def curve_table(results: pd.DataFrame, out_dir: Path | str, metric: str = "mrr@10", task: str = "headline",
                n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """One row per (family, size, language, method, step): the mean over seeds x queries with a 95% CI, and
    the collapse and alignment measures recorded at that step."""
    out_dir = Path(out_dir)
    rows = results[(results.metric == metric) & (results.task == task) & (results.family != "baseline")]
    out = []
    for key, group in rows.groupby(CELL + ["method", "step"], sort=True):
        matrix, seeds = _matrix(out_dir, group, metric)
        boot = _bootstrap_means(matrix, np.random.default_rng(seed), n_boot)
        out.append(dict(zip(CELL + ["method", "step"], key), task=task, metric=metric, mean=matrix.mean(),
                        ci_low=np.percentile(boot, 2.5), ci_high=np.percentile(boot, 97.5), n_seeds=len(seeds),
                        n_queries=matrix.shape[1], query_cosine=group.query_cosine.mean(),
                        collapsed=bool(group.collapsed.fillna(False).astype(bool).any()),
                        plan_sharpness=group.plan_sharpness.mean(), identical_share=group.identical_share.mean(),
                        params_non_embedding=group.params_non_embedding.iloc[0]))
    return pd.DataFrame(out)


def paired_difference(out_dir: Path, rows_a: pd.DataFrame, rows_b: pd.DataFrame, metric: str, n_boot: int = 500,
                      seed: int = 0) -> dict:
    """A - B over the seeds both have: mean, a 95% bootstrap CI over seeds x queries (paired draws), and the
    two-sided randomisation p of the seed-averaged per-query differences."""
    common = sorted(set(rows_a.seed) & set(rows_b.seed))
    a, _ = _matrix(out_dir, rows_a[rows_a.seed.isin(common)], metric)
    b, _ = _matrix(out_dir, rows_b[rows_b.seed.isin(common)], metric)
    boot = _bootstrap_means(a - b, np.random.default_rng(seed), n_boot)
    test = paired_comparison(a.mean(axis=0), b.mean(axis=0), seed=seed)
    return dict(mean_a=a.mean(), mean_b=b.mean(), diff=(a - b).mean(), ci_low=np.percentile(boot, 2.5),
                ci_high=np.percentile(boot, 97.5), p_value=test.p_value, n_seeds=len(common))


def _final_step(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows.step == rows.step.max()]


def versus_start_table(results: pd.DataFrame, out_dir: Path | str, metric: str = "mrr@10",
                       task: str = "headline") -> pd.DataFrame:
    """Each trained method at its last step minus its own step 0 (the linear-map start), paired. Where a
    task is scored at the last step only (siblings), the start is the size's `untrained` cell: the same
    model as every seed's step 0 (the head is fitted in closed form; evaluation has no dropout)."""
    out_dir = Path(out_dir)
    scored = results[(results.metric == metric) & (results.task == task) & (results.family != "baseline")]
    rows = scored[scored.method != "untrained"]
    out = []
    for key, group in rows.groupby(CELL + ["method"], sort=True):
        last = _final_step(group)
        start = group[group.step == 0]
        if start.empty:
            family, layers, lang = key[:3]
            untrained = scored[(scored.method == "untrained") & (scored.family == family)
                               & (scored.layers == layers) & (scored.lang == lang)]
            if untrained.empty:
                continue
            start = pd.concat([untrained.iloc[:1].assign(seed=s) for s in sorted(last.seed)])
        out.append(dict(zip(CELL + ["method"], key), task=task, metric=metric, final_step=int(last.step.iloc[0]),
                        **{k.replace("_a", "_final").replace("_b", "_start") if k in ("mean_a", "mean_b") else k: v
                           for k, v in paired_difference(out_dir, last, start, metric).items()}))
    return pd.DataFrame(out)


def method_difference_table(results: pd.DataFrame, out_dir: Path | str, a: str, b: str = "kd",
                            metric: str = "mrr@10", task: str = "headline") -> pd.DataFrame:
    """Method `a` minus method `b` at every step both were evaluated on (same seeds, batches, queries)."""
    out_dir = Path(out_dir)
    rows = results[(results.metric == metric) & (results.task == task) & results.method.isin([a, b])]
    out = []
    for key, group in rows.groupby(CELL + ["step"], sort=True):
        rows_a, rows_b = group[group.method == a], group[group.method == b]
        if rows_a.empty or rows_b.empty:
            continue
        out.append(dict(zip(CELL + ["step"], key), a=a, b=b, task=task, metric=metric,
                        params_non_embedding=group.params_non_embedding.iloc[0],
                        **paired_difference(out_dir, rows_a, rows_b, metric)))
    return pd.DataFrame(out)


def collapse_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Per family, size and trained objective: how many cells (languages x seeds) collapsed (mean pairwise
    query cosine > 0.9) at some evaluated step, and how many were still collapsed at their last step."""
    trained = results[(results.family != "baseline") & (results.method != "untrained")]
    if trained.empty or "collapsed" not in trained:
        return pd.DataFrame(columns=["family", "layers", "method", "cells", "collapsed_cells", "collapsed_at_end"])
    flags = trained.assign(collapsed=trained.collapsed.fillna(False).astype(bool))
    per_cell = flags.groupby(["family", "layers", "method", "cell_id"]).apply(
        lambda g: pd.Series({"ever": g.collapsed.any(), "at_end": g[g.step == g.step.max()].collapsed.any()}),
        include_groups=False).reset_index()
    return (per_cell.groupby(["family", "layers", "method"], as_index=False)
            .agg(cells=("cell_id", "nunique"), collapsed_cells=("ever", "sum"), collapsed_at_end=("at_end", "sum"))
            .astype({"collapsed_cells": int, "collapsed_at_end": int}))


def compare_sweeps(dir_a: Path | str, dir_b: Path | str, metric: str = "mrr@10",
                   task: str = "headline") -> pd.DataFrame:
    """The same cells run twice (e.g. bf16 vs float32): per cell and step, both values, their paired
    difference over queries with its p-value, and the rank correlation of the two per-query score lists."""
    from scipy import stats

    from optical_core.study.results import collect_results

    dir_a, dir_b = Path(dir_a), Path(dir_b)
    key = ["cell_id", "step"]
    a = collect_results(dir_a)
    b = collect_results(dir_b)
    a = a[(a.metric == metric) & (a.task == task)]
    b = b[(b.metric == metric) & (b.task == task)]
    rows = []
    for r in a.merge(b, on=key, suffixes=("_a", "_b")).itertuples():
        qa = pd.read_csv(dir_a / r.per_query_file_a).sort_values("qid")[metric].to_numpy()
        qb = pd.read_csv(dir_b / r.per_query_file_b).sort_values("qid")[metric].to_numpy()
        test = paired_comparison(qa, qb)
        rows.append(dict(cell_id=r.cell_id, step=r.step, task=task, metric=metric, a=r.value_a, b=r.value_b,
                         diff=r.value_a - r.value_b, p_value=test.p_value,
                         spearman=stats.spearmanr(qa, qb).statistic if np.std(qa) and np.std(qb) else np.nan))
    return pd.DataFrame(rows)
