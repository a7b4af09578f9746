"""A run scored along training, as its EvalPlan says: the learning curve, the signs of collapse, the
transport plans of a fixed panel of sentence pairs, and each query's top documents at the selected step.

`train()` calls the evaluator with the run's own objective at every evaluation step and once more at the
step it selects (the last, or the best on the stopping task); the evaluator keeps what it measured in
memory (`records`, `plans`, `top_documents`), and whoever ran the run writes it (study/cell.py).
The English documents of every collection are encoded by the frozen teacher once (cached by teacher and
collection hash), so a step costs only the student's query encodings and a few plans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from optical_core.data.clir import ClirCollection, build_collection
from optical_core.data.dev import dev_collection
from optical_core.distil.alignment import align_pair, alignment_scores
from optical_core.distil.objective import Objective
from optical_core.errors import DataError
from optical_core.evaluate.retrieval import metrics_for, per_query_metrics, rank
from optical_core.evaluate.scoring import document_embeddings
from optical_core.models.encoders import Encoder
from optical_core.settings import PRIMARY_METRIC, QUERY_MAX_LENGTH, EvalPlan

ALIGNMENT_PAIRS = 64  # fixed dev pairs on which plans are diagnosed at every step
PANEL_PAIRS = 4  # sentence pairs per collection (dev, NTREX headlines) whose plans a run records
PANEL_MAX_WORDS = 12  # short pairs: readable heatmaps, and a 275-cell study's plans stay a few MB
TOP_DOCUMENTS = 10  # documents kept per query at the selected step (what Compare and Search show)


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    """Mean cosine over distinct pairs of L2-normalised rows: (|sum q|^2 - N) / (N (N - 1))."""
    n = embeddings.shape[0]
    total = embeddings.double().sum(0)
    return float((total @ total - n) / (n * (n - 1)))


@dataclass
class StepEvaluation:
    """One task scored at one step: per-query metrics, the collapse measure, and the plan diagnostics."""

    step: int
    task: str
    scores: pd.DataFrame  # per query
    query_cosine: float
    seconds: float
    diagnostics: dict = field(default_factory=dict)
    top_documents: dict[str, list[str]] = field(default_factory=dict)  # qid -> its TOP_DOCUMENTS best documents


@dataclass(frozen=True)
class PanelPair:
    collection: str  # "dev" or "headline"
    qid: str
    lr_text: str
    en_text: str


@dataclass(frozen=True)
class PlanRecord:
    """The transport plan and cost matrix of one panel pair at one step (content tokens only)."""

    step: int
    pair: int  # index into the panel
    lr_tokens: list[str]
    en_tokens: list[str]
    plan: np.ndarray  # [n_lr, n_en]
    cost: np.ndarray


def plan_panel(lang: str, n: int = PANEL_PAIRS) -> list[PanelPair]:
    """The fixed sentence pairs whose plans every run of `lang` records: the first `n` dev pairs (MAFAND dev,
    disjoint from training) and the first `n` NTREX headlines with their English headline, each of at most
    PANEL_MAX_WORDS words on both sides."""
    panel = []
    for name, build in (("dev", lambda: dev_collection(lang)), ("headline", lambda: build_collection("headline", lang))):
        try:
            collection = build()
        except DataError:  # a language without a dev split: the NTREX pairs alone
            continue
        short = [q for q in collection.queries if len(collection.queries[q].split()) <= PANEL_MAX_WORDS
                 and len(collection.query_translations[q].split()) <= PANEL_MAX_WORDS]
        panel += [PanelPair(name, q, collection.queries[q], collection.query_translations[q]) for q in short[:n]]
    return panel


class RunEvaluator:
    """Scores one run of one language as `plan` says; `train()` calls it (see distil/train.py's Evaluator)."""

    def __init__(self, teacher: Encoder, lang: str, plan: EvalPlan, max_length: int = QUERY_MAX_LENGTH,
                 record_plans: bool = True, on_record: Callable[[StepEvaluation], None] | None = None):
        self.teacher, self.plan, self.max_length = teacher, plan, max_length
        self.stop_patience = plan.patience if plan.stop_task else None
        self.collections: dict[str, ClirCollection] = {
            task: dev_collection(lang) if task == "dev" else build_collection(task, lang) for task in plan.all_tasks}
        device = next(teacher.parameters()).device
        for c in self.collections.values():
            document_embeddings(teacher, c, device)  # warm the cache before the clock of any run starts
        try:
            dev = dev_collection(lang)
            ids = list(dev.queries)[-ALIGNMENT_PAIRS:]
            self.alignment_pairs = ([dev.queries[q] for q in ids], [dev.query_translations[q] for q in ids])
        except DataError:  # no dev split disjoint from training: no plan diagnostics for this language
            self.alignment_pairs = None
        self.panel = plan_panel(lang) if record_plans else []
        self.records: list[StepEvaluation] = []
        self.plans: list[PlanRecord] = []
        self._diagnosed: dict[int, dict] = {}
        self.on_record = on_record  # e.g. the app's live learning curve

    # --- what train() calls -----------------------------------------------------------------------------

    def steps(self, total_steps: int) -> set[int]:
        return set(self.plan.steps_for(total_steps))

    def __call__(self, step: int, student: Encoder, objective: Objective) -> float | None:
        """Score the along-training tasks at `step`; returns the stopping task's MRR@10 (None without one)."""
        diagnostics = self._diagnostics(step, student, objective)
        for task in self.plan.tasks:
            self._add(self.score(step, student, task, diagnostics))
        self._record_plans(step, student, objective, self.plan.plan_steps)
        if self.plan.stop_task is None:
            return None
        return float(self._scored(step, self.plan.stop_task).scores[PRIMARY_METRIC].mean())

    def finish(self, step: int, student: Encoder, objective: Objective) -> None:
        """The selected step: every task not yet scored there, each with its queries' top documents."""
        diagnostics = self._diagnostics(step, student, objective)
        for task in self.plan.all_tasks:
            if self._scored(step, task) is None:
                self._add(self.score(step, student, task, diagnostics))
        self._record_plans(step, student, objective, (step,))

    # --- the measurements ---------------------------------------------------------------------------------

    def score(self, step: int, student: Encoder, task: str, diagnostics: dict | None = None) -> StepEvaluation:
        started = time.perf_counter()
        collection = self.collections[task]
        device = next(student.parameters()).device
        docs = document_embeddings(self.teacher, collection, device)
        qids = list(collection.queries)
        with torch.autocast(device_type="cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16,
                            enabled=self.plan.precision == "bf16"):
            q = student.encode([collection.queries[i] for i in qids], max_length=QUERY_MAX_LENGTH, device=device)
        run = rank(q, docs, qids, list(collection.documents))
        scores = per_query_metrics(collection.qrels, run, metrics_for(collection.name))
        top = {qid: list(run[qid])[:TOP_DOCUMENTS] for qid in qids}
        return StepEvaluation(step, task, scores, mean_pairwise_cosine(q), time.perf_counter() - started,
                              dict(diagnostics or {}), top)

    def diagnose(self, student: Encoder, objective: Objective, max_length: int) -> dict:
        """Plan sharpness and identical-token alignment share on the fixed dev pairs."""
        if self.alignment_pairs is None:
            return dict(plan_sharpness=float("nan"), identical_share=float("nan"), identical_chance=float("nan"))
        was_training = student.training
        student.eval()
        scores = alignment_scores(student, self.teacher, objective, *self.alignment_pairs, max_length)
        student.train(was_training)
        return dict(plan_sharpness=scores.plan_sharpness, identical_share=scores.identical_share,
                    identical_chance=scores.identical_chance)

    def selected(self, task: str) -> StepEvaluation:
        """`task` at the step `finish` saw (the last record of that task)."""
        return next(r for r in reversed(self.records) if r.task == task)

    def _add(self, record: StepEvaluation) -> None:
        self.records.append(record)
        if self.on_record:
            self.on_record(record)

    def _diagnostics(self, step: int, student: Encoder, objective: Objective) -> dict:
        if step not in self._diagnosed:  # the selected step is often the last evaluated one: measure it once
            self._diagnosed = {step: self.diagnose(student, objective, self.max_length)}
        return self._diagnosed[step]

    def _scored(self, step: int, task: str) -> StepEvaluation | None:
        return next((r for r in self.records if r.step == step and r.task == task), None)

    def _record_plans(self, step: int, student: Encoder, objective: Objective, steps) -> None:
        if step not in steps or any(p.step == step for p in self.plans):
            return
        was_training = student.training
        student.eval()
        for i, pair in enumerate(self.panel):
            a = align_pair(student, self.teacher, pair.lr_text, pair.en_text, objective, self.max_length)
            self.plans.append(PlanRecord(step, i, a.lr_tokens, a.en_tokens, a.plan, a.cost))
        student.train(was_training)
