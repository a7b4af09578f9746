"""Students as sentence-transformers models: the export reproduces our embeddings."""

import pytest
import torch

from optical_core.errors import CheckpointError
from optical_core.store.checkpoints import load_checkpoint
from optical_core.store.export import export_sentence_transformer

SENTENCES = ["Habari ya asubuhi, rafiki yangu.", "Serikali imetangaza bajeti mpya ya mwaka 2024 leo.",
             "Àwọn ọmọ ilé-ìwé ń kàwé.", "12 345", "x " * 200]  # the last one is cut at the query length


def test_an_exported_student_loads_offline_and_reproduces_our_embeddings(tiny_checkpoint, tmp_path):
    from sentence_transformers import SentenceTransformer

    dest = export_sentence_transformer(tiny_checkpoint, tmp_path / "st")
    assert not list(dest.rglob("*.bin")) and (dest / "2_Dense" / "model.safetensors").is_file()  # head kept
    theirs = torch.as_tensor(SentenceTransformer(str(dest), device="cpu", local_files_only=True).encode(SENTENCES))
    ours, _ = load_checkpoint(tiny_checkpoint)
    cosine = (theirs * ours.encode(SENTENCES, max_length=64)).sum(-1)
    assert cosine.min() >= 0.9999, cosine


def test_export_never_overwrites(tiny_checkpoint, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already exists"):
        export_sentence_transformer(tiny_checkpoint, tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temporary left behind
