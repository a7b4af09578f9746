import pytest

from optical_core.data.bitext import load_mafand, normalise, training_bitext, word_ngrams
from optical_core.data.clir import (
    build_collection,
    headline_collection,
    load_ntrex,
    sibling_collection,
)


def test_headline_collection_has_123_queries_and_documents(data_dir):
    ntrex = load_ntrex("swa", data_dir)
    c = headline_collection(ntrex)
    assert len(c.queries) == 123 and len(c.documents) == 123
    assert all(len(rel) == 1 for rel in c.qrels.values())
    lines = ntrex.documents()
    for qid, rel in c.qrels.items():
        (doc,) = rel
        assert qid.startswith(doc)
        # the body is every line of the document but the first (the headline)
        assert c.query_translations[qid] == ntrex.english[lines[doc][0]]
        assert c.documents[doc] == " ".join(ntrex.english[i] for i in lines[doc][1:])


def test_sibling_collection_excludes_the_querys_own_window(data_dir):
    ntrex = load_ntrex("yor", data_dir)
    c = sibling_collection(ntrex)
    assert len(c.queries) > 1500 and len(c.documents) > 500
    for qid in list(c.queries)[:300]:
        translation = c.query_translations[qid]
        relevant = c.qrels[qid]
        assert relevant, qid
        assert not any(translation in c.documents[d] for d in relevant)
        doc = qid.split("#")[0]
        assert all(d.startswith(doc + "#") for d in relevant)


def overlapping_pairs(bitext, heldout: list[str], n: int = 8) -> list[tuple[str, str]]:
    """Pairs with a side equal to a held-out text (normalised) or sharing an n-word run with one."""
    exact = {normalise(t) for t in heldout} - {""}
    grams = set()
    for t in heldout:
        grams |= word_ngrams(t, n)
    return [(s, t) for s, t in zip(bitext.source, bitext.target)
            if normalise(s) in exact or normalise(t) in exact or (word_ngrams(s, n) | word_ngrams(t, n)) & grams]


# The two languages whose MAFAND bitext overlaps the test collections (hau, ibo, xho, yor: none; amh's 3 drops are
# punctuation-only lines). swa: the pair ('Tuwe wakweli.', 'Come on.') repeats the English of a siblings query
# (exact); zul: a pair shares the 8-word run "he told bbc radio 4 s today programme" with an NTREX sentence.
@pytest.mark.parametrize("lang,dropped_exact,dropped_ngram", [("swa", 1, 0), ("zul", 0, 1)])
def test_no_query_or_document_leaks_into_training(data_dir, lang, dropped_exact, dropped_ngram):
    heldout = []
    for task in ("headline", "siblings"):
        c = build_collection(task, lang, data_dir)
        heldout += [*c.queries.values(), *c.query_translations.values(), *c.documents.values()]
    raw = load_mafand(lang, data_dir)
    assert len(overlapping_pairs(raw, heldout)) == dropped_exact + dropped_ngram  # there is something to remove
    bitext, report = training_bitext(lang, None, data_dir)
    assert (report.dropped_exact, report.dropped_ngram) == (dropped_exact, dropped_ngram)
    assert report.kept == len(bitext) == len(raw) - dropped_exact - dropped_ngram
    assert overlapping_pairs(bitext, heldout) == []
