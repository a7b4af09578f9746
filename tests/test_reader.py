"""The reader of a study (paired statistics, analysis, curves, report, publish) on a crafted study of two
languages at different sizes and two seeds, where every expected number can be worked out by hand:

- aaa has sizes L1 and L2, bbb has L1, L2 and L4 (1M, 4M, 16M non-embedding parameters);
- every query of a language's start scores START[lang] + 0.01 x layers (so starts differ by language and size);
- KD scores its start + 0.1 on every query in seed 0 and + 0.3 in seed 1 (the mean, + 0.2, needs both seeds);
- OT scores KD + 0.1 in seed 1 only, + 0.03 log10(params / 1M) in both: OT - KD = 0.05 + 0.03 log10(params / 1M);
- headline: 8 queries at steps 0 and 10; siblings: 6 queries at the last step (its start is the untrained cell).

A bug that resamples queries but not seeds, or that matches a start to another language or size, moves a
number asserted here."""

import inspect
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import PROJECT

SIZES = {"aaa": (1, 2), "bbb": (1, 2, 4)}
START = {"aaa": 0.2, "bbb": 0.4}
KD_GAIN = {0: 0.1, 1: 0.3}
OT_EXTRA = {0: 0.0, 1: 0.1}
QUERIES = {"headline": 8, "siblings": 6}
SIBLINGS_OFFSET = 0.05  # siblings scores sit this far above the headline ones


def params(layers: int) -> int:
    return layers**2 * 1_000_000  # 1M, 4M, 16M


def start(lang: str, layers: int, task: str = "headline") -> float:
    return START[lang] + 0.01 * layers + (SIBLINGS_OFFSET if task == "siblings" else 0.0)


def score(lang, layers, method, seed, step, task="headline") -> float:
    value = start(lang, layers, task)
    if method == "untrained" or step == 0:
        return value
    value += KD_GAIN[seed]
    return value + (OT_EXTRA[seed] + 0.03 * np.log10(params(layers) / 1e6) if method == "ot" else 0.0)


def crafted_study(root, collapsed=("aaa", 1, "ot", 1)):
    """results.csv, sweep.json and per-query files (queries written out of order) of the crafted study; the
    `collapsed` (lang, layers, method, seed) cell is flagged collapsed at its last step."""
    rows = []
    for lang, sizes in SIZES.items():
        for layers in sizes:
            for method, seeds in (("untrained", (0,)), ("kd", (1, 0)), ("ot", (1, 0))):
                for seed in seeds:
                    cell = f"{lang}-fam-L{layers}-{method}" + ("" if method == "untrained" else f"-s{seed}")
                    steps = [(0, "headline"), (0, "siblings")] if method == "untrained" else \
                        [(0, "headline"), (10, "headline"), (10, "siblings")]
                    for step, task in steps:
                        qids = [f"q{i}" for i in range(QUERIES[task])][::-1]
                        value = score(lang, layers, method, seed, step, task)
                        file = f"cells/{cell}/per_query/step{step}_{task}.csv"
                        (root / file).parent.mkdir(parents=True, exist_ok=True)
                        pd.DataFrame({"qid": qids, "mrr@10": value, "ndcg@10": value / 2}).to_csv(root / file,
                                                                                                index=False)
                        (root / "cells" / cell / "result.json").write_text(json.dumps({"cell_id": cell}))
                        flag = (lang, layers, method, seed) == collapsed and step == 10
                        for metric, mean in (("mrr@10", value), ("ndcg@10", value / 2)):
                            rows.append(dict(cell_id=cell, lang=lang, family="fam", method=method, layers=layers,
                                             seed=seed, params_total=3 * params(layers),
                                             params_non_embedding=params(layers), wall_time_s=60.0, step=step,
                                             task=task, n_queries=QUERIES[task], per_query_file=file,
                                             query_cosine=0.95 if flag else 0.5, collapsed=flag,
                                             plan_sharpness=np.nan, identical_share=np.nan,
                                             final=step == (0 if method == "untrained" else 10)
                                             and task == "headline",
                                             metric=metric, value=mean))
        rows.append(dict(cell_id=f"{lang}-baseline-bm25", lang=lang, family="baseline", method="bm25", layers=0,
                         seed=0, step=0, task="headline", final=True, metric="mrr@10", value=0.7, wall_time_s=1.0))
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    budget = dict(n_pairs=64, epochs=1, max_steps=10, batch_size=32, max_length=48, lr=1e-4, head_lr_multiplier=1.0)
    (root / "sweep.json").write_text(json.dumps({"config": {"name": "crafted", "run": {"budget": budget},
                                                            "eval": {"task": "headline", "steps": [0, 10]}},
                                                 "git_commit": "0" * 40}))
    (root / "status.json").write_text(json.dumps({"cells": 20, "done": 20}))
    return pd.DataFrame(rows)


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "study"
    return root, crafted_study(root)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every per-query file read, in order."""
    import optical_core.evaluate.significance as significance

    seen, read = [], significance.read_per_query
    monkeypatch.setattr(significance, "read_per_query", lambda path, *rest: seen.append(str(path)) or read(path, *rest))
    return seen


@pytest.fixture
def no_png(monkeypatch):
    """HTML figures only (a PNG needs a headless browser: seconds to start)."""
    import optical_core.plots as plots

    def refuse():
        raise RuntimeError("no PNG in this test")

    monkeypatch.setattr(plots, "_start_image_server", refuse)


def row(table: pd.DataFrame, **where) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for key, value in where.items():
        mask &= (table[key] == value).to_numpy()
    assert mask.sum() == 1, (where, mask.sum())
    return table[mask].iloc[0]


# ---- curves -------------------------------------------------------------------------------------------------

def test_curve_table_means_over_seeds_with_a_ci_from_seed_resampling(study):
    from optical_core.study.curves import curve_table

    root, results = study
    curves = curve_table(results, root)
    assert len(curves) == (2 + 3) * (1 + 2 * 2)  # per size and language: the start, then KD and OT at 0 and 10
    kd = row(curves, lang="bbb", layers=2, method="kd", step=10)
    assert kd["mean"] == pytest.approx(0.42 + 0.2) and (kd.n_seeds, kd.n_queries) == (2, 8)
    # each seed scores alike on every query: the CI spans the two seeds' means, 0.1 and 0.3 above the start
    assert (kd.ci_low, kd.ci_high) == (pytest.approx(0.42 + 0.1), pytest.approx(0.42 + 0.3))
    start = row(curves, lang="aaa", layers=1, method="untrained", step=0)
    assert start["mean"] == pytest.approx(0.21) and start.ci_low == start.ci_high == pytest.approx(0.21)
    assert row(curves, lang="aaa", layers=1, method="ot", step=10).collapsed
    assert not row(curves, lang="bbb", layers=1, method="ot", step=10).collapsed
    assert row(curves, lang="aaa", layers=1, method="ot", step=10).query_cosine == pytest.approx((0.95 + 0.5) / 2)


def test_versus_start_pairs_each_method_with_its_own_languages_start(study):
    from optical_core.study.curves import versus_start_table

    root, results = study
    starts = versus_start_table(results, root)
    assert len(starts) == 5 * 2
    for lang, sizes in SIZES.items():
        for layers in sizes:
            kd = row(starts, lang=lang, layers=layers, method="kd")
            assert kd.mean_start == pytest.approx(start(lang, layers)) and kd["diff"] == pytest.approx(0.2)
            assert (kd.ci_low, kd.ci_high) == (pytest.approx(0.1), pytest.approx(0.3))
            assert kd.p_value == 2 / 2**8 and kd.final_step == 10 and kd.n_seeds == 2  # 8 queries, all better
            ot = row(starts, lang=lang, layers=layers, method="ot")
            assert ot["diff"] == pytest.approx(0.25 + 0.03 * np.log10(params(layers) / 1e6))


def test_a_task_scored_at_the_end_only_starts_from_its_sizes_untrained_cell(study):
    from optical_core.study.curves import versus_start_table

    root, results = study
    siblings = versus_start_table(results, root, task="siblings")
    for lang, sizes in SIZES.items():
        for layers in sizes:
            kd = row(siblings, lang=lang, layers=layers, method="kd")
            assert kd.mean_start == pytest.approx(start(lang, layers, "siblings"))  # not another language's
            assert kd["diff"] == pytest.approx(0.2) and kd.n_seeds == 2 and kd.p_value == 2 / 2**6
    no_start = results[~((results.method == "untrained") & (results.lang == "bbb") & (results.layers == 4))]
    assert len(versus_start_table(no_start, root, task="siblings")) == 4 * 2  # bbb L4 has no start: left out


def test_method_difference_pairs_seeds_and_languages(study):
    from optical_core.study.curves import method_difference_table

    root, results = study
    diffs = method_difference_table(results, root, "ot", "kd")
    assert len(diffs) == 5 * 2
    at_start = row(diffs, lang="aaa", layers=2, step=0)
    assert at_start["diff"] == 0 and at_start.p_value == 1.0  # both start from the same model
    for lang, sizes in SIZES.items():
        for layers in sizes:
            d = row(diffs, lang=lang, layers=layers, step=10)
            shift = 0.03 * np.log10(params(layers) / 1e6)
            assert d["diff"] == pytest.approx(0.05 + shift) and d.mean_b == pytest.approx(start(lang, layers) + 0.2)
            # OT - KD is 0.0 + shift in seed 0 and 0.1 + shift in seed 1: the CI spans the seeds
            assert (d.ci_low, d.ci_high) == (pytest.approx(shift), pytest.approx(0.1 + shift))
            assert d.p_value == 2 / 2**8 and d.params_non_embedding == params(layers) and (d.a, d.b) == ("ot", "kd")


def test_collapse_counts_count_languages_times_seeds(study):
    from optical_core.study.curves import collapse_counts

    _, results = study
    counts = collapse_counts(results)
    ot1 = row(counts, layers=1, method="ot")
    assert (ot1.cells, ot1.collapsed_cells, ot1.collapsed_at_end) == (4, 1, 1)  # aaa seed 1 of 2 languages x 2 seeds
    assert row(counts, layers=4, method="kd").cells == 2 and counts.collapsed_cells.sum() == 1


def test_curve_tables_hold_the_three_tables_of_a_task(study):
    from optical_core.study.curves import curve_table, curve_tables, method_difference_table, versus_start_table

    root, results = study
    tables = curve_tables(results, root, "ndcg@10", "headline")
    assert (tables.task, tables.compare_with) == ("headline", "kd")
    pd.testing.assert_frame_equal(tables.curves, curve_table(results, root, "ndcg@10"))
    pd.testing.assert_frame_equal(tables.starts, versus_start_table(results, root, "ndcg@10"))
    pd.testing.assert_frame_equal(tables.differences, method_difference_table(results, root, "ot", "kd", "ndcg@10"))
    last = row(tables.differences, lang="bbb", layers=4, step=10)
    assert last["diff"] == pytest.approx((0.05 + 0.03 * np.log10(16)) / 2)  # ndcg@10 is half of mrr@10 here


# ---- analysis -----------------------------------------------------------------------------------------------

def test_gain_table_per_language_with_its_own_start(study):
    from optical_core.study.analysis import gain_table
    from optical_core.study.results import final_results

    root, results = study
    gains = gain_table(final_results(results), root, n_boot=400)
    assert len(gains) == 5 and gains.n_seeds.eq(2).all() and gains.n_queries.eq(8).all()
    for lang, sizes in SIZES.items():
        for layers in sizes:
            g = row(gains, lang=lang, layers=layers)
            shift = 0.03 * np.log10(params(layers) / 1e6)
            kd = start(lang, layers) + 0.2
            assert g.untrained_mean == pytest.approx(start(lang, layers)) and g.kd_above_floor
            assert (g.kd_mean, g.abs_diff) == (pytest.approx(kd), pytest.approx(0.05 + shift))
            assert g.gain == pytest.approx((0.05 + shift) / kd)
            assert (g.abs_ci_low, g.abs_ci_high) == (pytest.approx(shift), pytest.approx(0.1 + shift))


def test_accuracy_table_and_the_slope_pool_languages_of_different_sizes(study):
    from optical_core.study.analysis import accuracy_table, gain_table, scaling_slopes
    from optical_core.study.results import final_results

    root, results = study
    final = final_results(results)
    accuracy = accuracy_table(final, root, n_boot=400)
    kd = row(accuracy, lang="aaa", layers=2, method="kd")
    assert kd["mean"] == pytest.approx(0.42) and (kd.ci_low, kd.ci_high) == (pytest.approx(0.32), pytest.approx(0.52))
    assert row(accuracy, lang="bbb", layers=4, method="untrained")["mean"] == pytest.approx(0.44)
    pooled, *per_language = scaling_slopes(gain_table(final, root, n_boot=50), "abs_diff")
    assert (pooled.scope, pooled.n, pooled.slope) == ("pooled", 5, pytest.approx(0.03))
    assert [(s.scope, s.n) for s in per_language] == [("aaa", 2), ("bbb", 3)]
    assert np.isnan(per_language[0].slope) and per_language[1].slope == pytest.approx(0.03)  # 2 sizes: no dof


# ---- summary, report, publish -------------------------------------------------------------------------------

def test_the_analysis_reads_the_per_query_files_once(study, reads):
    from optical_core.study.summary import analyse_sweep

    root, _ = study
    summary = analyse_sweep(root, n_boot=50)
    assert len(reads) == len(set(reads)) == (5 * 1 + 5 * 2 * 2 * 2)  # headline: each start, KD and OT at 0 and 10
    assert summary.curve_tables.task == "headline" and summary.curves is summary.curve_tables.curves
    assert summary.regime.startswith("Regime (headline, mrr@10): each objective beats its start (paired over "
                                     "queries, p < 0.05) in this many size-language cells: fam kd in 5 of 5, ot in "
                                     "5 of 5. Start -> last step, mean over 2 languages: fam-L1 0.310 -> kd 0.510")
    along = summary.along[summary.along.scope == "pooled"]
    assert along.step.tolist() == [10] and along.slope.iloc[0] == pytest.approx(0.03) and set(along.a) == {"ot"}


def test_the_report_uses_the_tables_it_is_given(study):
    from optical_core.study.curves import curve_tables
    from optical_core.study.report import write_curve_report

    root, results = study
    given = curve_tables(results, root, task="headline")
    marked = given.curves.assign(query_cosine=-1.0)  # only the given table has this
    tables = type(given)(given.task, given.compare_with, marked, given.starts, given.differences)
    text = write_curve_report(root, root / "report", computed={"headline": tables}, figures=False)
    assert pd.read_csv(root / "report" / "curves_headline.csv").query_cosine.eq(-1.0).all()
    assert pd.read_csv(root / "report" / "curves_siblings.csv").query_cosine.ne(-1.0).all()  # computed afresh
    headline = text[text.index("### Task: headline"):text.index("### Task: siblings")]
    assert "aaa fam-L1 starts at 0.210; KD improves on its start; change from start at the last step: kd +0.200 " \
           "(p=0.0078), ot +0.250 (p=0.0078)" in headline
    assert "bbb fam-L4 starts at 0.440" in headline
    other = write_curve_report(root, root / "other", computed={"headline": tables}, compare_with="ot", figures=False)
    assert "Each objective minus ot" in other and pd.read_csv(root / "other" / "curves_headline.csv").query_cosine.ne(
        -1.0).all()  # tables against KD do not answer a report against OT: made afresh


def test_publish_copies_the_records_and_writes_an_analysis_the_reader_reads_back(study, tmp_path, reads, no_png):
    from optical_core.study.publish import publish_sweep, write_analysis
    from optical_core.study.summary import published_summary

    root, _ = study
    dest = tmp_path / "published"
    publish_sweep(root, dest)
    assert (dest / "results.csv").read_bytes() == (root / "results.csv").read_bytes()
    assert len(list((dest / "cells").glob("*/per_query/*.csv"))) == len(list((root / "cells").glob("*/per_query/*")))
    summary = write_analysis(dest, dest / "analysis")
    assert len(reads) == len(set(reads)) == 5 * 2 + 5 * 2 * 2 * 2 + 5 * 2 * 2  # every file once, both metrics
    for folder, metric, scale in (("analysis", "mrr@10", 1.0), ("analysis/ndcg10", "ndcg@10", 0.5)):
        out = dest / folder
        assert {"accuracy.csv", "gains.csv", "slopes.csv", "curves_headline.csv", "curves_siblings.csv",
                "versus_start_siblings.csv", "differences_headline.csv", "report.md", "summary.json",
                "verdict.md"} <= {p.name for p in out.iterdir()}
        gains = pd.read_csv(out / "gains.csv")
        assert row(gains, lang="bbb", layers=4).abs_diff == pytest.approx(scale * (0.05 + 0.03 * np.log10(16)))
        assert json.loads((out / "summary.json").read_text())["metric"] == metric
    read_back = published_summary(dest)
    assert read_back.verdict == summary.verdict and read_back.families == summary.families
    pd.testing.assert_frame_equal(read_back.gains, summary.gains, check_dtype=False)
    assert (read_back.metric, read_back.regime, read_back.sweep, read_back.devices) == (
        "mrr@10", summary.regime, summary.sweep, summary.devices)
    assert read_back.cell_hours == pytest.approx(summary.cell_hours) and read_back.superseded == summary.superseded
    for field in ("accuracy", "slopes", "curves", "along", "collapses", "baselines", "language_slopes"):
        pd.testing.assert_frame_equal(getattr(read_back, field).reset_index(drop=True),
                                      getattr(summary, field).reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(read_back.results.reset_index(drop=True), summary.results.reset_index(drop=True),
                                  check_dtype=False)
    ndcg = published_summary(dest, "ndcg@10")
    assert ndcg.metric == "ndcg@10" and row(ndcg.gains, lang="bbb", layers=4).abs_diff == pytest.approx(
        0.5 * (0.05 + 0.03 * np.log10(16)))


def test_cli_analyse_and_report(study, tmp_path, capsys, no_png):
    from optical_core.cli import main

    root, _ = study
    assert main(["analyse", "--sweep", str(root), "--export", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "summary.json").is_file() and "Regime (headline, mrr@10)" in capsys.readouterr().out
    assert (tmp_path / "a" / "gain_vs_size_fam.html").is_file() and not list((tmp_path / "a").glob("*.png"))
    assert main(["report", "--sweep", str(root), "--out", str(tmp_path / "r"), "--metric", "ndcg@10"]) == 0
    assert capsys.readouterr().out.startswith("## crafted: learning curves (ndcg@10)")


@pytest.mark.skipif(not (PROJECT / "results" / "study" / "analysis").is_dir(), reason="results/study not here")
def test_reading_a_published_study_imports_no_torch():
    """A cold Python opens results/study's published summary (no bootstrap) without torch, transformers or POT."""
    import subprocess

    code = ("import sys; from pathlib import Path; from optical_core.study.summary import load_summary, "
            "published_summary; s = load_summary(Path('results/study')); "
            "assert published_summary(Path('results/study')) is not None; assert s.regime and len(s.gains); "
            "print(sorted(m for m in ('torch', 'transformers', 'ot') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(not (PROJECT / "results" / "study" / "analysis").is_dir(), reason="results/study not here")
def test_the_overview_opens_the_published_study_without_torch(tmp_path):
    """The Overview reads results/study's published analysis: neither the teacher nor checkpoints, so no torch; and
    its answer's language-level interval from a published table, so no scipy (a second to import)."""
    import subprocess

    code = ("import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file('pages/overview.py', "
            "default_timeout=240).run(); assert not at.exception, at.exception; "
            "assert at.markdown[1].value.startswith('Students learn'); "
            "print(sorted(m for m in ('torch', 'transformers', 'ot', 'scipy') if m in sys.modules))")
    env = dict(os.environ, OPTICAL_RUNS=str(tmp_path))  # no sweeps of its own under runs/
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_sweep_record_gives_budget_precision_task_and_steps(study):
    """sweep.json holds a run template and an evaluation plan; the report and the verdict read them from there."""
    from optical_core.study.report import write_curve_report
    from optical_core.study.summary import budget_note, sweep_budget, sweep_eval_steps, sweep_precision, sweep_task

    root, _ = study
    crafted = json.loads((root / "sweep.json").read_text())
    assert (sweep_task(crafted), sweep_precision(crafted), sweep_eval_steps(crafted)) == ("headline", "float32", [0, 10])
    assert budget_note(crafted) == "Budget: 64 bitext pairs x 1 epochs (2 steps of batch 32, max length 48) per student."
    budget = sweep_budget(crafted)
    new = {"config": {"name": "crafted", "run": {"budget": budget, "precision": "bf16"},
                      "eval": {"steps": [0, 10], "task": "siblings"}}, "git_commit": "0" * 40}
    assert (sweep_task(new), sweep_precision(new), sweep_budget(new)) == ("siblings", "bf16", budget)
    assert (sweep_task({}), sweep_budget({}), budget_note({})) == ("headline", {}, "")  # a sweep without sweep.json
    (root / "sweep.json").write_text(json.dumps(new))
    text = write_curve_report(root, root / "new", figures=False)
    assert "up to 10 steps, evaluated at [0, 10]; precision bf16; git 000000000000" in text


def _compared_sweep(root, mrr, ndcg, value_shift=0.0):
    """A sweep of one cell, headline at steps 0 and 10 (and siblings at 10), for `compare_sweeps`: 4 queries."""
    evaluations = []
    for step, task in ((0, "headline"), (10, "headline"), (10, "siblings")):
        a, n = (mrr, ndcg) if (step, task) == (10, "headline") else ([0.5] * 4, [0.5] * 4)
        file = f"cells/c/per_query/step{step}_{task}.csv"
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"qid": ["q3", "q2", "q1", "q0"], "mrr@10": a[::-1], "ndcg@10": n[::-1]}).to_csv(root / file,
                                                                                                   index=False)
        means = {"mrr@10": float(np.mean(a)) + value_shift, "ndcg@10": float(np.mean(n)) + 0.125}
        evaluations.append(dict(step=step, task=task, n_queries=4, per_query_file=file, means=means))
    (root / "cells" / "c" / "result.json").write_text(json.dumps(dict(
        cell_id="c", lang="aaa", family="fam", method="kd", layers=1, seed=0, task="headline",
        evaluations=evaluations)))


def test_compare_sweeps_pairs_each_cell_and_step_over_its_queries(tmp_path):
    from optical_core.study.curves import compare_sweeps

    _compared_sweep(tmp_path / "a", [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])
    _compared_sweep(tmp_path / "b", [0.0, 0.1, 0.2, 0.35], [0.0, 0.1, 0.2, 0.3], value_shift=0.5)
    only_a = tmp_path / "a" / "cells" / "only_a"  # a cell the other sweep lacks: not compared
    only_a.mkdir()
    (only_a / "result.json").write_text(json.dumps(dict(json.loads((tmp_path / "a" / "cells" / "c" / "result.json")
                                                                    .read_text()), cell_id="only_a")))
    table = compare_sweeps(tmp_path / "a", tmp_path / "b")
    assert table.cell_id.tolist() == ["c", "c"] and table.step.tolist() == [0, 10]
    assert set(table.task) == {"headline"} and set(table.metric) == {"mrr@10"}
    start, last = table.iloc[0], table.iloc[1]
    assert (start.a, start.b, start["diff"]) == (pytest.approx(0.5), pytest.approx(1.0), pytest.approx(-0.5))
    assert start.p_value == 1.0 and np.isnan(start.spearman)  # equal queries: no difference, no rank correlation
    assert (last.a, last.b) == (pytest.approx(0.25), pytest.approx(0.1625 + 0.5))
    assert last["diff"] == pytest.approx(0.25 - 0.6625)
    # per query a - b = 0.1, 0.1, 0.1, 0.05: of the 16 sign flips only "none" and "all" are as extreme
    assert last.p_value == 2 / 16 and last.spearman == pytest.approx(1.0)  # ndcg@10 would rank them reversed
    ndcg = compare_sweeps(tmp_path / "a", tmp_path / "b", metric="ndcg@10")
    assert set(ndcg.metric) == {"ndcg@10"} and ndcg.iloc[1].spearman == pytest.approx(-1.0)
    assert ndcg.a.tolist() == [pytest.approx(0.625), pytest.approx(0.375)]  # the recorded ndcg@10 means
    siblings = compare_sweeps(tmp_path / "a", tmp_path / "b", task="siblings")
    assert siblings.step.tolist() == [10] and set(siblings.task) == {"siblings"} and siblings.p_value.iloc[0] == 1.0


def test_publish_sweep_copies_finished_and_failed_cells_and_leaves_running_ones(study, tmp_path):
    from optical_core.study.publish import PUBLISHED_FILES, publish_sweep

    root, _ = study
    (root / "results.parquet").write_bytes(b"parquet")
    failed, running = root / "cells" / "failed-cell", root / "cells" / "running-cell"
    for cell in (failed, running):
        (cell / "per_query").mkdir(parents=True)
        (cell / "per_query" / "step0_headline.csv").write_text("qid,mrr@10\nq0,0.5\n")
    (failed / "failed.json").write_text("{}")
    kept = root / "cells" / "aaa-fam-L1-kd-s0"
    for name in PUBLISHED_FILES[1:]:  # every record a cell may hold
        (kept / name).write_text(name)
    (kept / "weights.safetensors").write_text("never published")
    dest = tmp_path / "nested" / "published"  # its parent does not exist yet
    publish_sweep(root, dest)
    for name in ("results.csv", "results.parquet", "sweep.json", "status.json"):
        assert (dest / name).read_bytes() == (root / name).read_bytes()
    assert (dest / "cells" / "failed-cell" / "failed.json").is_file()
    assert (dest / "cells" / "failed-cell" / "per_query" / "step0_headline.csv").is_file()
    assert not (dest / "cells" / "running-cell").exists()
    assert {p.name for p in (dest / "cells" / kept.name).iterdir()} == set(PUBLISHED_FILES) | {"per_query"}
    assert {"plans.npz", "top_documents.npz"} <= set(PUBLISHED_FILES)  # what the app opens without weights


def test_publishing_a_study_where_it_lies_copies_nothing_and_loses_nothing(study):
    """`optical publish --sweep X --dest X` (a study's analysis written anew in place) leaves its records as they are."""
    from optical_core.study.publish import publish_sweep

    root, _ = study
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    publish_sweep(root, root)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_export_figures_draws_each_familys_own_rows(study, tmp_path, monkeypatch):
    from pathlib import Path

    import optical_core.study.publish as publish
    from optical_core.study.summary import analyse_sweep

    root, _ = study
    summary = analyse_sweep(root, n_boot=50)
    other = summary.gains.assign(family="other", abs_diff=-1.0, kd_above_floor=False)  # a second family
    summary.gains = pd.concat([summary.gains, other], ignore_index=True)
    drawn = []
    for name in ("gain_figure", "accuracy_figure", "size_effect_figure"):
        monkeypatch.setattr(publish, name, lambda table, *args, _name=name, **kw: (_name, table, args, kw))
    monkeypatch.setattr(publish, "export_figure", lambda figure, path: drawn.append((Path(path).name, *figure)))
    publish.export_figures(summary, tmp_path)
    names = [d[0] for d in drawn]
    assert names == [f"{kind}_{family}" for family in ("fam", "other") for kind in
                     ("difference_vs_size", "gain_vs_size", "accuracy_vs_size", "size_effect")]
    by_name = {d[0]: d[1:] for d in drawn}
    _, gains, _, kw = by_name["difference_vs_size_fam"]
    assert set(gains.family) == {"fam"} and len(gains) == 5 and kw["y"] == "abs_diff"
    assert kw["title"] == "fam: OT - KD in mrr@10 vs student size"
    _, learned, _, kw = by_name["gain_vs_size_fam"]
    assert len(learned) == 5 and kw["title"].endswith("where KD beats its start (5 of 5 cells)")
    assert by_name["gain_vs_size_other"][3]["title"].endswith("(0 of 5 cells)")
    _, accuracy, _, kw = by_name["accuracy_vs_size_fam"]
    assert set(accuracy.family) == {"fam"} and len(accuracy) == 5 * 3 and kw["title"] == "fam: mrr@10 vs student size"
    assert len(by_name["accuracy_vs_size_other"][1]) == 0
    _, along, args, _ = by_name["size_effect_fam"]
    assert set(along.family) == {"fam"} and len(along) == 3
    assert args[0] == "fam: slope of (objective - KD) in mrr@10 on log10(size), by step"


def test_the_report_text_holds_the_tables_and_the_measured_cost(study):
    from optical_core.study.report import write_curve_report

    root, _ = study
    for cell, wall, evaluating, precision in (("aaa-fam-L1-kd-s0", 10.0, 4.0, None), ("aaa-fam-L1-ot-s0", 22.0, None,
                                              "bf16"), ("bbb-fam-L1-kd-s1", 16.0, 4.0, None)):
        record = dict(cell_id=cell, family="fam", layers=1, method=cell.split("-")[3], train_steps=2,
                      train_wall_time_s=wall, eval_time_s=evaluating) | ({"precision": precision} if precision else {})
        (root / "cells" / cell / "result.json").write_text(json.dumps(record))
    text = write_curve_report(root, root / "r", figures=False)
    lines = text.splitlines()
    assert lines[0] == "## crafted: learning curves (mrr@10)"
    assert ("Budget: 64 pairs, batch 32, max length 48, lr 0.0001 (head x1), up to 10 steps, evaluated at [0, 10]; "
            "precision float32; git 000000000000; .") in lines
    for line in ("| lang   | student   | method    |     0 | 10      |",  # no index column; x: collapsed
                 "| aaa    | fam-L1    | ot        | 0.210 | 0.460 x |",
                 "| bbb    | fam-L4    | untrained | 0.440 | nan     |",
                 "| aaa    | fam      |        1 | kd       |           10 |        0.210 |        0.410 |  0.200 |"
                 "    0.100 |     0.300 |     0.008 |         2 |",
                 "Each objective minus kd at each step (same seeds, batches and queries):",
                 "| aaa    | fam      |        1 |     10 | ot  | kd  |    0.460 |    0.410 |  0.050 |    0.000 |"
                 "     0.100 |     0.008 |",
                 "| aaa    | fam      |        1 | ot       |     10 |          0.725 |              nan |"
                 "               nan | True        |",
                 # training seconds per step without evaluation, median over cells; bf16 recorded, float32 default
                 "| fam-L1    | bf16        |       11.000 |        0.000 |       1 |",
                 "| fam-L1    | float32     |        4.500 |        0.325 |       2 |"):
        assert line in lines, line
    diagnostics = text[text.index("Collapse and"):text.index("### Task: siblings")]
    assert "| kd " in diagnostics and "untrained" not in diagnostics
    seconds = pd.read_csv(root / "r" / "step_seconds.csv").set_index("cell_id")
    assert list(seconds.columns) == ["student", "method", "precision", "steps", "train_s", "eval_s", "s_per_step",
                                     "eval_share"]  # the published table's header, named as the report reads it
    assert seconds.loc["aaa-fam-L1-kd-s0"].tolist() == ["fam-L1", "kd", "float32", 2, 6.0, 4.0, 3.0, 0.4]
    assert seconds.loc["aaa-fam-L1-ot-s0"].tolist() == ["fam-L1", "ot", "bf16", 2, 22.0, 0.0, 11.0, 0.0]
    assert (root / "r" / "report.md").read_text() == text
    assert {p.name for p in (root / "r").iterdir()} == {"report.md", "step_seconds.csv"} | {
        f"{kind}_{task}.csv" for kind in ("curves", "versus_start", "differences") for task in ("headline", "siblings")}


def test_a_report_table_without_rows_reads_none():
    from optical_core.study.report import _markdown

    assert _markdown(pd.DataFrame()) == "(none)" and _markdown(pd.DataFrame(columns=["lang"])) == "(none)"
    assert _markdown(pd.DataFrame({"x": [0.12345]}), 2).splitlines()[-1] == "| 0.12 |"
    assert _markdown(pd.DataFrame({"x": [0.12345]})).splitlines()[-1] == "| 0.123 |"


def test_export_summary_writes_into_an_existing_folder(study, tmp_path):
    from optical_core.study.publish import export_summary
    from optical_core.study.summary import analyse_sweep

    root, _ = study
    summary = analyse_sweep(root, n_boot=50)
    out = tmp_path / "out"
    out.mkdir()
    export_summary(summary, out, figures=False)  # into a folder that exists: a publish over an earlier one
    assert (out / "verdict.md").read_text() == f"{summary.regime}\n\n**fam**: {summary.families['fam']}\n"
    assert not (out / "summary.json").exists()  # only with the results table it was computed from
    assert {p.name for p in out.iterdir()} == {"accuracy.csv", "gains.csv", "slopes.csv", "verdict.md",
                                                    "slopes_along_training.csv", "collapse_counts.csv", "language_slopes.csv",
                                                    "curves_headline.csv"}


def test_summary_json_holds_the_verdicts_parts_and_the_hash_of_its_results(study, tmp_path):
    import hashlib

    from optical_core.study.publish import export_summary
    from optical_core.study.summary import analyse_sweep

    root, _ = study
    summary = analyse_sweep(root, n_boot=50)
    export_summary(summary, tmp_path / "out", figures=False, results_file=root / "results.csv")
    expected = {"metric": "mrr@10", "results_sha256": hashlib.sha256((root / "results.csv").read_bytes()).hexdigest(),
                "regime": summary.regime, "families": summary.families, "devices": []}
    assert (tmp_path / "out" / "summary.json").read_text() == json.dumps(expected, indent=1) + "\n"  # as published


def test_regime_says_whether_kd_moved_off_its_start():
    from optical_core.study.analysis import regime

    starts = pd.DataFrame([dict(lang="aaa", family="fam", layers=1, method="kd", diff=0.1, p_value=0.2),
                           dict(lang="aaa", family="fam", layers=2, method="kd", diff=-0.1, p_value=0.01),
                           dict(lang="bbb", family="fam", layers=1, method="kd", diff=0.0, p_value=0.01),
                           dict(lang="bbb", family="fam", layers=1, method="ot", diff=0.5, p_value=0.01),
                           dict(lang="bbb", family="fam", layers=2, method="ot", diff=0.5, p_value=0.01)]).assign(
        mean_start=0.3)
    results = pd.DataFrame([dict(final=True, metric="mrr@10", task="headline", family="baseline", method="bm25",
                                 value=0.7)])
    assert regime(results, starts, "mrr@10", "headline") == (
        "Regime (headline, mrr@10): aaa fam-L1 starts at 0.300; KD does not move off its start; change from start "
        "at the last step: kd +0.100 (p=0.2); aaa fam-L2 starts at 0.300; KD falls below its start; change from "
        "start at the last step: kd -0.100 (p=0.01); bbb fam-L1 starts at 0.300; KD does not move off its start; "
        "change from start at the last step: kd +0.000 (p=0.01), ot +0.500 (p=0.01); bbb fam-L2 starts at 0.300; ; "
        "change from start at the last step: ot +0.500 (p=0.01). Baselines on the same queries: bm25 0.700.")


def test_regime_of_one_language_without_baselines_names_sizes_only_and_moves_only_below_p_005():
    """One language: cells named by size alone. At p = 0.05 (not < 0.05) KD does not move off its start, nor at
    p = 0.2 when it drops. Baseline rows of another metric, task or a step before the last are not the baselines."""
    from optical_core.study.analysis import regime

    starts = pd.DataFrame([dict(lang="aaa", family="fam", layers=1, method="kd", diff=0.1, p_value=0.05),
                           dict(lang="aaa", family="fam", layers=2, method="kd", diff=-0.1, p_value=0.05),
                           dict(lang="aaa", family="fam", layers=4, method="kd", diff=-0.1, p_value=0.2)]).assign(
        mean_start=0.3)
    baseline = dict(final=True, metric="mrr@10", task="headline", family="baseline", method="bm25", value=0.7)
    others = pd.DataFrame([dict(baseline, metric="ndcg@10"), dict(baseline, final=False, metric="ndcg@10"),
                           dict(baseline, final=False, task="dev")])
    expected = ("Regime (headline, mrr@10): fam-L1 starts at 0.300; KD does not move off its start; change from "
                "start at the last step: kd +0.100 (p=0.05); fam-L2 starts at 0.300; KD does not move off its start; "
                "change from start at the last step: kd -0.100 (p=0.05); fam-L4 starts at 0.300; KD does not move off "
                "its start; change from start at the last step: kd -0.100 (p=0.2).")
    assert regime(others, starts, "mrr@10", "headline") == expected
    assert regime(pd.concat([others, pd.DataFrame([baseline])]), starts, "mrr@10", "headline") == (
        expected + " Baselines on the same queries: bm25 0.700.")
    assert regime(others, starts.iloc[:0], "mrr@10", "headline") == "No trained cell has finished yet."


def test_each_familys_verdict_has_its_collapses_and_the_slopes_one_index(study):
    from optical_core.study.summary import analyse_sweep

    root, results = study
    twin = results[results.family == "fam"].assign(family="gam", cell_id=lambda t: "g" + t.cell_id)
    pd.concat([results, twin], ignore_index=True).to_csv(root / "results.csv", index=False)
    for cell, manifest in (("aaa-fam-L1-kd-s0", {"device": "cuda:0"}), ("aaa-fam-L1-ot-s0", {"device": "cpu"}),
                           ("bbb-fam-L1-kd-s0", {"device": "cpu"}), ("bbb-fam-L1-ot-s0", {})):
        (root / "cells" / cell / "manifest.json").write_text(json.dumps(manifest))
    summary = analyse_sweep(root, n_boot=50)
    assert summary.devices == ["?", "cpu", "cuda:0"]  # a manifest without a device: unknown
    assert summary.sweep == json.loads((root / "sweep.json").read_text())
    assert summary.families["fam"].endswith(
        " Collapse (mean pairwise query cosine > 0.9 on some evaluated task at some step; runs = languages x seeds): "
        "ot in 1 of 10 runs (L1 1/4; 1 still collapsed at the last step). Budget: 64 bitext pairs x 1 epochs (2 "
        "steps of batch 32, max length 48) per student.")
    assert summary.families["gam"] == summary.families["fam"].replace("fam", "gam")
    assert summary.slopes.family.tolist() == ["fam"] * 6 + ["gam"] * 6  # absolute then relative: pooled, aaa, bbb
    assert summary.slopes.index.tolist() == list(range(12))


def test_collapse_counts_of_a_study_without_trained_cells_keeps_its_columns(study):
    from optical_core.study.curves import collapse_counts

    _, results = study
    empty = collapse_counts(results[results.method == "untrained"])
    assert empty.empty and empty.columns.tolist() == ["family", "layers", "method", "cells", "collapsed_cells",
                                                      "collapsed_at_end"]


def test_a_missing_start_leaves_out_its_cell_only_and_differences_have_one_index(study):
    from optical_core.study.curves import curve_tables, versus_start_table

    root, results = study
    no_start = results[~((results.method == "untrained") & (results.lang == "aaa") & (results.layers == 1))]
    siblings = versus_start_table(no_start, root, task="siblings")  # the first cell in order has no start
    assert len(siblings) == 4 * 2 and not ((siblings.lang == "aaa") & (siblings.layers == 1)).any()
    third = results[results.method == "ot"].assign(method="ot2", cell_id=lambda t: t.cell_id + "-2")
    tables = curve_tables(pd.concat([results, third], ignore_index=True), root)
    assert tables.differences.a.tolist() == ["ot"] * 10 + ["ot2"] * 10
    assert tables.differences.index.tolist() == list(range(20))


def test_a_failed_png_export_leaves_no_older_figure_behind(tmp_path, no_png):
    """The Overview shows a study's published PNG as its answer's figure: one from an earlier publish must not
    outlive a publish that could not draw it."""
    import plotly.graph_objects as go

    from optical_core.plots import export_figure
    from optical_core.study.summary import StudySummary

    (tmp_path / "difference_vs_size_fam.png").write_bytes(b"an older figure")
    written = export_figure(go.Figure(), tmp_path / "difference_vs_size_fam")
    assert [p.name for p in written] == ["difference_vs_size_fam.html"]
    assert not (tmp_path / "difference_vs_size_fam.png").exists()
    summary = StudySummary(*[None] * 11, analysis_dir=tmp_path)
    assert summary.published_figure("difference_vs_size_fam") is None  # the page then draws it in plotly
    (tmp_path / "difference_vs_size_fam.png").write_bytes(b"png")
    assert summary.published_figure("difference_vs_size_fam") == tmp_path / "difference_vs_size_fam.png"
    assert StudySummary(*[None] * 11).published_figure("difference_vs_size_fam") is None  # analysed afresh


def test_versus_start_reads_each_run_at_the_step_it_kept(study):
    """A run stopped on its dev score keeps an earlier step than its last evaluated one: its gain on the start
    is read there, per seed, and on a task scored at the end only too."""
    from optical_core.study.curves import versus_start_table

    root, results = study
    stopped = "aaa-fam-L1-kd-s1"  # seed 1 kept step 0: it never beat its start
    results = results.copy()
    is_stopped = results.cell_id == stopped
    results.loc[is_stopped, "final"] = (results.step == 0) & (results.task == "headline")
    starts = versus_start_table(results, root)
    kd = row(starts, lang="aaa", layers=1, method="kd")
    assert kd["diff"] == pytest.approx((0.1 + 0.0) / 2) and kd.n_seeds == 2 and kd.final_step == 10  # seed 0: 10
    assert row(starts, lang="aaa", layers=2, method="kd")["diff"] == pytest.approx(0.2)  # the others unchanged
    siblings = versus_start_table(results, root, task="siblings")  # scored at step 10 only: seed 1 has none at 0
    assert row(siblings, lang="aaa", layers=1, method="kd")["diff"] == pytest.approx(0.1)
    assert row(siblings, lang="aaa", layers=1, method="kd").n_seeds == 1


def test_publishing_again_into_the_same_folder_with_a_running_cell_first(study, tmp_path):
    """A study published in chunks: each session publishes into the folder the last one wrote, and a cell still
    running (wherever it sorts) is skipped, not the end of the copy."""
    from optical_core.study.publish import publish_sweep

    root, _ = study
    running = root / "cells" / "0-running-cell"  # sorts before every finished cell
    (running / "per_query").mkdir(parents=True)
    (running / "per_query" / "step0_headline.csv").write_text("qid,mrr@10\nq0,0.5\n")
    dest = tmp_path / "published"
    publish_sweep(root, dest)
    publish_sweep(root, dest)  # the next chunk's publish: the folder exists
    finished = {p.parent.name for p in (root / "cells").glob("*/result.json")}
    assert {p.parent.name for p in (dest / "cells").glob("*/result.json")} == finished and finished
    assert not (dest / "cells" / running.name).exists()


def test_a_verdict_file_puts_a_superseded_study_first_then_the_regime(study, tmp_path):
    from optical_core.study.publish import export_summary
    from optical_core.study.summary import analyse_sweep

    root, _ = study
    summary = analyse_sweep(root, n_boot=50)
    summary.superseded, summary.along = "Superseded: a toy budget.", None  # and a study without curves' slopes
    out = tmp_path / "nested" / "out"  # its parent does not exist yet
    export_summary(summary, out, figures=False)
    assert (out / "verdict.md").read_text() == (f"Superseded: a toy budget.\n\n{summary.regime}\n\n"
                                                f"**fam**: {summary.families['fam']}\n")
    assert not (out / "slopes_along_training.csv").exists()


def test_figures_of_a_study_without_slopes_along_training(study, tmp_path, monkeypatch):
    import optical_core.study.publish as publish
    from optical_core.study.summary import analyse_sweep

    root, _ = study
    summary = analyse_sweep(root, n_boot=50)
    summary.along = None  # a study evaluated at its last step only
    drawn = []
    monkeypatch.setattr(publish, "export_figure", lambda figure, path: drawn.append(Path(path).name))
    publish.export_figures(summary, tmp_path)
    assert drawn == ["difference_vs_size_fam", "gain_vs_size_fam", "accuracy_vs_size_fam"]


# ---- study.summary: the small readers, then analyse_sweep and load_summary on the crafted study ---------------

def test_completeness_reads_the_status_file(tmp_path):
    from optical_core.study.summary import completeness

    assert completeness(tmp_path) == ""  # no status file: nothing to say
    (tmp_path / "status.json").write_text(json.dumps({"done": 3, "cells": 5}))
    assert completeness(tmp_path) == ("In progress: 3 of 5 cells have finished, and every number here covers only "
                                      "those.")
    (tmp_path / "status.json").write_text(json.dumps({"cells": 2}))  # none done yet
    assert completeness(tmp_path).startswith("In progress: 0 of 2 cells have finished")
    (tmp_path / "status.json").write_text(json.dumps({"done": 5, "cells": 5}))
    assert completeness(tmp_path) == ""


def test_headline_is_completeness_then_regime_then_the_main_familys_answer(tmp_path):
    from optical_core.study.summary import _headline

    assert _headline(tmp_path, "Regime.", {"zz": "Z.", "aa": "A."}) == "Regime. Z."  # no me5: the first family
    assert _headline(tmp_path, "Regime.", {"zz": "Z.", "me5": "M."}) == "Regime. M."
    assert _headline(tmp_path, "", {}) == "No finished OT/KD pairs yet."
    (tmp_path / "status.json").write_text(json.dumps({"done": 1, "cells": 2}))
    assert _headline(tmp_path, "Regime.", {}) == ("In progress: 1 of 2 cells have finished, and every number here "
                                                  "covers only those. Regime. No finished OT/KD pairs yet.")


def test_baselines_cell_hours_and_a_familys_rows_of_a_table():
    from optical_core.study.summary import _of_family, baselines_of, cell_hours_of

    row = dict(lang="aaa", family="baseline", method="bm25", cell_id="b", wall_time_s=36.0)
    results = pd.DataFrame([dict(row, metric="mrr@10", value=0.7), dict(row, metric="ndcg@10", value=0.6),
                            dict(row, family="fam", method="kd", cell_id="k", wall_time_s=7164.0, metric="mrr@10",
                                 value=0.3)])
    assert baselines_of(results, "mrr@10").to_dict("records") == [dict(lang="aaa", method="bm25", value=0.7)]
    assert cell_hours_of(results) == 2.0  # each cell once (a row per metric): (36 + 7164) / 3600
    assert cell_hours_of(results.drop(columns="wall_time_s")) == 0.0
    assert _of_family(None, "fam") is None and _of_family(pd.DataFrame(), "fam") is None
    assert _of_family(results, "fam").value.tolist() == [0.3]


def test_analyse_sweep_gives_every_table_its_metric_bootstrap_size_and_task(study, monkeypatch):
    """The crafted study's per-query scores are constant within a cell, so its intervals do not depend on the
    number of draws: the arguments each table gets are checked instead."""
    import optical_core.study.summary as reader

    root, _ = study
    calls = []
    for name in ("accuracy_table", "gain_table", "curve_tables"):
        real = getattr(reader, name)

        def spy(*a, _real=real, _name=name, **k):  # the arguments given, by name, however they were passed
            given = inspect.signature(_real).bind(*a, **k).arguments
            calls.append((_name, {key: v for key, v in given.items() if isinstance(v, (str, int))}))
            return _real(*a, **k)

        monkeypatch.setattr(reader, name, spy)
    summary = reader.analyse_sweep(root, metric="ndcg@10", n_boot=50)
    assert calls == [("accuracy_table", dict(metric="ndcg@10", n_boot=50)),
                     ("gain_table", dict(metric="ndcg@10", n_boot=50)),
                     ("curve_tables", dict(metric="ndcg@10", task="headline"))]
    assert "fam student sizes" in summary.families["fam"] and "OT minus KD in ndcg@10" in summary.families["fam"]
    assert set(summary.along.b) == {"kd"} and set(summary.along.a) == {"ot"}  # each objective minus KD
    assert summary.along.index.tolist() == list(range(len(summary.along)))
    calls.clear()
    reader.analyse_sweep(root)
    assert [c[1] for c in calls[:2]] == [dict(metric="mrr@10", n_boot=1000)] * 2  # the default: 1000 draws


def test_a_sweep_record_and_its_budget_note(study, tmp_path):
    from optical_core.settings import SettingsError
    from optical_core.study.summary import _sweep_record, budget_note

    root, _ = study
    assert _sweep_record(tmp_path) == {} and _sweep_record(root)["config"]["name"] == "crafted"
    assert budget_note(_sweep_record(root)) == ("Budget: 64 bitext pairs x 1 epochs (2 steps of batch 32, max "
                                                "length 48) per student.")
    with pytest.raises(SettingsError, match="^budget: unknown setting bogus"):  # named as sweep.json spells it
        budget_note({"config": {"run": {"budget": {"bogus": 1}}}})


def test_a_study_evaluated_once_has_no_curves_and_its_published_analysis_reads_back(study, no_png):
    """One evaluated step: no curves, no regime paragraph, no slopes along training, fresh or published; a
    superseded note is read either way."""
    from optical_core.study.publish import write_analysis
    from optical_core.study.summary import analyse_sweep, published_summary

    root, results = study
    results[results.final].assign(step=0).to_csv(root / "results.csv", index=False)
    (root / "SUPERSEDED").write_text("Superseded: a toy.\nmore\n")
    fresh = analyse_sweep(root, n_boot=20)
    assert (fresh.regime, fresh.curves, fresh.along, fresh.collapses) == ("", None, None, None)
    assert fresh.verdict == fresh.families["fam"] and fresh.superseded == "Superseded: a toy."
    write_analysis(root, root / "analysis")
    read = published_summary(root)
    assert read is not None and read.analysis_dir == root / "analysis"
    assert (read.regime, read.curves, read.along, read.collapses) == ("", None, None, None)
    assert read.verdict == fresh.verdict and read.superseded == "Superseded: a toy."
    pd.testing.assert_frame_equal(read.language_slopes, fresh.language_slopes, check_dtype=False)
    for stray in ("curves_headline.csv", "slopes_along_training.csv"):  # left by an earlier, multi-step analysis
        (root / "analysis" / stray).write_text("step,slope\n10,0.5\n")
    assert (published_summary(root).curves, published_summary(root).along) == (None, None)


def test_a_study_without_an_ot_kd_pair_says_so(study):
    from optical_core.study.summary import analyse_sweep

    root, results = study
    results[results.method != "ot"].to_csv(root / "results.csv", index=False)
    summary = analyse_sweep(root, n_boot=20)
    assert summary.families == {} and summary.slopes.empty and summary.gains.empty
    assert summary.verdict.endswith("No finished OT/KD pairs yet.")


def test_load_summary_reads_the_published_analysis_of_its_metric_else_analyses_that_metric(study, monkeypatch,
                                                                                           no_png):
    import optical_core.study.summary as reader
    from optical_core.study.publish import write_analysis

    root, _ = study
    fresh = reader.load_summary(root, "ndcg@10")  # nothing published: analysed for that metric
    assert fresh.metric == "ndcg@10" and fresh.analysis_dir is None and "ndcg@10" in fresh.families["fam"]
    write_analysis(root, root / "analysis")
    monkeypatch.setattr(reader, "analyse_sweep", lambda *a, **k: pytest.fail("analysed afresh"))
    read = reader.load_summary(root, "ndcg@10")
    assert read.metric == "ndcg@10" and read.analysis_dir == root / "analysis" / "ndcg10"
    assert read.families == fresh.families


def test_curve_tables_of_another_task_and_metric_say_which_and_carry_each_size(study):
    """siblings at ndcg@10 (half the mrr@10 scores): every table labels its rows with the task and metric it was
    asked for, computes them from those rows, and carries each size's non-embedding parameters."""
    from optical_core.study.curves import curve_tables, trained_methods

    root, results = study
    tables = curve_tables(results, root, "ndcg@10", "siblings")
    for name in ("curves", "starts", "differences"):
        table = getattr(tables, name)
        assert len(table) and set(table.task) == {"siblings"} and set(table.metric) == {"ndcg@10"}, name
    for table in (tables.curves, tables.differences):
        assert set(table.params_non_embedding) == {params(1), params(2), params(4)}
    untrained = row(tables.curves, lang="bbb", layers=4, method="untrained", step=0)
    assert untrained["mean"] == pytest.approx(start("bbb", 4, "siblings") / 2)
    assert row(tables.starts, lang="bbb", layers=4, method="kd").mean_start == pytest.approx(untrained["mean"])
    assert trained_methods(results) == ["kd", "ot"]  # neither the start nor the bm25 baseline
