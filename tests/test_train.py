from dataclasses import replace

import numpy as np
import pytest
import torch

from optical_core.distil.losses import KDLoss
from optical_core.distil.run import train_and_save
from optical_core.distil.train import (
    NonFiniteLoss,
    TrainingCancelled,
    resolve_device,
    train,
)
from optical_core.errors import SettingsError
from optical_core.settings import SweepConfig, from_mapping
from optical_core.store.checkpoints import list_checkpoints, read_manifest

from .conftest import tiny_config


def test_device_is_chosen_automatically_and_overridable(monkeypatch):
    # The rule (settings: "auto picks cuda, then mps, then cpu"); availability is patched so the test
    # checks the same thing on every machine.
    mps = torch.backends.mps
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"  # cuda wins over mps
    # An explicit device is honoured whatever is available.
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("mps") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cuda") == "cuda"
    # A name outside the known devices never reaches resolve_device: the config refuses it, naming the field.
    with pytest.raises(SettingsError, match=r"TrainConfig\.device = 'tpu': must be one of auto, cpu, cuda, mps"):
        replace(tiny_config(), device="tpu")
    with pytest.raises(SettingsError, match=r"config\.run\.device = 'gpu'"):  # a sweep's device is its run's
        from_mapping(SweepConfig, {"run": {"device": "gpu"}}, "config")


def test_gradient_reaches_the_student_only(teacher):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = train(tiny_config("ot", n_pairs=32), teacher=teacher)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert len(result.history) == 2


@pytest.mark.parametrize("method", ["kd", "ot"])
def test_both_losses_decrease_on_a_real_200_pair_slice(teacher, method):
    config = tiny_config(method, layers=1, n_pairs=200)
    config = replace(config, budget=replace(config.budget, epochs=3, lr=3e-4))
    history = [h.loss for h in train(config, teacher=teacher).history]
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    assert last < 0.97 * first, (method, first, last)


def test_same_seed_gives_the_same_losses_and_another_seed_does_not(teacher):
    a = [h.loss for h in train(tiny_config("ot", seed=3), teacher=teacher).history]
    b = [h.loss for h in train(tiny_config("ot", seed=3), teacher=teacher).history]
    c = [h.loss for h in train(tiny_config("ot", seed=4), teacher=teacher).history]
    assert a == b and a != c


def test_nan_loss_stops_the_run_and_writes_no_checkpoint(teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(KDLoss, "forward", lambda self, *args: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(NonFiniteLoss, match="no checkpoint was written"):
        train_and_save(tiny_config("kd"), tmp_path, "poisoned", teacher=teacher)
    assert list_checkpoints(tmp_path) == []


def test_cancelling_leaves_no_checkpoint(teacher, tmp_path):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(TrainingCancelled, match="cancelled at step 1"):
        train_and_save(tiny_config("kd"), tmp_path, "cancelled", teacher=teacher, should_stop=stop)
    assert list_checkpoints(tmp_path) == []


def test_idf_marginals_and_kd_term_run(teacher):
    result = train(tiny_config("ot", n_pairs=16, marginals="idf", kd_weight=1.0), teacher=teacher)
    assert np.isfinite(result.history[0].loss) and result.history[0].marginal_error < 1e-2


def test_bf16_runs_the_encoder_in_bfloat16_and_stays_close_to_float32(teacher, tmp_path):
    """Same batch, same initialisation: the first step's loss differs only by bf16 rounding; the precision
    actually used is recorded in the manifest."""
    fp32 = train(replace(tiny_config("ot", n_pairs=16), precision="float32"), teacher=teacher)
    bf16 = train(replace(tiny_config("ot", n_pairs=16), precision="bf16"), teacher=teacher)
    assert fp32.precision == "float32" and bf16.precision == "bf16"
    first32, first16 = fp32.history[0].loss, bf16.history[0].loss
    assert first32 != first16 and abs(first16 - first32) / first32 < 0.02, (first32, first16)
    path = train_and_save(replace(tiny_config("kd", n_pairs=16), precision="bf16"), tmp_path, "bf", teacher=teacher)
    manifest = read_manifest(path)
    assert manifest.precision == "bf16" and manifest.config.precision == "bf16"


def test_non_finite_weights_after_training_write_no_checkpoint(teacher, tmp_path, monkeypatch):
    """A finite loss with NaN weights (here: an optimiser that writes NaN) must not be saved as a model."""
    real_step = torch.optim.AdamW.step

    def poisoned(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    config = replace(tiny_config("kd", n_pairs=16), budget=replace(tiny_config("kd").budget, n_pairs=16, max_steps=1))
    with pytest.raises(NonFiniteLoss, match="weights are not all finite"):
        train_and_save(config, tmp_path, "nan-weights", teacher=teacher)
    assert list_checkpoints(tmp_path) == []


def test_the_batch_plan_is_drawn_lazily_and_covers_each_epoch_once():
    from optical_core.distil.train import batch_plan
    from optical_core.settings import Budget

    huge = batch_plan(10, 3, 10**9, seed=0, max_steps=2)  # 3.3e9 batches if it were built before step 1
    assert len(list(huge)) == 2
    full = list(batch_plan(10, 3, 2, seed=0))
    assert len(full) == Budget(n_pairs=10, batch_size=3, epochs=2).steps_for(10) == 8
    for epoch in (0, 1):
        assert sorted(i for e, batch in full if e == epoch for i in batch) == list(range(10))
    assert full[:4] != full[4:]  # a fresh permutation each epoch
    assert list(batch_plan(10, 3, 2, seed=0)) == full  # and the same seed, the same plan
    # the plan every earlier run trained on (torch.randperm with a seeded generator, one per epoch): pinned, so
    # a change to how batches are drawn cannot pass unnoticed
    assert full == [(0, [4, 1, 7]), (0, [5, 3, 9]), (0, [0, 8, 6]), (0, [2]),
                    (1, [3, 9, 4]), (1, [2, 7, 8]), (1, [6, 0, 5]), (1, [1])]


def test_queries_encoded_in_bf16_rank_as_in_float32(teacher, tiny_checkpoint):
    from optical_core.evaluate.evaluator import RunEvaluator
    from optical_core.settings import EvalPlan
    from optical_core.store.checkpoints import load_checkpoint

    student, _ = load_checkpoint(tiny_checkpoint)
    fp32 = RunEvaluator(teacher, "hau", EvalPlan(), record_plans=False).score(0, student, "headline")
    bf16 = RunEvaluator(teacher, "hau", EvalPlan(precision="bf16"), record_plans=False).score(0, student, "headline")
    assert fp32.query_cosine != bf16.query_cosine  # the queries really were encoded in bf16
    assert abs(fp32.query_cosine - bf16.query_cosine) < 1e-2
    assert abs(fp32.scores["mrr@10"].mean() - bf16.scores["mrr@10"].mean()) < 0.01


def test_length_bucketing_cuts_padding_and_still_covers_each_epoch_once(teacher):
    from optical_core.data.bitext import training_bitext
    from optical_core.distil.train import batch_plan, training_plan
    from optical_core.settings import Budget

    bitext, _ = training_bitext("swa", 2000)
    budget = Budget(n_pairs=2000, epochs=2, batch_size=32, max_length=48)
    lengths = [len(ids) for ids in teacher.tokenizer(bitext.source, truncation=True, max_length=48)["input_ids"]]

    def padding(plan):  # share of the padded batch tensors that is padding
        cells = [(max(lengths[i] for i in b) * len(b), sum(lengths[i] for i in b)) for _, b in plan]
        return 1 - sum(real for _, real in cells) / sum(total for total, _ in cells)

    plain = list(training_plan(teacher.tokenizer, bitext, budget, seed=0))
    bucketed = list(training_plan(teacher.tokenizer, bitext, Budget(**{**budget.__dict__, "bucket_by_length": True}),
                                  seed=0))
    assert plain == list(batch_plan(2000, 32, 2, seed=0))  # off by default: the batches every run had before
    assert len(bucketed) == len(plain) == budget.steps_for(2000)
    for epoch in (0, 1):
        assert sorted(i for e, b in bucketed if e == epoch for i in b) == list(range(2000))
    assert padding(bucketed) < 0.5 * padding(plain), (padding(bucketed), padding(plain))


class ScriptedEvaluator:
    """An evaluator whose scores are given: it records what train() hands it (step, weights, objective)."""

    def __init__(self, scores: dict[int, float], patience: int | None):
        self.scores, self.stop_patience = scores, patience
        self.seen, self.weights, self.finished = [], {}, None

    def steps(self, total_steps):
        return set(self.scores) | {total_steps}

    def __call__(self, step, student, objective):
        self.seen.append((step, objective.config.method))
        self.weights[step] = {k: v.detach().clone() for k, v in student.state_dict().items()}
        return self.scores.get(step)

    def finish(self, step, student, objective):
        self.finished = (step, {k: v.detach().clone() for k, v in student.state_dict().items()})


def test_a_run_stops_on_its_evaluators_score_and_keeps_its_best_step(teacher):
    """Patience 2: the best score is at step 1; steps 2 and 3 do not beat it, so the run stops at step 3 of 6 and
    ends with step 1's weights, which `finish` sees. Without a stopping rule the same run goes to its budget."""
    config = replace(tiny_config("ot", n_pairs=96), budget=replace(tiny_config().budget, n_pairs=96, schedule="constant"))
    scripted = ScriptedEvaluator({0: 0.1, 1: 0.5, 2: 0.4, 3: 0.45, 4: 0.9}, patience=2)
    result = train(config, teacher=teacher, evaluator=scripted)
    assert [s for s, _ in scripted.seen] == [0, 1, 2, 3] and {m for _, m in scripted.seen} == {"ot"}
    assert (len(result.history), result.selected_step, result.stopped_early) == (3, 1, True)
    step, weights = scripted.finished
    assert step == 1 and all(torch.equal(weights[k], scripted.weights[1][k]) for k in weights)
    assert not all(torch.equal(weights[k], scripted.weights[3][k]) for k in weights)
    assert {log.lr for log in result.history[1:]} == {config.budget.lr}  # constant after the warm-up step

    full = ScriptedEvaluator({0: 0.1, 1: 0.5, 2: 0.4, 3: 0.45}, patience=None)
    result = train(config, teacher=teacher, evaluator=full)
    assert (len(result.history), result.selected_step, result.stopped_early) == (6, 6, False)
    assert [s for s, _ in full.seen] == [0, 1, 2, 3, 6] and full.finished[0] == 6


def test_a_batch_cut_from_the_runs_device_tensors_is_the_batch_tokenised_alone(teacher):
    """The bitext is tokenised once and the teacher's targets padded once; a step's rows, cut to the batch's
    longest sentence, are exactly the tensors that tokenising and collating the batch alone gives."""
    from optical_core.data.bitext import training_bitext
    from optical_core.distil.batches import RunBatches, device_plan
    from optical_core.distil.train import batch_plan, teacher_targets

    bitext, _ = training_bitext("swa", 64)
    targets = teacher_targets(teacher, bitext.target, 24, "cpu")
    batches = RunBatches.build(teacher.tokenize(bitext.source, 24), targets.collate(list(range(64)), "cpu"))
    plan = list(device_plan(batch_plan(64, 10, 2, seed=0), "cpu", chunk=3))
    assert [(e, i) for e, i, _ in plan] == list(batch_plan(64, 10, 2, seed=0))
    for _, index, rows in plan:
        assert rows.tolist() == index
        student, teacher_batch = batches.batch(index, rows)
        alone = teacher.tokenize([bitext.source[i] for i in index], 24)
        for got, want in zip((*student.__dict__.values(), *teacher_batch),
                             (*alone.__dict__.values(), *targets.collate(index, "cpu"))):
            assert got.dtype == want.dtype and torch.equal(got, want)


def test_reading_the_loss_every_k_steps_logs_what_reading_it_every_step_logs(teacher, monkeypatch):
    """As on an accelerator (the loss read every LOG_EVERY steps and at each evaluation): the same history, the
    same on_step calls in order, and a NaN loss still names its own step."""
    import optical_core.distil.train as training

    config = tiny_config("ot", n_pairs=96)
    every_step = train(config, teacher=teacher)
    monkeypatch.setattr(training, "read_is_free", lambda tensor: False)
    monkeypatch.setattr(training, "LOG_EVERY", 4)
    seen = []
    lazy = train(config, teacher=teacher, on_step=lambda log: seen.append(log.step),
                 evaluator=ScriptedEvaluator({0: 0.1, 2: 0.2}, patience=None))
    assert [(h.step, h.loss, h.marginal_error) for h in lazy.history] == \
        [(h.step, h.loss, h.marginal_error) for h in every_step.history]
    assert seen == list(range(1, 7))
    calls, real = [], KDLoss.forward

    def nan_at_step_3(self, *args):
        calls.append(1)
        return real(self, *args) * (float("nan") if len(calls) == 3 else 1.0)

    monkeypatch.setattr(KDLoss, "forward", nan_at_step_3)
    with pytest.raises(NonFiniteLoss, match=r"^loss became nan at step 3; no checkpoint was written$"):
        train(tiny_config("kd", n_pairs=96), teacher=teacher)
    assert len(calls) == 4  # read at step 4: the run stops within LOG_EVERY steps
