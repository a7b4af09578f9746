"""Zero-shot dense retrieval and its metrics.

English documents are encoded by the frozen teacher; LR queries by a student. Ranking is exact
cosine (a batched matrix product over L2-normalised embeddings). Metrics come from ranx
(Bassani, ECIR 2022) per query, so systems can be compared pairwise on the same queries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from ranx import Qrels, Run, evaluate

from optical_core.settings import TASK_METRICS

RUN_DEPTH = 100


def metrics_for(task: str) -> tuple[str, ...]:
    return TASK_METRICS[task]


def rank(query_embeddings: torch.Tensor, doc_embeddings: torch.Tensor, qids: list[str], dids: list[str],
         depth: int = RUN_DEPTH) -> dict[str, dict[str, float]]:
    """Top-`depth` documents per query by cosine (inputs are L2-normalised)."""
    scores = query_embeddings.float() @ doc_embeddings.float().T
    k = min(depth, len(dids))
    top = torch.topk(scores, k, dim=1)
    return {q: {dids[j]: float(s) for s, j in zip(row_s.tolist(), row_j.tolist())}
            for q, row_s, row_j in zip(qids, top.values, top.indices)}


def per_query_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                      metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per query (every query in qrels; a query with no retrieved document scores 0)."""
    qids = list(qrels)
    filled = {q: run.get(q) or {"__none__": 0.0} for q in qids}
    scores = evaluate(Qrels(qrels), Run(filled), list(metrics), return_mean=False, make_comparable=True)
    if not isinstance(scores, dict):  # ranx returns a bare array (not a dict) for a single metric
        scores = {metrics[0]: scores}
    frame = pd.DataFrame({m: np.asarray(scores[m], dtype=float) for m in metrics})
    frame.insert(0, "qid", sorted(qids))  # ranx reports queries in sorted order
    return frame.sort_values("qid").reset_index(drop=True)


def bm25_run(queries: dict[str, str], documents: dict[str, str], depth: int = RUN_DEPTH) -> dict[str, dict[str, float]]:
    """Lexical baseline: BM25 (Robertson & Zaragoza, 2009) via bm25s, LR query words against English text."""
    import bm25s

    dids = list(documents)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([documents[d] for d in dids], stopwords="en", show_progress=False),
                    show_progress=False)
    qids = list(queries)
    query_tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False,
                                  return_ids=False)
    k = min(depth, len(dids))
    run = {}
    for q, tokens in zip(qids, query_tokens):
        known = [t for t in tokens if t in retriever.vocab_dict]
        if not known:
            run[q] = {}
            continue
        scores = retriever.get_scores(known)
        order = np.argsort(-scores, kind="stable")[:k]
        run[q] = {dids[j]: float(scores[j]) for j in order if scores[j] > 0}
    return run
