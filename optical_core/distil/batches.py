"""A run's batches on the device: the bitext tokenised once, the teacher's targets padded once, a step's batch cut
out of them by indexing.

Tokenising 32 sentences on the host and copying them over at every step kept a GPU waiting on Python (issue 30).
Here the student's side of every pair is tokenised in one call and the teacher's token vectors padded into one
tensor, both moved to the device once. A step takes its rows with a device index and cuts the padding to the
batch's longest sentence (known on the host from the lengths), so its tensors are exactly those that tokenising
and collating the batch alone gives: same values, same shapes, same numbers downstream.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import torch

from optical_core.distil.objective import TeacherBatch
from optical_core.models.encoders import TokenBatch

PLAN_CHUNK = 256  # steps whose pair indices are copied to the device together


@dataclass
class RunBatches:
    """Every pair of a run on the device: the student's tokens [N, L] and the teacher's targets [N, m, d], each
    padded to its longest sentence, with each sentence's length on the host."""

    student: TokenBatch
    student_lengths: list[int]
    teacher: TeacherBatch
    teacher_lengths: list[int]
    left_padded: bool = False  # the student's tokenizer pads on the left

    @classmethod
    def build(cls, student: TokenBatch, teacher: TeacherBatch, padding_side: str = "right") -> "RunBatches":
        """From the whole bitext tokenised as one batch and the teacher's targets collated as one (any device)."""
        return cls(student, student.attention_mask.sum(1).tolist(), teacher, teacher.mask.sum(1).tolist(),
                   padding_side == "left")

    def batch(self, index: list[int], rows: torch.Tensor) -> tuple[TokenBatch, TeacherBatch]:
        """The pairs `index` (`rows`: the same indices as a tensor on the device), padded as the batch alone pads."""
        width = max(self.student_lengths[i] for i in index)
        cut = slice(-width, None) if self.left_padded else slice(0, width)
        s = self.student
        student = TokenBatch(s.input_ids[rows, cut], s.attention_mask[rows, cut], s.content_mask[rows, cut])
        t, m = self.teacher, max(self.teacher_lengths[i] for i in index)
        return student, TeacherBatch(t.tokens[rows, :m], t.mask[rows, :m], t.input_ids[rows, :m], t.embedding[rows])


def device_plan(plan: Iterator[tuple[int, list[int]]], device,
                chunk: int = PLAN_CHUNK) -> Iterator[tuple[int, list[int], torch.Tensor]]:
    """(epoch, pair indices, the indices on the device) per step. The indices of `chunk` steps travel in one copy
    from pinned memory, which the host does not wait for."""
    cuda = torch.device(device).type == "cuda"
    while batches := list(itertools.islice(plan, chunk)):
        flat = torch.tensor([i for _, index in batches for i in index], dtype=torch.long)
        flat = (flat.pin_memory() if cuda else flat).to(device, non_blocking=True)
        starts = itertools.accumulate((len(index) for _, index in batches), initial=0)
        for (epoch, index), start in zip(batches, starts):
            yield epoch, index, flat[start : start + len(index)]
