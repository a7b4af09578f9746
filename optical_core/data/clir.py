"""Zero-shot CLIR test collections built from NTREX-128 (Federmann, Kocmi & Xin, 2022).

Queries are low-resource-language text, documents are English. Two tasks:
- `headline`: a document's LR headline -> its English article body (headline removed); one relevant.
- `siblings`: an LR sentence -> English 3-sentence windows of the same document, excluding the window
  that holds the sentence's own translation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from optical_core.data.corpora import (
    NTREX_DIR,
    find_data_dir,
    read_lines,
    sha256_of_lines,
)
from optical_core.errors import DataError
from optical_core.settings import TASKS


@dataclass(frozen=True)
class Ntrex:
    """Line-aligned NTREX sentences: English, one LR language, and each line's document id."""

    lang: str
    english: list[str]
    foreign: list[str]
    doc_ids: list[str]

    def documents(self) -> dict[str, list[int]]:
        """Document id -> its line numbers, in corpus order (the first line is the headline)."""
        docs: dict[str, list[int]] = {}
        for i, d in enumerate(self.doc_ids):
            docs.setdefault(d, []).append(i)
        return docs


def ntrex_languages(data_dir: Path | None = None) -> list[str]:
    root = (data_dir or find_data_dir()) / NTREX_DIR
    return sorted(p.name.split(".")[1] for p in root.glob("newstest2019-ref.*.txt"))


@functools.lru_cache(maxsize=16)
def load_ntrex(lang: str, data_dir: Path | None = None) -> Ntrex:
    root = (data_dir or find_data_dir()) / NTREX_DIR
    ref = root / f"newstest2019-ref.{lang}.txt"
    if not ref.is_file():
        raise DataError(
            f"no NTREX-128 text for language '{lang}' (no file {ref}); "
            f"available: {', '.join(ntrex_languages(root.parent)) or 'none'}"
        )
    english = read_lines(root / "newstest2019-src.eng.txt")
    foreign = read_lines(ref)
    doc_ids = [line.split("\t")[0].strip() for line in read_lines(root / "DOCUMENT_IDS.tsv")]
    if not (len(english) == len(foreign) == len(doc_ids)):
        raise DataError(
            f"NTREX files are not line-aligned: {len(english)} English, {len(foreign)} {lang} ({ref}), "
            f"{len(doc_ids)} document ids"
        )
    return Ntrex(lang, english, foreign, doc_ids)


@dataclass(frozen=True)
class ClirCollection:
    """Queries (LR), documents (English), binary qrels, and each query's gold English translation."""

    name: str
    lang: str
    queries: dict[str, str]
    documents: dict[str, str]
    qrels: dict[str, dict[str, int]]
    query_translations: dict[str, str]

    def sha256(self) -> str:
        lines = [f"q\t{k}\t{v}" for k, v in self.queries.items()] + [f"d\t{k}\t{v}" for k, v in self.documents.items()]
        return sha256_of_lines(lines)

    def subset(self, n_queries: int) -> "ClirCollection":
        """The first `n_queries` queries against the full document set (for smoke tests)."""
        keep = list(self.queries)[:n_queries]
        return ClirCollection(self.name, self.lang, {q: self.queries[q] for q in keep}, self.documents,
                              {q: self.qrels[q] for q in keep}, {q: self.query_translations[q] for q in keep})


def headline_collection(ntrex: Ntrex) -> ClirCollection:
    queries, documents, qrels, translations = {}, {}, {}, {}
    for doc, lines in ntrex.documents().items():
        head, body = lines[0], lines[1:]
        qid = f"{doc}#h"
        queries[qid] = ntrex.foreign[head]
        translations[qid] = ntrex.english[head]
        documents[doc] = " ".join(ntrex.english[i] for i in body)
        qrels[qid] = {doc: 1}
    return ClirCollection("headline", ntrex.lang, queries, documents, qrels, translations)


def sibling_collection(ntrex: Ntrex, window: int = 3) -> ClirCollection:
    """Non-overlapping `window`-sentence English passages; each body sentence is a query."""
    queries, documents, qrels, translations = {}, {}, {}, {}
    for doc, lines in ntrex.documents().items():
        body = lines[1:]
        windows = [body[i : i + window] for i in range(0, len(body), window)]
        if len(windows) < 2:
            continue  # no sibling passage to find
        passage_ids = [f"{doc}#p{k}" for k in range(len(windows))]
        for pid, w in zip(passage_ids, windows):
            documents[pid] = " ".join(ntrex.english[i] for i in w)
        for k, w in enumerate(windows):
            for line in w:
                qid = f"{doc}#s{line}"
                queries[qid] = ntrex.foreign[line]
                translations[qid] = ntrex.english[line]
                qrels[qid] = {pid: 1 for j, pid in enumerate(passage_ids) if j != k}
    return ClirCollection("siblings", ntrex.lang, queries, documents, qrels, translations)


def build_collection(task: str, lang: str, data_dir: Path | None = None) -> ClirCollection:
    if task not in TASKS:
        raise ValueError(f"unknown CLIR task '{task}'; choose one of {TASKS}")
    ntrex = load_ntrex(lang, data_dir)
    return headline_collection(ntrex) if task == "headline" else sibling_collection(ntrex)


def heldout_texts(lang: str, data_dir: Path | None = None) -> list[str]:
    """Every NTREX sentence (English and `lang`) that must never enter training."""
    ntrex = load_ntrex(lang, data_dir)
    return ntrex.english + ntrex.foreign
