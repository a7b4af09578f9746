"""Learning curves: a student scored at each evaluation step, with the signs of collapse beside it.

The English documents of every collection are encoded by the frozen teacher once (cached by teacher
and collection hash), so a step costs only the student's query encodings and a few plans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch

from optical_core.data.clir import ClirCollection, build_collection
from optical_core.data.dev import dev_collection
from optical_core.distil.alignment import alignment_scores
from optical_core.distil.objective import Objective
from optical_core.errors import DataError
from optical_core.evaluate.retrieval import metrics_for, per_query_metrics, rank
from optical_core.evaluate.scoring import document_embeddings
from optical_core.models.encoders import Encoder
from optical_core.settings import QUERY_MAX_LENGTH

ALIGNMENT_PAIRS = 64  # fixed dev pairs on which plans are diagnosed at every step


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    """Mean cosine over distinct pairs of L2-normalised rows: (|sum q|^2 - N) / (N (N - 1))."""
    n = embeddings.shape[0]
    total = embeddings.double().sum(0)
    return float((total @ total - n) / (n * (n - 1)))


@dataclass
class StepEvaluation:
    step: int
    task: str
    scores: pd.DataFrame  # per query
    query_cosine: float
    seconds: float


class CurveEvaluator:
    """Scores students on fixed collections of one language; `diagnose` adds plan and alignment scores."""

    def __init__(self, teacher: Encoder, lang: str, tasks: tuple[str, ...], precision: str = "float32"):
        self.teacher = teacher
        self.precision = precision  # of the students' query encoding; documents stay the cached float32 ones
        self.collections: dict[str, ClirCollection] = {
            task: dev_collection(lang) if task == "dev" else build_collection(task, lang) for task in tasks}
        device = next(teacher.parameters()).device
        for c in self.collections.values():
            document_embeddings(teacher, c, device)  # warm the cache before the clock of any run starts
        try:
            dev = dev_collection(lang)
            ids = list(dev.queries)[-ALIGNMENT_PAIRS:]
            self.alignment_pairs = ([dev.queries[q] for q in ids], [dev.query_translations[q] for q in ids])
        except DataError:  # no dev split disjoint from training: no plan diagnostics for this language
            self.alignment_pairs = None

    def score(self, step: int, student: Encoder, task: str) -> StepEvaluation:
        started = time.perf_counter()
        collection = self.collections[task]
        device = next(student.parameters()).device
        docs = document_embeddings(self.teacher, collection, device)
        qids = list(collection.queries)
        with torch.autocast(device_type="cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16,
                            enabled=self.precision == "bf16"):
            q = student.encode([collection.queries[i] for i in qids], max_length=QUERY_MAX_LENGTH, device=device)
        run = rank(q, docs, qids, list(collection.documents))
        scores = per_query_metrics(collection.qrels, run, metrics_for(collection.name))
        return StepEvaluation(step, task, scores, mean_pairwise_cosine(q), time.perf_counter() - started)

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
