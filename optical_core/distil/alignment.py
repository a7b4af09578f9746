"""The token alignment of one sentence pair: the OT plan between a student's LR tokens and the
teacher's English tokens, the cost matrix it was solved on, and the most-aligned token pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from optical_core.models.encoders import Encoder
from optical_core.distil.losses import LossConfig
from optical_core.distil.ot import cost_matrix, marginals, transport_plan


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
def align_pair(student: Encoder, teacher: Encoder, lr_text: str, en_text: str, loss: LossConfig = LossConfig(),
               max_length: int = 64) -> Alignment:
    """Solve the same entropic OT problem the OT objective solves, for one pair (uniform marginals)."""
    if not lr_text.strip() or not en_text.strip():
        raise ValueError("both sentences must be non-empty")
    s_batch, s_keep, lr_tokens = _content_tokens(student, lr_text, max_length)
    t_batch, t_keep, en_tokens = _content_tokens(teacher, en_text, max_length)
    s_vec = student.token_vectors(s_batch)[0][s_keep][None]
    t_vec = teacher.token_vectors(t_batch)[0][t_keep][None]
    C = cost_matrix(s_vec, t_vec, loss.cost)
    a = marginals(torch.ones(1, C.shape[1]))
    b = marginals(torch.ones(1, C.shape[2]))
    P = transport_plan(C, a, b, loss.reg, max(loss.sinkhorn_iters, 200), loss.sinkhorn_tol, "detach")
    return Alignment(lr_tokens, en_tokens, P[0].numpy(), C[0].numpy(), float((P * C).sum()))
