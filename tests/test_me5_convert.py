import os

import numpy as np
import torch

from optical_core.models.encoders import load_encoder
from optical_core.models.me5_convert import convert, dequantise_q4_0


def test_q4_0_block_dequantises_as_documented():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((lo | (hi << 4)) for lo, hi in zip(range(16), range(15, -1, -1)))
    values = dequantise_q4_0(scale + nibbles, 32)
    expected = np.array([(q - 8) * 0.5 for q in range(16)] + [(q - 8) * 0.5 for q in range(15, -1, -1)])
    np.testing.assert_allclose(values, expected)


def test_converted_me5_puts_swahili_near_its_english_translation(me5_dir):
    me5 = load_encoder(me5_dir, prefix="query: ")
    e = me5.encode(["Where is the train station?", "Kituo cha treni kiko wapi?",
                    "The recipe needs two cups of flour."])
    assert e[1] @ e[0] > e[1] @ e[2] + 0.1


def test_conversion_is_cached_and_reused(me5_dir):
    before = os.stat(me5_dir / "model.safetensors").st_mtime_ns
    assert convert() == me5_dir
    assert os.stat(me5_dir / "model.safetensors").st_mtime_ns == before


def test_converted_checkpoint_loads_in_plain_transformers(me5_dir):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(me5_dir)
    tok = AutoTokenizer.from_pretrained(me5_dir)
    assert model.config.num_hidden_layers == 12 and len(tok) == 250002
    out = model(**tok(["habari"], return_tensors="pt")).last_hidden_state
    assert torch.isfinite(out).all()
