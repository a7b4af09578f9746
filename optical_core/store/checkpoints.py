"""Student checkpoints: atomic writes, safetensors + JSON only, loadable by plain transformers.

Layout of `<root>/<name>/`: `config.json`, `model.safetensors`, tokenizer files (a standard Hugging
Face checkpoint: `AutoModel.from_pretrained(path)` works with no project code), plus
`projection.safetensors` when the student maps into the teacher's space, `manifest.json` (what made
it) and `train_log.jsonl` (the loss curve). A checkpoint is built in a hidden temporary directory
and renamed into place, so a crash mid-write leaves the previous version intact and nothing
half-written is listed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from optical_core.errors import CheckpointError, SettingsError
from optical_core.models.encoders import (
    MODEL_CONSTRUCTION_LOCK,
    Encoder,
    check_checkpoint_dir,
    load_backbone,
    load_tokenizer,
)
from optical_core.settings import FULL_PRECISION, LossConfig, StudentSpec, TrainConfig, from_mapping
from optical_core.store.atomic import atomic_write_text
from optical_core.store.locks import LockHeld, file_lock

LOCK = ".lock"  # taken while a checkpoint is swapped in, and while interrupted swaps are repaired
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 1_000_000  # a real manifest is ~3 kB; anything this large is not one
MANIFEST_FORMAT = 2  # 2: the config is a nested TrainConfig (1, a flat dict, is no longer read)
PROJECTION = "projection.safetensors"
TRAIN_LOG = "train_log.jsonl"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class RunManifest:
    """Everything needed to know what a checkpoint is and to reproduce it. `config` is the run's
    TrainConfig itself (read back as that type)."""

    name: str
    config: TrainConfig
    params_total: int
    params_non_embedding: int
    vocab_size: int
    original_vocab_size: int
    steps: int
    n_pairs: int
    data: dict  # bitext sha256 and origin, held-out dedup report
    versions: dict
    git_commit: str
    device: str
    wall_time_s: float
    created: str
    notes: list[str] = field(default_factory=list)
    precision: str = FULL_PRECISION  # what the encoder's matmuls ran in ("auto" in the config, resolved here)
    format: int = MANIFEST_FORMAT

    @property
    def method(self) -> str:
        return self.config.loss.method

    @property
    def lang(self) -> str:
        return self.config.lang

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def student(self) -> StudentSpec:
        return self.config.student

    @property
    def loss(self) -> LossConfig:
        return self.config.loss

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_dict(d: dict) -> "RunManifest":
        if not isinstance(d, dict):
            raise CheckpointError("manifest.json is not a JSON object")
        fmt = d.get("format", 1)  # format 1 wrote no format field
        if isinstance(fmt, int) and fmt > MANIFEST_FORMAT:
            raise CheckpointError(f"manifest format {fmt} is newer than this app understands ({MANIFEST_FORMAT}); "
                                  "update optical to read it")
        if fmt == 1:  # retired with the superseded first study (results/archive/), its only user
            raise CheckpointError(f"manifest format 1 (a flat train_config, from before typed manifests) is no longer "
                                  f"read (this app reads format {MANIFEST_FORMAT}): train the run again")
        if fmt != MANIFEST_FORMAT:
            raise CheckpointError(f"manifest format {fmt!r} is not one this app reads ({MANIFEST_FORMAT})")
        known = RunManifest.__dataclass_fields__
        try:
            values = {k: v for k, v in d.items() if k in known}
            values["config"] = from_mapping(TrainConfig, values.get("config"), "manifest config")
            return RunManifest(**values)
        except SettingsError as err:
            raise CheckpointError(f"manifest.json: {err}") from None
        except TypeError as err:
            raise CheckpointError(f"manifest.json is incomplete ({err})") from None


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise CheckpointError(f"invalid checkpoint name {name!r}: use letters, digits, '.', '_' and '-' "
                              "(no '/', no '..', not starting with '.')")
    return name


def checkpoint_path(root: Path | str, name: str) -> Path:
    root = Path(root).resolve()
    if (root / validate_name(name)).is_symlink():  # replace and delete would act on the link's target
        raise CheckpointError(f"{root / name} is a symbolic link: remove or rename the link itself")
    path = (root / name).resolve()
    if path.parent != root:
        raise CheckpointError(f"checkpoint name {name!r} escapes {root}")
    return path


def write_run_records(directory: Path | str, manifest: RunManifest, history: list[dict] | None = None) -> None:
    """A run's train log, then its manifest (each written atomically; the manifest marks the run finished)."""
    directory = Path(directory)
    atomic_write_text(directory / TRAIN_LOG, "".join(json.dumps(row) + "\n" for row in history or []))
    atomic_write_text(directory / MANIFEST, manifest.to_json())


def save_checkpoint(root: Path | str, encoder: Encoder, manifest: RunManifest, history: list[dict] | None = None,
                    extra_files: dict[str, str] | None = None) -> Path:
    """Write atomically to `<root>/<manifest.name>`, replacing any previous checkpoint of that name."""
    target = checkpoint_path(root, manifest.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{manifest.name}-", dir=target.parent))
    try:
        encoder.backbone.save_pretrained(tmp, safe_serialization=True)
        encoder.tokenizer.save_pretrained(tmp)
        if encoder.projection is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in encoder.projection.state_dict().items()},
                      str(tmp / PROJECTION))
        for filename, text in (extra_files or {}).items():
            (tmp / filename).write_text(text, encoding="utf-8")
        write_run_records(tmp, manifest, history)  # the manifest last: without one a directory was never finished
        trash = None
        with file_lock(target.parent / LOCK):  # a listing recovers interrupted swaps, never one in progress
            if not tmp.exists() and target.exists():
                return target  # a listing adopted our finished copy while we waited for the lock
            if target.exists():
                old = target.parent / f".old-{manifest.name}-{uuid.uuid4().hex[:8]}"
                target.rename(old)
                tmp.rename(target)  # a kill between these two renames is repaired by recover_interrupted()
                trash = old.rename(target.parent / f".deleting-{manifest.name}-{uuid.uuid4().hex[:8]}")
            else:
                tmp.rename(target)
        if trash is not None:  # outside the lock; a kill here leaves only a .deleting- folder
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_manifest(path: Path | str) -> RunManifest:
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise CheckpointError(f"{path}: manifest.json is missing (not an optical checkpoint, or never finished)")
    if file.stat().st_size > MANIFEST_MAX_BYTES:
        raise CheckpointError(f"{file}: {file.stat().st_size} bytes, more than a manifest ever holds "
                              f"({MANIFEST_MAX_BYTES})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{file}: not valid JSON ({type(err).__name__}: {str(err)[:200]})") from None
    try:
        return RunManifest.from_dict(data)
    except RecursionError:
        raise CheckpointError(f"{file}: nested too deeply to be a manifest") from None


def read_train_log(path: Path | str) -> list[dict]:
    file = Path(path) / TRAIN_LOG
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_checkpoint(path: Path | str) -> tuple[Encoder, RunManifest]:
    """An optical checkpoint as (Encoder, manifest). Reads safetensors and JSON only."""
    path = check_checkpoint_dir(path)
    manifest = read_manifest(path)
    encoder = Encoder(load_backbone(path), load_tokenizer(path))
    if (path / PROJECTION).is_file():
        try:
            state = load_file(str(path / PROJECTION))
            out_dim, in_dim = state["weight"].shape
            with MODEL_CONSTRUCTION_LOCK:
                projection = nn.Linear(in_dim, out_dim)
            projection.load_state_dict(state)
        except Exception as err:
            raise CheckpointError(f"{path / PROJECTION}: unreadable projection ({err})") from None
        encoder.projection = projection
    return encoder.eval(), manifest


@dataclass(frozen=True)
class CheckpointEntry:
    name: str
    path: Path
    manifest: RunManifest | None
    error: str | None


def list_checkpoints(root: Path | str) -> list[CheckpointEntry]:
    """Every visible directory under `root`, with its manifest or the reason it cannot be read. Interrupted
    replacements are repaired and stale temporaries removed first."""
    root = Path(root)
    if not root.is_dir():
        return []
    try:
        recover_interrupted(root)
    except OSError:  # e.g. a read-only folder: list what is there
        pass
    entries = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            check_inside(path, root)
            check_checkpoint_dir(path)
            entries.append(CheckpointEntry(path.name, path, read_manifest(path), None))
        except CheckpointError as err:
            entries.append(CheckpointEntry(path.name, path, None, str(err)))
    return entries


def check_inside(path: Path, root: Path) -> None:
    """Refuse a checkpoint folder that is a symbolic link (Delete and replace would act on its target), or that
    holds one leading out of `root` (the app would read whatever it points at)."""
    if path.is_symlink():
        raise CheckpointError(f"{path}: a symbolic link to {os.path.realpath(path)} (refused: a checkpoint is a "
                              "real folder)")
    root = root.resolve()
    try:
        for item in path.iterdir():
            target = item.resolve(strict=False)
            if target != root and root not in target.parents:
                raise CheckpointError(f"{item}: a symbolic link to {target}, outside {root} (refused)")
    except (OSError, RuntimeError) as err:  # a symlink loop, an unreadable folder
        raise CheckpointError(f"{path}: cannot be read ({type(err).__name__}: {str(err)[:200]})") from None
def delete_checkpoint(root: Path | str, name: str) -> None:
    path = checkpoint_path(root, name)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint named {name!r} in {root}")
    trash = path.parent / f".deleting-{name}-{uuid.uuid4().hex[:8]}"
    with file_lock(path.parent / LOCK):
        path.rename(trash)  # disappears from listings at once, even if the removal below is interrupted
    shutil.rmtree(trash, ignore_errors=True)


HIDDEN = re.compile(r"^\.(tmp|old|deleting)-(.+)-[A-Za-z0-9_]{8}$")
STALE_TMP_S = 3600  # a checkpoint is written in seconds; a temporary untouched for an hour is abandoned


def recover_interrupted(root: Path | str) -> int:
    """Repair what a killed process left behind; returns how many hidden folders were renamed or removed.

    A kill between save_checkpoint's two renames leaves `.old-NAME-*` and no NAME: the finished new version
    (a `.tmp-NAME-*` with a manifest) is put in place if there is one, the old version otherwise, so one of
    the two is always listed. Then leftovers are removed: `.old-*` whose name exists again, `.deleting-*`,
    and `.tmp-*` untouched for STALE_TMP_S (younger ones may be a write in progress). Skipped while another
    process is replacing a checkpoint here."""
    root = Path(root)
    hidden = [(p, HIDDEN.match(p.name)) for p in root.glob(".*") if p.is_dir() and not p.is_symlink()]
    hidden = [(p, m.group(1), m.group(2)) for p, m in hidden if m]
    if not hidden:
        return 0
    changed = 0
    try:
        with file_lock(root / LOCK, wait=False):
            for path, kind, name in hidden:
                if kind != "old" or (root / name).exists() or not NAME_PATTERN.match(name):
                    continue
                finished = sorted((t for t, k, n in hidden if k == "tmp" and n == name and (t / MANIFEST).is_file()),
                                  key=lambda t: t.stat().st_mtime)
                (finished[-1] if finished else path).rename(root / name)
                changed += 1
            now = time.time()
            for path, kind, name in hidden:
                if not path.exists():  # renamed into place above
                    continue
                stale = kind == "deleting" or (kind == "old" and (root / name).exists()) or (
                    kind == "tmp" and now - path.stat().st_mtime > STALE_TMP_S)
                if stale:
                    shutil.rmtree(path, ignore_errors=True)
                    changed += 1
    except LockHeld:
        return 0
    return changed
