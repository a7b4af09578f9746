import pandas as pd

from optical_core.evaluate.comparison import (
    largest_differences,
    pairwise_table,
    wins_losses,
)


def frames():
    a = pd.DataFrame({"qid": ["q1", "q2", "q3", "q4"], "mrr@10": [1.0, 0.5, 0.0, 0.2]})
    b = pd.DataFrame({"qid": ["q4", "q3", "q2", "q1"], "mrr@10": [0.2, 1.0, 0.5, 0.0]})  # other order
    return a, b


def test_wins_losses_pair_queries_by_id_not_position():
    a, b = frames()
    assert wins_losses(a, b, "mrr@10") == {"wins": 1, "ties": 2, "losses": 1}


def test_largest_differences_and_pairwise_table():
    a, b = frames()
    top = largest_differences(a, b, "mrr@10", {"q1": "one", "q3": "three"}, k=2)
    assert set(top.qid) == {"q1", "q3"} and set(top["query"]) == {"one", "three"}
    row = pairwise_table({"A": a, "B": b}, "mrr@10").iloc[0]
    assert row.n == 4 and row["diff"] == 0.0 and row.p_value == 1.0


def test_differing_settings_names_each_setting_that_differs(tiny_checkpoint):
    from dataclasses import replace

    from optical_core.evaluate.comparison import differing_settings
    from optical_core.store.checkpoints import read_manifest

    a = read_manifest(tiny_checkpoint)
    b = replace(a, config=replace(a.config, budget=replace(a.config.budget, n_pairs=256), seed=3))
    assert differing_settings({"a": a, "b": b}) == {"budget.n_pairs": [32, 256], "seed": [0, 3]}
    assert differing_settings({"a": a, "a2": a}) == {}
