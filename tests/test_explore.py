"""study/explore.py: a study's cells read from their records, compared over the same queries; on real cells of the
committed study (copied: a damaged record must not touch it)."""

import json
import shutil

import numpy as np
import pytest

from optical_core.data.clir import build_collection
from optical_core.evaluate.significance import paired_comparison
from optical_core.study.explore import (
    cell_scores,
    compare_cells,
    differing_queries,
    partner,
    read_study_cells,
    shared_range,
    transport_cost,
)
from optical_core.study.records import UnreadableRecord

from .conftest import PROJECT

STUDY = PROJECT / "results" / "study"
CELLS = ("hau-me5-L1-kd-s0", "hau-me5-L1-ot-s0", "hau-me5-L12-ot-s0", "hau-me5-L1-untrained", "hau-baseline-bm25")


@pytest.fixture
def study(tmp_path):
    for cell in CELLS:
        shutil.copytree(STUDY / "cells" / cell, tmp_path / "cells" / cell)
    return tmp_path


def test_a_study_lists_its_cells_and_each_unreadable_record_in_one_line(study):
    (study / "cells" / "broken").mkdir()
    (study / "cells" / "broken" / "result.json").write_text('{"cell_id": "broken"')
    cells, unreadable = read_study_cells(study)
    assert [c.id for c in cells] == ["hau-me5-L1-kd-s0", "hau-me5-L1-ot-s0", "hau-me5-L1-untrained",
                                     "hau-me5-L12-ot-s0", "hau-baseline-bm25"]  # by size, baselines last
    assert len(unreadable) == 1 and unreadable[0].startswith("broken: result.json unreadable (JSONDecodeError")
    kd = cells[0]
    assert (kd.lang, kd.family, kd.method, kd.layers, kd.seed, kd.student) == ("hau", "me5", "kd", 1, 0, "me5-L1")
    assert kd.selected_step == 400 and kd.steps() == [0, 25, 50, 100, 200, 400] and kd.steps("siblings") == [400]
    assert kd.trained and not cells[2].trained and not cells[4].trained
    assert cells[4].label == "hau · baseline bm25" and kd.label == "hau · me5-L1 · kd · seed 0"
    assert not kd.has_plans and not kd.has_top_documents  # the study ran before plan records existed
    assert partner(kd, cells, method="ot").id == "hau-me5-L1-ot-s0"
    assert partner(cells[1], cells, layers=12).id == "hau-me5-L12-ot-s0" and partner(kd, cells, layers=12) is None


def test_cell_scores_are_the_recorded_per_query_file_of_a_step(study):
    cells, _ = read_study_cells(study)
    kd = cells[0]
    record = json.loads((study / "cells" / kd.id / "result.json").read_text())
    final = cell_scores(kd)  # the selected step on the main task
    assert len(final) == 123 and final["mrr@10"].mean() == pytest.approx(record["means"]["mrr@10"])
    start = cell_scores(kd, step=0)
    assert start["mrr@10"].mean() == pytest.approx(kd.evaluation(0)["means"]["mrr@10"])
    assert len(cell_scores(kd, 400, "dev")) == 500  # the MAFAND dev collection
    with pytest.raises(UnreadableRecord, match=r"no headline evaluation at step 7 \(evaluated at 0, 25, 50"):
        cell_scores(kd, step=7)
    (study / "cells" / kd.id / "per_query" / "step400_headline.csv").unlink()
    with pytest.raises(UnreadableRecord, match="per-query scores at step 400 unreadable"):
        cell_scores(kd)


def test_two_cells_compare_over_their_common_queries(study):
    cells, _ = read_study_cells(study)
    kd, ot = cells[0], cells[1]
    a, b = cell_scores(kd), cell_scores(ot)
    result = compare_cells(a, b, "mrr@10")
    expected = paired_comparison(a["mrr@10"].to_numpy(), b["mrr@10"].to_numpy())
    assert result.test == expected and result.test.n == 123
    diff = a["mrr@10"].to_numpy() - b["mrr@10"].to_numpy()
    assert (result.wins, result.ties, result.losses) == ((diff > 0).sum(), (diff == 0).sum(), (diff < 0).sum())
    assert result.wins + result.ties + result.losses == 123
    with pytest.raises(UnreadableRecord, match="cell B has no ndcg@10 scores"):
        compare_cells(a, b.drop(columns="ndcg@10"), "ndcg@10")
    with pytest.raises(UnreadableRecord, match="share no query"):
        compare_cells(a, b.assign(qid=b.qid + "x"), "mrr@10")

    collection = build_collection("headline", "hau")
    some = list(collection.queries)[:5]
    top_a = {q: [f"d{i}" for i in range(10)] for q in some}
    table = differing_queries(result, collection.queries, collection.query_translations, collection.qrels, top_a,
                              None, k=7, depth=3)
    assert len(table) == 7 and list(table["diff"].abs()) == sorted(np.abs(diff), reverse=True)[:7]
    row = table.iloc[0]
    assert row["query"] == collection.queries[row.qid] and row.english == collection.query_translations[row.qid]
    assert row.relevant == sorted(collection.qrels[row.qid]) and row.b_top is None
    assert row.a_top == (["d0", "d1", "d2"] if row.qid in some else [])


def test_a_shared_colour_range_spans_every_matrix():
    plans = [np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([[0.0, 0.7]])]
    assert shared_range(plans) == (0.0, 0.7)
    low, high = shared_range([np.full((2, 2), 0.25)])
    assert low == 0.25 and high > low  # a constant plan still gets a range
    assert shared_range([]) == (0.0, 1.0)
    assert transport_cost(np.array([[0.5, 0.0], [0.0, 0.5]]), np.array([[0.2, 1.0], [1.0, 0.4]])) == pytest.approx(0.3)
