import math

import numpy as np
import pytest
import torch

from optical_core.data.clir import build_collection, ntrex_languages
from optical_core.evaluate.retrieval import bm25_run, per_query_metrics, rank
from optical_core.evaluate.scoring import score_baselines, summary_table
from optical_core.evaluate.significance import mean_ci, paired_comparison
from optical_core.settings import HEADLINE_METRICS

LR_LANGUAGES = [lang for lang in ("swa", "som", "yor", "hau", "ibo", "zul", "xho", "amh")]


def test_metrics_equal_hand_computed_values():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}, "q3": {"d1": 1}}
    run = {"q1": {"d3": 0.9, "d1": 0.8, "d2": 0.1}, "q2": {"d2": 0.9, "d1": 0.5, "d3": 0.4}, "q3": {}}
    frame = per_query_metrics(qrels, run, HEADLINE_METRICS).set_index("qid")
    assert frame.loc["q1", "mrr@10"] == pytest.approx(0.5)
    assert frame.loc["q1", "ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert frame.loc["q1", "recall@1"] == 0 and frame.loc["q1", "recall@5"] == 1
    assert frame.loc["q2", "mrr@10"] == pytest.approx(1.0)
    assert frame.loc["q2", "ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert frame.loc["q2", "recall@1"] == pytest.approx(0.5)
    assert (frame.loc["q3"] == 0).all()  # nothing retrieved scores zero, it is not dropped


# Four queries, inserted out of sorted order, each with a different reciprocal rank, so a row whose label is
# swapped with another's fails. Irrelevant documents are x0, x1, ...
REF_QRELS = {"qc": {"d1": 1}, "qa": {"d2": 1}, "qd": {"d9": 1}, "qb": {"d3": 1, "d4": 1}}
REF_RUN = {
    "qc": {"d1": 0.9, "x0": 0.5},  # relevant at rank 1
    "qa": {"d1": 0.9, "d2": 0.8},  # relevant at rank 2
    "qb": {"x0": 0.9, "x1": 0.8, "d3": 0.7} | {f"x{i}": 0.6 - i / 100 for i in range(2, 11)} | {"d4": 0.01},
    # d3 at rank 3; d4 at rank 13, past the cut-off of 10
    "qd": {f"x{i}": 1 - i / 100 for i in range(10)} | {"d9": 0.001},  # relevant at rank 11: outside the top 10
}
# MRR@10 = 1 / rank of the first relevant document within the top 10 (0 if none):
#   qa 1/2, qb 1/3, qc 1, qd 0
# nDCG@10 = DCG / ideal DCG with DCG = sum over relevant docs in the top 10 of 1 / log2(rank + 1):
#   qa: (1/log2 3) / 1                         = 0.63092975...
#   qb: (1/log2 4) / (1 + 1/log2 3) = 0.5 / 1.63092975 = 0.30657...  (d4 beyond rank 10 adds nothing)
#   qc: 1 / 1 = 1;  qd: 0
REF_MRR = {"qa": 1 / 2, "qb": 1 / 3, "qc": 1.0, "qd": 0.0}
REF_NDCG = {"qa": 1 / math.log2(3), "qb": 0.5 / (1 + 1 / math.log2(3)), "qc": 1.0, "qd": 0.0}


@pytest.mark.parametrize("metrics", [("mrr@10",), ("ndcg@10",), ("mrr@10", "ndcg@10"), ("ndcg@10", "mrr@10")])
def test_per_query_metrics_match_hand_computed_values_row_by_row(metrics):
    expected = {"mrr@10": REF_MRR, "ndcg@10": REF_NDCG}
    frame = per_query_metrics(REF_QRELS, REF_RUN, metrics)
    assert list(frame.columns) == ["qid", *metrics]
    assert list(frame.qid) == ["qa", "qb", "qc", "qd"]  # sorted, one row per query
    for metric in metrics:
        got = dict(zip(frame.qid, frame[metric]))
        assert got == pytest.approx(expected[metric], abs=1e-12), metric  # each value on its own query's row
    assert frame.loc[frame.qid == "qc", metrics[0]].item() == 1.0


def test_per_query_metrics_labels_follow_the_queries_not_the_input_order():
    """qids whose sorted order differs from insertion order and from numeric order (q10 < q9 as strings)."""
    qrels = {"q9": {"a": 1}, "q10": {"b": 1}, "q1": {"c": 1}}
    run = {"q9": {"a": 1.0}, "q10": {"x": 1.0, "b": 0.5}, "q1": {"x": 1.0, "y": 0.9, "z": 0.8, "c": 0.7}}
    frame = per_query_metrics(qrels, run, ("mrr@10",))
    assert list(frame.qid) == ["q1", "q10", "q9"]
    assert list(frame["mrr@10"]) == pytest.approx([1 / 4, 1 / 2, 1.0])


def test_dense_ranking_orders_by_cosine():
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    d = torch.nn.functional.normalize(torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.7, 0.7]]), dim=1)
    run = rank(q, d, ["a", "b"], ["x", "y", "z"], depth=2)
    assert list(run["a"]) == ["x", "z"] and list(run["b"]) == ["y", "z"]


def test_bm25_matches_shared_names():
    run = bm25_run({"q": "Rais Obama alizuru Nairobi"},
                   {"d1": "Obama visited Nairobi on Tuesday.", "d2": "The weather was cold in Oslo."})
    assert list(run["q"]) == ["d1"]


def test_significance_detects_a_clearly_better_system_and_not_itself():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.6, 80)
    better = np.clip(base + rng.uniform(0.1, 0.4, 80), 0, 1)
    clear = paired_comparison(better, base)
    assert clear.p_value < 0.05 and clear.ci_low > 0 and clear.n == 80
    same = paired_comparison(base, base)
    assert same.p_value == 1.0 and same.ci_low == same.ci_high == 0
    noise = paired_comparison(base, rng.permutation(base))
    assert noise.ci_low < 0 < noise.ci_high


def test_mean_ci_brackets_the_mean():
    mean, low, high = mean_ci([0.0, 1.0] * 50)
    assert low < mean == 0.5 < high


@pytest.mark.parametrize("lang", [lang for lang in LR_LANGUAGES])
def test_oracle_translation_beats_the_teacher_on_raw_lr_queries(teacher, data_dir, lang):
    if lang not in ntrex_languages(data_dir):
        pytest.skip(f"no NTREX text for {lang}")
    collection = build_collection("headline", lang, data_dir)
    scores = score_baselines(teacher, collection, which=("oracle", "teacher-raw"))
    table = summary_table(scores, reference="teacher-raw").set_index(["system", "metric"])
    oracle = table.loc[("oracle", "mrr@10")]
    assert oracle["n"] == 123
    assert oracle["diff_vs_ref"] > 0 and oracle["p_vs_ref"] < 0.05, (lang, oracle.to_dict())
