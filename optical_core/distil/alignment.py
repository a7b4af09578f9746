"""The token alignment of one sentence pair: the OT plan between a student's LR tokens and the
teacher's English tokens, the cost matrix it was solved on, and the most-aligned token pairs."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from optical_core.data.bitext import training_bitext
from optical_core.distil.objective import Objective, TeacherBatch, build_objective
from optical_core.models.encoders import Encoder
from optical_core.settings import TrainConfig


@dataclass(frozen=True)
class Alignment:
    lr_tokens: list[str]
    en_tokens: list[str]
    plan: np.ndarray  # [n_lr, n_en], sums to 1
    cost: np.ndarray  # [n_lr, n_en]
    transport_cost: float

    def top_pairs(self, k: int = 15) -> pd.DataFrame:
        flat = np.argsort(-self.plan, axis=None)[:k]
        rows = [dict(lr_token=self.lr_tokens[i], en_token=self.en_tokens[j], mass=float(self.plan[i, j]),
                     share_of_lr_token=float(self.plan[i, j] / max(self.plan[i].sum(), 1e-12)),
                     cost=float(self.cost[i, j]), lr_position=int(i), en_position=int(j))
                for i, j in zip(*np.unravel_index(flat, self.plan.shape))]
        return pd.DataFrame(rows)


def _content_tokens(encoder: Encoder, text: str, max_length: int):
    batch = encoder.tokenize([text], max_length)
    keep = batch.content_mask[0].bool()
    tokens = encoder.tokenizer.convert_ids_to_tokens(batch.input_ids[0][keep].tolist())
    return batch, keep, tokens


@torch.no_grad()
def align_pair(student: Encoder, teacher: Encoder, lr_text: str, en_text: str, objective: Objective,
               max_length: int) -> Alignment:
    """The OT problem `objective` solves in training (cost, marginals, epsilon, iterations), for one pair.

    For a KD run the objective's OT settings are still defined (the config's defaults): the plan is then
    an inspection of the student's token space, not something its training optimised.
    """
    if not lr_text.strip() or not en_text.strip():
        raise ValueError("both sentences must be non-empty")
    s_batch, s_keep, lr_tokens = _content_tokens(student, lr_text, max_length)
    t_batch, t_keep, en_tokens = _content_tokens(teacher, en_text, max_length)
    s_vec = student.token_vectors(s_batch)
    t_vec = teacher.token_vectors(t_batch)[0][t_keep][None]
    t_ids = t_batch.input_ids[0][t_keep][None]
    teacher_side = TeacherBatch(t_vec, torch.ones(t_ids.shape, dtype=torch.bool), t_ids, t_vec.mean(1))
    out = objective.transport(s_vec, s_batch, teacher_side)
    keep = s_keep.nonzero().squeeze(1)  # the student's content tokens (specials carry no mass)
    P, C = out.plan[0][keep], out.cost[0][keep]
    return Alignment(lr_tokens, en_tokens, P.numpy(), C.numpy(), float((P * C).sum()))


def run_objective(config: TrainConfig, student: Encoder, teacher: Encoder, reg: float | None = None) -> Objective:
    """The objective a run of `config` trained with (its idf tables rebuilt from the run's own bitext),
    optionally at another epsilon. For a KD run: its config's OT settings, for inspection."""
    loss = replace(config.loss, method="ot", reg=config.loss.reg if reg is None else reg)
    bitext = training_bitext(config.lang, config.budget.n_pairs)[0] if loss.marginals == "idf" else None
    return build_objective(loss, student, teacher, bitext)
