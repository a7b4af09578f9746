"""Scoring a student and the baselines on a CLIR collection, and the table that compares them.

Baselines (each scored on the same queries as the student):
- untrained: the student's initialisation before distillation (the floor);
- oracle: the teacher reading the gold English translation of each query (the ceiling);
- bm25: lexical BM25 between the LR query and the English documents;
- teacher-raw: the teacher reading the LR query itself (no distillation at all);
- me5: multilingual-e5-small off the shelf, "query: " / "passage: " prefixes, encoding both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save

from optical_core.data.clir import ClirCollection, build_collection
from optical_core.data.corpora import sha256_of_lines
from optical_core.evaluate.retrieval import (
    bm25_run,
    metrics_for,
    per_query_metrics,
    rank,
)
from optical_core.evaluate.significance import mean_ci, paired_comparison
from optical_core.models.encoders import Encoder, load_encoder, load_teacher
from optical_core.models.me5_convert import cache_root
from optical_core.models.me5_convert import convert as convert_me5
from optical_core.settings import DOC_MAX_LENGTH, QUERY_MAX_LENGTH
from optical_core.store.atomic import atomic_write_bytes, atomic_write_text
from optical_core.store.checkpoints import load_checkpoint

BASELINES = ("untrained", "oracle", "bm25", "teacher-raw", "me5")

_DOC_CACHE: dict[tuple, torch.Tensor] = {}
DOC_CACHE_VERSION = "1"  # bump when Encoder.encode, tokenisation or pooling change


def doc_cache_dir() -> Path:
    """Where document embeddings persist between processes (OPTICAL_DOC_CACHE; the tests use their own)."""
    return Path(os.environ.get("OPTICAL_DOC_CACHE", cache_root() / "doc_embeddings"))


def document_embeddings(encoder: Encoder, collection: ClirCollection, device="cpu") -> torch.Tensor:
    """A collection's documents encoded by a frozen encoder, computed once: cached in memory and, for weights
    read from disk (`weights_id`), in OPTICAL_CACHE/doc_embeddings, so a fresh process (the app after a
    restart, the next sweep) reuses them. The key holds the weights' identity, prefix, length and texts."""
    texts = list(collection.documents.values())
    key = (encoder.weights_id or id(encoder), encoder.prefix, DOC_MAX_LENGTH, sha256_of_lines(texts))
    if key in _DOC_CACHE:
        return _DOC_CACHE[key]
    file = None
    if encoder.weights_id is not None:
        # the code and libraries that encode are part of the key: an upgrade never reuses older vectors
        stamp = [str(k) for k in key] + [DOC_CACHE_VERSION, torch.__version__] + [
            metadata.version(lib) for lib in ("transformers", "tokenizers")]
        digest = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:32]
        file = doc_cache_dir() / f"{digest}.safetensors"
        if file.is_file():
            try:
                cached = load_file(str(file))["embeddings"]
                if cached.shape[0] == len(texts):
                    _DOC_CACHE[key] = cached
                    return cached
            except Exception:  # a damaged cache file is recomputed, never trusted
                file.unlink(missing_ok=True)
    embeddings = encoder.encode(texts, batch_size=16, max_length=DOC_MAX_LENGTH, device=device)
    if file is not None:
        try:
            atomic_write_bytes(file, save(_as_tensors(embeddings)))
        except OSError:  # a read-only cache: computed each time, still correct
            pass
    _DOC_CACHE[key] = embeddings
    return embeddings


def prefetch_documents(encoder: Encoder, task: str = "headline", lang: str = "swa") -> threading.Thread:
    """Encode a task's documents in a background thread (the app calls this when it loads the teacher), so
    the first evaluation after training finds them cached. NTREX documents are the same English sentences
    for every language, so one language warms them all."""
    def work():
        try:
            document_embeddings(encoder, build_collection(task, lang), next(encoder.parameters()).device)
        except Exception:  # no corpus for that language: the first evaluation computes what it needs
            pass

    thread = threading.Thread(target=work, daemon=True, name="prefetch-documents")
    thread.start()
    return thread


def _as_tensors(embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"embeddings": embeddings.detach().cpu().contiguous()}


def dense_scores(query_encoder: Encoder, queries: dict[str, str], doc_embeddings: torch.Tensor,
                 collection: ClirCollection, device="cpu") -> pd.DataFrame:
    qids = list(queries)
    q = query_encoder.encode([queries[i] for i in qids], max_length=QUERY_MAX_LENGTH, device=device)
    run = rank(q, doc_embeddings, qids, list(collection.documents))
    return per_query_metrics(collection.qrels, run, metrics_for(collection.name))


def score_student(student: Encoder, teacher: Encoder, collection: ClirCollection, device="cpu") -> pd.DataFrame:
    """Per-query metrics of a student: its LR query embeddings against the teacher's document embeddings."""
    docs = document_embeddings(teacher, collection, device)
    return dense_scores(student, collection.queries, docs, collection, device)


def score_baselines(teacher: Encoder, collection: ClirCollection, untrained: Encoder | None = None,
                    which: tuple[str, ...] = BASELINES, device="cpu") -> dict[str, pd.DataFrame]:
    out = {}
    metrics = metrics_for(collection.name)
    if "untrained" in which and untrained is not None:
        out["untrained"] = score_student(untrained, teacher, collection, device)
    if "oracle" in which:
        out["oracle"] = score_student(teacher, teacher, ClirCollection(
            collection.name, "eng", collection.query_translations, collection.documents, collection.qrels,
            collection.query_translations), device)
    if "bm25" in which:
        out["bm25"] = per_query_metrics(collection.qrels, bm25_run(collection.queries, collection.documents), metrics)
    if "teacher-raw" in which:
        out["teacher-raw"] = score_student(teacher, teacher, collection, device)
    if "me5" in which:
        me5_query = load_encoder(convert_me5(), prefix="query: ").to(device)
        me5_passage = Encoder(me5_query.backbone, me5_query.tokenizer, prefix="passage: ")
        me5_passage.weights_id = me5_query.weights_id
        docs = document_embeddings(me5_passage, collection, device)
        out["me5"] = dense_scores(me5_query, collection.queries, docs, collection, device)
    return out


def summary_table(scores: dict[str, pd.DataFrame], reference: str | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per (system, metric): mean with bootstrap 95% CI over queries, n, and the paired
    difference and randomisation p-value against `reference` (if given)."""
    rows = []
    for system, frame in scores.items():
        for metric in [c for c in frame.columns if c != "qid"]:
            mean, low, high = mean_ci(frame[metric].to_numpy(), seed=seed)
            row = dict(system=system, metric=metric, mean=mean, ci_low=low, ci_high=high, n=len(frame))
            if reference and reference in scores and system != reference:
                ref = scores[reference].set_index("qid")[metric]
                mine = frame.set_index("qid")[metric].reindex(ref.index)
                cmp = paired_comparison(mine.to_numpy(), ref.to_numpy(), seed=seed)
                row.update(diff_vs_ref=cmp.difference, diff_ci_low=cmp.ci_low, diff_ci_high=cmp.ci_high,
                           p_vs_ref=cmp.p_value)
            rows.append(row)
    return pd.DataFrame(rows)


def write_per_query(scores: dict[str, pd.DataFrame], directory: Path | str) -> dict[str, str]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for system, frame in scores.items():
        path = directory / f"{system}.csv"
        frame.to_csv(path, index=False)
        paths[system] = str(path)
    return paths


def evaluate_checkpoint(path: Path | str, task: str = "headline", teacher: Encoder | None = None,
                        data_dir: Path | None = None, lang: str | None = None) -> pd.DataFrame:
    """Per-query metrics of a saved student on its language's (or `lang`'s) NTREX collection."""
    encoder, manifest = load_checkpoint(path)
    collection = build_collection(task, lang or manifest.lang, data_dir)
    scores = score_student(encoder, teacher or load_teacher(), collection)
    record_evaluation(path, task, collection.lang, scores)
    return scores


def record_evaluation(path: Path | str, task: str, lang: str, scores: pd.DataFrame) -> None:
    """A checkpoint's mean scores on one task, beside its weights (`eval_<task>.json`)."""
    atomic_write_text(Path(path) / f"eval_{task}.json", json.dumps(
        {"task": task, "lang": lang, "n_queries": len(scores),
         "means": scores.drop(columns="qid").mean().to_dict()}, indent=2))
