import json

import pytest
import torch

from optical_core.errors import CheckpointError
from optical_core.models.encoders import (
    check_checkpoint_dir,
    load_backbone,
    teacher_dir,
)

from .conftest import write


def test_teacher_loads_offline_and_ranks_a_paraphrase_above_an_unrelated_sentence(teacher):
    e = teacher.encode(["Where is the train station?", "Which way to the railway station?",
                        "The recipe needs two cups of flour."])
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert e[0] @ e[1] > 0.6 > e[0] @ e[2]


def test_missing_path_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        check_checkpoint_dir(tmp_path / "absent")


def test_directory_without_config_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        check_checkpoint_dir(tmp_path)


def test_pickled_weights_are_refused(tmp_path):
    write(tmp_path / "config.json", json.dumps({"model_type": "bert"}))
    write(tmp_path / "pytorch_model.bin", b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match="model.safetensors is missing.*pickles are never loaded"):
        check_checkpoint_dir(tmp_path)


def test_truncation_to_first_layers_and_bounds():
    assert load_backbone(teacher_dir(), 2).config.num_hidden_layers == 2
    with pytest.raises(CheckpointError, match="asked for 9 layers, the checkpoint has 6"):
        load_backbone(teacher_dir(), 9)
