"""One typed query against a language's NTREX headline collection: the ranked English documents of each
system the study compares (the demo the Search page shows).

Systems, each a function returning a `Ranking` (document ids and scores, best first):
- `student_search`: a distilled student encodes the LR query, the frozen teacher the documents (the study's
  zero-shot CLIR setting; scoring.py's cached document embeddings);
- `teacher_search`: the raw teacher reads the LR query itself (no distillation);
- `bm25_search`: lexical BM25 between the LR query words and the English documents;
- `me5_search`: multilingual-e5-small off the shelf ("query: " / "passage: " prefixes on both sides).

`check_query` refuses what no system can rank sensibly: an empty query, one over MAX_QUERY_CHARS characters, or
text whose pieces the student's tokenizer mostly maps to its unknown token (a script its vocabulary lacks).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from optical_core.data.clir import ClirCollection
from optical_core.errors import DataError
from optical_core.evaluate.retrieval import bm25_run, rank
from optical_core.evaluate.scoring import document_embeddings
from optical_core.models.encoders import Encoder, load_encoder
from optical_core.models.me5_convert import convert as convert_me5
from optical_core.settings import QUERY_MAX_LENGTH

MAX_QUERY_CHARS = 5000
MAX_UNKNOWN_SHARE = 0.5  # more than half the query's pieces unknown: the student cannot read it
TOP_HIT_MAX_LENGTH = 64  # tokens per side of the plan between a query and its top document (a document is long)
SYSTEMS = ("student", "teacher-raw", "bm25", "me5")


@dataclass(frozen=True)
class Ranking:
    """One system's top documents for one query, best first."""

    system: str
    doc_ids: list[str]
    scores: list[float]

    def rank_of(self, doc_id: str) -> int | None:
        """1-based rank of `doc_id`, None when it is not among the top documents."""
        return self.doc_ids.index(doc_id) + 1 if doc_id in self.doc_ids else None


def unknown_share(encoder: Encoder, text: str) -> float:
    """The share of `text`'s pieces that `encoder`'s tokenizer maps to its unknown token (specials and bare word
    markers such as sentencepiece's lone '▁', which carry no letter, not counted)."""
    tokenizer = encoder.tokenizer
    with encoder.lock:
        ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=512)["input_ids"]
        pieces = tokenizer.convert_ids_to_tokens(ids)
    unk = tokenizer.unk_token_id
    counted = [i for i, piece in zip(ids, pieces) if i == unk or piece.strip("▁ ")]
    return sum(i == unk for i in counted) / len(counted) if counted and unk is not None else 0.0


def check_query(text: str, reader: Encoder | None = None, reader_name: str = "student") -> str:
    """The query, stripped; a DataError in one line if it is empty, too long, or mostly unknown to the tokenizer
    of `reader` (the student, or the teacher when no student is chosen)."""
    query = (text or "").strip()
    if not query:
        raise DataError("Type a query (or pick an NTREX headline): the query is empty.")
    if len(query) > MAX_QUERY_CHARS:
        raise DataError(f"The query has {len(query):,} characters; at most {MAX_QUERY_CHARS:,} are searched "
                        "(a query is a sentence or two, not a document).")
    if reader is not None:
        share = unknown_share(reader, query)
        if share > MAX_UNKNOWN_SHARE:
            raise DataError(f"The {reader_name}'s tokenizer does not know this script: {share:.0%} of the query's "
                            "pieces are unknown to it. Type the query in the language's own (Latin) script.")
    return query


def relevant_documents(query: str, collection: ClirCollection) -> set[str]:
    """The documents judged relevant to `query` when it is one of the collection's queries (an NTREX headline,
    typed or picked); none for any other text, which no one has judged."""
    qids = [q for q, text in collection.queries.items() if text.strip() == query.strip()]
    return {d for q in qids for d, grade in collection.qrels[q].items() if grade > 0}


def _ranking(system: str, run: dict[str, dict[str, float]], k: int) -> Ranking:
    ranked = sorted(run.get("q", {}).items(), key=lambda item: -item[1])[:k]
    return Ranking(system, [d for d, _ in ranked], [s for _, s in ranked])


def dense_search(system: str, query_encoder: Encoder, document_encoder: Encoder, query: str,
                 collection: ClirCollection, k: int = 10) -> Ranking:
    """Exact cosine between one query (encoded by `query_encoder`) and the collection's documents (encoded once
    by the frozen `document_encoder`, cached)."""
    device = next(query_encoder.parameters()).device
    docs = document_embeddings(document_encoder, collection, next(document_encoder.parameters()).device)
    q = query_encoder.encode([query], max_length=QUERY_MAX_LENGTH, device=device)
    return _ranking(system, rank(q, docs, ["q"], list(collection.documents), depth=k), k)


def student_search(student: Encoder, teacher: Encoder, query: str, collection: ClirCollection,
                   k: int = 10) -> Ranking:
    """A distilled student's query embedding against the teacher's document embeddings."""
    return dense_search("student", student, teacher, query, collection, k)


def teacher_search(teacher: Encoder, query: str, collection: ClirCollection, k: int = 10) -> Ranking:
    """The raw teacher reading the LR query (the study's teacher-raw baseline)."""
    return dense_search("teacher-raw", teacher, teacher, query, collection, k)


def bm25_search(query: str, collection: ClirCollection, k: int = 10) -> Ranking:
    """BM25 of the LR query words against the English documents; a query sharing no word with them ranks none."""
    return _ranking("bm25", bm25_run({"q": query}, collection.documents, depth=k), k)


@functools.lru_cache(maxsize=1)
def me5_encoders() -> tuple[Encoder, Encoder]:
    """multilingual-e5-small off the shelf: its query encoder and its passage encoder (the same weights)."""
    query = load_encoder(convert_me5(), prefix="query: ")
    passage = Encoder(query.backbone, query.tokenizer, prefix="passage: ")
    passage.weights_id = query.weights_id  # its document embeddings are cached like any frozen encoder's
    passage.lock = query.lock
    return query, passage


def me5_search(query: str, collection: ClirCollection, k: int = 10) -> Ranking:
    """multilingual-e5-small off the shelf on both sides (the study's me5 baseline)."""
    me5_query, me5_passage = me5_encoders()
    return dense_search("me5", me5_query, me5_passage, query, collection, k)


def search_all(query: str, collection: ClirCollection, teacher: Encoder, student: Encoder | None = None,
               k: int = 10) -> dict[str, Ranking]:
    """Every system's top-`k` for one checked query: the student (when given), the raw teacher, BM25, mE5."""
    query = check_query(query, student or teacher, "student" if student is not None else "teacher")
    out = {"student": student_search(student, teacher, query, collection, k)} if student is not None else {}
    out["teacher-raw"] = teacher_search(teacher, query, collection, k)
    out["bm25"] = bm25_search(query, collection, k)
    out["me5"] = me5_search(query, collection, k)
    return out
