"""The two distillation losses compared by the study, one small module each."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from optical_core.distil.ot import (
    cost_matrix,
    entropic_ot_value,
    marginals,
    median_real_cost,
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
    loss = mean over pairs of <P, C>_F (ot_form "transport_cost"). Specials and padding carry no mass.

    ot_form "sinkhorn_divergence" (Feydy et al., AISTATS 2019, "Interpolating between optimal transport
    and MMD using Sinkhorn divergences"): S = OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2 with the
    entropic values OT_eps = <P, C> + eps KL(P || a b^T). Plain <P, C> has a collapsed minimiser (every
    student token one vector scores 0.81 against 0.97 for random ones, ../shared/FIELD_NOTES.md); the
    divergence is zero only when the two token clouds match. OT(b, b) is the teacher's: a constant.

    reg_scale "relative": epsilon = reg x the median real cost of the batch (squared distances have no
    fixed range). Returns an OTOutput so callers can inspect the alignment.
    """

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config

    def _plan(self, C, a, b, reg):
        c = self.config
        return transport_plan(C, a, b, reg, c.sinkhorn_iters, c.sinkhorn_tol, c.plan_gradient)

    def forward(self, student_tokens, student_mask, teacher_tokens, teacher_mask,
                student_weights=None, teacher_weights=None):
        c = self.config
        C = cost_matrix(student_tokens, teacher_tokens, c.cost)
        a, b = marginals(student_mask, student_weights), marginals(teacher_mask, teacher_weights)
        # relative: a floor keeps epsilon positive when every token pair coincides (a fully collapsed batch)
        reg = c.reg * max(median_real_cost(C, a, b), 1e-6) if c.reg_scale == "relative" else c.reg
        P = self._plan(C, a, b, reg)
        if c.ot_form == "transport_cost":
            return OTOutput(transport_cost(P, C).mean(), P, C, a, b)
        C_ss = cost_matrix(student_tokens, student_tokens, c.cost)
        with torch.no_grad():
            C_tt = cost_matrix(teacher_tokens, teacher_tokens, c.cost)
        divergence = (entropic_ot_value(P, C, a, b, reg)
                      - entropic_ot_value(self._plan(C_ss, a, a, reg), C_ss, a, a, reg) / 2
                      - entropic_ot_value(self._plan(C_tt, b, b, reg), C_tt, b, b, reg) / 2)
        return OTOutput(divergence.mean(), P, C, a, b)
