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
