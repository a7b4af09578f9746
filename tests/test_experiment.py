import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from optical_core.study.analysis import gain_table, ols_slope, scaling_slopes, verdict
from optical_core.study.summary import analyse_sweep
from optical_core.study.grid import cell_status, grid_cells
from optical_core.study.results import write_results
from optical_core.settings import load_sweep_config
from optical_core.study.sweep import LOCKS, run_sweep, with_budget

from .conftest import PROJECT


def test_quick_grid_produces_a_results_row_for_every_cell_and_metric(quick_sweep):
    out, config, table = quick_sweep
    cells = grid_cells(config)
    assert set(table.cell_id) == {c.id for c in cells}
    final = table[table.final]
    assert len(final) == len(cells) * 5  # five headline metrics per cell at its last step
    assert final.groupby("cell_id").metric.nunique().eq(5).all()
    # learning curves: trained cells at step 0 (before any update) and at their last step (4)
    trained_steps = table[table.method.isin(["kd", "ot"])].groupby("cell_id").step.unique()
    assert all(sorted(s) == [0, 4] for s in trained_steps)
    start = table[(table.step == 0) & (table.metric == "mrr@10") & (table.family == "minilm")]
    for layers, g in start.groupby("layers"):  # a minilm student's step 0 is its untrained initialisation
        assert g.value.nunique() == 1, g[["cell_id", "value"]]
    trained = final[final.method.isin(["kd", "ot"])]
    assert trained.params_non_embedding.notna().all() and (trained.params_total > trained.params_non_embedding).all()
    assert (out / "results.parquet").is_file() and pd.read_parquet(out / "results.parquet").shape == table.shape
    for f in table.per_query_file.unique():
        assert len(pd.read_csv(out / f)) == 123
    manifest = json.loads((out / "cells" / "swa-minilm-L1-ot-s0" / "manifest.json").read_text())
    assert manifest["config"]["loss"]["method"] == "ot" and manifest["config"]["seed"] == 0 and manifest["git_commit"]


def test_rerun_skips_finished_cells(quick_sweep):
    out, config, _ = quick_sweep
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/result.json")}
    run_sweep(config, out)
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/result.json")} == before


def test_a_sweep_resumes_from_its_published_records_alone(quick_sweep, tmp_path, monkeypatch):
    """A fresh machine has only the committed records (no runs/, no weights): resuming trains nothing finished."""
    import optical_core.study.sweep as experiment
    from optical_core.study.publish import publish_sweep

    out, config, table = quick_sweep
    published = tmp_path / "results" / "quick"
    publish_sweep(out, published)
    assert not list(published.rglob("*.safetensors"))

    def must_not_run(cell, *args, **kwargs):
        raise AssertionError(f"{cell.id} was retrained")

    monkeypatch.setattr(experiment, "cell_records", must_not_run)
    resumed = run_sweep(dataclasses.replace(config, workers=0), published)
    assert len(resumed) == len(table) and set(resumed.cell_id) == set(table.cell_id)
    assert not list(published.rglob("failed.json"))  # run_sweep records a cell's exception instead of raising it


def test_resuming_with_other_settings_is_refused(quick_sweep, tmp_path):
    import shutil

    from optical_core.errors import SettingsError

    out, config, _ = quick_sweep
    shutil.copytree(out, tmp_path / "sweep")
    with pytest.raises(SettingsError, match=r"was run with budget.lr = 0.0001, the config now gives 0.001"):
        run_sweep(with_budget(config, lr=1e-3), tmp_path / "sweep")
    with pytest.raises(SettingsError, match=r"was run with precision = 'float32'"):
        run_sweep(dataclasses.replace(config, run=dataclasses.replace(config.run, precision="bf16")), tmp_path / "sweep")
    with pytest.raises(SettingsError, match=r"was run with student.head_init = 'ridge'"):
        run_sweep(dataclasses.replace(config, run=dataclasses.replace(
            config.run, student=dataclasses.replace(config.run.student, head_init="procrustes"))), tmp_path / "sweep")
    run_sweep(dataclasses.replace(config, run=dataclasses.replace(config.run, device="cpu"), description="same study"),
              tmp_path / "sweep")  # not science
    for result in (tmp_path / "sweep" / "cells").glob("*/result.json"):  # as written before eval.precision existed
        record = json.loads(result.read_text())
        record["settings"].pop("eval.precision")
        result.write_text(json.dumps(record))
    with pytest.raises(SettingsError, match=r"eval.precision = 'float32', the config now gives 'bf16'"):
        run_sweep(dataclasses.replace(config, eval=dataclasses.replace(config.eval, precision="bf16")),
                  tmp_path / "sweep")
    run_sweep(config, tmp_path / "sweep")  # it ran with the default, float32: resuming with it is fine


def test_a_cell_another_process_is_running_is_skipped_not_run_twice(quick_sweep, tmp_path, monkeypatch):
    import shutil

    import optical_core.study.sweep as experiment
    from optical_core.store.locks import file_lock

    out, config, _ = quick_sweep
    copy = tmp_path / "sweep"
    shutil.copytree(out, copy)
    busy, free = [c for c in grid_cells(config) if c.method == "kd"][:2]
    for cell in (busy, free):
        shutil.rmtree(copy / "cells" / cell.id)
    ran, reports = [], []
    monkeypatch.setattr(experiment, "cell_records", lambda cell, *a, **k: ran.append(cell.id) or {})
    with file_lock(copy / LOCKS / f"{busy.id}.lock"):  # as another sweep process would hold it
        run_sweep(dataclasses.replace(config, workers=0), copy,
                  on_cell=lambda i, n, cell, status: reports.append((cell.id, status)))
    assert ran == [free.id]
    assert (busy.id, f"skipped: being run by process {os.getpid()}") in reports


def test_a_failing_cell_is_recorded_and_retried(quick_sweep, tmp_path, monkeypatch):
    out, config, _ = quick_sweep
    import shutil

    import optical_core.study.sweep as experiment

    copy = tmp_path / "sweep"
    shutil.copytree(out, copy)
    victim = next(c for c in grid_cells(config) if c.method == "kd")
    shutil.rmtree(copy / "cells" / victim.id)
    real = experiment.cell_records
    config = dataclasses.replace(config, workers=0)  # in this process: the patched task runs here

    def flaky(cell, *args, **kwargs):
        if cell == victim:
            raise RuntimeError("simulated out-of-memory")
        return real(cell, *args, **kwargs)

    monkeypatch.setattr(experiment, "cell_records", flaky)
    table = run_sweep(config, copy)
    assert cell_status(copy, victim) == "failed"
    assert "simulated out-of-memory" in json.loads((copy / "cells" / victim.id / "failed.json").read_text())["error"]
    assert victim.id not in set(table.cell_id) and len(set(table.cell_id)) == len(grid_cells(config)) - 1
    assert json.loads((copy / "status.json").read_text())["failed"] == [victim.id]
    monkeypatch.setattr(experiment, "cell_records", real)
    table = run_sweep(config, copy)
    assert cell_status(copy, victim) == "done" and victim.id in set(table.cell_id)


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[grid]]\nfamily = "me5"\nsizes = [1]\nlangs = ["swa"]\nmethods = ["magic"]\n')
    with pytest.raises(ValueError, match=r"config.grids: unknown method magic \(known: kd, ot, untrained; add a "):
        load_sweep_config(bad)


def crafted_study(tmp_path, slope_per_decade=0.1, noise=0.0, seed=0):
    """Per-query files whose OT/KD gain is exactly a + slope * log10(params)."""
    rng = np.random.default_rng(seed)
    rows = []
    sizes = [1e6, 3e6, 1e7, 3e7]
    for lang in ("aaa", "bbb", "ccc"):
        for p in sizes:
            gain = 0.05 * (lang == "bbb") + slope_per_decade * np.log10(p / 1e6) + rng.normal(0, noise)
            kd_scores = np.full(50, 0.4)
            for method, scores in (("kd", kd_scores), ("ot", kd_scores * (1 + gain))):
                for s in (0, 1):
                    path = tmp_path / f"{lang}-{p:.0f}-{method}-{s}.csv"
                    pd.DataFrame({"qid": [f"q{i}" for i in range(50)], "mrr@10": scores}).to_csv(path, index=False)
                    rows.append(dict(cell_id=path.stem, lang=lang, family="fam", method=method, layers=int(p / 1e6),
                                     seed=s, metric="mrr@10", value=scores.mean(), params_total=int(p * 3),
                                     params_non_embedding=int(p), per_query_file=path.name))
    return pd.DataFrame(rows)


def test_gain_and_slope_are_recovered_on_a_crafted_table(tmp_path):
    results = crafted_study(tmp_path, slope_per_decade=0.1)
    gains = gain_table(results, tmp_path, n_boot=200)
    assert len(gains) == 12
    row = gains[(gains.lang == "aaa") & (gains.params_non_embedding == 10_000_000)].iloc[0]
    assert row.gain == pytest.approx(0.1) and row.gain_ci_low == pytest.approx(0.1)
    assert row.abs_diff == pytest.approx(0.04)
    slopes = scaling_slopes(gains, "gain")
    pooled = slopes[0]
    assert pooled.scope == "pooled" and pooled.slope == pytest.approx(0.1, abs=1e-9) and pooled.n == 12
    assert all(s.slope == pytest.approx(0.1, abs=1e-9) for s in slopes[1:])
    absolute = scaling_slopes(gains, "abs_diff")  # OT - KD = 0.4 x gain
    assert absolute[0].slope == pytest.approx(0.04, abs=1e-9)
    text = verdict(absolute, gains, "mrr@10", "fam")
    assert "OT gains on KD as students grow: slope +0.040" in text


def test_verdict_says_no_detectable_effect_when_the_ci_spans_zero(tmp_path):
    results = crafted_study(tmp_path, slope_per_decade=0.0, noise=0.05, seed=1)
    gains = gain_table(results, tmp_path, n_boot=100)
    slopes = scaling_slopes(gains, "abs_diff")
    assert slopes[0].spans_zero
    assert "no detectable effect" in verdict(slopes, gains, "mrr@10", "fam")


def test_ols_slope_matches_scipy_linregress():
    from scipy import stats

    rng = np.random.default_rng(3)
    x = rng.uniform(6, 7.5, 30)
    y = 0.3 * x + rng.normal(0, 0.1, 30)
    ours, ref = ols_slope(x, y), stats.linregress(x, y)
    assert ours.slope == pytest.approx(ref.slope) and ours.p_value == pytest.approx(ref.pvalue)


def test_analysis_of_the_quick_sweep_exports_tables_and_figures(quick_sweep, tmp_path):
    from optical_core.study.publish import export_analysis

    out, _, _ = quick_sweep
    summary = export_analysis(out, tmp_path / "analysis", n_boot=100)
    assert set(summary.gains.layers) == {1, 2} and summary.verdict
    assert (tmp_path / "analysis" / "gain_vs_size_minilm.html").is_file()
    assert (tmp_path / "analysis" / "gains.csv").is_file()


def test_results_table_is_written_atomically(tmp_path, monkeypatch):
    cell = tmp_path / "cells" / "swa-baseline-bm25"
    cell.mkdir(parents=True)
    (cell / "result.json").write_text(json.dumps({"cell_id": "swa-baseline-bm25", "lang": "swa", "family": "baseline",
                                                  "method": "bm25", "task": "headline", "evaluations": [
                                                      {"step": 0, "task": "headline", "means": {"mrr@10": 0.6}}]}))
    write_results(tmp_path)
    before = (tmp_path / "results.parquet").read_bytes(), (tmp_path / "results.csv").read_text()

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt("killed while writing the table")

    (cell / "result.json").write_text((cell / "result.json").read_text().replace("0.6", "0.7"))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        write_results(tmp_path)
    assert (tmp_path / "results.parquet").read_bytes() == before[0]
    assert (tmp_path / "results.csv").read_text() == before[1]
    assert not list(tmp_path.glob(".*part"))


def test_floor_check_flags_students_that_do_not_beat_their_initialisation(tmp_path):
    results = crafted_study(tmp_path, slope_per_decade=0.1)
    untrained = []
    for (lang, layers), g in results.groupby(["lang", "layers"]):
        row = g[g.method == "kd"].iloc[0].to_dict()
        path = tmp_path / f"{lang}-{layers}-untrained.csv"
        rng = np.random.default_rng(layers)
        scores = pd.DataFrame({"qid": [f"q{i}" for i in range(50)], "mrr@10": rng.uniform(0.35, 0.45, 50)})
        scores.to_csv(path, index=False)
        untrained.append(dict(row, method="untrained", seed=0, cell_id=path.stem, per_query_file=path.name))
    gains = gain_table(pd.concat([results, pd.DataFrame(untrained)]), tmp_path, n_boot=100)
    # KD scores 0.4 everywhere, like its noisy initialisation: never above the floor
    assert not gains.kd_above_floor.any()
    # OT is 0.4 * (1 + gain): above the floor exactly where the crafted gain is clearly positive
    big = gains[gains.params_non_embedding >= 10_000_000]
    assert big.ot_above_floor.all()
    assert "neither KD nor OT beats the untrained student" in verdict(scaling_slopes(gains, "abs_diff"), gains,
                                                                      "mrr@10", "fam")


def test_learning_curve_report_leads_with_the_regime(quick_sweep, tmp_path):
    from optical_core.study.curves import curve_table, method_difference_table, versus_start_table
    from optical_core.study.report import write_curve_report

    out, _, table = quick_sweep
    curves = curve_table(table, out, "mrr@10", "headline")
    assert set(curves.step) == {0, 4} and set(curves.method) == {"kd", "ot", "untrained"}
    starts = versus_start_table(table, out, "mrr@10", "headline")
    kd = starts[(starts.method == "kd") & (starts.layers == 1)].iloc[0]
    by_hand = table[(table.cell_id == "swa-minilm-L1-kd-s0") & (table.metric == "mrr@10")].set_index("step").value
    assert kd["diff"] == pytest.approx(by_hand[4] - by_hand[0])  # one seed: the paired difference is the change
    diffs = method_difference_table(table, out, "ot", "kd")
    step4 = diffs[(diffs.layers == 2) & (diffs.step == 4)].iloc[0]
    ot = table[(table.cell_id == "swa-minilm-L2-ot-s0") & (table.metric == "mrr@10") & (table.step == 4)].value.iloc[0]
    kd4 = table[(table.cell_id == "swa-minilm-L2-kd-s0") & (table.metric == "mrr@10") & (table.step == 4)].value.iloc[0]
    assert step4["diff"] == pytest.approx(ot - kd4) and step4.ci_low <= step4["diff"] <= step4.ci_high
    text = write_curve_report(out, tmp_path / "analysis")
    task_section = text[text.index("### Task: headline"):]
    assert task_section.splitlines()[2].startswith("Regime (headline, mrr@10): minilm-L1 starts at")
    assert (tmp_path / "analysis" / "curves_headline.csv").is_file()


def test_comparing_a_sweep_with_itself_finds_no_difference(quick_sweep):
    from optical_core.study.curves import compare_sweeps

    out, _, _ = quick_sweep
    same = compare_sweeps(out, out)
    assert len(same) == 3 + 2 + 4 * 2  # 3 baselines and 2 untrained cells at step 0, 4 trained cells at steps 0 and 4
    assert (same["diff"] == 0).all() and (same.p_value == 1.0).all()


def test_exported_verdict_states_the_regime_before_any_trend(quick_sweep, tmp_path):
    from optical_core.study.publish import export_analysis

    out, _, _ = quick_sweep
    export_analysis(out, tmp_path)
    first = (tmp_path / "verdict.md").read_text().split("\n\n")[0]
    assert first.startswith("Regime (headline, mrr@10): each objective beats its start (paired over queries, "
                            "p < 0.05) in this many size-language cells: minilm kd in ")
    assert "Start -> last step, mean over 1 language: minilm-L1 " in first


def test_published_analysis_covers_mrr_and_ndcg(quick_sweep, tmp_path):
    from optical_core.study.publish import write_analysis

    out, _, _ = quick_sweep
    summary = write_analysis(out, tmp_path)
    assert summary.metric == "mrr@10" and (tmp_path / "verdict.md").read_text().startswith(summary.regime)
    assert summary.regime.startswith("Regime (headline, mrr@10)")
    ndcg = tmp_path / "ndcg10"
    assert "OT minus KD in ndcg@10" in (ndcg / "verdict.md").read_text()
    assert set(pd.read_csv(ndcg / "curves_headline.csv").metric) == {"ndcg@10"}
    assert set(pd.read_csv(tmp_path / "curves_headline.csv").metric) == {"mrr@10"}
    assert (ndcg / "report.md").read_text().startswith("## quick: learning curves (ndcg@10)")
    assert (tmp_path / "size_effect_minilm.html").is_file() and (tmp_path / "difference_vs_size_minilm.html").is_file()
    assert not list(ndcg.glob("*.html"))  # figures for the headline metric only: the app draws the others


def test_an_unfinished_sweep_says_so_first(tmp_path):
    import shutil

    from optical_core.study.summary import analyse_sweep, completeness

    pilot = PROJECT / "results" / "pilot"
    assert completeness(pilot) == ""  # finished: nothing to say
    copy = tmp_path / "pilot"
    shutil.copytree(pilot, copy, ignore=shutil.ignore_patterns("dev", "fp32-check", "analysis"))
    status = json.loads((copy / "status.json").read_text())
    (copy / "status.json").write_text(json.dumps(status | {"cells": status["done"] + 5}))
    expected = (f"In progress: {status['done']} of {status['done'] + 5} cells have finished, and every number here "
                "covers only those.")
    assert completeness(copy) == expected
    assert analyse_sweep(copy, n_boot=20).verdict.startswith(expected + " Regime")


def test_resuming_into_records_without_settings_is_one_line(tmp_path):
    """The pilot's records predate the settings field: resuming into them is refused, not a KeyError."""
    import shutil

    from optical_core.errors import SettingsError

    shutil.copytree(PROJECT / "results" / "pilot" / "cells" / "swa-me5-L2-kd-s0", tmp_path / "cells" / "swa-me5-L2-kd-s0")
    config = load_sweep_config(PROJECT / "configs" / "pilot" / "pilot.toml")
    with pytest.raises(SettingsError, match="swa-me5-L2-kd-s0 records no settings"):
        run_sweep(config, tmp_path)
