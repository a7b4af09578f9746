"""What a run optimises, assembled once from its LossConfig: KD, OT, or OT plus a KD term.

Training calls the objective on every batch; the Alignment page calls its `transport` on one pair, so
a heatmap shows the plan training solved (same cost, marginals, epsilon and iterations).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from optical_core.data.bitext import Bitext
from optical_core.distil.losses import KDLoss, OTLoss, OTOutput
from optical_core.models.encoders import Encoder, TokenBatch
from optical_core.models.vocab import token_idf
from optical_core.settings import LossConfig


class TeacherBatch(NamedTuple):
    """The frozen teacher's side of a batch: content-token vectors [B, m, d] with their mask and ids
    (padded with 0), and the mean-pooled sentence embeddings [B, d] before normalisation."""

    tokens: torch.Tensor
    mask: torch.Tensor
    input_ids: torch.Tensor
    embedding: torch.Tensor


class ObjectiveOutput(NamedTuple):
    loss: torch.Tensor
    transport: OTOutput | None  # the OT problem solved this step (None for KD)


class Objective(nn.Module):
    """loss = KD, or <P, C> + kd_weight x KD, with uniform or idf token marginals.

    `student_idf` / `teacher_idf` (one weight per vocabulary id) are required for idf marginals.
    """

    def __init__(self, config: LossConfig, student_idf: torch.Tensor | None = None,
                 teacher_idf: torch.Tensor | None = None):
        super().__init__()
        if config.method == "ot" and config.marginals == "idf" and (student_idf is None or teacher_idf is None):
            raise ValueError("idf marginals need the student's and the teacher's idf tables (build_objective)")
        self.config = config
        self.kd, self.ot = KDLoss(), OTLoss(config)
        self.student_idf, self.teacher_idf = student_idf, teacher_idf

    def transport(self, student_tokens: torch.Tensor, student: TokenBatch, teacher: TeacherBatch) -> OTOutput:
        """The OT problem between the student's LR content tokens and the teacher's English ones."""
        idf = self.config.marginals == "idf"
        s_weights = self.student_idf.to(student.input_ids.device)[student.input_ids] if idf else None
        t_weights = self.teacher_idf.to(teacher.input_ids.device)[teacher.input_ids] if idf else None
        return self.ot(student_tokens, student.content_mask, teacher.tokens, teacher.mask, s_weights, t_weights)

    def forward(self, student_tokens: torch.Tensor, student: TokenBatch, teacher: TeacherBatch) -> ObjectiveOutput:
        kd = lambda: self.kd(student_tokens, student.attention_mask, teacher.embedding)  # noqa: E731
        if self.config.method == "kd":
            return ObjectiveOutput(kd(), None)
        out = self.transport(student_tokens, student, teacher)
        loss = out.loss + self.config.kd_weight * kd() if self.config.kd_weight else out.loss
        return ObjectiveOutput(loss, out)


def build_objective(config: LossConfig, student: Encoder, teacher: Encoder, bitext: Bitext) -> Objective:
    """The objective of a run on `bitext`; idf marginals are counted on the bitext's two sides."""
    if config.method != "ot" or config.marginals != "idf":
        return Objective(config)
    with student.lock:
        student_idf = token_idf(student.tokenizer, bitext.source, len(student.tokenizer))
    with teacher.lock:
        teacher_idf = token_idf(teacher.tokenizer, bitext.target, len(teacher.tokenizer))
    return Objective(config, student_idf, teacher_idf)
