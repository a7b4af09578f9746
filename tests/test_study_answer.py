"""The study's answer beyond the last step: collapse counts, the size effect along training, the regime
paragraph for a grid of any size. Hand-built tables, so every expected number can be checked by eye."""

import numpy as np
import pandas as pd
import pytest

from optical_core.study.analysis import slopes_along_training
from optical_core.study.curves import collapse_counts
from optical_core.study.analysis import regime_summary


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
    assert sorted(set(along.step)) == [25, 400]  # step 0 is the shared start: OT and KD equal by design
    for step, g in along.groupby("step"):
        assert g.scope.tolist() == ["pooled", "swa", "yor"]
        assert g.slope.tolist() == pytest.approx([step / 1000] * 3, abs=1e-9)
    assert along[along.scope == "pooled"].n.tolist() == [6, 6]
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
    starts = pd.concat([starts, pd.DataFrame([dict(family="minilm", layers=6, lang="swa", method="kd", diff=0.2,
                                                   p_value=0.0004, mean_start=0.4, mean_final=0.6)])])
    baseline = dict(final=True, metric="mrr@10", task="headline", family="baseline", method="bm25")
    results = pd.DataFrame([dict(baseline, lang="swa", value=0.6), dict(baseline, lang="yor", value=0.5),
                            dict(baseline, lang="hau", value=0.1),  # no student trained on hau yet: not averaged
                            dict(baseline, lang="swa", task="dev", value=0.9)])
    assert regime_summary(results, starts, "mrr@10", "headline") == (
        "Regime (headline, mrr@10): each objective beats its start (paired over queries, p < 0.05) in this many "
        "size-language cells: me5 kd in 2 of 3, ot in 1 of 2 (and falls below it in 1); minilm kd in 1 of 1. "
        "Start -> last step, mean over 2 languages: me5-L1 0.150 -> kd 0.185, ot 0.120; me5-L4 0.300 -> kd 0.400; "
        "minilm-L6 0.400 -> kd 0.600. Baselines on the same queries: bm25 0.550.")
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
    assert [t.name for t in lines] == ["ot minus kd", "ot-kd minus kd"]
    assert list(lines[0].x) == [25, 400] and list(lines[0].y) == [0.1, 0.05]
    assert len(figure.data) == 4  # a CI band under each line
    assert len(size_effect_figure(along.iloc[:0]).data) == 0


def _crafted_sweep(root, rng):
    """A finished two-step sweep on disk: KD and OT start at 0.3 (their shared step 0) and end with OT - KD =
    0.02 log10(params / 1M) + noise; KD learns everywhere except bbb at 1M, where it stays at its start."""
    import json

    rows = []
    for lang in ("aaa", "bbb"):
        for params in (1e6, 3e6, 1e7):
            base = dict(lang=lang, family="fam", layers=int(params / 1e6), params_total=int(3 * params),
                        params_non_embedding=int(params), task="headline", wall_time_s=1.0, query_cosine=0.5,
                        plan_sharpness=np.nan, identical_share=np.nan)
            kd_end = 0.3 if (lang, params) == ("bbb", 1e6) else 0.5
            ends = {"untrained": 0.3, "kd": kd_end, "ot": kd_end + 0.02 * np.log10(params / 1e6)}
            for method, end in ends.items():
                cell = f"{lang}-fam-L{base['layers']}-{method}-s0"
                for step in ([0] if method == "untrained" else [0, 10]):
                    mean = 0.3 if step == 0 else end
                    scores = np.clip(mean + rng.normal(0, 0.05, 60), 0, 1)
                    path = root / "cells" / cell / f"step{step}.csv"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    pd.DataFrame({"qid": [f"q{i}" for i in range(60)], "mrr@10": scores}).to_csv(path, index=False)
                    final = step == (0 if method == "untrained" else 10)
                    rows.append(dict(base, cell_id=cell, method=method, seed=0, step=step, final=final,
                                     per_query_file=str(path.relative_to(root)), collapsed=False, metric="mrr@10",
                                     value=scores.mean()))
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    (root / "sweep.json").write_text(json.dumps({"config": {"eval": {"task": "headline"}}}))


def test_the_verdicts_numbers_are_the_exported_tables_numbers(tmp_path):
    from optical_core.study.publish import export_analysis

    _crafted_sweep(tmp_path, np.random.default_rng(5))
    summary = export_analysis(tmp_path, tmp_path / "analysis", n_boot=50, figures=False)
    text = summary.families["fam"]
    slopes = pd.read_csv(tmp_path / "analysis" / "slopes.csv")
    pooled = slopes[slopes.scope == "pooled"].set_index("y")
    absolute, relative = pooled.loc["abs_diff"], pooled.loc["gain"]
    assert f"slope {absolute.slope:+.3f} per 10x parameters (95% CI {absolute.ci_low:+.3f} to " in text \
        or f"is {absolute.slope:+.3f} per 10x parameters (95% CI {absolute.ci_low:+.3f} to " in text
    assert absolute.n == 6 and relative.n == 5  # the relative gain only where KD beat its start
    assert f"its slope is {100 * relative.slope:+.1f} percentage points per 10x" in text
    assert "(5 of 6 size-language cells)" in text and "; left out: bbb 1.0M." in text
    along = pd.read_csv(tmp_path / "analysis" / "slopes_along_training.csv")
    last = along[(along.scope == "pooled") & (along.a == "ot")]
    assert last.step.tolist() == [10] and last.slope.iloc[0] == pytest.approx(absolute.slope)
    assert f"step 10 {absolute.slope:+.3f} ({last.ci_low.iloc[0]:+.3f} to" in text
    assert summary.verdict.startswith("Regime (headline, mrr@10): each objective beats its start (paired over "
                                      "queries, p < 0.05) in this many size-language cells: fam kd in 5 of 6")


def test_a_published_summary_reads_back_as_the_analysis_and_goes_stale_with_its_results(tmp_path):
    from optical_core.study.publish import export_analysis
    from optical_core.study.summary import load_summary, published_summary

    _crafted_sweep(tmp_path, np.random.default_rng(5))
    assert published_summary(tmp_path) is None  # nothing exported yet
    fresh = export_analysis(tmp_path, tmp_path / "analysis", n_boot=50, figures=False)
    read = published_summary(tmp_path)
    assert read is not None and read.verdict == fresh.verdict and read.families == fresh.families
    assert read.regime == fresh.regime and read.devices == fresh.devices and read.cell_hours == fresh.cell_hours
    for field in ("results", "accuracy", "gains", "slopes", "baselines", "curves", "along", "collapses"):
        pd.testing.assert_frame_equal(getattr(read, field).reset_index(drop=True),
                                      getattr(fresh, field).reset_index(drop=True), check_dtype=False)
    assert published_summary(tmp_path, "recall@5") is None  # only the analysed metrics are exported
    assert published_summary(tmp_path, "ndcg@10") is None  # ... and this one was not
    saved = (tmp_path / "analysis" / "summary.json").read_text()
    (tmp_path / "analysis" / "summary.json").write_text(saved[:40])  # damaged: analysed afresh, not a crash
    assert published_summary(tmp_path) is None
    (tmp_path / "analysis" / "summary.json").write_text(saved)
    (tmp_path / "analysis" / "summary.json").write_text(saved.replace('"devices": [', '"devices": 3, "x": ['))
    assert published_summary(tmp_path) is None  # a field of the wrong type: analysed afresh
    (tmp_path / "analysis" / "summary.json").write_text(saved)
    gains = (tmp_path / "analysis" / "gains.csv").read_text()
    (tmp_path / "analysis" / "gains.csv").unlink()
    assert published_summary(tmp_path) is None  # a table went missing
    (tmp_path / "analysis" / "gains.csv").write_text('"unclosed\n' + gains)
    assert published_summary(tmp_path) is None  # a table that does not parse
    (tmp_path / "analysis" / "gains.csv").write_text(gains)
    assert published_summary(tmp_path) is not None
    table = pd.read_csv(tmp_path / "results.csv")
    table.loc[table.index[-1], "value"] += 0.1  # a cell rescored: the exported tables no longer describe it
    table.to_csv(tmp_path / "results.csv", index=False)
    assert published_summary(tmp_path) is None
    assert load_summary(tmp_path).results.value.sum() == pytest.approx(final_sum(table))


def final_sum(table: pd.DataFrame) -> float:
    return table[table.final.astype(bool)].value.sum()


def test_slopes_along_training_from_the_first_step_after_the_start_in_step_order():
    """Steps given out of order, one of them step 1: every step after the shared start 0 has its slopes, in
    ascending step order, numbered 0..n-1 (one table for the CSV and the verdict)."""
    rows = [dict(lang=lang, params_non_embedding=p, step=step, diff=step / 1000 * np.log10(p))
            for step in (400, 1, 0, 25) for lang in ("swa", "yor") for p in (1e6, 4e6, 2e7)]
    along = slopes_along_training(pd.DataFrame(rows))
    assert along.step.tolist() == [1] * 3 + [25] * 3 + [400] * 3
    assert along.index.tolist() == list(range(9))
    assert along[along.scope == "pooled"].slope.tolist() == pytest.approx([0.001, 0.025, 0.4], abs=1e-9)


def test_regime_summary_orders_families_methods_and_sizes_and_counts_only_clear_moves():
    """Rows in reverse order; a move of exactly 0, or at p = 0.05 (not < 0.05), or at p = 0.2, is no move;
    one language is singular."""
    row = dict(lang="swa", mean_start=0.2, mean_final=0.3)
    starts = pd.DataFrame([
        dict(row, family="minilm", layers=6, method="kd", diff=0.1, p_value=0.001),
        dict(row, family="me5", layers=4, method="ot", diff=0.0, p_value=0.001),  # exactly no change
        dict(row, family="me5", layers=4, method="kd", diff=0.1, p_value=0.05),  # not below 0.05
        dict(row, family="me5", layers=1, method="ot", diff=-0.1, p_value=0.05),
        dict(row, family="me5", layers=1, method="kd", diff=-0.1, p_value=0.2)])
    baseline = dict(final=True, metric="mrr@10", task="headline", family="baseline", lang="swa")
    results = pd.DataFrame([dict(baseline, method="mdpr", value=0.4), dict(baseline, method="bm25", value=0.6)])
    assert regime_summary(results, starts, "mrr@10", "headline") == (
        "Regime (headline, mrr@10): each objective beats its start (paired over queries, p < 0.05) in this many "
        "size-language cells: me5 kd in 0 of 2, ot in 0 of 2; minilm kd in 1 of 1. Start -> last step, mean over "
        "1 language: me5-L1 0.200 -> kd 0.300, ot 0.300; me5-L4 0.200 -> kd 0.300, ot 0.300; minilm-L6 0.200 -> "
        "kd 0.300. Baselines on the same queries: bm25 0.600, mdpr 0.400.")


def test_along_training_per_objective_and_family_in_one_table():
    from optical_core.study.summary import _along_training

    rows = [dict(a=a, family=family, lang=lang, params_non_embedding=p, step=step, diff=step / 1000 * np.log10(p))
            for a in ("ot-kd", "ot") for family in ("me5", "minilm") for lang in ("swa", "yor")
            for p in (1e6, 4e6, 2e7) for step in (0, 25)]
    along = _along_training(pd.DataFrame(rows))
    assert along[["a", "family"]].drop_duplicates().values.tolist() == [["ot", "me5"], ["ot", "minilm"],
                                                                        ["ot-kd", "me5"], ["ot-kd", "minilm"]]
    assert along.index.tolist() == list(range(4 * 3)) and set(along.b) == {"kd"}  # pooled, swa, yor each
    assert _along_training(pd.DataFrame(columns=["a", "family"])).empty
