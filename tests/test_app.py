"""AppTest drives every page of the app in-process."""

import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from .conftest import PROJECT, tiny_config

APP = str(PROJECT / "app.py")


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
        "wrongtype": lambda d: (d / "manifest.json").write_text('{"name": "x", "config": "me5"}'),
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


def figures(at: AppTest) -> list[str]:
    return [chart.proto.spec for chart in at.get("plotly_chart")]


def test_overview_opens_on_the_current_study_with_the_regime_first(app_env):
    at = open_page()
    assert "Does student size change" in at.title[0].value
    assert at.selectbox[0].value == "results/pilot"  # the current study, not the superseded one
    verdict = at.info[0].value
    assert verdict.startswith("Regime (headline, mrr@10): ")  # whether students learned, before any trend
    assert verdict.index("Regime") < verdict.index("relative gain of OT over KD")
    assert any("along training" in f for f in figures(at)) and any('"error_y"' in f for f in figures(at))
    assert not at.error


def test_overview_marks_the_superseded_study(app_env):
    at = open_page()
    at.selectbox[0].set_value("results/default (superseded)").run()
    assert not at.exception
    assert at.error and at.error[0].value.startswith("Superseded: a toy budget")
    assert any("Toy-scale" in w.value for w in at.warning)


def test_scaling_page_has_figures_filters_and_downloads(app_env):
    at = open_page("pages/scaling.py")
    assert len(figures(at)) == 4  # learning curves, gain, absolute difference, accuracy
    assert at.selectbox and at.multiselect
    assert len(at.get("download_button")) == 2
    at.selectbox[1].set_value("ndcg@10").run()
    assert not at.exception


def test_alignment_page_draws_a_heatmap_of_a_real_pair(app_env):
    at = open_page("pages/alignment.py")
    specs = figures(at)
    assert any('"type":"heatmap"' in s.replace(" ", "") for s in specs)
    assert "▁" in specs[0] or "##" in specs[0] or "ticktext" in specs[0]
    assert at.dataframe  # top aligned pairs
    at.radio[0].set_value("type your own").run()
    assert not at.exception and len(figures(at)) >= 2


def test_compare_page_pairs_two_checkpoints(app_env):
    at = open_page("pages/compare.py")
    assert not at.error, [e.value for e in at.error]
    # the two tiny checkpoints differ in their objective (and budget): the page says so before any number
    assert at.warning and at.warning[0].value.startswith("These runs differ in: ")
    assert "loss.method (" in at.warning[0].value
    pairwise = next(d.value for d in at.dataframe if "p_value" in d.value.columns)
    assert len(pairwise) == 1 and {"diff", "ci_low", "ci_high"} <= set(pairwise.columns)
    wins = next(d.value for d in at.dataframe if "queries where A wins" in d.value.columns)
    assert int(wins.iloc[0][["queries where A wins", "queries where A ties", "queries where A losses"]].sum()) == 123


def test_checkpoints_page_lists_a_broken_checkpoint_and_keeps_working(app_env):
    at = open_page("pages/checkpoints.py")
    assert any("broken" in e.value and "config.json is missing" in e.value for e in at.error)
    for name, reason in [("nested", "not valid JSON"), ("bomb", "claims 10000 layers"),
                         ("escape", "symbolic link"), ("wrongtype", "has no train_config")]:
        assert any(name in e.value and reason in e.value for e in at.error), (name, [e.value for e in at.error])
    names = at.selectbox[0].options
    assert "tiny-me5-ot" in names and "tiny-me5-kd" in names


def test_checkpoints_page_exports_a_student_for_sentence_transformers(app_env):
    import os
    from pathlib import Path

    at = open_page("pages/checkpoints.py")
    at.selectbox[0].set_value("tiny-me5-kd").run()
    next(b for b in at.button if b.label == "Export").click().run()
    assert not at.exception and at.success and "Exported to" in at.success[0].value
    target = Path(os.environ["OPTICAL_EXPORTS"]) / "tiny-me5-kd"
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
    assert at.selectbox and at.number_input and at.radio
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
    assert at.success and "Saved checkpoint" in at.success[0].value, [m.value for m in at.markdown][:5]
    assert any(p.name.startswith("swa-minilm-L1-kd-s0") for p in app_env.iterdir())
    table = at.dataframe[-1].value  # the start beside the trained student, so a user sees what training did
    assert list(table.student) == ["start (step 0, before any update)", "trained (2 steps)", "trained - start"]
    assert abs(table["mrr@10"].iloc[2] - (table["mrr@10"].iloc[1] - table["mrr@10"].iloc[0])) < 1e-3


def test_study_list_has_current_studies_then_superseded_ones_then_sweeps(tmp_path, monkeypatch):
    import optical_core.store.locations as study

    for d in ("results/default", "results/pilot", "results/sensitivity-x", "results/ablation", "runs/quick"):
        (tmp_path / d).mkdir(parents=True)
    for d in ("results/default", "results/pilot", "results/sensitivity-x", "runs/quick"):
        (tmp_path / d / "results.csv").write_text("cell_id\n")
    (tmp_path / "results/default/SUPERSEDED").write_text("Superseded: toy budget.\nmore\n")
    monkeypatch.setattr(study, "REFERENCE_RESULTS", tmp_path / "results" / "default")
    monkeypatch.setenv("OPTICAL_RUNS", str(tmp_path / "runs"))
    assert list(study.study_dirs()) == ["results/pilot", "results/sensitivity-x", "results/default (superseded)",
                                        "sweep runs/quick"]
    assert study.superseded_reason(tmp_path / "results/default") == "Superseded: toy budget."
    assert study.superseded_reason(tmp_path / "results/pilot") is None
