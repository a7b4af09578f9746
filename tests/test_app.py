"""AppTest drives every page of the app in-process."""

import base64
import json
import re
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from .conftest import PROJECT, tiny_config

APP = str(PROJECT / "app.py")
QUICK = "sweep runs/quick"  # the quick sweep's label in the study pickers: its trained cells have plan records
CELL_FIELDS = ("lang", "family", "size", "method", "seed")


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, quick_sweep, tiny_checkpoint, teacher):
    from optical_core.distil.run import train_and_save

    ckpts = tmp_path_factory.mktemp("app_ckpts")
    shutil.copytree(tiny_checkpoint, ckpts / "tiny-me5-ot")
    train_and_save(tiny_config("kd", "me5", 1, n_pairs=32), ckpts, "tiny-me5-kd", teacher=teacher)
    broken = ckpts / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "config.json").unlink()
    hostile = {  # each is listed as unreadable; every page that lists checkpoints must keep working
        "nested": lambda d: (d / "manifest.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000),
        "wrongtype": lambda d: (d / "manifest.json").write_text('{"format": 2, "name": "x", "config": "me5"}'),
        "bomb": lambda d: (d / "config.json").write_text(
            (d / "config.json").read_text().replace('"num_hidden_layers": 1', '"num_hidden_layers": 10000')),
    }
    for name, spoil in hostile.items():
        shutil.copytree(tiny_checkpoint, ckpts / name)
        spoil(ckpts / name)
    (ckpts / "escape").symlink_to(tiny_checkpoint, target_is_directory=True)
    runs_dir = quick_sweep[0].parent
    mp = pytest.MonkeyPatch()
    mp.setenv("OPTICAL_CHECKPOINTS", str(ckpts))
    mp.setenv("OPTICAL_RUNS", str(runs_dir))
    mp.setenv("OPTICAL_EXPORTS", str(tmp_path_factory.mktemp("exports")))
    yield ckpts
    mp.undo()


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def load_study(path, metric="mrr@10"):
    from pages.common import load_study

    return load_study(Path(path), metric)


def figures(at: AppTest) -> list[str]:
    return [chart.proto.spec for chart in at.get("plotly_chart")]


def figure_dicts(at: AppTest) -> list[dict]:
    return [json.loads(spec) for spec in figures(at)]


def titles(at: AppTest) -> list[str]:
    return [f["layout"]["title"]["text"] for f in figure_dicts(at)]


def heatmap_z(figure: dict) -> np.ndarray:
    """The z matrix of a heatmap figure (plotly serialises arrays as base64 typed buffers)."""
    z = figure["data"][0]["z"]
    rows, cols = len(figure["layout"]["yaxis"]["ticktext"]), len(figure["layout"]["xaxis"]["ticktext"])
    if isinstance(z, dict):
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(rows, cols)
    return np.asarray(z, dtype=float)


def test_overview_opens_on_the_current_study_with_the_regime_first(app_env):
    at = open_page()
    assert "Does student size change" in at.title[0].value
    assert at.selectbox[0].value == "results/study"  # the headline study, not the pilot or the superseded one
    summary = load_study(PROJECT / "results" / "study")
    from optical_core.study.answer import short_answer

    sentences = short_answer(summary)  # the answer in one minute: the regime, the trend, the main caveat
    shown = [m.value for m in at.markdown]
    assert len(sentences) == 3 and shown[1:4] == sentences and sentences[0].startswith("Students learn")
    assert "OT minus KD rises" in sentences[1] and sentences[2].startswith("The main caveat")
    assert summary.verdict in shown  # the full verdict, in its expander, regime before any trend
    assert summary.verdict.index("Regime (headline, mrr@10): ") < summary.verdict.index("OT minus KD")
    # The figures publish drew paint first (no plotly in the browser); a toggle swaps in the interactive one.
    images = [i.proto.imgs[0] for i in at.get("image")]
    assert [i.caption.split(",")[0] for i in images] == ["me5: OT - KD in mrr@10 vs student size",
                                                          "mrr@10 along training"]
    assert not figures(at)
    at.toggle(key="answer_figure").set_value(True).run()
    assert len(at.get("image")) == 1 and titles(at) == ["OT - KD in mrr@10 vs student size"]
    at.toggle(key="curves_figure").set_value(True).run()
    assert not at.get("image") and titles(at) == ["OT - KD in mrr@10 vs student size",
                                                 "mrr@10 along training (x: collapsed, query cosine > 0.9)"]
    gain = figure_dicts(at)[0]["data"]
    langs = sorted(set(summary.gains[summary.gains.family == "me5"].lang))
    assert len(langs) == 5 and [t["name"] for t in gain] == langs + ["mean over languages"]
    assert "error_y" in gain[0]  # each language's gain carries its bootstrap CI
    captions = [c.value for c in at.caption]
    assert f"{summary.results.cell_id.nunique()} cells finished · 5 languages · metric mrr@10" in captions
    baselines = next(m.value for m in at.markdown if m.value.startswith("| lang"))
    assert "bm25" in baselines.splitlines()[0] and len(baselines.splitlines()) == 2 + 5  # header, rule, languages
    assert '"git_commit": "' + summary.sweep["git_commit"] in at.text[0].value
    # Nothing whose browser code is megabytes (data grid, JSON viewer, highlighter): it would hold back the figure.
    assert not at.dataframe and not at.json and not at.code and not at.metric
    assert not at.error


def test_overview_marks_a_superseded_study(app_env, quick_sweep, tmp_path, monkeypatch):
    import optical_core.store.locations as locations

    shutil.copytree(quick_sweep[0], tmp_path / "results" / "old")
    (tmp_path / "results" / "old" / "SUPERSEDED").write_text("Superseded: a toy budget.\nmore\n")
    monkeypatch.setattr(locations, "COMMITTED_STUDIES", tmp_path / "results")
    at = open_page()
    at.selectbox[0].set_value("results/old (superseded)").run()
    assert not at.exception
    assert at.error and at.error[0].value == "Superseded: a toy budget."


def test_scaling_page_has_figures_filters_and_downloads(app_env):
    at = open_page("pages/scaling.py")
    assert at.selectbox[0].label == "Study" and at.selectbox[0].value == "results/study"
    assert at.selectbox[1].label == "Metric" and at.selectbox[1].value == "mrr@10"
    assert titles(at) == ["mrr@10 along training (x: collapsed, query cosine > 0.9)",
                          "OT - KD in mrr@10 (absolute)", "OT-vs-KD gain in mrr@10 vs student size",
                          "me5: slope of (objective - KD) in mrr@10 on log10(size), by step", "mrr@10 vs student size"]
    summary = load_study(PROJECT / "results" / "study")
    assert at.selectbox[2].label == "Student family" and at.selectbox[2].options == sorted(set(summary.gains.family))
    assert at.multiselect[0].label == "Languages" and at.multiselect[0].value == sorted(set(summary.gains.lang))
    assert [b.proto.label for b in at.get("download_button")] == ["Download results (CSV)", "Download gains (CSV)"]
    learned = summary.gains[(summary.gains.family == "me5") & summary.gains.kd_above_floor.astype(bool)]
    assert any(c.value == f"Relative gain: the {len(learned)} of {(summary.gains.family == 'me5').sum()} "
               "size-language cells where KD beats its start (paired over queries, p < 0.05)." for c in at.caption)
    collapses = next(d.value for d in at.dataframe if "collapsed_cells" in d.value.columns)
    assert set(collapses.family) == {"me5"} and set(collapses.method) == {"kd", "ot", "ot-kd"}

    at.selectbox[1].set_value("ndcg@10").run()
    assert not at.exception
    assert titles(at) == ["ndcg@10 along training (x: collapsed, query cosine > 0.9)",
                          "OT - KD in ndcg@10 (absolute)", "OT-vs-KD gain in ndcg@10 vs student size",
                          "me5: slope of (objective - KD) in ndcg@10 on log10(size), by step",
                          "ndcg@10 vs student size"]
    family = at.selectbox[2].value
    expected = load_study(PROJECT / "results" / "study", "ndcg@10")
    gains = next(d.value for d in at.dataframe if "gain_ci_low" in d.value.columns)
    assert set(gains.metric) == {"ndcg@10"} and set(gains.family) == {family}
    assert len(gains) == (expected.gains.family == family).sum()
    tidy = at.dataframe[-1].value  # the tidy table follows the metric
    assert set(tidy.metric) == {"ndcg@10"} and len(tidy) == (expected.results.metric == "ndcg@10").sum() > 0


def test_alignment_page_draws_a_heatmap_of_a_real_pair(app_env, teacher):
    from optical_core.data.bitext import load_mafand
    from optical_core.store.checkpoints import load_checkpoint

    at = open_page("pages/alignment.py")
    at.radio[0].set_value("a checkpoint (any sentence pair)").run()
    # the first checkpoint, and by default its partner: the other objective's student of the same size and language
    assert at.selectbox[0].value == "tiny-me5-kd · kd · me5-L1 · hau · seed 0"
    assert at.selectbox[1].value == "tiny-me5-ot · ot · me5-L1 · hau · seed 0"
    student, manifest = load_checkpoint(app_env / "tiny-me5-kd")
    max_length = manifest.config.budget.max_length  # 32: the specials take 2 places
    pair = load_mafand("hau")
    lr_text, en_text = pair.source[0], pair.target[0]  # pair number 0 of the MAFAND dev split
    lr_all, en_all = student.tokenizer.tokenize(lr_text), teacher.tokenizer.tokenize(en_text)
    assert len(lr_all) > max_length - 2 and len(en_all) > max_length - 2  # this pair is cut: the page must say so
    lr_tokens, en_tokens = lr_all[: max_length - 2], en_all[: max_length - 2]
    warning = (f"Cut to the run's max length ({max_length} tokens): {len(lr_all) - len(lr_tokens)} hau and "
               f"{len(en_all) - len(en_tokens)} English tokens were dropped, as training would have dropped them.")
    assert [w.value for w in at.warning] == [warning, warning]

    figs = figure_dicts(at)
    assert titles(at) == ["kd: transport plan", "kd: cost matrix", "ot: transport plan", "ot: cost matrix"]
    for fig in figs:
        assert [d["type"] for d in fig["data"]] == ["heatmap"]
        assert fig["layout"]["yaxis"]["ticktext"] == lr_tokens  # the student's sentencepiece pieces (▁...)
        assert fig["layout"]["xaxis"]["ticktext"] == en_tokens  # the teacher's wordpieces (##...)
    plans = [heatmap_z(figs[0]), heatmap_z(figs[2])]
    for plan in plans:
        assert plan.shape == (len(lr_tokens), len(en_tokens)) and (plan >= 0).all()
        assert abs(plan.sum() - 1) < 1e-5  # a transport plan: total mass 1
    assert not np.allclose(plans[0], plans[1])  # each column shows its own checkpoint's plan
    # side by side on one colour scale: both plans share one range, both cost matrices another
    assert figs[0]["data"][0]["zmax"] == figs[2]["data"][0]["zmax"] == pytest.approx(max(p.max() for p in plans))
    assert figs[1]["data"][0]["zmin"] == figs[3]["data"][0]["zmin"]
    assert figs[1]["data"][0]["zmax"] == figs[3]["data"][0]["zmax"]

    tops = [d.value for d in at.dataframe]  # top aligned pairs, one table per checkpoint
    assert len(tops) == 2
    for top, plan in zip(tops, plans):
        assert list(top.columns) == ["lr_token", "en_token", "mass", "share_of_lr_token", "cost", "lr_position",
                                     "en_position"]
        assert len(top) == 15 and top.mass.is_monotonic_decreasing
        first = top.iloc[0]
        assert (first.lr_position, first.en_position) == np.unravel_index(plan.argmax(), plan.shape)
        assert first.lr_token == lr_tokens[first.lr_position] and first.en_token == en_tokens[first.en_position]
        assert abs(first.mass - plan.max()) < 1e-4  # shown rounded to 4 places

    at.radio[1].set_value("type your own").run()
    assert not at.exception and not at.warning
    figs = figure_dicts(at)
    assert len(figs) == 4
    typed_lr = student.tokenizer.tokenize("Rais amewasili Nairobi leo asubuhi.")
    typed_en = teacher.tokenizer.tokenize("The president arrived in Nairobi this morning.")
    assert all(f["layout"]["yaxis"]["ticktext"] == typed_lr and f["layout"]["xaxis"]["ticktext"] == typed_en
               for f in figs)


def test_compare_page_pairs_two_checkpoints(app_env):
    at = open_page("pages/compare.py")
    at.radio[0].set_value("checkpoints (scored now)").run()
    assert not at.error, [e.value for e in at.error]
    # the two tiny checkpoints differ in their objective (and budget): the page says so before any number
    assert at.warning and at.warning[0].value.startswith("These runs differ in: ")
    assert "loss.method (" in at.warning[0].value
    pairwise = next(d.value for d in at.dataframe if "p_value" in d.value.columns)
    assert len(pairwise) == 1 and {"diff", "ci_low", "ci_high"} <= set(pairwise.columns)
    wins = next(d.value for d in at.dataframe if "queries where A wins" in d.value.columns)
    assert int(wins.iloc[0][["queries where A wins", "queries where A ties", "queries where A loses"]].sum()) == 123


def pick(at: AppTest, prefix: str, **values) -> None:
    """Set a study-cell picker's selectboxes (lang, family, size, method, seed), one run each, in order."""
    for field in CELL_FIELDS:
        if field in values:
            at.selectbox(key=f"{prefix}-{field}").set_value(values[field]).run()


def picked(at: AppTest, prefix: str) -> list:
    return [at.selectbox(key=f"{prefix}-{field}").value for field in CELL_FIELDS]


def test_alignment_page_opens_a_study_cell_at_two_steps_on_one_colour_scale(app_env, quick_sweep):
    from optical_core.study.records import read_plans

    at = open_page("pages/alignment.py")
    assert at.radio[0].value == "a study cell (its recorded plans: no weights needed)"  # no weights needed
    at.selectbox(key="alignment-study").set_value(QUICK).run()
    # it opens on a pure OT cell that has records, its first recorded step beside its last
    assert picked(at, "alignment-a") == ["swa", "minilm", 1, "ot", 0]
    assert at.radio[1].value == "another step of this cell"
    assert any(c.value.startswith("4 of 4 trained cells of this study have plan records") for c in at.caption)
    plans = read_plans(quick_sweep[0] / "cells" / "swa-minilm-L1-ot-s0")
    assert plans.steps == [0, 4]  # step 0 and the selected step (the quick runs have 4 steps: no step 25)
    assert titles(at) == [f"minilm-L1 ot, step {s}: {kind}" for s in (0, 4)
                          for kind in ("transport plan", "cost matrix")]
    figs = figure_dicts(at)
    for fig, (step, kind) in zip(figs, [(s, k) for s in (0, 4) for k in ("plan", "cost")]):
        recorded = plans.plan(step, 0)  # panel pair 0: the first MAFAND dev pair, as the cell recorded it
        assert fig["layout"]["yaxis"]["ticktext"] == recorded.lr_tokens
        assert fig["layout"]["xaxis"]["ticktext"] == recorded.en_tokens
        np.testing.assert_array_equal(heatmap_z(fig), getattr(recorded, kind))
    both = [plans.plan(s, 0) for s in (0, 4)]
    assert not np.array_equal(both[0].plan, both[1].plan)  # training moved the plan
    assert figs[0]["data"][0]["zmax"] == figs[2]["data"][0]["zmax"] == max(p.plan.max() for p in both)  # one scale
    assert figs[1]["data"][0]["zmin"] == figs[3]["data"][0]["zmin"] == min(p.cost.min() for p in both)
    record = json.loads((quick_sweep[0] / "cells" / "swa-minilm-L1-ot-s0" / "result.json").read_text())
    start = next(e for e in record["evaluations"] if e["step"] == 0 and e["task"] == "headline")
    header = at.markdown[0].value
    assert header.startswith(f"**swa · minilm-L1 · ot · seed 0** · step 0 · mrr@10 {start['means']['mrr@10']:.3f}")
    assert f"<P, C> = {(both[0].plan.astype(float) * both[0].cost).sum():.4f}" in header

    panel = next(s for s in at.selectbox if s.label == "Panel pair")
    assert len(panel.options) == len(plans.pairs) == 8
    panel.set_value(5).run()  # an NTREX headline of the panel
    assert not at.exception
    assert figure_dicts(at)[2]["layout"]["yaxis"]["ticktext"] == plans.plan(4, 5).lr_tokens
    assert plans.pairs[5][0] == "headline" and plans.pairs[5][2] in at.markdown[0].value


def test_alignment_page_puts_two_cells_side_by_side_on_one_colour_scale(app_env, quick_sweep):
    from optical_core.study.records import read_plans

    at = open_page("pages/alignment.py")
    at.selectbox(key="alignment-study").set_value(QUICK).run()
    at.radio[1].set_value("another cell").run()
    assert not at.exception
    assert picked(at, "alignment-b") == ["swa", "minilm", 2, "ot", 0]  # the largest recorded size beside it
    assert titles(at) == ["minilm-L1 ot, step 4: transport plan", "minilm-L1 ot, step 4: cost matrix",
                          "minilm-L2 ot, step 4: transport plan", "minilm-L2 ot, step 4: cost matrix"]
    figs = figure_dicts(at)
    plans = [read_plans(quick_sweep[0] / "cells" / f"swa-minilm-L{n}-ot-s0").plan(4, 0) for n in (1, 2)]
    np.testing.assert_array_equal(heatmap_z(figs[2]), plans[1].plan)
    assert figs[0]["data"][0]["zmax"] == figs[2]["data"][0]["zmax"] == max(p.plan.max() for p in plans)
    assert figs[1]["data"][0]["zmax"] == figs[3]["data"][0]["zmax"] == max(p.cost.max() for p in plans)
    pick(at, "alignment-b", method="kd")  # the other objective: its plan is an inspection, on the same scale
    assert titles(at)[2] == "minilm-L2 kd, step 4: transport plan" and not at.exception


def test_alignment_page_says_a_cell_has_no_plan_records_and_offers_rebuild(app_env, quick_sweep, tmp_path,
                                                                          monkeypatch):
    import optical_core.store.locations as locations

    study = tmp_path / "results" / "older"
    shutil.copytree(quick_sweep[0], study)
    (study / "cells" / "swa-minilm-L1-ot-s0" / "plans.npz").unlink()  # as a cell run before plan records existed
    (study / "cells" / "swa-minilm-L2-ot-s0" / "plans.npz").write_bytes(b"PK\x03\x04 damaged")
    monkeypatch.setattr(locations, "COMMITTED_STUDIES", tmp_path / "results")
    calls = []

    def rebuild_cell(study_dir, cell_id, checkpoints_root, on_step=None, precision=None):  # the core's signature
        calls.append((Path(study_dir), cell_id, Path(checkpoints_root), precision))
        on_step(types.SimpleNamespace(step=2))  # a StepLog
        return types.SimpleNamespace(summary=lambda: "rebuilt: mrr@10 equal to the record", added_records=[])

    monkeypatch.setitem(sys.modules, "optical_core.study.rebuild", types.SimpleNamespace(rebuild_cell=rebuild_cell))
    at = open_page("pages/alignment.py")
    at.selectbox(key="alignment-study").set_value("results/older").run()
    pick(at, "alignment-a", size=1, method="ot")
    assert [i.value for i in at.info] == ["swa-minilm-L1-ot-s0: no plans.npz (cells run before plan records existed; "
                                          "rebuild the cell to see them)"]
    assert not figures(at) and not at.exception
    next(b for b in at.button if b.label == "Rebuild swa-minilm-L1-ot-s0").click().run()
    assert calls == [(study, "swa-minilm-L1-ot-s0", app_env, None)]  # at the recorded precision
    assert [s.value for s in at.success] == ["rebuilt: mrr@10 equal to the record"]
    at.checkbox(key="rebuild-fp32-alignment-swa-minilm-L1-ot-s0").check().run()
    next(b for b in at.button if b.label == "Rebuild swa-minilm-L1-ot-s0").click().run()
    assert calls[-1] == (study, "swa-minilm-L1-ot-s0", app_env, "float32")

    pick(at, "alignment-a", size=2)
    assert len(at.info) == 1 and at.info[0].value.startswith(f"{study}/cells/swa-minilm-L2-ot-s0/plans.npz: damaged (")


def test_compare_page_pairs_two_study_cells_from_their_records(app_env, quick_sweep):
    from optical_core.data.clir import build_collection
    from optical_core.evaluate.significance import paired_comparison
    from optical_core.study.records import read_top_documents

    at = open_page("pages/compare.py")
    assert at.radio[0].value == "two study cells (their records: no weights needed)"
    at.selectbox(key="compare-study").set_value(QUICK).run()
    assert picked(at, "compare-a") == ["swa", "minilm", 1, "kd", 0]  # KD beside OT of the same student by default
    assert picked(at, "compare-b") == ["swa", "minilm", 1, "ot", 0]
    cells = quick_sweep[0] / "cells"
    a, b = (pd.read_csv(cells / f"swa-minilm-L1-{m}-s0" / "per_query" / "step4_headline.csv") for m in ("kd", "ot"))
    expected = paired_comparison(a["mrr@10"].to_numpy(), b["mrr@10"].to_numpy())
    table = next(d.value for d in at.dataframe if "queries where A wins" in d.value.columns).iloc[0]
    assert table["mean A"] == pytest.approx(expected.mean_a, abs=1e-4)
    assert table["A - B"] == pytest.approx(expected.difference, abs=1e-4)
    assert table["p_value"] == pytest.approx(expected.p_value, abs=1e-4) and table["queries"] == 123
    diff = a["mrr@10"] - b["mrr@10"]
    assert [table[f"queries where A {k}"] for k in ("wins", "ties", "loses")] == [
        (diff > 0).sum(), (diff == 0).sum(), (diff < 0).sum()]

    collection = build_collection("headline", "swa")
    differ = next(d.value for d in at.dataframe if "query" in d.value.columns)
    assert len(differ) == 10 and list(differ["diff"].abs()) == sorted(differ["diff"].abs(), reverse=True)
    assert differ["diff"].abs().iloc[0] == pytest.approx(diff.abs().max(), abs=1e-4)
    first = differ.iloc[0]
    assert first["query"] == collection.queries[first.qid] and first.english == collection.query_translations[first.qid]
    top_a = read_top_documents(cells / "swa-minilm-L1-kd-s0")[first.qid][:3]
    shown = [m.value for m in at.expander[0].markdown]
    assert len(at.expander) == 10 and at.expander[0].label.startswith(f"{first.qid} · A - B = ")
    listed = [line for line in shown if re.match(r"[123]\. ", line)]
    assert len(listed) == 6  # each side's top 3
    for rank, doc in enumerate(top_a, 1):
        line = listed[rank - 1]
        assert f"`{doc}`: {collection.documents[doc][:50]}" in line
        assert (":green-background[relevant] · " in line) == (doc in collection.qrels[first.qid])

    pick(at, "compare-b", family="baseline", method="bm25")  # a baseline records scores, not documents
    assert not at.exception and not at.error
    assert any(c.value == "swa-baseline-bm25: baselines record their scores, not their retrieved documents."
               for c in at.caption)
    table = next(d.value for d in at.dataframe if "queries where A wins" in d.value.columns).iloc[0]
    assert table["B"] == "swa-baseline-bm25" and table["queries"] == 123


def test_compare_page_says_a_cell_without_top_documents_in_one_line(app_env):
    at = open_page("pages/compare.py")
    at.selectbox(key="compare-study").set_value("results/study").run()  # the committed study: records of before
    pick(at, "compare-a", lang="hau", family="me5", size=1, method="kd", seed=0)
    pick(at, "compare-b", lang="hau", family="me5", size=1, method="ot", seed=0)
    assert not at.exception and not at.error
    missing = [i.value for i in at.info if "top_documents.npz" in i.value]
    if missing:  # until `optical rebuild` adds its records
        assert missing == [f"hau-me5-L1-{m}-s0: no top_documents.npz (cells run before plan records existed; rebuild "
                           "the cell to see them)" for m in ("kd", "ot")]
    table = next(d.value for d in at.dataframe if "queries where A wins" in d.value.columns).iloc[0]
    assert table["queries"] == 123  # the paired test needs only the per-query scores every cell has


def test_search_page_ranks_a_headline_for_every_system_and_draws_the_plan_to_the_top_hit(app_env, teacher):
    from optical_core.data.clir import build_collection
    from optical_core.evaluate.search import search_all
    from optical_core.store.checkpoints import load_checkpoint

    at = open_page("pages/search.py")
    assert at.selectbox[0].value == "tiny-me5-kd · kd · me5-L1 · hau · seed 0"
    collection = build_collection("headline", "hau")
    qid = next(iter(collection.queries))
    assert at.selectbox[1].value == qid
    student, _ = load_checkpoint(app_env / "tiny-me5-kd")
    expected = search_all(collection.queries[qid], collection, teacher, student, k=5)
    lines = [m.value for m in at.markdown]
    headers = ["**student** (kd, me5-L1)", "**raw teacher**", "**BM25**", "**mE5 off the shelf**"]
    assert [line for line in lines if line in headers] == headers
    for system, header in zip(expected, headers):
        shown = lines[lines.index(header) + 1: lines.index(header) + 1 + len(expected[system].doc_ids)]
        assert [re.search(r"`(.+?)`", line).group(1) for line in shown] == expected[system].doc_ids, system
        for line, doc in zip(shown, expected[system].doc_ids):
            marked = line.startswith(tuple(f"{i}. :green-background[relevant] " for i in range(1, 6)))
            assert marked == (doc in collection.qrels[qid])
    assert expected["bm25"].doc_ids[0] in collection.qrels[qid]  # so one document is marked
    top = expected["student"].doc_ids[0]
    assert titles(at) == [f"query -> {top}: transport plan"]
    plan = heatmap_z(figure_dicts(at)[0])
    assert abs(plan.sum() - 1) < 1e-5 and plan.shape[1] == 62  # the document's first 62 tokens
    assert not at.error and not at.exception


def test_search_page_refuses_bad_queries_in_one_line(app_env):
    at = open_page("pages/search.py")
    at.radio[0].set_value("type your own").run()
    for text, message in [("   ", "Type a query (or pick an NTREX headline): the query is empty."),
                          ("abc " * 1300, "The query has 5,199 characters; at most 5,000 are searched"),
                          ("ሰላም ለዓለም እንዴት ነህ", "The student's tokenizer does not know this script: 100%")]:
        at.text_area[0].set_value(text).run()
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.error) == 1 and at.error[0].value.startswith(message), at.error[0].value
        assert not figures(at)
    at.text_area[0].set_value("Gwamnatin Najeriya ta ce za ta gina sabbin makarantu").run()
    assert not at.error and "A typed query has no relevance judgement: no document is marked." in [
        c.value for c in at.caption]


def test_checkpoints_page_lists_a_broken_checkpoint_and_keeps_working(app_env):
    at = open_page("pages/checkpoints.py")
    assert any("broken" in e.value and "config.json is missing" in e.value for e in at.error)
    for name, reason in [("nested", "not valid JSON"), ("bomb", "claims 10000 layers"),
                         ("escape", "symbolic link"), ("wrongtype", "must be a table of settings")]:
        assert any(name in e.value and reason in e.value for e in at.error), (name, [e.value for e in at.error])
    app_names = ["bomb", "broken", "escape", "nested", "tiny-me5-kd", "tiny-me5-ot", "wrongtype"]
    # the app's folders first, every one readable or not, by name (sweep entries, "<sweep>/<cell>", follow)
    assert at.selectbox[0].options[: len(app_names)] == app_names
    listing = at.dataframe[0].value
    assert dict(zip(listing.name[: len(app_names)], listing.status[: len(app_names)])) == {
        "bomb": "unreadable", "broken": "unreadable", "escape": "unreadable", "nested": "unreadable",
        "tiny-me5-kd": "ok", "tiny-me5-ot": "ok", "wrongtype": "unreadable"}
    assert listing.set_index("name").loc["tiny-me5-kd", "method"] == "kd"
    app_errors = [e.value for e in at.error if "/" not in e.value.split(":")[0]]
    assert len(app_errors) == 5  # one line per unreadable app checkpoint, none for the readable ones


def test_checkpoints_page_lists_no_sweep_folder_that_is_not_a_checkpoint(app_env):
    at = open_page("pages/checkpoints.py")
    # the quick sweep keeps no checkpoints: nothing of it belongs on this page
    assert not [name for name in at.selectbox[0].options if name.startswith("quick/")]
    assert not [e.value for e in at.error if e.value.startswith("quick/")]


def test_checkpoints_page_exports_a_student_for_sentence_transformers(app_env):
    import os

    at = open_page("pages/checkpoints.py")
    at.selectbox[0].set_value("tiny-me5-kd").run()
    next(b for b in at.button if b.label == "Export").click().run()
    target = Path(os.environ["OPTICAL_EXPORTS"]) / "tiny-me5-kd"
    assert not at.exception and [s.value for s in at.success] == [f"Exported to {target}"]
    assert (target / "modules.json").is_file() and (target / "2_Dense" / "model.safetensors").is_file()
    next(b for b in at.button if b.label == "Export").click().run()  # again: refused, not overwritten
    assert any("already exists" in e.value for e in at.error)


def test_checkpoint_delete_needs_confirmation(app_env, tmp_path):
    shutil.copytree(app_env / "tiny-me5-kd", app_env / "to-delete")
    at = open_page("pages/checkpoints.py")
    at.selectbox[0].set_value("to-delete").run()
    delete = next(b for b in at.button if b.label == "Delete")
    assert delete.disabled
    at.checkbox[0].check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert not (app_env / "to-delete").exists()


def test_train_page_runs_a_tiny_training_to_a_saved_checkpoint(app_env):
    at = open_page("pages/train.py")
    # the widgets set below by position are the ones meant
    assert [at.selectbox[i].label for i in (1, 2)] == ["Student family", "Size (first L layers)"]
    assert [at.number_input[i].label for i in (3, 5, 6)] == ["n pairs", "batch size", "max length"]
    assert at.radio[0].label == "Objective" and at.radio[0].value == "kd"
    assert at.radio[0].options == ["KD", "OT", "OT+KD"]  # the study's three objectives, by name
    head = next(s for s in at.selectbox if s.label == "Head initialisation")
    assert head.options == ["ridge", "procrustes", "random"] and head.value == "ridge"  # from StudentSpec.head_init
    assert next(n for n in at.number_input if n.label == "KD weight w (OT+KD)").value == 10.0  # the study's OT+KD
    at.radio[0].set_value("ot-kd")
    head.set_value("procrustes")
    at.selectbox[1].set_value("minilm")
    at.selectbox[2].set_value(1)
    at.number_input[3].set_value(16)  # pairs
    at.number_input[5].set_value(8)  # batch
    at.number_input[6].set_value(16)  # max length
    at.button[0].click().run()
    deadline = time.time() + 240
    while time.time() < deadline and not at.success:
        time.sleep(1)
        at.run()
    assert not at.exception
    assert len(at.success) == 1, [m.value for m in at.markdown][:5]
    saved = re.fullmatch(r"Saved checkpoint (.*/swa-minilm-L1-ot-s0-[0-9a-f]{8})", at.success[0].value)
    assert saved, at.success[0].value
    assert Path(saved.group(1)).parent == app_env and (Path(saved.group(1)) / "manifest.json").is_file()
    config = json.loads((Path(saved.group(1)) / "manifest.json").read_text())["config"]
    assert (config["loss"]["method"], config["loss"]["kd_weight"]) == ("ot", 10.0)  # OT+KD: OT with a KD term
    assert config["student"]["head_init"] == "procrustes"
    table = at.dataframe[-1].value  # the start beside the trained student, so a user sees what training did
    assert list(table.student) == ["start (step 0, before any update)", "trained (2 steps)", "trained - start"]
    assert abs(table["mrr@10"].iloc[2] - (table["mrr@10"].iloc[1] - table["mrr@10"].iloc[0])) < 1e-3


def test_study_list_has_current_studies_then_superseded_ones_then_sweeps(tmp_path, monkeypatch):
    import optical_core.store.locations as study

    for d in ("results/default", "results/pilot", "results/sensitivity-x", "results/study", "results/archive",
              "runs/quick"):
        (tmp_path / d).mkdir(parents=True)
    for d in ("results/default", "results/pilot", "results/sensitivity-x", "results/study", "runs/quick"):
        (tmp_path / d / "results.csv").write_text("cell_id\n")
    (tmp_path / "results/default/SUPERSEDED").write_text("Superseded: toy budget.\nmore\n")
    monkeypatch.setattr(study, "COMMITTED_STUDIES", tmp_path / "results")
    monkeypatch.setenv("OPTICAL_RUNS", str(tmp_path / "runs"))
    assert list(study.study_dirs()) == ["results/study", "results/pilot", "results/sensitivity-x",
                                        "results/default (superseded)", "sweep runs/quick"]
    assert study.superseded_reason(tmp_path / "results/default") == "Superseded: toy budget."
    assert study.superseded_reason(tmp_path / "results/pilot") is None


def test_each_current_committed_study_has_a_current_published_analysis():
    """The app reads the published analysis instead of rerunning the bootstrap, which takes minutes for the full
    study. A results table changed after `optical publish` makes it stale; this test names the study to republish."""
    from optical_core.store.locations import study_dirs
    from optical_core.study.summary import ANALYSED_METRICS, published_summary

    current = {label: d for label, d in study_dirs().items()
               if label.startswith("results/") and not label.endswith("(superseded)")}
    assert {"results/study", "results/pilot"} <= set(current)
    for label, d in current.items():
        for metric in ANALYSED_METRICS:
            assert published_summary(d, metric) is not None, f"{label}: no current analysis for {metric}; republish"


@pytest.fixture
def fresh_clone(monkeypatch, tmp_path):
    """The app as a fresh clone has it: the committed studies, no sweep under runs/, no checkpoint."""
    monkeypatch.setenv("OPTICAL_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OPTICAL_CHECKPOINTS", str(tmp_path / "checkpoints"))


def test_a_fresh_clone_watches_pure_ot_collapse_at_l1_beside_l12_from_committed_records(fresh_clone):
    """No training and no weights: results/explore's records give swa me5-L1 pure OT at steps 0, 25 and its
    selected step, and the same objective at L12 beside it, on one colour scale."""
    from optical_core.study.explore import read_study_cells
    from optical_core.study.records import read_plans

    explore = PROJECT / "results" / "explore"
    at = open_page("pages/alignment.py")
    assert at.selectbox(key="alignment-study").value == "results/explore"  # the first study with plan records
    assert picked(at, "alignment-a") == ["swa", "me5", 1, "ot", 0]
    plans = read_plans(explore / "cells" / "swa-me5-L1-ot-s0")
    cell = next(c for c in read_study_cells(explore)[0] if c.id == "swa-me5-L1-ot-s0")
    assert plans.steps == [0, 25, cell.selected_step]
    assert titles(at) == [f"me5-L1 ot, step {s}: {kind}" for s in (0, cell.selected_step)
                          for kind in ("transport plan", "cost matrix")]
    at.select_slider(key="step-another step of this cell-1-swa-me5-L1-ot-s0").set_value(25).run()
    at25 = cell.evaluation(25)
    assert at.markdown[1].value.startswith(f"**swa · me5-L1 · ot · seed 0** · step 25 · mrr@10 "
                                           f"{at25['means']['mrr@10']:.3f}")
    assert ("(collapsed)" in at.markdown[1].value) == bool(at25["collapsed"])
    at.radio[1].set_value("another cell").run()  # beside it: the largest recorded size, same objective
    assert picked(at, "alignment-b") == ["swa", "me5", 12, "ot", 0] and not at.exception
    figs = figure_dicts(at)
    assert [f["layout"]["title"]["text"].split(",")[0] for f in figs] == ["me5-L1 ot"] * 2 + ["me5-L12 ot"] * 2
    assert figs[0]["data"][0]["zmax"] == figs[2]["data"][0]["zmax"]  # one colour scale per row
    assert figs[1]["data"][0]["zmin"] == figs[3]["data"][0]["zmin"]


def test_a_fresh_clone_compares_two_committed_study_cells_with_their_top_documents(fresh_clone):
    at = open_page("pages/compare.py")
    assert at.selectbox(key="compare-study").value == "results/explore"
    assert picked(at, "compare-a")[3] == "kd" and picked(at, "compare-b")[3] == "ot"  # KD beside OT, one student
    wins = next(d.value for d in at.dataframe if "queries where A wins" in d.value.columns)
    assert int(wins.iloc[0][["queries where A wins", "queries where A ties", "queries where A loses"]].sum()) == 123
    assert any(s.value == "Queries where they differ most" for s in at.subheader)
    expander = at.expander[0]
    assert [m.value for m in expander.markdown if m.value.endswith(", its top 3")] == [
        "**A: swa · me5-L1 · kd · seed 0**, its top 3", "**B: swa · me5-L1 · ot · seed 0**, its top 3"]
    assert sum(m.value.startswith(("1. ", "2. ", "3. ")) for m in expander.markdown) == 6  # 3 documents a side
