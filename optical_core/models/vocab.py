"""Vocabulary trimming: keep only the pieces a study's texts use (plus specials).

A 250k-piece embedding table is 96M of multilingual-e5-small's 118M parameters; a study that reads a
few languages uses a small fraction. Trimming keeps every piece that occurs in the given texts, so
their encodings do not change (the best Unigram path / the longest WordPiece match only ever used
kept pieces); text outside them may fall back to <unk>.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer


def used_token_ids(tokenizer, texts: list[str], batch_size: int = 2048) -> set[int]:
    """Ids the texts use, plus every special and added token (a handful of rows; kept whether used or not)."""
    ids = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)  # <unk> is among the specials
    for start in range(0, len(texts), batch_size):
        for row in tokenizer(texts[start : start + batch_size])["input_ids"]:
            ids.update(row)
    return ids


def _remap_tokenizer_json(spec: dict, kept: list[int]) -> dict:
    new_id = {old: new for new, old in enumerate(kept)}
    model = spec["model"]
    # Added tokens outside the model's vocabulary have the highest ids, so they stay after it when renumbered.
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in kept if i < len(model["vocab"])]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    elif model["type"] == "WordPiece":
        by_id = {i: piece for piece, i in model["vocab"].items()}
        model["vocab"] = {by_id[old]: new for new, old in enumerate(kept) if old in by_id}
    else:
        raise ValueError(f"vocabulary trimming supports Unigram and WordPiece tokenizers, not {model['type']}")
    # tokenizers re-derives added-token ids on load; renumbered here so that the file itself is right
    spec["added_tokens"] = [dict(t, id=new_id[t["id"]]) for t in spec["added_tokens"] if t["id"] in new_id]
    post = spec.get("post_processor") or {}
    processors = post.get("processors", [post])
    for proc in processors:
        for special in (proc.get("special_tokens") or {}).values():
            special["ids"] = [new_id[i] for i in special["ids"]]
        for key in ("sep", "cls"):
            if key in proc:
                proc[key] = [proc[key][0], new_id[proc[key][1]]]
    return spec


def trim_vocabulary(backbone, tokenizer, texts: list[str]):
    """A (backbone, tokenizer) pair whose vocabulary is the pieces `texts` use.

    Returns (backbone, tokenizer, kept ids)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("vocabulary trimming needs a fast (tokenizer.json) tokenizer")
    kept = sorted(used_token_ids(tokenizer, texts))
    spec = _remap_tokenizer_json(json.loads(tokenizer.backend_tokenizer.to_str()), kept)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for stale in ("vocab.txt", "sentencepiece.bpe.model", "tokenizer.model", "spiece.model"):
            (Path(tmp) / stale).unlink(missing_ok=True)
        Tokenizer.from_str(json.dumps(spec)).save(str(Path(tmp) / "tokenizer.json"))
        if spec["model"]["type"] == "WordPiece":
            pieces = sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].get)
            (Path(tmp) / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
        trimmed_tokenizer = AutoTokenizer.from_pretrained(tmp)
    old = backbone.get_input_embeddings().weight.data
    index = torch.tensor(kept)
    new = torch.nn.Embedding(len(kept), old.shape[1], padding_idx=None)
    new.weight.data.copy_(old[index])
    backbone.set_input_embeddings(new)
    backbone.config.vocab_size = len(kept)
    if backbone.config.pad_token_id is not None:
        backbone.config.pad_token_id = trimmed_tokenizer.pad_token_id
    return backbone, trimmed_tokenizer, kept


def token_idf(tokenizer, texts: list[str], vocab_size: int) -> torch.Tensor:
    """Smoothed inverse document frequency per token id, log((1 + N) / (1 + df)) + 1, over `texts`."""
    df = torch.zeros(vocab_size)
    for row in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        df[torch.tensor(sorted(set(row)), dtype=torch.long)] += 1
    return torch.log((1 + len(texts)) / (1 + df)) + 1
