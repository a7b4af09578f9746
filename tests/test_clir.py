from optical_core.data.bitext import normalise, training_bitext
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


def test_no_query_or_document_leaks_into_training(data_dir):
    c = build_collection("headline", "hau", data_dir)
    bitext, _ = training_bitext("hau", None, data_dir)
    train = {normalise(t) for t in bitext.source + bitext.target}
    assert not any(normalise(q) in train for q in c.queries.values())
    assert not any(normalise(q) in train for q in c.query_translations.values())
