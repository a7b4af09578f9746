"""Learning curves from a sweep's results: each method at each step, its difference from its own start,
and the difference between two methods, with CIs over seeds x queries and paired tests.

The primary numbers are absolute differences (Huang et al.'s question is a difference of methods); a
relative gain is only meaningful where the baseline itself has learned something.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optical_core.evaluate.significance import (
    PerQueryStore,
    bootstrap_means,
    per_query_store,
    read_per_query,
    runs_of,
    sign_flip_p,
    sign_flip_ps,
)
from optical_core.settings import PRIMARY_METRIC

CELL = ["family", "layers", "lang"]


def curve_table(results: pd.DataFrame, scores: PerQueryStore | Path | str, metric: str = PRIMARY_METRIC,
                task: str = "headline", n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """One row per (family, size, language, method, step): the mean over seeds x queries with a 95% CI (a fresh
    generator of `seed` per row), and the collapse and alignment measures recorded at that step."""
    scores = per_query_store(scores)
    rows = results[(results.metric == metric) & (results.task == task) & (results.family != "baseline")]
    out = []
    for key, group in rows.groupby(CELL + ["method", "step"], sort=True):
        matrix, seeds = scores.matrix(runs_of(group), metric)
        boot = bootstrap_means(matrix, np.random.default_rng(seed), n_boot)
        out.append(dict(zip(CELL + ["method", "step"], key), task=task, metric=metric, mean=matrix.mean(),
                        ci_low=np.percentile(boot, 2.5), ci_high=np.percentile(boot, 97.5), n_seeds=len(seeds),
                        n_queries=matrix.shape[1], query_cosine=group.query_cosine.mean(),
                        collapsed=bool(group.collapsed.fillna(False).astype(bool).any()),
                        plan_sharpness=group.plan_sharpness.mean(), identical_share=group.identical_share.mean(),
                        params_non_embedding=group.params_non_embedding.iloc[0]))
    return pd.DataFrame(out)


def paired_differences(scores: PerQueryStore | Path | str, pairs: list[tuple[list, list]], metric: str,
                       n_boot: int = 500, seed: int = 0) -> list[dict]:
    """A - B of each pair of systems (their runs: (seed, per-query file), `runs_of`), over the seeds both have:
    mean, a 95% bootstrap CI over seeds x queries (paired draws, a fresh generator of `seed` per pair), and the
    two-sided randomisation p of the seed-averaged per-query differences (all pairs tested together)."""
    scores = per_query_store(scores)
    out, tests = [], []
    for runs_a, runs_b in pairs:
        common = {s for s, _ in runs_a} & {s for s, _ in runs_b}
        a, _ = scores.matrix([run for run in runs_a if run[0] in common], metric)
        b, _ = scores.matrix([run for run in runs_b if run[0] in common], metric)
        boot = bootstrap_means(a - b, np.random.default_rng(seed), n_boot)
        out.append(dict(mean_a=a.mean(), mean_b=b.mean(), diff=(a - b).mean(), ci_low=np.percentile(boot, 2.5),
                        ci_high=np.percentile(boot, 97.5), p_value=np.nan, n_seeds=len(common)))
        tests.append((a.mean(axis=0), b.mean(axis=0)))
    for row, p_value in zip(out, sign_flip_ps(tests, seed=seed)):
        row["p_value"] = p_value
    return out


def _systems(rows: pd.DataFrame, key: list[str]) -> dict[tuple, list[dict]]:
    """The rows of each `key` value (sorted as a groupby sorts them), each row a dict, in table order: one pass
    over the table instead of a filter per group (a publish makes thousands of pairs)."""
    columns = list(dict.fromkeys(key + ["method", "seed", "per_query_file", "step", "params_non_embedding"]
                                 + (["cell_id"] if "cell_id" in rows else [])))
    grouped: dict[tuple, list[dict]] = {}
    for values in zip(*(rows[c].tolist() for c in columns)):
        record = dict(zip(columns, values))
        grouped.setdefault(tuple(record[k] for k in key), []).append(record)
    return dict(sorted(grouped.items()))


def _runs(records: list[dict]) -> list[tuple[int, str]]:
    return [(r["seed"], r["per_query_file"]) for r in records]


def selected_steps(results: pd.DataFrame) -> dict[str, int]:
    """cell_id -> the step its run kept (the row marked `final`); empty for a table without the marks."""
    if "final" not in results or "cell_id" not in results:
        return {}
    kept = results[results["final"].astype(bool)]
    return dict(zip(kept.cell_id, kept.step.astype(int)))


def versus_start_table(results: pd.DataFrame, scores: PerQueryStore | Path | str, metric: str = PRIMARY_METRIC,
                       task: str = "headline") -> pd.DataFrame:
    """Each trained method at the step its run kept (its selected step: the last one, unless the run stopped on
    its dev score) minus its own step 0 (the linear-map start), paired. Where a task is scored at the selected
    step only (siblings), the start is the size's `untrained` cell: the same model as every seed's step 0 (the
    head is fitted in closed form; evaluation has no dropout). `final_step` is the latest selected step."""
    scored = results[(results.metric == metric) & (results.task == task) & (results.family != "baseline")]
    untrained = _systems(scored[scored.method == "untrained"], CELL)
    selected = selected_steps(results)
    keys, pairs = [], []
    for key, records in _systems(scored[scored.method != "untrained"], CELL + ["method"]).items():
        latest = max(r["step"] for r in records)
        last = [r for r in records if r["step"] == selected.get(r.get("cell_id"), latest)]
        if not last:
            continue
        final_step = max(r["step"] for r in last)
        start = _runs([r for r in records if r["step"] == 0])
        if not start:
            if key[:3] not in untrained:
                continue
            start = [(s, untrained[key[:3]][0]["per_query_file"]) for s in sorted(r["seed"] for r in last)]
        keys.append(dict(zip(CELL + ["method"], key), task=task, metric=metric, final_step=int(final_step)))
        pairs.append((_runs(last), start))
    names = {"mean_a": "mean_final", "mean_b": "mean_start"}
    return pd.DataFrame([dict(k, **{names.get(name, name): v for name, v in d.items()})
                         for k, d in zip(keys, paired_differences(scores, pairs, metric))])


def method_difference_table(results: pd.DataFrame, scores: PerQueryStore | Path | str, a: str, b: str = "kd",
                            metric: str = PRIMARY_METRIC, task: str = "headline") -> pd.DataFrame:
    """Method `a` minus method `b` at every step both were evaluated on (same seeds, batches, queries)."""
    rows = results[(results.metric == metric) & (results.task == task) & results.method.isin([a, b])]
    keys, pairs = [], []
    for key, records in _systems(rows, CELL + ["step"]).items():
        runs_a, runs_b = [r for r in records if r["method"] == a], [r for r in records if r["method"] == b]
        if not runs_a or not runs_b:
            continue
        keys.append(dict(zip(CELL + ["step"], key), a=a, b=b, task=task, metric=metric,
                         params_non_embedding=records[0]["params_non_embedding"]))
        pairs.append((_runs(runs_a), _runs(runs_b)))
    return pd.DataFrame([dict(k, **d) for k, d in zip(keys, paired_differences(scores, pairs, metric))])


def trained_methods(results: pd.DataFrame) -> list[str]:
    """The trained objectives of a results table (kd, ot, variants): neither the start nor a baseline."""
    return sorted(set(results[results.family != "baseline"].method) - {"untrained"})


@dataclass(frozen=True)
class CurveTables:
    """One task's learning curves, each objective against its start, and each objective minus `compare_with` at
    every step: computed once, read by the verdict (regime, size effect along training) and by the report."""

    task: str
    compare_with: str
    curves: pd.DataFrame
    starts: pd.DataFrame
    differences: pd.DataFrame


def curve_tables(results: pd.DataFrame, scores: PerQueryStore | Path | str, metric: str = PRIMARY_METRIC,
                 task: str = "headline", compare_with: str = "kd") -> CurveTables:
    """The three tables of a task, the per-query files read once for all of them."""
    scores = per_query_store(scores)
    differences = [method_difference_table(results, scores, m, compare_with, metric, task)
                   for m in trained_methods(results) if m != compare_with]
    return CurveTables(task, compare_with, curve_table(results, scores, metric, task),
                       versus_start_table(results, scores, metric, task),
                       pd.concat([d for d in differences if len(d)] or [pd.DataFrame()], ignore_index=True))


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


def compare_sweeps(dir_a: Path | str, dir_b: Path | str, metric: str = PRIMARY_METRIC,
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
        qa = read_per_query(dir_a / r.per_query_file_a)[metric]
        qb = read_per_query(dir_b / r.per_query_file_b)[metric]
        rows.append(dict(cell_id=r.cell_id, step=r.step, task=task, metric=metric, a=r.value_a, b=r.value_b,
                         diff=r.value_a - r.value_b, p_value=sign_flip_p(qa, qb),
                         spearman=stats.spearmanr(qa, qb).statistic if np.std(qa) and np.std(qb) else np.nan))
    return pd.DataFrame(rows)
