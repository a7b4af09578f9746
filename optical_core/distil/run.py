"""One run end to end: distil a student, then record it (manifest + train log) and keep its weights.

`save_run` is the one place a finished run is written, for the app's checkpoints and the sweep's cells.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

from optical_core.distil.train import Evaluator, StepLog, TrainResult, train
from optical_core.models.encoders import Encoder
from optical_core.settings import TrainConfig
from optical_core.store.checkpoints import (
    RunManifest,
    checkpoint_path,
    save_checkpoint,
    write_run_records,
)
from optical_core.store.provenance import (
    device_description,
    git_commit,
    library_versions,
    utc_now,
)


def default_run_name(config: TrainConfig) -> str:
    return f"{config.lang}-{config.student.name}-{config.loss.method}-s{config.seed}"


def manifest_for(result: TrainResult, name: str) -> RunManifest:
    c, student = result.config, result.student
    return RunManifest(
        name=name, config=c, params_total=student.params.total,
        params_non_embedding=student.params.non_embedding, vocab_size=student.params.vocab_size,
        original_vocab_size=student.original_vocab_size, steps=len(result.history), n_pairs=len(result.bitext),
        data={"bitext_sha256": result.bitext.sha256(), "bitext_origin": list(result.bitext.origin),
              "heldout_dropped": asdict(result.dedup), "bitext_notes": list(result.bitext.notes)},
        versions=library_versions(), git_commit=git_commit(), device=device_description(result.device),
        wall_time_s=round(result.wall_time_s, 2), created=utc_now(), precision=result.precision,
        notes=list(student.notes) + [f"{result.truncated_pairs} of {len(result.bitext)} pairs truncated to "
                                     f"max_length {c.budget.max_length} tokens"],
    )


def save_run(result: TrainResult, name: str, checkpoint_root: Path | str | None = None,
             records_dir: Path | str | None = None) -> Path | None:
    """Write a finished run: its records (manifest.json, train_log.jsonl) into `records_dir`, and/or a
    checkpoint (weights + the same records) `<checkpoint_root>/<name>`. Returns the checkpoint's path."""
    manifest = manifest_for(result, name)
    history = [asdict(h) for h in result.history]
    if records_dir is not None:
        write_run_records(records_dir, manifest, history)
    if checkpoint_root is not None:
        return save_checkpoint(checkpoint_root, result.student.encoder, manifest, history)
    return None


def train_and_save(config: TrainConfig, root: Path | str, name: str | None = None, teacher: Encoder | None = None,
                   on_step: Callable[[StepLog], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, data_dir: Path | None = None,
                   evaluator: Evaluator | None = None) -> Path:
    """Train, then write the checkpoint atomically. Cancellation or a NaN loss writes nothing. `evaluator`
    scores the run along training (train()'s; step 0 is the start)."""
    name = name or default_run_name(config)
    checkpoint_path(root, name)  # a bad name fails now, not after the training it would have thrown away
    result = train(config, teacher=teacher, on_step=on_step, should_stop=should_stop, data_dir=data_dir,
                   evaluator=evaluator)
    return save_run(result, name, checkpoint_root=root)
