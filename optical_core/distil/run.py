"""One run end to end: distil a student, save it as a checkpoint with its manifest, score it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import pandas as pd

from optical_core.store.atomic import atomic_write_text
from optical_core.store.checkpoints import RunManifest, load_checkpoint, save_checkpoint
from optical_core.data.clir import build_collection
from optical_core.models.encoders import Encoder, load_teacher
from optical_core.evaluate.scoring import score_student
from optical_core.store.provenance import device_description, git_commit, library_versions, utc_now
from optical_core.distil.train import StepLog, TrainConfig, TrainResult, train


def default_run_name(config: TrainConfig) -> str:
    s = config.student
    return f"{config.lang}-{s.family}-L{s.layers}-{config.loss.method}-s{config.seed}"


def manifest_for(result: TrainResult, name: str) -> RunManifest:
    c, student = result.config, result.student
    return RunManifest(
        name=name, method=c.loss.method, lang=c.lang, student=asdict(c.student), loss=c.loss.as_dict(),
        train_config=c.as_dict(), params_total=student.params.total,
        params_non_embedding=student.params.non_embedding, vocab_size=student.params.vocab_size,
        original_vocab_size=student.original_vocab_size, seed=c.seed, steps=len(result.history),
        n_pairs=len(result.bitext),
        data={"bitext_sha256": result.bitext.sha256(), "bitext_origin": list(result.bitext.origin),
              "heldout_dropped": asdict(result.dedup), "bitext_notes": list(result.bitext.notes)},
        versions=library_versions(), git_commit=git_commit(), device=device_description(result.device),
        wall_time_s=round(result.wall_time_s, 2), created=utc_now(),
        notes=list(student.notes) + [f"{result.truncated_pairs} of {len(result.bitext)} pairs truncated to "
                                     f"max_length {c.max_length} tokens"],
    )


def train_and_save(config: TrainConfig, root: Path | str, name: str | None = None, teacher: Encoder | None = None,
                   on_step: Callable[[StepLog], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, data_dir: Path | None = None) -> Path:
    """Train, then write the checkpoint atomically. Cancellation or a NaN loss writes nothing."""
    name = name or default_run_name(config)
    result = train(config, teacher=teacher, on_step=on_step, should_stop=should_stop, data_dir=data_dir)
    history = [asdict(h) for h in result.history]
    return save_checkpoint(root, result.student.encoder, manifest_for(result, name), history)


def evaluate_checkpoint(path: Path | str, task: str = "headline", teacher: Encoder | None = None,
                        data_dir: Path | None = None, lang: str | None = None) -> pd.DataFrame:
    """Per-query metrics of a saved student on its language's (or `lang`'s) NTREX collection."""
    encoder, manifest = load_checkpoint(path)
    collection = build_collection(task, lang or manifest.lang, data_dir)
    scores = score_student(encoder, teacher or load_teacher(), collection)
    atomic_write_text(Path(path) / f"eval_{task}.json", json.dumps(
        {"task": task, "lang": collection.lang, "n_queries": len(scores),
         "means": scores.drop(columns="qid").mean().to_dict()}, indent=2))
    return scores
