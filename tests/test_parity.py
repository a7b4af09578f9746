"""Our KD trainer against sentence-transformers' trainer with its MSELoss (the peer the study's KD stands for)."""

import torch

from optical_core.distil.train import initial_student, train
from optical_core.study.parity import train_with_sentence_transformers

from .conftest import tiny_config

SENTENCES = ["Gwamnati ta sanar da sabon kasafin kudi.", "Yara suna karatu a makaranta.", "2024"]


def test_with_dropout_off_both_trainers_reach_the_same_student(teacher, monkeypatch):
    """Same start, batches, optimiser, schedule, clipping and steps: with dropout (their only random draw)
    switched off, the two students must agree to float32 round-off."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",  # attention dropout lives in here
                        lambda *args, dropout_p=0.0, **kwargs: sdpa(*args, dropout_p=0.0, **kwargs))
    config = tiny_config("kd", "me5", 1, n_pairs=64)
    ours = train(config, teacher=teacher)
    theirs, facts = train_with_sentence_transformers(config, teacher)
    assert facts["steps"] == len(ours.history) == 4
    start = initial_student(config, teacher).encoder
    a, b = ours.student.encoder.encode(SENTENCES, max_length=32), theirs.encode(SENTENCES, max_length=32)
    moved = (a - start.encode(SENTENCES, max_length=32)).norm(dim=-1)
    assert (moved > 1e-3).all()  # training moved the student, so agreement below is not trivial
    assert ((a * b).sum(-1) > 0.99999).all() and (a - b).norm(dim=-1).max() < 0.1 * moved.min()
