"""The study's answer beyond the last step: collapse counts, the size effect along training, the regime
paragraph for a grid of any size. Hand-built tables, so every expected number can be checked by eye."""

import numpy as np
import pandas as pd
import pytest

from optical_core.study.analysis import slopes_along_training
from optical_core.study.curves import collapse_counts
from optical_core.study.report import regime_summary


def _rows(cell_id, method, flags, family="me5", layers=1):
    """Two metric rows per evaluated step (as in results.csv), each carrying the step's collapse flag."""
    steps = [0, 25, 400][: len(flags)]
    return [dict(cell_id=cell_id, family=family, layers=layers, method=method, step=step, collapsed=flag, metric=m)
            for step, flag in zip(steps, flags) for m in ("mrr@10", "ndcg@10")]


def test_collapse_counts_count_cells_not_rows_and_the_last_step_separately():
    results = pd.DataFrame(
        _rows("swa-ot-s0", "ot", [False, True, False])  # collapsed, then recovered
        + _rows("swa-ot-s1", "ot", [False, False, True])  # collapsed at its last step
        + _rows("swa-kd-s0", "kd", [False, np.nan, False])  # a missing flag is not a collapse
        + _rows("swa-ot-L2", "ot", [False, False, False], layers=2)
        + _rows("swa-untrained", "untrained", [True])  # starts and baselines are not trained cells
        + _rows("swa-bm25", "bm25", [True], family="baseline", layers=0))
    counts = collapse_counts(results)
    assert counts.to_dict("records") == [
        dict(family="me5", layers=1, method="kd", cells=1, collapsed_cells=0, collapsed_at_end=0),
        dict(family="me5", layers=1, method="ot", cells=2, collapsed_cells=2, collapsed_at_end=1),
        dict(family="me5", layers=2, method="ot", cells=1, collapsed_cells=0, collapsed_at_end=0)]


def test_collapse_counts_of_a_sweep_without_trained_cells_is_an_empty_table():
    counts = collapse_counts(pd.DataFrame(_rows("swa-bm25", "bm25", [False], family="baseline", layers=0)))
    assert counts.empty and "collapsed_cells" in counts


def test_slope_along_training_recovers_each_steps_slope():
    """diff = (step / 1000) x log10(params) + a per-language offset: the pooled slope at each step is step / 1000
    exactly (per-language intercepts absorb the offsets), and so is each language's own slope."""
    rows = [dict(lang=lang, params_non_embedding=p, step=step, diff=step / 1000 * np.log10(p) + offset)
            for lang, offset in (("swa", 0.0), ("yor", -0.3)) for p in (1e6, 4e6, 2e7) for step in (0, 25, 400)]
    along = slopes_along_training(pd.DataFrame(rows))
    assert sorted(set(along.step)) == [0, 25, 400]
    for step, g in along.groupby("step"):
        assert g.scope.tolist() == ["pooled", "swa", "yor"]
        assert g.slope.tolist() == pytest.approx([step / 1000] * 3, abs=1e-9)
    assert along[along.scope == "pooled"].n.tolist() == [6, 6, 6]
    assert slopes_along_training(pd.DataFrame(columns=["lang", "params_non_embedding", "step", "diff"])).empty


def test_regime_summary_counts_cells_that_moved_and_averages_over_languages():
    start = dict(family="me5", layers=1)
    starts = pd.DataFrame([
        dict(start, lang="swa", method="kd", diff=0.05, p_value=0.01, mean_start=0.2, mean_final=0.25),
        dict(start, lang="yor", method="kd", diff=0.02, p_value=0.20, mean_start=0.1, mean_final=0.12),
        dict(start, lang="swa", method="ot", diff=-0.10, p_value=0.001, mean_start=0.2, mean_final=0.1),
        dict(start, lang="yor", method="ot", diff=0.04, p_value=0.03, mean_start=0.1, mean_final=0.14),
        dict(family="me5", layers=4, lang="swa", method="kd", diff=0.1, p_value=0.001, mean_start=0.3,
             mean_final=0.4)])
    results = pd.DataFrame([
        dict(final=True, metric="mrr@10", task="headline", family="baseline", method="bm25", value=v)
        for v in (0.6, 0.5)] + [dict(final=True, metric="mrr@10", task="dev", family="baseline", method="bm25",
                                     value=0.9)])
    assert regime_summary(results, starts, "mrr@10", "headline") == (
        "Regime (headline, mrr@10): each objective beats its start (paired over queries, p < 0.05) in this many "
        "size-language cells: kd in 2 of 3, ot in 1 of 2 (and falls below it in 1). Start -> last step, mean over "
        "2 languages: me5-L1 0.150 -> kd 0.185, ot 0.120; me5-L4 0.300 -> kd 0.400. Baselines on the same "
        "queries: bm25 0.550.")
    assert regime_summary(results, starts.iloc[:0], "mrr@10", "headline") == "No trained cell has finished yet."


def test_size_effect_figure_draws_each_objectives_pooled_slope_by_step():
    from optical_core.plots import size_effect_figure

    row = dict(scope="pooled", ci_low=-0.1, ci_high=0.2)
    along = pd.DataFrame([dict(row, a="ot", step=400, slope=0.05), dict(row, a="ot", step=25, slope=0.1),
                          dict(row, a="ot", step=50, slope=float("nan")),  # too few sizes at that step: not drawn
                          dict(row, a="ot", step=25, slope=9.0, scope="swa"),  # per-language slopes are not drawn
                          dict(row, a="ot-kd", step=25, slope=-0.02)])
    figure = size_effect_figure(along)
    lines = [t for t in figure.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["ot - kd", "ot-kd - kd"]
    assert list(lines[0].x) == [25, 400] and list(lines[0].y) == [0.1, 0.05]
    assert len(figure.data) == 4  # a CI band under each line
    assert len(size_effect_figure(along.iloc[:0]).data) == 0
