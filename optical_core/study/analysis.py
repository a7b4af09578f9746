"""From the sweep's per-query scores to the answer: gains with CIs, the slope on size, a verdict.

Per (family, size, language), over seeds: the absolute difference OT - KD of a metric's mean and the
relative gain (OT - KD) / KD. Their 95% CIs are a paired bootstrap that resamples seeds and queries together
(OT and KD share seeds, batches and queries). The scaling effect is an OLS slope on log10(non-embedding
params): pooled over languages (with a per-language intercept) and per language, with a t-based 95% CI and
p-value; of the absolute difference everywhere, of the relative gain only where KD beats its start. The
regime (did the students learn: each objective against its start, and the baselines) comes before any trend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optical_core.evaluate.significance import (
    PerQueryStore,
    bootstrap_indices,
    per_query_store,
    resampled_means,
    runs_of,
    sign_flip_p,
)
from optical_core.settings import PRIMARY_METRIC

GROUP = ["family", "layers", "lang"]
GAIN_COLUMNS = GROUP + ["untrained_mean", "kd_above_floor", "ot_above_floor", "metric", "n_seeds", "n_queries",
                        "params_total", "params_non_embedding", "kd_mean", "ot_mean", "gain", "gain_ci_low",
                        "gain_ci_high", "abs_diff", "abs_ci_low", "abs_ci_high"]


def accuracy_table(results: pd.DataFrame, scores: PerQueryStore | Path | str, metric: str = PRIMARY_METRIC,
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean metric per (family, size, language, method) over seeds, with a seed x query bootstrap CI (one
    generator for the whole table: each group's draws follow the previous group's). `scores`: the study's
    per-query files (a folder or a shared store)."""
    scores, rng = per_query_store(scores), np.random.default_rng(seed)
    trained = results[(results.metric == metric) & (results.family != "baseline")]
    rows = []
    for key, group in trained.groupby(GROUP + ["method"], sort=True):
        matrix, seeds = scores.matrix(runs_of(group), metric)
        boot = resampled_means(matrix, *bootstrap_indices(*matrix.shape, n_boot, rng))
        rows.append(dict(zip(GROUP + ["method"], key), metric=metric, mean=matrix.mean(),
                         ci_low=np.percentile(boot, 2.5), ci_high=np.percentile(boot, 97.5), n_seeds=len(seeds),
                         n_queries=matrix.shape[1], params_total=int(group.params_total.iloc[0]),
                         params_non_embedding=int(group.params_non_embedding.iloc[0])))
    return pd.DataFrame(rows)


def gain_table(results: pd.DataFrame, scores: PerQueryStore | Path | str, metric: str = PRIMARY_METRIC,
               n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Relative gain (OT - KD) / KD and absolute difference per (family, size, language), with 95% CIs."""
    scores, rng = per_query_store(scores), np.random.default_rng(seed)
    sub = results[(results.metric == metric) & results.method.isin(["kd", "ot"])]
    rows = []
    for key, group in sub.groupby(GROUP, sort=True):
        kd_rows, ot_rows = group[group.method == "kd"], group[group.method == "ot"]
        common = sorted(set(kd_rows.seed) & set(ot_rows.seed))
        if not common:
            continue
        kd, _ = scores.matrix(runs_of(kd_rows[kd_rows.seed.isin(common)]), metric)
        ot, _ = scores.matrix(runs_of(ot_rows[ot_rows.seed.isin(common)]), metric)
        s_idx, q_idx = bootstrap_indices(*kd.shape, n_boot, rng)  # the same draws for both: paired
        kd_boot, ot_boot = resampled_means(kd, s_idx, q_idx), resampled_means(ot, s_idx, q_idx)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain_boot = (ot_boot - kd_boot) / kd_boot
        kd_mean, ot_mean = kd.mean(), ot.mean()
        floor = _above_floor(scores, results, key, metric, {"kd": kd, "ot": ot})
        rows.append(dict(zip(GROUP, key), **floor, metric=metric, n_seeds=len(common), n_queries=kd.shape[1],
                         params_total=int(group.params_total.iloc[0]),
                         params_non_embedding=int(group.params_non_embedding.iloc[0]),
                         kd_mean=kd_mean, ot_mean=ot_mean,
                         gain=(ot_mean - kd_mean) / kd_mean if kd_mean > 0 else np.nan,
                         gain_ci_low=np.nanpercentile(gain_boot, 2.5), gain_ci_high=np.nanpercentile(gain_boot, 97.5),
                         abs_diff=ot_mean - kd_mean, abs_ci_low=np.percentile(ot_boot - kd_boot, 2.5),
                         abs_ci_high=np.percentile(ot_boot - kd_boot, 97.5)))
    return pd.DataFrame(rows, columns=GAIN_COLUMNS)  # the columns even before any OT/KD pair finished


def _above_floor(scores: PerQueryStore, results: pd.DataFrame, key: tuple, metric: str, trained: dict) -> dict:
    """Whether each method's seed-averaged per-query scores beat the untrained student (paired test, p<0.05)."""
    family, layers, lang = key
    floor = results[(results.metric == metric) & (results.method == "untrained") & (results.family == family)
                    & (results.layers == layers) & (results.lang == lang)]
    if floor.empty:
        return {"untrained_mean": np.nan, "kd_above_floor": None, "ot_above_floor": None}
    untrained = scores.scores(floor.per_query_file.iloc[0])[metric]
    out = {"untrained_mean": float(untrained.mean())}
    for method, matrix in trained.items():
        seed_means = matrix.mean(axis=0)  # per query
        out[f"{method}_above_floor"] = bool((seed_means - untrained).mean() > 0
                                            and sign_flip_p(seed_means, untrained) < 0.05)
    return out


@dataclass(frozen=True)
class Slope:
    scope: str  # "pooled" or a language
    y: str
    slope: float  # change in y per 10x non-embedding parameters
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    @property
    def spans_zero(self) -> bool:
        return not (self.ci_low > 0 or self.ci_high < 0)


def ols_slope(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, scope: str = "", y_name: str = "",
              level: float = 0.95) -> Slope:
    """OLS slope of y on x, with one intercept per group when `groups` is given; t-based CI and p."""
    from scipy import stats  # a second to import: a reader of published tables never needs it

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    groups = np.asarray(groups) if groups is not None else None
    levels = np.unique(groups[keep]) if groups is not None else np.array([0])
    intercepts = (groups[keep][:, None] == levels[None, :]).astype(float) if groups is not None \
        else np.ones((len(x), 1))
    design = np.column_stack([x, intercepts])
    dof = len(y) - design.shape[1]
    if dof < 1 or np.ptp(x) == 0:
        return Slope(scope, y_name, float("nan"), float("nan"), float("nan"), float("nan"), len(y))
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    sigma2 = residual @ residual / dof
    se = float(np.sqrt(sigma2 * np.linalg.inv(design.T @ design)[0, 0]))
    t_crit = stats.t.ppf(0.5 + level / 2, dof)
    if se == 0:
        p = 0.0 if coef[0] != 0 else 1.0
    else:
        p = float(2 * stats.t.sf(abs(coef[0] / se), dof))
    return Slope(scope, y_name, float(coef[0]), float(coef[0] - t_crit * se), float(coef[0] + t_crit * se), p, len(y))


def scaling_slopes(gains: pd.DataFrame, y: str) -> list[Slope]:
    """Slope of `y` on log10(non-embedding params): pooled (per-language intercepts), then per language."""
    x = np.log10(gains.params_non_embedding.to_numpy(dtype=float))
    out = [ols_slope(x, gains[y].to_numpy(), gains.lang.to_numpy(), "pooled", y)]
    for lang, g in gains.groupby("lang"):
        out.append(ols_slope(np.log10(g.params_non_embedding.to_numpy(dtype=float)), g[y].to_numpy(), None, lang, y))
    return out


def _slope_clause(s: Slope) -> str:
    return (f"{s.slope:+.3f} per 10x parameters (95% CI {s.ci_low:+.3f} to {s.ci_high:+.3f}, p = {s.p_value:.2g}, "
            f"n = {s.n})")


def where_kd_learned(gains: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The cells where KD beats its start (the only ones where a relative gain over KD means something), and
    how many cells had no start scored (whether KD learned there is unknown, so they are left out too)."""
    if gains.empty or "kd_above_floor" not in gains:
        return gains.iloc[:0], len(gains)
    known = gains.kd_above_floor.notna()
    return gains[known & (gains.kd_above_floor == True)], int((~known).sum())  # noqa: E712


def relative_slopes(gains: pd.DataFrame) -> list[Slope]:
    """Slopes of the relative gain, on the cells where KD beats its start only."""
    learned, _ = where_kd_learned(gains)
    return scaling_slopes(learned, "gain") if len(learned) else []


def verdict(slopes: list[Slope], gains: pd.DataFrame, metric: str, family: str, budget_note: str = "",
            relative: list[Slope] | None = None, along: pd.DataFrame | None = None,
            collapses: pd.DataFrame | None = None) -> str:
    """A paragraph stating the answer the numbers support, and no more.

    `slopes`: the absolute difference OT - KD at the last step on log10(non-embedding params), pooled then per
    language (`scaling_slopes(gains, "abs_diff")`); `relative`: the relative gain's slopes on the cells where KD
    beats its start; `along`: the pooled slope at each evaluated step (`slopes_along_training`); `collapses`:
    collapse counts per objective and size (`curves.collapse_counts`)."""
    pooled = next(s for s in slopes if s.scope == "pooled")
    sizes = sorted(gains.params_non_embedding.unique())
    langs = sorted(gains.lang.unique())
    by_size = gains.groupby("params_non_embedding").abs_diff.mean()
    plural = {"sizes": "s" if len(sizes) > 1 else "", "langs": "s" if len(langs) > 1 else ""}
    head = (f"Across {len(sizes)} {family} student size{plural['sizes']} ({sizes[0] / 1e6:.1f}M to "
            f"{sizes[-1] / 1e6:.1f}M non-embedding parameters) and {len(langs)} language{plural['langs']} "
            f"({', '.join(langs)}), OT minus KD in {metric} at the last step averages {gains.abs_diff.mean():+.3f}")
    head += (f" ({by_size.iloc[0]:+.3f} at the smallest size, {by_size.iloc[-1]:+.3f} at the largest)."
             if len(sizes) > 1 else ".")
    if not np.isfinite(pooled.slope):
        body = " There are too few sizes to estimate how the difference changes with size."
    elif pooled.spans_zero:
        body = (f" Its slope on log10(non-embedding params) is {_slope_clause(pooled)}: no detectable effect of "
                "student size on OT minus KD.")
    else:
        direction = "gains on" if pooled.slope > 0 else "loses ground to"
        body = f" OT {direction} KD as students grow: slope {_slope_clause(pooled)}."
    per_lang = [s for s in slopes if s.scope != "pooled" and np.isfinite(s.slope)]
    detected = [s.scope for s in per_lang if not s.spans_zero]
    tail = (f" Per language, the slope's CI excludes zero for {', '.join(detected)}." if detected
            else " Per language, no slope's CI excludes zero.") if per_lang else ""
    return (head + body + tail + _relative_sentence(gains, relative) + _along_sentence(along)
            + _caveats(gains, collapses) + (f" {budget_note}" if budget_note else ""))


def _relative_sentence(gains: pd.DataFrame, relative: list[Slope] | None) -> str:
    learned, unknown = where_kd_learned(gains)
    if unknown == len(gains):
        return " No untrained start was scored, so whether KD learned is unknown and no relative gain is reported."
    if learned.empty:
        return " KD beats its start in none of the cells, so no relative gain is reported."
    left_out = gains.drop(learned.index)
    text = (f" Where KD beats its start ({len(learned)} of {len(gains)} size-language cells"
            + (f"; {unknown} without a scored start" if unknown else "") + "), OT's relative gain over KD averages "
            f"{learned.gain.mean():+.1%}")
    pooled = next((s for s in relative or [] if s.scope == "pooled"), None)
    if pooled is not None and np.isfinite(pooled.slope):
        # a relative gain's slope in percentage points: "+0.45 per 10x" would read as less than one percent
        text += (f"; its slope is {100 * pooled.slope:+.1f} percentage points per 10x parameters (95% CI "
                 f"{100 * pooled.ci_low:+.1f} to {100 * pooled.ci_high:+.1f}, p = {pooled.p_value:.2g}, "
                 f"n = {pooled.n})")
    if len(left_out):
        text += "; left out: " + ", ".join(f"{r.lang} {r.params_non_embedding / 1e6:.1f}M"
                                           for r in left_out.sort_values(["lang", "params_non_embedding"]).itertuples())
    return text + "."


def _along_sentence(along: pd.DataFrame | None) -> str:
    """Does the size effect change with budget: pure OT's pooled slope at every step after the start; then each
    other objective (an OT variant) minus KD at the last step."""
    if along is None or along.empty:
        return ""
    pooled = along[(along.scope == "pooled") & (along.step > 0)].sort_values("step")
    ot = pooled[pooled.a == "ot"].dropna(subset=["slope"])
    text = ""
    if len(ot):
        parts = [f"step {int(r.step)} {r.slope:+.3f} ({r.ci_low:+.3f} to {r.ci_high:+.3f}, p = {r.p_value:.2g})"
                 for r in ot.itertuples()]
        text = (" Along training, OT minus KD has a pooled slope per 10x parameters (95% CI, p; one test per step, "
                "not corrected for multiple comparisons) of: " + "; ".join(parts) + ".")
    for method, g in pooled[pooled.a != "ot"].groupby("a", sort=True):
        last = g[g.step == g.step.max()].iloc[0]
        name = f"The {method} objective minus KD at the last step (step {int(last.step)})"
        text += (f" {name}: slope {last.slope:+.3f} per 10x parameters (95% CI {last.ci_low:+.3f} to "
                 f"{last.ci_high:+.3f}, p = {last.p_value:.2g}, n = {int(last.n)})." if np.isfinite(last.slope)
                 else f" {name}: too few sizes for a slope.")
    return text


def _caveats(gains: pd.DataFrame, collapses: pd.DataFrame | None) -> str:
    return _floor_caveat(gains) + _collapse_caveat(collapses)


def _floor_caveat(gains: pd.DataFrame) -> str:
    if "kd_above_floor" not in gains:
        return ""
    text = ""
    neither = gains[(gains.kd_above_floor == False) & (gains.ot_above_floor == False)]  # noqa: E712
    if len(neither):
        sizes_at_floor = sorted(neither.params_non_embedding.unique())
        text = (f" Caution: in {len(neither)} of {len(gains)} size-language cells neither KD nor OT beats the "
                f"untrained student (p < 0.05), so OT minus KD there compares two floor-level students "
                f"(sizes {', '.join(f'{p / 1e6:.1f}M' for p in sizes_at_floor)}; in the absolute slope, not in the "
                "relative one).")
    if gains.ot_above_floor.eq(False).all():
        text += " OT beats the untrained student in none of the cells at this budget."
    return text


def _collapse_caveat(collapses: pd.DataFrame | None) -> str:
    if collapses is None or collapses.empty:
        return ""
    hit = collapses[collapses.collapsed_cells > 0]
    if hit.empty:
        return " No trained cell collapsed (mean pairwise query cosine > 0.9) at any evaluated step."
    parts = []
    for method, g in hit.groupby("method", sort=True):
        sizes = ", ".join(f"L{r.layers} {r.collapsed_cells}/{r.cells}" for r in g.sort_values("layers").itertuples())
        cells = int(collapses[collapses.method == method].cells.sum())
        parts.append(f"{method} in {int(g.collapsed_cells.sum())} of {cells} runs ({sizes}; "
                     f"{int(g.collapsed_at_end.sum())} still collapsed at the last step)")
    return (" Collapse (mean pairwise query cosine > 0.9 on some evaluated task at some step; runs = languages x "
            "seeds): " + "; ".join(parts) + ".")


def slopes_along_training(differences: pd.DataFrame) -> pd.DataFrame:
    """The slope of a method difference (`curves.method_difference_table`) on log10(non-embedding params) at
    every evaluated step, pooled (per-language intercepts) and per language: does the size effect change
    with the training budget?"""
    frames = []
    for step, g in differences[differences.step > 0].groupby("step", sort=True):  # step 0: the shared start
        frames.append(slopes_frame(scaling_slopes(g, "diff")).assign(step=step))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def language_level_slope(slopes: pd.DataFrame, family: str, y: str = "abs_diff") -> dict | None:
    """The slope with languages as the unit: the mean of the per-language slopes and its t interval (k - 1 df),
    the inference the study's design supports (its cells share a language's queries and its slope)."""
    from scipy import stats

    per_language = slopes[(slopes.family == family) & (slopes.y == y) & (slopes.scope != "pooled")].slope.dropna()
    k = len(per_language)
    if k < 3:
        return None
    mean, se = per_language.mean(), per_language.std(ddof=1) / np.sqrt(k)
    half = stats.t.ppf(0.975, k - 1) * se
    # every language the same slope: no spread, so p is 0 for a non-zero slope and 1 for a slope of exactly 0
    p = 2 * stats.t.sf(abs(mean / se), k - 1) if se > 0 else float(mean == 0)
    return dict(slope=mean, ci_low=mean - half, ci_high=mean + half, p_value=p, k=k, low=per_language.min(),
                high=per_language.max())


def language_level_slopes(slopes: pd.DataFrame) -> pd.DataFrame:
    """`language_level_slope` for every family and quantity with three languages or more: a published table, so
    that a reader of the answer needs no t distribution (scipy takes a second to import)."""
    rows = []
    if len(slopes):
        for (family, y), _ in slopes.groupby(["family", "y"], sort=True):
            row = language_level_slope(slopes, family, y)
            if row is not None:
                rows.append(dict(family=family, y=y) | row)
    return pd.DataFrame(rows, columns=["family", "y", "slope", "ci_low", "ci_high", "p_value", "k", "low", "high"])


def slopes_frame(slopes: list[Slope]) -> pd.DataFrame:
    return pd.DataFrame([asdict(s) | {"spans_zero": s.spans_zero} for s in slopes])


def regime(results: pd.DataFrame, starts: pd.DataFrame, metric: str, task: str) -> str:
    """The first sentence of any verdict: did the students learn, and how far from the baselines are they."""
    if starts.empty:
        return "No trained cell has finished yet."
    final = results[results.final & (results.metric == metric) & (results.task == task)]
    baselines = final[final.family == "baseline"].groupby("method").value.mean()
    parts = []
    languages = starts.lang.nunique()
    for (lang, family, layers), g in starts.groupby(["lang", "family", "layers"]):
        kd = g[g.method == "kd"]
        learned = [f"{r.method} {r.diff:+.3f} (p={r.p_value:.2g})" for r in g.itertuples()]
        start = g.mean_start.iloc[0]
        kd_text = ""
        if len(kd):
            k = kd.iloc[0]
            change = ("improves on" if k["diff"] > 0 and k.p_value < 0.05 else
                      "falls below" if k["diff"] < 0 and k.p_value < 0.05 else "does not move off")
            kd_text = f"KD {change} its start"
        name = f"{lang} {family}-L{layers}" if languages > 1 else f"{family}-L{layers}"
        parts.append(f"{name} starts at {start:.3f}; {kd_text}; change from start at the last step: "
                     + ", ".join(learned))
    base = ", ".join(f"{name} {value:.3f}" for name, value in baselines.items())
    return (f"Regime ({task}, {metric}): " + "; ".join(parts) + "." + (f" Baselines on the same queries: {base}."
                                                                        if base else ""))


def regime_summary(results: pd.DataFrame, starts: pd.DataFrame, metric: str, task: str) -> str:
    """The regime in a few lines for a grid of any size: in how many size-language cells each objective moved
    off its start, each size's start and last step (means over languages and seeds), and the baselines on the
    same queries. `regime` gives the same per cell, with p-values."""
    if starts.empty:
        return "No trained cell has finished yet."
    final = results[results.final & (results.metric == metric) & (results.task == task)]
    # baselines on the trained students' languages only (a partial grid may have scored more)
    final = final[(final.family == "baseline") & final.lang.isin(set(starts.lang))]
    baselines = final.groupby("method").value.mean()
    languages = starts.lang.nunique()
    counts = []
    for family, f in starts.groupby("family", sort=True):
        parts = []
        for method, g in f.groupby("method", sort=True):
            up = int(((g["diff"] > 0) & (g.p_value < 0.05)).sum())
            down = int(((g["diff"] < 0) & (g.p_value < 0.05)).sum())
            parts.append(f"{method} in {up} of {len(g)}" + (f" (and falls below it in {down})" if down else ""))
        counts.append(f"{family} " + ", ".join(parts))
    sizes = []
    for (family, layers), g in starts.groupby(["family", "layers"], sort=True):
        start = g.groupby("lang").mean_start.first().mean()
        finals = g.groupby("method").mean_final.mean()
        sizes.append(f"{family}-L{layers} {start:.3f} -> " + ", ".join(f"{m} {v:.3f}" for m, v in finals.items()))
    where = f"{languages} language{'s' if languages > 1 else ''}"
    text = (f"Regime ({task}, {metric}): each objective beats its start (paired over queries, p < 0.05) in "
            "this many size-language cells: " + "; ".join(counts) + f". Start -> last step, mean over {where}: "
            + "; ".join(sizes) + ".")
    if len(baselines):
        text += " Baselines on the same queries: " + ", ".join(f"{n} {v:.3f}" for n, v in baselines.items()) + "."
    return text
