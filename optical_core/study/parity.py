"""Our KD against sentence-transformers' own: the same student trained by its trainer and MSELoss.

Reimers & Gurevych (2020) is the KD baseline of the study, and sentence-transformers (its authors'
library) is what a user would train it with. Here both trainers get the same start (the closed-form
head fitted on the same pairs), the same pairs in the same batches (our batch plan, handed to their
trainer as its batch sampler), the same optimiser and schedule (built by `make_optimizer`), the same
gradient clipping and the same number of steps, in float32. Only dropout's random draws differ. The
students are then scored by the same code on the same queries.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from optical_core.data.bitext import training_bitext
from optical_core.distil.train import _start, make_optimizer, resolve_device, training_plan
from optical_core.models.encoders import Encoder
from optical_core.settings import FULL_PRECISION, EvalPlan, TrainConfig
from optical_core.store.export import sentence_model


def train_with_sentence_transformers(config: TrainConfig, teacher: Encoder, data_dir: Path | None = None
                                     ) -> tuple[Encoder, dict]:
    """Train `config`'s student (KD) with SentenceTransformerTrainer + losses.MSELoss; returns it as our
    Encoder (weights copied back) and the run's facts (steps, seconds, final loss)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MSELoss
    from transformers import TrainerCallback

    if config.loss.method != "kd" or config.loss.kd_weight:
        raise ValueError("the parity run is for plain KD")
    config = replace(config, precision=FULL_PRECISION)
    budget = config.budget
    device = resolve_device(config.device)
    teacher.to(device)
    bitext, _ = training_bitext(config.lang, budget.n_pairs, data_dir)
    student, targets = _start(config, teacher, bitext, device, data_dir)
    model = sentence_model(student.encoder, max_seq_length=budget.max_length, normalize=False).to(device)
    backbone = list(model[0].auto_model.parameters())
    head = list(model[2].linear.parameters()) if len(model) > 2 else []
    n_steps = budget.steps_for(len(bitext))
    optimizer, scheduler = make_optimizer(backbone, head, budget, n_steps)
    plan = [index for _, index in training_plan(student.encoder.tokenizer, bitext, budget, config.seed)]
    dataset = Dataset.from_dict({"sentence": bitext.source, "label": targets.embeddings.tolist()})

    class PlannedBatches(SentenceTransformerTrainer):
        def get_batch_sampler(self, *args, **kwargs):
            return plan  # our exact batches, in our order

    step_ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out, max_steps=n_steps, per_device_train_batch_size=budget.batch_size, max_grad_norm=1.0,
            seed=config.seed, save_strategy="no", report_to="none", logging_steps=max(1, n_steps // 10),
            use_cpu=not device.startswith("cuda"), bf16=False, fp16=False, disable_tqdm=True,
            dataloader_drop_last=False)
        trainer = PlannedBatches(model=model, args=args, train_dataset=dataset, loss=MSELoss(model),
                                 optimizers=(optimizer, scheduler), callbacks=[StepClock()])
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    encoder = student.encoder
    with torch.no_grad():
        trained = model[0].auto_model.state_dict()  # transformers adds an unused pooler: ours has none
        encoder.backbone.load_state_dict({k: v for k, v in trained.items() if not k.startswith("pooler.")})
        if head:
            encoder.projection.load_state_dict(model[2].linear.state_dict())
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return encoder.eval(), dict(steps=int(output.global_step), train_seconds=seconds, step_ends=step_ends,
                                final_logged_loss=losses[-1] if losses else None)


def kd_parity(config: TrainConfig, teacher: Encoder, out: Path | str, tasks: tuple[str, ...] = ("headline", "siblings"),
              data_dir: Path | None = None):
    """Train `config` (KD, float32) with our trainer and with sentence-transformers', score both on `tasks`
    and write `out/parity.csv` (per task and metric: both means with 95% CIs, the paired difference and p),
    `out/per_query/{ours,theirs}_{task}.csv` and `out/parity.json` (settings and timings). Returns the table."""
    import json

    import pandas as pd

    from optical_core.distil.train import train
    from optical_core.evaluate.evaluator import RunEvaluator
    from optical_core.evaluate.significance import mean_ci, paired_comparison
    from optical_core.store.atomic import atomic_write_text
    from optical_core.store.provenance import git_commit, library_versions, utc_now

    config = replace(config, precision=FULL_PRECISION)
    out = Path(out)
    (out / "per_query").mkdir(parents=True, exist_ok=True)
    evaluator = RunEvaluator(teacher, config.lang, EvalPlan(tasks=tuple(tasks)), record_plans=False)
    started = time.perf_counter()
    ours = train(config, teacher=teacher, data_dir=data_dir)
    ours_seconds = time.perf_counter() - started
    theirs, facts = train_with_sentence_transformers(config, teacher, data_dir)
    rows = []
    for task in tasks:
        a = evaluator.score(len(ours.history), ours.student.encoder.eval(), task).scores
        b = evaluator.score(facts["steps"], theirs, task).scores
        a.to_csv(out / "per_query" / f"ours_{task}.csv", index=False)
        b.to_csv(out / "per_query" / f"theirs_{task}.csv", index=False)
        for metric in [c for c in a.columns if c != "qid"]:
            joined = a[["qid", metric]].merge(b[["qid", metric]], on="qid", suffixes=("_ours", "_theirs"))
            x, y = joined[f"{metric}_ours"].to_numpy(), joined[f"{metric}_theirs"].to_numpy()
            (m_a, lo_a, hi_a), (m_b, lo_b, hi_b) = mean_ci(x), mean_ci(y)
            cmp = paired_comparison(x, y)
            rows.append(dict(task=task, metric=metric, n_queries=len(joined), ours=m_a, ours_ci_low=lo_a,
                             ours_ci_high=hi_a, theirs=m_b, theirs_ci_low=lo_b, theirs_ci_high=hi_b,
                             ours_minus_theirs=cmp.difference, diff_ci_low=cmp.ci_low, diff_ci_high=cmp.ci_high,
                             p_value=cmp.p_value))
    table = pd.DataFrame(rows)
    atomic_write_text(out / "parity.csv", table.to_csv(index=False))
    atomic_write_text(out / "parity.json", json.dumps(dict(
        config=asdict(config), steps=len(ours.history),
        # the training loops alone (steps 2..N, from per-step clocks): setup differs between the two trainers
        ours_loop_pairs_per_s=round(pairs_per_s([h.elapsed_s for h in ours.history], config.budget.batch_size), 1),
        theirs_loop_pairs_per_s=round(pairs_per_s(facts["step_ends"], config.budget.batch_size), 1),
        ours_run_seconds_with_setup=round(ours_seconds, 1),
        ours_final_loss=ours.history[-1].loss, theirs_final_logged_loss=facts["final_logged_loss"],
        versions=library_versions(), git_commit=git_commit(), created=utc_now()), indent=2))
    return table


def pairs_per_s(step_ends: list[float], batch_size: int) -> float:
    """Training pairs per second over steps 2..N (the first step's warm-up left out)."""
    return (len(step_ends) - 1) * batch_size / (step_ends[-1] - step_ends[0]) if len(step_ends) > 1 else float("nan")
