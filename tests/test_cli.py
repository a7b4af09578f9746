"""The command line's exit codes and messages: 0 on success; 2 and one `error: ...` line (no traceback) on every
kind of bad input; argparse's own usage errors also exit 2. Commands run in-process through `cli.main(argv)`;
one test runs the real `python -m optical_core` process."""

import json
import shutil
import subprocess
import sys
import tomllib

import pytest

from optical_core.cli import main

from .conftest import PROJECT, write

COMMANDS = ["students", "tokenizers", "data", "train", "evaluate", "sweep", "analyse", "publish", "report",
            "export", "parity", "compare", "download-data"]
GRID = '[[grid]]\nfamily = "minilm"\nsizes = [1]\nlangs = ["hau"]\n'


def run(argv, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `optical ARGV`; argparse's exits are caught as their code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(result, message: str) -> None:
    """Exit code 2 and exactly one line on stderr, `error: MESSAGE`; nothing on stdout."""
    code, out, err = result
    assert (code, err) == (2, f"error: {message}\n")
    assert out == ""


# --- argparse: help, unknown commands and options -------------------------------------------------------


def test_help_lists_every_command_and_exits_0(capsys):
    code, out, err = run(["--help"], capsys)
    assert code == 0 and err == ""
    assert out.startswith("usage: optical ")
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_and_exits_0(capsys, command):
    code, out, err = run([command, "--help"], capsys)
    assert code == 0 and err == ""
    assert out.startswith(f"usage: optical {command} ")


def test_an_unknown_command_exits_2_naming_it(capsys):
    code, out, err = run(["nosuch"], capsys)
    assert code == 2 and out == ""
    assert "optical: error: argument command: invalid choice: 'nosuch'" in err


def test_no_command_exits_2(capsys):
    code, out, err = run([], capsys)
    assert code == 2 and out == ""
    assert err.rstrip().endswith("optical: error: the following arguments are required: command")


@pytest.mark.parametrize("argv,message", [
    (["train", "--no-such-option"], "optical: error: unrecognized arguments: --no-such-option"),
    (["evaluate"], "optical evaluate: error: the following arguments are required: --checkpoint"),
    (["evaluate", "--checkpoint", "x", "--task", "nope"], "optical evaluate: error: argument --task: invalid choice"),
    (["sweep"], "optical sweep: error: the following arguments are required: --config"),
    (["compare", "results/pilot"], "optical compare: error: the following arguments are required: sweep_b"),
])
def test_bad_options_exit_2_with_argparse_usage(capsys, argv, message):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert message in err and err.startswith("usage: ")


# --- sweep configs: missing, malformed, wrong values ---------------------------------------------------------


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "missing.toml"
    assert_error(run(["sweep", "--config", path], capsys),
                 f"{path}: cannot read sweep config ([Errno 2] No such file or directory: '{path}')")


def test_a_malformed_toml_config_is_one_line(tmp_path, capsys):
    text = 'name = "t"\n[budget\nlr = 1\n'
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(tomllib.TOMLDecodeError) as parse_error:
        tomllib.loads(text)
    assert str(parse_error.value) == "Expected ']' at the end of a table declaration (at line 2, column 8)"
    assert_error(run(["sweep", "--config", path], capsys), f"{path}: cannot read sweep config ({parse_error.value})")


@pytest.mark.parametrize("text,message", [
    ("[run.budget]\nlr = -1\n" + GRID, "config.run.budget.lr = -1.0: out of range, must be between 1e-08 and 1"),
    ('[[grid]]\nfamily = "gpt"\n', "config.grids[0].family = 'gpt': must be one of me5, minilm, hf"),
    ('[ot]\ncost = "l1"\n' + GRID, "config.ot.cost = 'l1': must be one of cosine, sqeuclidean"),
    ('name = "../up"\n' + GRID, "config.name = '../up': must be a plain name (letters, digits, '.', '_', '-')"),
    ("[run.budget]\nlr = \"fast\"\n" + GRID, "config.run.budget.lr = 'fast': must be a number (between 1e-08 and 1)"),
    ("batch = 3\n" + GRID, ("config: unknown setting batch (known: name, description, grids, run, eval, ot, variants, "
                            "baselines, keep_checkpoints, workers)")),
    ("[run]\nseed = 3\n" + GRID, "run.seed is set by each [[grid]] block (and [ot] / [[variant]] for the objective), not in [run]"),
    ("[run.student]\nfamily = 'me5'\n" + GRID, "run.student.family is set by each [[grid]] block (and [ot] / [[variant]] for the objective), not in [run]"),
    ("[eval]\nstop_task = 'dev'\n" + GRID, "config.eval.stop_task = 'dev': a run can only stop on a task it is scored on along training (tasks: headline)"),
    ('name = "t"\n', "no [[grid]] table"),
])
def test_a_config_with_a_bad_value_is_one_line_naming_the_setting(tmp_path, capsys, text, message):
    path = write(tmp_path / "config.toml", text)
    out = tmp_path / "never-written"
    assert_error(run(["sweep", "--config", path, "--out", out], capsys), f"{path}: {message}")
    assert not out.exists()  # refused before anything ran


def test_a_bad_pair_count_override_is_one_line(tmp_path, capsys):
    assert_error(run(["sweep", "--config", PROJECT / "configs" / "quick.toml", "--pairs", "abc",
                      "--out", tmp_path / "sweep"], capsys),
                 "Budget.n_pairs (--pairs) = 'abc': must be an integer (between 1 and 1e+07)")
    assert not (tmp_path / "sweep").exists()


def test_the_real_process_exits_2_with_one_line_and_no_traceback(tmp_path):
    path = write(tmp_path / "config.toml", "[run.budget]\nlr = -1\n" + GRID)
    done = subprocess.run([sys.executable, "-m", "optical_core", "sweep", "--config", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2 and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if "Warning" not in line]  # library import warnings aside
    assert lines == [f"error: {path}: config.run.budget.lr = -1.0: out of range, must be between 1e-08 and 1"]
    assert "Traceback" not in done.stderr
    unknown = subprocess.run([sys.executable, "-m", "optical_core", "nosuch"], capture_output=True, text=True,
                             timeout=120, check=False)
    assert unknown.returncode == 2 and "invalid choice: 'nosuch'" in unknown.stderr


# --- train and parity: bad settings refused before any training -----------------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["--lr", "-1"], "Budget.lr = -1.0: out of range, must be between 1e-08 and 1"),
    (["--lr", "abc"], "Budget.lr (--lr) = 'abc': must be a number (between 1e-08 and 1)"),
    (["--method", "xx"], "LossConfig.method = 'xx': must be one of kd, ot"),
    (["--device", "tpu"], "TrainConfig.device = 'tpu': must be one of auto, cpu, cuda, mps"),
    (["--size", "L99"], "StudentSpec.layers = 99: out of range, must be between 1 and 48"),
    (["--size", "big"], "student size must look like L2 (first 2 layers), got 'big'"),
    (["--name", "../x"], ("invalid checkpoint name '../x': use letters, digits, '.', '_' and '-' (no '/', "
                          "no '..', not starting with '.')")),
])
def test_train_refuses_bad_settings_before_training(tmp_path, capsys, argv, message):
    out = tmp_path / "checkpoints"
    assert_error(run(["train", "--no-eval", "--out", out, *argv], capsys), message)
    assert not out.exists() or not any(out.iterdir())


def test_parity_refuses_bad_settings(tmp_path, capsys):
    assert_error(run(["parity", "--out", tmp_path / "parity", "--lr", "-1"], capsys),
                 "Budget.lr = -1.0: out of range, must be between 1e-08 and 1")


# --- commands that take a checkpoint ---------------------------------------------------------------------------


def test_evaluate_a_checkpoint_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert_error(run(["evaluate", "--checkpoint", missing], capsys), f"{missing}: no such directory")


def test_export_a_checkpoint_that_does_not_exist_or_is_not_one(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert_error(run(["export", missing, tmp_path / "export"], capsys), f"{missing}: no such directory")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert_error(run(["export", plain, tmp_path / "export"], capsys),
                 f"{plain}: not a Hugging Face checkpoint: config.json is missing")
    assert not (tmp_path / "export").exists()


def test_a_language_without_data_is_one_line(capsys):
    code, out, err = run(["tokenizers", "--langs", "qqq"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: no NTREX-128 text for language 'qqq' (no file ")
    assert err.count("\n") == 1 and "available: " in err
    code, out, err = run(["data", "--langs", "qqq"], capsys)
    assert (code, out, err) == (2, "", "error: no MAFAND bitext and no NTREX-128 text for language 'qqq'\n")


# --- sweeps that do not exist ---------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["analyse", "--sweep", "{missing}"],
                                  ["report", "--sweep", "{missing}", "--out", "{tmp}/report"],
                                  ["publish", "--sweep", "{missing}", "--dest", "{tmp}/published"],
                                  ["compare", "{missing}", str(PROJECT / "results" / "pilot")]])
def test_a_sweep_that_does_not_exist_is_one_line(tmp_path, capsys, argv):
    missing = tmp_path / "no-such-sweep"
    code, _, err = run([a.format(missing=missing, tmp=tmp_path) for a in argv], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and str(missing) in err


def test_a_record_in_the_retired_format_is_one_line(tmp_path, capsys):
    """A result.json from before learning curves (the archived first study's) is refused, not read as one step."""
    cell = "swa-me5-L2-ot-s0"
    (tmp_path / "old" / "cells" / cell).mkdir(parents=True)
    shutil.copy(PROJECT / "results" / "archive" / "default" / "cells" / cell / "result.json",
                tmp_path / "old" / "cells" / cell)
    record = tmp_path / "old" / "cells" / cell / "result.json"
    assert_error(run(["compare", tmp_path / "old", PROJECT / "results" / "pilot"], capsys),
                 f"{record}: a record from before learning curves (no evaluations or task) is no longer read: "
                 "run the cell again")


def test_analyse_with_an_unknown_metric_is_one_line(capsys):
    code, _, err = run(["analyse", "--sweep", PROJECT / "results" / "pilot", "--metric", "bogus"], capsys)
    assert code == 2 and err.startswith("error: ") and "bogus" in err


# --- cheap success paths ---------------------------------------------------------------------------------------


def test_students_prints_the_minilm_ladder(capsys):
    code, out, _ = run(["students", "--families", "minilm"], capsys)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["family", "size", "layers", "hidden", "vocab", "projection", "params_total",
                       "params_non_embedding"]
    # all-MiniLM-L6-v2 truncated, by hand: embedding tables 30,522 x 384 + 512 x 384 + 2 x 384 = 11,917,824;
    # a layer 4 x (384 x 384 + 384) + 2 x 384 x 1,536 + 1,536 + 384 + 2 x 768 (LayerNorms) = 1,774,464;
    # non-embedding = 768 (the embeddings' LayerNorm) + L x 1,774,464; no pooler
    assert rows[1:] == [
        ["minilm", "L1", "1", "384", "30522", "False", "13693056", "1775232"],
        ["minilm", "L2", "2", "384", "30522", "False", "15467520", "3549696"],
        ["minilm", "L3", "3", "384", "30522", "False", "17241984", "5324160"],
        ["minilm", "L4", "4", "384", "30522", "False", "19016448", "7098624"],
        ["minilm", "L6", "6", "384", "30522", "False", "22565376", "10647552"],
    ]


def test_data_prints_the_hausa_counts(capsys):
    code, out, _ = run(["data", "--langs", "hau"], capsys)
    assert code == 0
    header, row = out.splitlines()
    assert dict(zip(header.split(), row.replace("train split", "train_split").split())) == {
        "lang": "hau", "training_source": "train_split", "pairs_raw": "3098", "dropped_exact": "0",
        "dropped_ngram": "0", "pairs_kept": "3098", "headline_queries": "123", "headline_docs": "123",
        "siblings_queries": "1868", "siblings_passages": "667", "siblings_relevant_per_query": "5.48"}


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_analyse_a_committed_study_prints_its_verdict_and_writes_nothing(capsys):
    pilot = PROJECT / "results" / "pilot"
    before = snapshot(pilot)
    code, out, _ = run(["analyse", "--sweep", pilot], capsys)
    assert code == 0
    assert out.startswith("Regime (headline, mrr@10): each objective beats its start (paired over queries, p < 0.05) "
                          "in this many size-language cells: me5 kd in 2 of 2, ot in 1 of 2, ot-kd in 2 of 2; minilm "
                          "kd in 1 of 1, ot in 1 of 1, ot-kd in 1 of 1. Start -> last step, mean over 1 language: "
                          "me5-L2 0.206 -> kd 0.245, ot 0.194, ot-kd 0.287;")
    assert snapshot(pilot) == before  # without --export nothing is written into the committed study


def test_compare_two_committed_sweeps(tmp_path, capsys):
    pilot = PROJECT / "results" / "pilot"
    code, out, _ = run(["compare", pilot, pilot / "fp32-check", "--out", tmp_path / "compare.csv"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["cell_id", "step", "task", "metric", "a", "b", "diff", "p_value", "spearman"]
    assert len(lines) == 1 + 48 + 1  # header, 48 cell-steps on headline, the summary line
    assert lines[-1] == ("largest difference: -0.0045 (swa-me5-L12-ot-s0, step 200, headline, p = 0.263) "
                         "over 48 cell-steps")
    assert len((tmp_path / "compare.csv").read_text().splitlines()) == 1 + 48


def test_train_a_two_step_student_then_export_it(tmp_path, capsys):
    """A 2-step run (16 pairs, batch 8: seconds on a CPU), then its export; a second export to the same folder
    is refused."""
    from optical_core.store.checkpoints import read_manifest

    root = tmp_path / "checkpoints"
    code, out, _ = run(["train", "--family", "minilm", "--size", "L1", "--pairs", "16", "--batch-size", "8",
                        "--max-length", "16", "--lang", "hau", "--device", "cpu", "--no-eval", "--out", root,
                        "--name", "cli-run"], capsys)
    assert code == 0 and out == f"checkpoint: {root / 'cli-run'}\n"
    manifest = read_manifest(root / "cli-run")
    assert (manifest.steps, manifest.n_pairs, manifest.lang, manifest.method) == (2, 16, "hau", "kd")
    assert manifest.student.name == "minilm-L1"

    dest = tmp_path / "exported"
    code, out, _ = run(["export", root / "cli-run", dest], capsys)
    assert code == 0 and out.startswith(f"sentence-transformers model: {dest}  (")
    assert (dest / "modules.json").is_file()
    assert_error(run(["export", root / "cli-run", dest], capsys),
                 f"{dest}: already exists and is not an empty folder (choose a new destination)")


def test_train_scores_the_steps_it_is_given_and_records_its_head_init(tmp_path, capsys):
    """`--eval-steps` is the run's EvalPlan: a 4-step run scored at 0, 2 and its last step; `--head-init` is the
    student's, recorded in the manifest."""
    import pandas as pd

    from optical_core.store.checkpoints import read_manifest

    root = tmp_path / "checkpoints"
    code, out, _ = run(["train", "--family", "minilm", "--size", "L1", "--pairs", "16", "--batch-size", "4",
                        "--max-length", "16", "--lang", "hau", "--device", "cpu", "--eval-steps", "0", "2",
                        "--head-init", "procrustes", "--out", root, "--name", "curve-run"], capsys)
    assert code == 0 and "scored at steps 0, 2, 4" in out
    curve = pd.read_csv(root / "curve-run" / "curve.csv")
    assert curve.step.tolist() == [0, 2, 4] and set(curve.task) == {"headline"}
    assert curve["mrr@10"].between(0, 1).all() and curve["mrr@10"].nunique() > 1  # the student moved
    assert read_manifest(root / "curve-run").config.student.head_init == "procrustes"


def test_a_sweep_records_its_run_template_plans_and_top_documents(tmp_path, capsys):
    """[run.student] head_init reaches each run's manifest; a trained cell records the panel's plans at its plan
    steps and every query's top-10 documents at its selected step, readable without torch."""
    from optical_core.study.records import read_plans, read_top_documents

    path = write(tmp_path / "tiny.toml", 'name = "tiny"\nbaselines = []\nkeep_checkpoints = false\n'
                 '[run.student]\nhead_init = "procrustes"\n[run.budget]\nn_pairs = 8\nbatch_size = 4\n'
                 'max_length = 16\n[eval]\nsteps = [0]\nplan_steps = [0]\n' + GRID + 'methods = ["ot"]\n')
    code, out, _ = run(["sweep", "--config", path, "--out", tmp_path / "sweep"], capsys)
    assert code == 0 and "1 of 1 cells done, 0 failed" in out
    cell = tmp_path / "sweep" / "cells" / "hau-minilm-L1-ot-s0"
    manifest = json.loads((cell / "manifest.json").read_text())
    assert manifest["config"]["student"]["head_init"] == "procrustes"
    record = json.loads((cell / "result.json").read_text())
    assert record["selected_step"] == 2 and record["stopped_early"] is False
    plans = read_plans(cell)
    assert plans.steps == [0, 2] and [p[0] for p in plans.pairs] == ["dev"] * 4 + ["headline"] * 4
    for step in plans.steps:
        for i in range(len(plans.pairs)):
            p = plans.plan(step, i)
            assert p.plan.shape == (len(p.lr_tokens), len(p.en_tokens)) == p.cost.shape
            assert abs(p.plan.sum() - 1) < 1e-2  # a transport plan between two unit masses (float16)
    assert not (plans.plan(0, 0).plan == plans.plan(2, 0).plan).all()  # two steps, two plans
    top = read_top_documents(cell)
    assert len(top) == 123 and all(len(docs) == 10 for docs in top.values())
