"""The two distillation objectives compared by the study."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from optical_core.models.encoders import mean_pool
from optical_core.distil.ot import COSTS, PLAN_GRADIENTS, cost_matrix, marginals, transport_cost, transport_plan

METHODS = ("kd", "ot")


@dataclass(frozen=True)
class LossConfig:
    """What a run optimises. The OT settings are this project's choices: OPTICAL's are not public.

    reg: entropic epsilon; cost: token distance; marginals: "uniform" or "idf" token masses;
    plan_gradient: "detach" (plan as a constant) or "autodiff" (through Sinkhorn);
    kd_weight: weight of the sentence-level KD term added to the OT loss (0 = pure OT).
    """

    method: str = "kd"
    reg: float = 0.05
    cost: str = "cosine"
    marginals: str = "uniform"
    plan_gradient: str = "detach"
    sinkhorn_iters: int = 100
    sinkhorn_tol: float = 1e-5
    kd_weight: float = 0.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method '{self.method}'; choose one of {METHODS}")
        if self.cost not in COSTS:
            raise ValueError(f"unknown cost '{self.cost}'; choose one of {COSTS}")
        if self.marginals not in ("uniform", "idf"):
            raise ValueError(f"unknown marginals '{self.marginals}'; choose uniform or idf")
        if self.plan_gradient not in PLAN_GRADIENTS:
            raise ValueError(f"unknown plan_gradient '{self.plan_gradient}'; choose one of {PLAN_GRADIENTS}")
        if self.reg <= 0:
            raise ValueError("reg must be > 0")

    def as_dict(self) -> dict:
        return asdict(self)


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
