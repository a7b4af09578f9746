"""The distillation loop: one student, one objective, bitext only, a fixed budget.

KD and OT runs with the same config and seed see the same pairs in the same batches; only the loss
differs. The teacher is frozen and its English outputs are computed once per (texts, max_length).

A step does not wait for the device: its batch is cut from tensors already there (distil/batches.py), and the
loss (with the NaN check) is read back every LOG_EVERY steps, at every evaluation and at the end. On the CPU,
where a read costs nothing, that is every step; the numbers are the same either way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

from optical_core.data.bitext import Bitext, DedupReport, training_bitext
from optical_core.data.clir import load_ntrex
from optical_core.data.dev import dev_collection
from optical_core.distil.batches import RunBatches, device_plan
from optical_core.distil.objective import Objective, TeacherBatch, build_objective
from optical_core.distil.ot import marginal_violation, read_is_free
from optical_core.errors import DataError, NonFiniteLoss, SettingsError, TrainingCancelled
from optical_core.models.encoders import Encoder, load_teacher, mean_pool
from optical_core.models.heads import HEADS
from optical_core.models.students import Student, build_student
from optical_core.settings import FULL_PRECISION, Budget, TrainConfig
from optical_core.store.provenance import cpu_supports_bf16


@dataclass(frozen=True)
class StepLog:
    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    elapsed_s: float
    marginal_error: float | None = None


@dataclass
class TrainResult:
    config: TrainConfig
    student: Student
    bitext: Bitext
    dedup: DedupReport
    history: list[StepLog] = field(default_factory=list)
    wall_time_s: float = 0.0
    eval_time_s: float = 0.0  # inside wall_time_s: the learning curve's evaluations
    device: str = "cpu"
    precision: str = FULL_PRECISION  # as resolved ("auto" becomes bf16 or float32)
    truncated_pairs: int = 0  # pairs where either side is longer than max_length tokens
    selected_step: int | None = None  # the step whose weights the run keeps (the last, or the best on dev)
    stopped_early: bool = False  # the stopping rule ended the run before its budget


class Evaluator(Protocol):
    """What `train()` hands its evaluation (evaluate/evaluator.py's RunEvaluator is the real one)."""

    stop_patience: int | None  # evaluations without a better score before the run stops (None: never stop)

    def steps(self, total_steps: int) -> set[int]:
        """The steps to evaluate at (0 = the start, before any update)."""

    def __call__(self, step: int, student: Encoder, objective: Objective) -> float | None:
        """Score the student at `step` with the run's own objective; the score the stopping rule watches."""

    def finish(self, step: int, student: Encoder, objective: Objective) -> None:
        """The selected step: the run ends with these weights."""


def count_truncated(student_tokenizer, teacher_tokenizer, bitext: Bitext, max_length: int) -> int:
    """How many pairs lose tokens to truncation (reported in the manifest rather than hidden)."""
    src = student_tokenizer(bitext.source, add_special_tokens=True)["input_ids"]
    tgt = teacher_tokenizer(bitext.target, add_special_tokens=True)["input_ids"]
    return sum(len(s) > max_length or len(t) > max_length for s, t in zip(src, tgt))


def resolve_device(name: str = "auto") -> str:
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(name: str, device: str) -> str:
    if name == "bf16" and device.startswith("mps"):
        raise SettingsError("TrainConfig.precision = 'bf16': bf16 autocast is supported on cpu and cuda, not mps")
    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else FULL_PRECISION
    return "bf16" if device == "cpu" and cpu_supports_bf16() else FULL_PRECISION


@dataclass
class TeacherTargets:
    """Frozen teacher outputs for each English sentence: content-token vectors and the (unnormalised)
    mean-pooled sentence embedding."""

    tokens: list[torch.Tensor]
    embeddings: torch.Tensor
    input_ids: list[torch.Tensor]

    def collate(self, index: list[int], device) -> TeacherBatch:
        tokens = pad_sequence([self.tokens[i] for i in index], batch_first=True).to(device)
        ids = pad_sequence([self.input_ids[i] for i in index], batch_first=True).to(device)
        lengths = torch.tensor([len(self.tokens[i]) for i in index])
        mask = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).to(device)
        return TeacherBatch(tokens, mask, ids, self.embeddings[index].to(device))


_TEACHER_CACHE: dict[tuple, TeacherTargets] = {}


@torch.no_grad()
def teacher_targets(teacher: Encoder, english: list[str], max_length: int, device,
                    batch_size: int = 64) -> TeacherTargets:
    key = (id(teacher), tuple(english), max_length)
    if key in _TEACHER_CACHE:
        return _TEACHER_CACHE[key]
    tokens, embeddings, ids = [], [], []
    for start in range(0, len(english), batch_size):
        batch = teacher.tokenize(english[start : start + batch_size], max_length).to(device)
        vectors = teacher.token_vectors(batch).float()
        # The KD target is the teacher's mean-pooled embedding BEFORE its L2 normalisation, i.e. the same
        # pooling the student's side of the MSE uses. (Regressing raw student pools onto unit vectors wrecked a
        # student initialised as the teacher itself: MRR@10 0.41 -> 0.02 on swa; raw targets kept 0.43.)
        embeddings.append(mean_pool(vectors, batch.attention_mask).cpu())
        for row, content, input_ids in zip(vectors, batch.content_mask.bool(), batch.input_ids):
            tokens.append(row[content].cpu())
            ids.append(input_ids[content].cpu())
    targets = TeacherTargets(tokens, torch.cat(embeddings), ids)
    _TEACHER_CACHE.clear()  # one language at a time is enough for a sweep
    _TEACHER_CACHE[key] = targets
    return targets


def study_vocabulary_texts(bitext: Bitext, lang: str, data_dir: Path | None = None) -> list[str]:
    """The texts a student's trimmed vocabulary must cover: its bitext, the NTREX queries it will be tested
    on and the dev collection it is chosen on (so that both encode exactly as with the full vocabulary)."""
    try:
        dev = list(dev_collection(lang, data_dir=data_dir).queries.values())
    except DataError:  # a language without a dev collection
        dev = []
    return bitext.source + bitext.target + load_ntrex(lang, data_dir).foreign + dev


@torch.no_grad()
def pooled_features(student: Student, texts: list[str], max_length: int, device, batch_size: int = 64) -> torch.Tensor:
    """The student backbone's mean-pooled features [N, hidden] (before its projection), as KD pools them."""
    model = student.encoder
    was_training = model.training
    model.eval()  # no dropout: the head is fitted to the features the student will produce
    out = []
    for start in range(0, len(texts), batch_size):
        batch = model.tokenize(texts[start : start + batch_size], max_length).to(device)
        hidden = model.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        out.append(mean_pool(hidden.float(), batch.attention_mask).cpu())
    model.train(was_training)
    return torch.cat(out)


def fit_head(student: Student, bitext: Bitext, targets: "TeacherTargets", max_length: int, device) -> None:
    """Start the projection head as `student.spec.head_init` says (a closed-form map fitted on the run's own
    training pairs, never on test text); a student without a head, or with a random one, is left alone."""
    projection = student.encoder.projection
    if projection is None or student.spec.head_init == "random":
        return
    X = pooled_features(student, bitext.source, max_length, device)
    weight, bias = HEADS[student.spec.head_init](X, targets.embeddings.float())
    with torch.no_grad():
        projection.weight.copy_(weight)
        projection.bias.copy_(bias)
    student.notes.append(f"projection head: closed-form {student.spec.head_init} fit on the {len(bitext)} "
                         "training pairs (mean-pooled student features -> the teacher's mean-pooled embeddings)")


def _start(config: TrainConfig, teacher: Encoder, bitext: Bitext, device,
           data_dir: Path | None) -> tuple[Student, TeacherTargets]:
    """The student a run starts from, on `device`, and the teacher's targets for its bitext. Training and
    `initial_student` both build it here, so a run's step 0 is its untrained cell by construction."""
    seed_everything(config.seed)
    student = build_student(config.student, teacher.hidden_size,
                            vocab_texts=study_vocabulary_texts(bitext, config.lang, data_dir), seed=config.seed)
    student.encoder.to(device)
    targets = teacher_targets(teacher, bitext.target, config.budget.max_length, device)
    fit_head(student, bitext, targets, config.budget.max_length, device)
    return student, targets


def initial_student(config: TrainConfig, teacher: Encoder, data_dir: Path | None = None) -> Student:
    """The student a run of `config` starts from (step 0: the floor, or the linear-map start), on the
    teacher's device."""
    bitext, _ = training_bitext(config.lang, config.budget.n_pairs, data_dir)
    return _start(config, teacher, bitext, next(teacher.parameters()).device, data_dir)[0]


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


BUCKET_POOL_BATCHES = 50  # length bucketing sorts pools of this many batches: similar lengths, still shuffled


def batch_plan(n: int, batch_size: int, epochs: int, seed: int, max_steps: int | None = None,
               lengths: list[int] | None = None) -> Iterator[tuple[int, list[int]]]:
    """(epoch, pair indices) per optimiser step: a fresh permutation each epoch, drawn lazily, so a huge
    epoch count with a small max_steps costs nothing before step 1.

    With `lengths` (length bucketing), each epoch's permutation is cut into pools of BUCKET_POOL_BATCHES
    batches, each pool is sorted by length and cut into batches, and the epoch's batches are shuffled: a
    batch pads to a length near its members' own, and the number of batches per epoch is unchanged."""
    generator = torch.Generator().manual_seed(seed)
    steps = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).tolist()
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        if lengths is not None:
            pool = batch_size * BUCKET_POOL_BATCHES
            batches = []
            for start in range(0, n, pool):
                ranked = sorted(order[start : start + pool], key=lambda i: lengths[i])
                batches += [ranked[i : i + batch_size] for i in range(0, len(ranked), batch_size)]
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        for batch in batches:
            if max_steps is not None and steps >= max_steps:
                return
            steps += 1
            yield epoch, batch


def training_plan(tokenizer, bitext: Bitext, budget: Budget, seed: int) -> Iterator[tuple[int, list[int]]]:
    """The batches a run trains on (the same for our trainer and the sentence-transformers parity run)."""
    lengths = None
    if budget.bucket_by_length:
        lengths = [len(ids) for ids in tokenizer(bitext.source, truncation=True, max_length=budget.max_length)
                   ["input_ids"]]
    return batch_plan(len(bitext), budget.batch_size, budget.epochs, seed, budget.max_steps, lengths)


def make_optimizer(backbone: list[torch.nn.Parameter], head: list[torch.nn.Parameter], budget: Budget, n_steps: int):
    """AdamW (weight decay on every parameter) with the head at lr x head_lr_multiplier, and the budget's
    schedule after a linear warm-up: the optimiser of every run (and of the sentence-transformers parity run)."""
    groups = [{"params": backbone, "lr": budget.lr}]
    if head:
        groups.append({"params": head, "lr": budget.lr * budget.head_lr_multiplier})
    # fused: one kernel for the whole update where the device has it (CUDA); on the CPU the default keeps its numbers
    fused = True if all(p.is_cuda for p in backbone + head) else None
    optimizer = torch.optim.AdamW(groups, weight_decay=budget.weight_decay, fused=fused)
    warmup = int(budget.warmup_ratio * n_steps)
    if budget.schedule == "constant":
        return optimizer, get_constant_schedule_with_warmup(optimizer, warmup)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, n_steps)


LOG_EVERY = 25  # steps between two reads of the loss on an accelerator (on the CPU: every step)


class _StepLogs:
    """The loss of each step, kept on the device until read (one read for many steps), then checked for NaN/Inf
    and logged in step order. The first non-finite step raises NonFiniteLoss before any evaluation sees its
    weights and before anything is saved: the guarantee a check at every step gives, up to LOG_EVERY - 1 steps
    of wasted work."""

    def __init__(self, result: TrainResult, total_steps: int, on_step: Callable[[StepLog], None] | None):
        self.result, self.total_steps, self.on_step = result, total_steps, on_step
        self.pending: list[tuple[int, int, float, float, torch.Tensor, torch.Tensor | None]] = []

    def add(self, step: int, epoch: int, lr: float, elapsed_s: float, loss: torch.Tensor,
            m_err: torch.Tensor | None, every: int) -> None:
        self.pending.append((step, epoch, lr, elapsed_s, loss.detach().float(), m_err))
        if len(self.pending) >= every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        nan = torch.full((), math.nan, device=self.pending[0][4].device)
        values = torch.stack([torch.stack((p[4], nan if p[5] is None else p[5])) for p in self.pending]).tolist()
        for (step, epoch, lr, elapsed_s, _, m_err), (loss, error) in zip(self.pending, values):
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"loss became {loss} at step {step}; no checkpoint was written")
            log = StepLog(step, self.total_steps, epoch, loss, lr, elapsed_s, None if m_err is None else error)
            self.result.history.append(log)
            if self.on_step:
                self.on_step(log)
        self.pending.clear()


class _BestStep:
    """The stopping rule: the best score so far, its step and (when the run may stop) its weights."""

    def __init__(self, patience: int | None):
        self.patience, self.step, self.score, self.state, self.waited = patience, None, -float("inf"), None, 0

    def update(self, step: int, score: float | None, model: torch.nn.Module) -> bool:
        """Record the score of `step`; True when the run should stop."""
        if self.patience is None or score is None:
            return False
        if score > self.score:
            self.step, self.score, self.waited = step, score, 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.waited += 1
        return self.waited >= self.patience


def train(config: TrainConfig, teacher: Encoder | None = None, data_dir: Path | None = None,
          on_step: Callable[[StepLog], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          evaluator: Evaluator | None = None) -> TrainResult:
    """Distil one student. Raises TrainingCancelled if `should_stop()` turns true, NonFiniteLoss on NaN/Inf.

    `evaluator(step, encoder, objective)` is called at the steps it names (0 = the start, before any update;
    always the last step), with the run's own objective; its time is counted in `eval_time_s`. With a
    stopping rule (`evaluator.stop_patience`) the run ends once the evaluator's score has not improved for
    that many evaluations and keeps its best step's weights. `evaluator.finish` sees the selected step.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    budget = config.budget
    teacher = teacher or load_teacher()
    teacher.to(device)
    bitext, dedup = training_bitext(config.lang, budget.n_pairs, data_dir)
    student, targets = _start(config, teacher, bitext, device, data_dir)
    model = student.encoder.train()
    objective = build_objective(config.loss, model, teacher, bitext)

    n_steps = budget.steps_for(len(bitext))
    with model.lock:
        plan = training_plan(model.tokenizer, bitext, budget, config.seed)
    head = list(model.projection.parameters()) if model.projection is not None else []
    optimizer, scheduler = make_optimizer(list(model.backbone.parameters()), head, budget, n_steps)
    with teacher.lock:
        truncated = count_truncated(model.tokenizer, teacher.tokenizer, bitext, budget.max_length)
    result = TrainResult(config, student, bitext, dedup, device=device, precision=precision, truncated_pairs=truncated)
    batches = RunBatches.build(model.tokenize(bitext.source, budget.max_length).to(device),
                               targets.collate(list(range(len(bitext))), device), model.tokenizer.padding_side)
    logs = _StepLogs(result, n_steps, on_step)
    log_every = 1 if read_is_free(batches.teacher.tokens) else LOG_EVERY
    eval_steps = evaluator.steps(n_steps) if evaluator else set()
    best = _BestStep(evaluator.stop_patience if evaluator else None)

    def evaluate(step: int) -> bool:
        """Evaluate at `step` if it is an evaluation step; True when the stopping rule ends the run."""
        if step not in eval_steps:
            return False
        logs.flush()  # a non-finite loss stops the run before its weights are scored
        t = time.perf_counter()
        score = evaluator(step, model, objective)
        result.eval_time_s += time.perf_counter() - t
        return best.update(step, score, model)

    evaluate(0)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    for step, (epoch, index, rows) in enumerate(device_plan(plan, device), start=1):
        if should_stop and should_stop():
            raise TrainingCancelled(f"cancelled at step {step - 1} of {n_steps}")
        batch, teacher_batch = batches.batch(index, rows)
        # Only the encoder's matmuls run in bf16: the cost matrix, Sinkhorn, the losses and AdamW stay float32.
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            s_tokens = model.token_vectors(batch)
        out = objective(s_tokens.float(), batch, teacher_batch)
        loss = out.loss
        m_err = marginal_violation(out.transport.plan.detach(), out.transport.a, out.transport.b) \
            if out.transport else None
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        logs.add(step, epoch, scheduler.get_last_lr()[0], time.perf_counter() - started, loss, m_err, log_every)
        if evaluate(step):
            result.stopped_early = step < n_steps
            break
    logs.flush()
    result.selected_step = best.step if best.state is not None else len(result.history)
    if best.state is not None and best.step != len(result.history):
        model.load_state_dict(best.state)  # the run keeps its best step, not its last
    model.eval()
    if not all(torch.isfinite(p).all() for p in model.parameters()):  # the loss can be finite while weights are not
        raise NonFiniteLoss("the trained weights are not all finite; no checkpoint was written")
    if evaluator:
        t = time.perf_counter()
        evaluator.finish(result.selected_step, model, objective)
        result.eval_time_s += time.perf_counter() - t
    result.wall_time_s = time.perf_counter() - started
    return result
