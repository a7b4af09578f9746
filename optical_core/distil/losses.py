"""The two distillation losses compared by the study, one small module each."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from optical_core.distil.ot import (
    cost_matrix,
    marginals,
    transport_cost,
    transport_plan,
)
from optical_core.models.encoders import mean_pool
from optical_core.settings import LossConfig


class OTOutput(NamedTuple):
    loss: torch.Tensor
    plan: torch.Tensor
    cost: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor


class KDLoss(nn.Module):
    """Reimers & Gurevych (2020), "Making monolingual sentence embeddings multilingual using knowledge
    distillation": MSE between the student's mean-pooled embedding of the LR sentence and the
    teacher's mean-pooled embedding of its English translation, both before L2 normalisation (retrieval
    normalises both afterwards)."""

    def forward(self, student_tokens, student_mask, teacher_embedding):
        return F.mse_loss(mean_pool(student_tokens, student_mask).float(), teacher_embedding.float())


class OTLoss(nn.Module):
    """OPTICAL (Huang, Yu & Allan, WSDM 2023): token-level distillation by optimal transport.

    C = cost between student LR tokens and teacher English tokens; P = entropic OT plan;
    loss = mean over pairs of <P, C>_F. Specials and padding carry no mass.
    Returns an OTOutput so callers can inspect the alignment.
    """

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config

    def forward(self, student_tokens, student_mask, teacher_tokens, teacher_mask,
                student_weights=None, teacher_weights=None):
        c = self.config
        C = cost_matrix(student_tokens, teacher_tokens, c.cost)
        a, b = marginals(student_mask, student_weights), marginals(teacher_mask, teacher_weights)
        P = transport_plan(C, a, b, c.reg, c.sinkhorn_iters, c.sinkhorn_tol, c.plan_gradient)
        return OTOutput(transport_cost(P, C).mean(), P, C, a, b)
