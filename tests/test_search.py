"""evaluate/search.py: one typed query against a language's headline collection, per system; and the refusals."""

import pytest

from optical_core.data.clir import build_collection
from optical_core.errors import DataError
from optical_core.evaluate.search import (
    MAX_QUERY_CHARS,
    bm25_search,
    check_query,
    me5_search,
    relevant_documents,
    search_all,
    student_search,
    teacher_search,
    unknown_share,
)

GEEZ = "ሰላም ለዓለም እንዴት ነህ ዛሬ"  # Amharic script: no study text uses it, so no trimmed vocabulary has it


@pytest.fixture(scope="module")
def collection():
    return build_collection("headline", "hau")


@pytest.fixture(scope="module")
def student(tiny_checkpoint):
    from optical_core.store.checkpoints import load_checkpoint

    return load_checkpoint(tiny_checkpoint)[0]


def reciprocal_rank(ranking, relevant: set[str]) -> float:
    ranks = [ranking.rank_of(d) for d in relevant if ranking.rank_of(d)]
    return 1 / min(ranks) if ranks else 0.0


def test_bm25_search_ranks_each_headline_as_the_bm25_baseline_scored_it(collection):
    """One query at a time gives the rank the batch scoring of the baseline gave: MRR@10 per query equal."""
    from optical_core.evaluate.scoring import score_baselines

    scored = score_baselines(None, collection, which=("bm25",))["bm25"].set_index("qid")["mrr@10"]
    for qid, text in list(collection.queries.items())[::3]:  # every third headline: bm25s indexes per query
        ranking = bm25_search(text, collection, k=10)
        assert reciprocal_rank(ranking, set(collection.qrels[qid])) == pytest.approx(scored[qid]), qid
        assert ranking.scores == sorted(ranking.scores, reverse=True) and len(ranking.doc_ids) <= 10
    assert scored.mean() > 0.4  # the lexical baseline finds most Hausa headlines' articles (names, numbers)


def test_dense_searches_agree_with_the_batch_scoring_of_the_same_systems(collection, teacher, student):
    from optical_core.evaluate.scoring import score_baselines, score_student

    qids = list(collection.queries)[:12]
    expected = {"teacher-raw": score_baselines(teacher, collection, which=("teacher-raw",))["teacher-raw"],
                "student": score_student(student, teacher, collection)}
    for qid in qids:
        text, relevant = collection.queries[qid], set(collection.qrels[qid])
        for system, ranking in (("teacher-raw", teacher_search(teacher, text, collection)),
                                ("student", student_search(student, teacher, text, collection))):
            want = expected[system].set_index("qid").loc[qid, "mrr@10"]
            assert reciprocal_rank(ranking, relevant) == pytest.approx(want, abs=1e-6), (system, qid)
            assert len(ranking.doc_ids) == 10 and -1 <= ranking.scores[-1] <= ranking.scores[0] <= 1


def test_me5_off_the_shelf_finds_the_first_headlines_article(collection):
    qid = next(iter(collection.queries))
    ranking = me5_search(collection.queries[qid], collection, k=5)
    assert ranking.system == "me5" and ranking.doc_ids[0] in collection.qrels[qid]  # the study's strongest baseline
    assert 0.5 < ranking.scores[0] <= 1


def test_search_all_ranks_every_system_for_a_checked_query(collection, teacher, student):
    qid = next(iter(collection.queries))
    rankings = search_all("  " + collection.queries[qid] + "\n", collection, teacher, student, k=3)
    assert list(rankings) == ["student", "teacher-raw", "bm25", "me5"]
    assert all(len(r.doc_ids) <= 3 for r in rankings.values())
    assert relevant_documents(collection.queries[qid] + " ", collection) == set(collection.qrels[qid])
    assert relevant_documents("Rais amewasili leo.", collection) == set()  # a typed query nobody judged
    assert list(search_all("Gwamnati", collection, teacher, None, k=3)) == ["teacher-raw", "bm25", "me5"]


def test_bad_queries_get_one_line_each(student, teacher, collection):
    for text in ("", "   \n "):
        with pytest.raises(DataError, match="the query is empty"):
            check_query(text, student)
    too_long = "a " * (MAX_QUERY_CHARS // 2) + "abc"
    with pytest.raises(DataError, match=f"The query has {len(too_long.strip()):,} characters; at most 5,000"):
        check_query(too_long)
    assert check_query("x" * MAX_QUERY_CHARS) == "x" * MAX_QUERY_CHARS  # 5,000 exactly is allowed
    assert unknown_share(student, GEEZ) == 1.0 and unknown_share(student, "Gwamnatin Najeriya ta ce") == 0.0
    with pytest.raises(DataError, match="student's tokenizer does not know this script: 100% of") as err:
        search_all(GEEZ, collection, teacher, student)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="teacher's tokenizer does not know this script"):
        search_all(GEEZ, collection, teacher, None)
    # half known, half not: still searched (a name in a foreign script inside a Hausa query is fine)
    assert check_query("Gwamnatin Najeriya ta ce ሰላም", student)
