"""Descriptive tables of the study's ingredients: the student ladders, the data, the tokenizers."""

from __future__ import annotations

import pandas as pd

from optical_core.data.bitext import mafand_languages, training_bitext
from optical_core.data.clir import (
    headline_collection,
    load_ntrex,
    ntrex_languages,
    sibling_collection,
)
from optical_core.errors import DataError
from optical_core.models.encoders import load_tokenizer, teacher_dir
from optical_core.models.me5_convert import convert as convert_me5
from optical_core.models.students import build_student
from optical_core.settings import LADDERS, StudentSpec


def ladder_table(families: tuple[str, ...] = ("me5", "minilm"), teacher_hidden: int = 384) -> pd.DataFrame:
    rows = []
    for family in families:
        for layers in LADDERS[family]:
            student = build_student(StudentSpec(family, layers, trim_vocab=False), teacher_hidden)
            config = student.encoder.backbone.config
            rows.append(dict(family=family, size=f"L{layers}", layers=layers, hidden=config.hidden_size,
                             vocab=student.params.vocab_size, projection=student.encoder.projection is not None,
                             params_total=student.params.total, params_non_embedding=student.params.non_embedding))
    return pd.DataFrame(rows)


def tokenizer_statistics(tokenizer, texts: list[str]) -> dict:
    """Pieces per whitespace word and the share of pieces that are the unknown token."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    pieces = sum(len(row) for row in ids)
    unk = sum(row.count(tokenizer.unk_token_id) for row in ids) if tokenizer.unk_token_id is not None else 0
    words = sum(len(t.split()) for t in texts)
    return dict(words=words, pieces=pieces, pieces_per_word=pieces / max(words, 1), unk_rate=unk / max(pieces, 1))


def tokenizer_table(langs: list[str] | None = None) -> pd.DataFrame:
    """Each family's tokenizer on each language's NTREX text (English for reference)."""
    tokenizers = {"me5": load_tokenizer(convert_me5()), "minilm (teacher)": load_tokenizer(teacher_dir())}
    langs = langs or ntrex_languages()
    rows = []
    for lang in ["eng"] + list(langs):
        ntrex = load_ntrex(langs[0] if lang == "eng" else lang)
        texts = ntrex.english if lang == "eng" else ntrex.foreign
        for family, tok in tokenizers.items():
            rows.append(dict(lang=lang, tokenizer=family, **tokenizer_statistics(tok, texts)))
    return pd.DataFrame(rows)


def data_table(langs: list[str] | None = None) -> pd.DataFrame:
    """Training pairs after removing NTREX overlap, and CLIR collection sizes, per language."""
    langs = langs or sorted(set(ntrex_languages()) | set(mafand_languages()))
    rows = []
    for lang in langs:
        row = dict(lang=lang)
        try:
            bitext, report = training_bitext(lang, None)
            row.update(training_source="; ".join(bitext.notes) or "train split", pairs_raw=report.kept + report.dropped,
                       dropped_exact=report.dropped_exact, dropped_ngram=report.dropped_ngram, pairs_kept=report.kept)
        except DataError:
            row.update(training_source="none (no MAFAND bitext)")
        try:
            ntrex = load_ntrex(lang)
            head, sib = headline_collection(ntrex), sibling_collection(ntrex)
            row.update(headline_queries=len(head.queries), headline_docs=len(head.documents),
                       siblings_queries=len(sib.queries), siblings_passages=len(sib.documents),
                       siblings_relevant_per_query=round(sum(map(len, sib.qrels.values())) / len(sib.qrels), 2))
        except DataError:
            if row["training_source"].startswith("none"):
                raise DataError(f"no MAFAND bitext and no NTREX-128 text for language '{lang}'") from None
            row.update(headline_queries=0)
        rows.append(row)
    table = pd.DataFrame(rows)
    counts = [c for c in table.columns if c.startswith(("pairs_", "dropped_", "headline_", "siblings_q", "siblings_p"))]
    return table.astype({c: "Int64" for c in counts})  # counts stay integers where a language has none
