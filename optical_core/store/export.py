"""A student checkpoint as a sentence-transformers model directory, for users of that library.

Modules: Transformer (the student's backbone and its trimmed tokenizer, at the query length the study
uses) -> mean Pooling -> Dense (the projection head, identity activation: a linear map commutes with the
mean, so pooling first gives the same vector) -> Normalize. `SentenceTransformer(dest)` then reproduces
the student's query embeddings. For retrieval, pair it with the teacher as shipped (all-MiniLM-L6-v2,
itself a sentence-transformers model) encoding the English documents.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from torch import nn

from optical_core.errors import CheckpointError
from optical_core.settings import QUERY_MAX_LENGTH
from optical_core.models.encoders import MODEL_CONSTRUCTION_LOCK, Encoder
from optical_core.store.checkpoints import load_checkpoint


def sentence_model(encoder: Encoder, max_seq_length: int = QUERY_MAX_LENGTH, normalize: bool = True):
    """An in-memory Encoder as a SentenceTransformer (a copy of its weights). Without `normalize` its output is
    the student's pooled, projected embedding before L2 normalisation: what the KD loss regresses."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    with tempfile.TemporaryDirectory() as tmp, MODEL_CONSTRUCTION_LOCK:
        encoder.backbone.save_pretrained(tmp, safe_serialization=True)
        encoder.tokenizer.save_pretrained(tmp)
        modules: list[nn.Module] = [Transformer(tmp, max_seq_length=max_seq_length),
                                    Pooling(encoder.hidden_size, "mean")]
        if encoder.projection is not None:
            head = encoder.projection
            modules.append(Dense(head.in_features, head.out_features, bias=head.bias is not None,
                                 activation_function=nn.Identity(), init_weight=head.weight.detach().clone(),
                                 init_bias=None if head.bias is None else head.bias.detach().clone()))
        if normalize:
            modules.append(Normalize())
        prompts = {"query": encoder.prefix} if encoder.prefix else None
        return SentenceTransformer(modules=modules, device="cpu", prompts=prompts,
                                   default_prompt_name="query" if prompts else None)


def export_sentence_transformer(checkpoint: Path | str, dest: Path | str, max_seq_length: int = QUERY_MAX_LENGTH
                                ) -> Path:
    """Write `checkpoint` as a sentence-transformers directory at `dest` (built aside, renamed into place;
    an existing non-empty `dest` is refused). Weights are written as safetensors."""
    checkpoint, dest = Path(checkpoint), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CheckpointError(f"{dest}: already exists and is not an empty folder (choose a new destination)")
    encoder, manifest = load_checkpoint(checkpoint)
    model = sentence_model(encoder, max_seq_length)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    try:
        model.save(str(tmp), safe_serialization=True)
        (tmp / "OPTICAL.md").write_text(
            f"Exported from optical checkpoint `{manifest.name}` ({manifest.config.student.family}-"
            f"L{manifest.config.student.layers}, {manifest.method}, {manifest.lang}, seed {manifest.seed}; git "
            f"{str(manifest.git_commit)[:12]}). A query encoder for {manifest.lang}: encode English documents "
            "with the teacher (sentence-transformers/all-MiniLM-L6-v2) and rank by cosine.\n", encoding="utf-8")
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
