"""Settings: one home, validation with one-line errors, typed manifests, options built from the fields."""

import json
import subprocess
import sys
from dataclasses import asdict, fields

import pytest

from optical_core.cli import build_parser, settings_from_args
from optical_core.errors import SettingsError
from optical_core.settings import (
    LADDERS,
    Budget,
    GridSpec,
    LossConfig,
    StudentSpec,
    SweepConfig,
    TrainConfig,
    from_mapping,
)
from optical_core.store.checkpoints import RunManifest, read_manifest
from optical_core.settings import load_sweep_config

from .conftest import PROJECT


@pytest.mark.parametrize("make, field, allowed", [
    (lambda: Budget(n_pairs=-5), "Budget.n_pairs", "between 1 and"),
    (lambda: Budget(epochs=0), "Budget.epochs", "between 1 and"),
    (lambda: Budget(batch_size=-1), "Budget.batch_size", "between 1 and"),
    (lambda: Budget(lr=float("nan")), "Budget.lr", "finite"),
    (lambda: Budget(warmup_ratio=1.5), "Budget.warmup_ratio", "between 0 and 1"),
    (lambda: LossConfig(reg=0.0), "LossConfig.reg", "between 0.001 and 100"),
    (lambda: LossConfig(reg=float("inf")), "LossConfig.reg", "finite"),
    (lambda: LossConfig(cost="l1"), "LossConfig.cost", "one of cosine, sqeuclidean"),
    (lambda: LossConfig(sinkhorn_iters=2.5), "LossConfig.sinkhorn_iters", "integer"),
    (lambda: StudentSpec("me5", 5), "StudentSpec.layers", "L1, L2, L3, L4, L6, L8, L12"),
    (lambda: StudentSpec("hf", 2), "StudentSpec.init_path", "family 'hf'"),
    (lambda: TrainConfig(lang="../../etc"), "TrainConfig.lang", "plain name"),
    (lambda: TrainConfig(seed=-1), "TrainConfig.seed", "between 0 and"),
])
def test_out_of_range_values_name_the_field_and_what_is_allowed(make, field, allowed):
    with pytest.raises(SettingsError) as err:
        make()
    message = str(err.value)
    assert field in message and allowed in message and "\n" not in message


def test_every_setting_has_help_and_its_default_passes_its_own_checks():
    for cls in (LossConfig, StudentSpec, Budget, TrainConfig, GridSpec, SweepConfig):
        instance = cls()  # defaults are validated on construction
        for f in fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
        assert from_mapping(cls, json.loads(json.dumps(asdict(instance)))) == instance  # JSON round trip


def test_sweep_toml_is_read_strictly(tmp_path):
    def config(text):
        path = tmp_path / "c.toml"
        path.write_text('name = "t"\n' + text, encoding="utf-8")
        return load_sweep_config(path)

    grid = '[[grid]]\nfamily = "minilm"\nsizes = [1]\nlangs = ["swa"]\n'
    assert config("[ot]\nreg = 2.5\n" + grid).ot == LossConfig(method="ot", reg=2.5)  # [ot] keeps method=ot
    bad = {
        "[run.budget]\nbogus = 1\n" + grid: "unknown setting bogus",
        "[ot]\nreg = 0.05\nnope = 2\n" + grid: "unknown setting nope",
        "colour = 'red'\n" + grid: "unknown setting colour",
        grid.replace('["swa"]', '"swa"'): "must be a list",
        grid + "seeds = []\n": "must not be empty",
        "[run.budget]\nlr = nan\n" + grid: "finite",
        grid.replace('["swa"]', '["../../x"]'): "plain name",
        "": "no [[grid]] table",
    }
    for text, expected in bad.items():
        with pytest.raises(SettingsError, match="c.toml") as err:
            config(text)
        assert expected in str(err.value), (text, str(err.value))
    with pytest.raises(SettingsError, match="plain name"):
        load_sweep_config_named(tmp_path, "../../tmp/evil", grid)


def load_sweep_config_named(tmp_path, name, grid):
    path = tmp_path / "named.toml"
    path.write_text(f'name = "{name}"\n' + grid, encoding="utf-8")
    return load_sweep_config(path)


def test_committed_sweep_configs_still_load():
    for path in sorted((PROJECT / "configs").rglob("*.toml")):
        assert load_sweep_config(path).grids, path


def test_cli_options_come_from_the_dataclasses_with_their_defaults():
    args = build_parser().parse_args(["train", "--lang", "yor", "--size", "L4", "--method", "ot", "--reg", "2.5",
                                      "--pairs", "100", "--no-trim-vocab"])
    config = settings_from_args(TrainConfig, args)
    assert config == TrainConfig(lang="yor", student=StudentSpec("me5", 4, trim_vocab=False),
                                 loss=LossConfig(method="ot", reg=2.5), budget=Budget(n_pairs=100))
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for f in fields(LossConfig):
        assert "--" + f.name.replace("_", "-") in help_text
    assert "default: 0.05" in help_text and f"default: {Budget().lr}" in help_text


@pytest.mark.parametrize("argv, expected", [
    (["train", "--lang", "swa", "--pairs", "-5"], "Budget.n_pairs = -5: out of range"),
    (["train", "--lang", "swa", "--reg", "abc"], "LossConfig.reg (--reg) = 'abc': must be a number"),
    (["train", "--lang", "swa", "--family", "minilm", "--size", "L12"], "the minilm ladder has sizes"),
    (["sweep", "--config", "configs/quick.toml", "--pairs", "0"], "Budget.n_pairs = 0: out of range"),
    (["train", "--lang", "swa", "--name", "../escape"], "invalid checkpoint name '../escape'"),  # before training
])
def test_cli_bad_values_end_in_one_line_and_exit_code_2(argv, expected):
    out = subprocess.run([sys.executable, "-m", "optical_core", *argv], capture_output=True, text=True, cwd=PROJECT,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], out.stderr


def test_a_failing_run_prints_no_progress_bar_before_its_error(monkeypatch, capsys):
    """NonFiniteLoss mid-run: the bar is cleared, the error is the only line left (exit 2)."""
    from optical_core import cli
    from optical_core.distil import losses

    # a NaN that, like a real one, is part of the graph (the step reads the loss after its backward pass)
    monkeypatch.setattr(losses.KDLoss, "forward", lambda self, tokens, *a: tokens.sum() * float("nan"))
    code = cli.main(["train", "--lang", "hau", "--family", "minilm", "--size", "L1", "--pairs", "16",
                     "--batch-size", "8", "--max-length", "16", "--no-eval", "--out", "/nonexistent-never-written"])
    err = capsys.readouterr().err
    visible = [line.split("\r")[-1] for line in err.split("\n")]  # what a terminal shows after carriage returns
    visible = [line for line in visible if line.strip()]
    assert code == 2
    assert len(visible) == 1 and visible[0].startswith("error: loss became nan at step 1"), err


def test_manifest_round_trip_keeps_the_config_type(tiny_checkpoint):
    manifest = read_manifest(tiny_checkpoint)
    again = RunManifest.from_dict(json.loads(manifest.to_json()))
    assert again == manifest and isinstance(again.config.loss, LossConfig) and again.format == 2


def test_ladders_are_the_students_sizes():
    assert all(StudentSpec(family, n) for family, ladder in LADDERS.items() for n in ladder)
