"""The reader of a study (paired statistics, analysis, curves, report, publish) on a crafted study of two
languages at different sizes and two seeds, where every expected number can be worked out by hand:

- aaa has sizes L1 and L2, bbb has L1, L2 and L4 (1M, 4M, 16M non-embedding parameters);
- every query of a language's start scores START[lang] + 0.01 x layers (so starts differ by language and size);
- KD scores its start + 0.1 on every query in seed 0 and + 0.3 in seed 1 (the mean, + 0.2, needs both seeds);
- OT scores KD + 0.1 in seed 1 only, + 0.03 log10(params / 1M) in both: OT - KD = 0.05 + 0.03 log10(params / 1M);
- headline: 8 queries at steps 0 and 10; siblings: 6 queries at the last step (its start is the untrained cell).

A bug that resamples queries but not seeds, or that matches a start to another language or size, moves a
number asserted here."""

import json
import os
import sys

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
    """The Overview reads results/study's published analysis: neither the teacher nor checkpoints, so no torch."""
    import subprocess

    code = ("import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file('pages/overview.py', "
            "default_timeout=240).run(); assert not at.exception, at.exception; "
            "assert at.info[0].value.startswith('Regime (headline, mrr@10)'); "
            "print(sorted(m for m in ('torch', 'transformers', 'ot') if m in sys.modules))")
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
