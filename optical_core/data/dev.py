"""The dev collection: where learning rates, head multipliers, OT variants and budgets are chosen.

Built from MAFAND-MT's dev split, never from NTREX (the test): query = an LR dev sentence, its one
relevant document = its own English translation, ranked among the English sides of all dev pairs
(translation retrieval, a proxy for the CLIR task). Pairs that overlap the training bitext or NTREX
(either side, normalised) are dropped, so a choice made here has seen neither training nor test text.
"""

from __future__ import annotations

import functools
from pathlib import Path

from optical_core.data.bitext import load_aligned_files, normalise, remove_heldout_overlap
from optical_core.data.clir import ClirCollection, heldout_texts
from optical_core.data.corpora import MAFAND_DIR, find_data_dir
from optical_core.errors import DataError

DEV_QUERIES = 500  # enough to resolve ~0.03 MRR, cheap enough to score at every learning-curve step


@functools.lru_cache(maxsize=8)
def dev_collection(lang: str, n_queries: int = DEV_QUERIES, data_dir: Path | None = None) -> ClirCollection:
    folder = (data_dir or find_data_dir()) / MAFAND_DIR / f"en-{lang}"
    if not (folder / f"train.{lang}").is_file():
        raise DataError(f"no dev collection for '{lang}': MAFAND has no train split for it, so its dev split "
                        "is training bitext here (choose settings on another language)")
    dev = load_aligned_files(folder / f"dev.{lang}", folder / "dev.en", lang)
    train = load_aligned_files(folder / f"train.{lang}", folder / "train.en", lang)
    seen = {normalise(t) for t in train.source + train.target}
    clean, _ = remove_heldout_overlap(dev, heldout_texts(lang, data_dir))
    pairs = [(s, t) for s, t in zip(clean.source, clean.target)
             if normalise(s) not in seen and normalise(t) not in seen]
    pairs = list(dict((normalise(t), (s, t)) for s, t in pairs).values())  # one document per English text
    if len(pairs) < 50:
        raise DataError(f"dev collection for '{lang}': only {len(pairs)} dev pairs are disjoint from training")
    queries, documents, qrels, translations = {}, {}, {}, {}
    for k, (s, t) in enumerate(pairs):
        documents[f"dev{k}"] = t
        if k < n_queries:
            queries[f"dev{k}#q"] = s
            translations[f"dev{k}#q"] = t
            qrels[f"dev{k}#q"] = {f"dev{k}": 1}
    return ClirCollection("dev", lang, queries, documents, qrels, translations)
