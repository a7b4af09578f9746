"""Reference values for the functions that decide the study's numbers (issue 19): each test asserts a
number worked out by hand, so a plausible one-line bug (a flipped sign, a swapped mask, a dropped term)
changes it."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from optical_core.data.bitext import Bitext, normalise, remove_heldout_overlap, word_ngrams
from optical_core.distil.losses import KDLoss, OTLoss
from optical_core.distil.objective import Objective, TeacherBatch
from optical_core.distil.ot import (
    cost_matrix,
    entropic_ot_value,
    marginal_error,
    marginals,
    median_real_cost,
    plan_kl,
    plan_sharpness,
    transport_cost,
)
from optical_core.evaluate.evaluator import mean_pairwise_cosine
from optical_core.evaluate.significance import mean_ci, paired_comparison
from optical_core.models.encoders import TokenBatch, mean_pool
from optical_core.models.heads import procrustes_head, ridge_head
from optical_core.settings import LossConfig

T = torch.tensor


# ---- OT: cost, marginals, plan values --------------------------------------------------------------------

def test_cosine_cost_is_one_minus_cosine_of_the_token_vectors():
    s = T([[[1.0, 0.0], [0.0, 2.0]]])  # unnormalised on purpose: cosine ignores length
    t = T([[[3.0, 0.0], [-1.0, 0.0], [1.0, 1.0]]])
    # cos: row 1 (1, -1, 1/sqrt2), row 2 (0, 0, 1/sqrt2)  ->  C = 1 - cos
    r = 1 - 1 / math.sqrt(2)
    assert torch.allclose(cost_matrix(s, t, "cosine"), T([[[0.0, 2.0, r], [1.0, 1.0, r]]]), atol=1e-6)


def test_squared_euclidean_cost_by_hand():
    s, t = T([[[0.0, 0.0], [1.0, 2.0]]]), T([[[3.0, 4.0]]])
    assert torch.allclose(cost_matrix(s, t, "sqeuclidean"), T([[[25.0], [8.0]]]), atol=1e-4)
    with pytest.raises(ValueError, match="unknown cost"):
        cost_matrix(s, t, "cityblock")


def test_marginals_put_mass_on_unmasked_tokens_only():
    assert torch.allclose(marginals(T([[1, 1, 0, 1]])), T([[1 / 3, 1 / 3, 0.0, 1 / 3]]))
    weights = T([[2.0, -5.0, 9.0, 6.0]])  # a negative weight counts as zero; a masked one is dropped
    assert torch.allclose(marginals(T([[1, 1, 0, 1]]), weights), T([[0.25, 0.0, 0.0, 0.75]]))
    with pytest.raises(ValueError, match="no token with positive mass"):
        marginals(T([[1, 0], [0, 0]]))


def test_transport_cost_kl_sharpness_and_entropic_value_by_hand():
    a, b = T([[0.5, 0.5]]), T([[0.5, 0.5]])
    C = T([[[0.0, 1.0], [3.0, 0.5]]])
    diagonal = T([[[0.5, 0.0], [0.0, 0.5]]])
    independent = T([[[0.25, 0.25], [0.25, 0.25]]])
    assert transport_cost(diagonal, C).item() == pytest.approx(0.25)  # 0.5*0 + 0.5*0.5
    assert transport_cost(independent, C).item() == pytest.approx(1.125)  # (0 + 1 + 3 + 0.5) / 4
    assert plan_kl(independent, a, b).item() == pytest.approx(0.0, abs=1e-7)
    assert plan_kl(diagonal, a, b).item() == pytest.approx(math.log(2))  # 2 * 0.5 log(0.5 / 0.25)
    assert plan_sharpness(diagonal, a, b).item() == pytest.approx(1.0)
    assert plan_sharpness(independent, a, b).item() == pytest.approx(0.0, abs=1e-7)
    assert entropic_ot_value(diagonal, C, a, b, 0.1).item() == pytest.approx(0.25 + 0.1 * math.log(2))
    assert marginal_error(T([[[0.5, 0.1], [0.0, 0.4]]]), a, b) == pytest.approx(0.1)
    # median over pairs that both carry mass: the padded third student token is ignored
    C3 = T([[[1.0, 2.0], [4.0, 8.0], [100.0, 100.0]]])
    assert median_real_cost(C3, T([[0.5, 0.5, 0.0]]), b) == pytest.approx(2.0)  # lower median of 1, 2, 4, 8
    # ... and so is a padded teacher token (its column)
    assert median_real_cost(C3.transpose(1, 2), b, T([[0.5, 0.5, 0.0]])) == pytest.approx(2.0)


def test_ot_loss_value_when_the_plan_is_forced_by_the_marginals():
    """One student token against two teacher tokens: P = [[1/2, 1/2]] whatever epsilon, so <P, C> is
    the mean cosine cost: (0 + 1) / 2. A flipped cost sign (1 + cos) would give 1.5."""
    loss = OTLoss(LossConfig(method="ot"))
    out = loss(T([[[1.0, 0.0]]]), T([[1]]), T([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]]), T([[1, 1, 0]]))
    assert out.loss.item() == pytest.approx(0.5, abs=1e-5)
    assert torch.allclose(out.plan, T([[[0.5, 0.5, 0.0]]]), atol=1e-5)


def test_ot_loss_prefers_the_aligned_student_and_is_near_zero_for_it():
    teacher = T([[[1.0, 0.0], [0.0, 1.0]]])
    loss = OTLoss(LossConfig(method="ot", reg=0.01, sinkhorn_iters=500))
    aligned = loss(T([[[0.0, 3.0], [2.0, 0.0]]]), T([[1, 1]]), teacher, T([[1, 1]])).loss.item()
    opposed = loss(T([[[0.0, -3.0], [-2.0, 0.0]]]), T([[1, 1]]), teacher, T([[1, 1]])).loss.item()
    assert aligned == pytest.approx(0.0, abs=2e-3)
    assert opposed == pytest.approx(1.0, abs=2e-3)  # each token costs 1 against either teacher token


# ---- KD, pooling and how the objective feeds the losses ----------------------------------------------------

def test_mean_pool_ignores_masked_tokens():
    tokens = T([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]], [[5.0, 5.0], [7.0, 9.0], [0.0, 0.0]]])
    assert torch.equal(mean_pool(tokens, T([[1, 1, 0], [0, 1, 0]])), T([[2.0, 3.0], [7.0, 9.0]]))
    assert torch.equal(mean_pool(tokens[:1], T([[0, 0, 0]])), T([[0.0, 0.0]]))  # no token: zeros, not nan


def test_kd_loss_is_the_mse_between_the_raw_pools():
    # student pool (2, 3) vs teacher (2, 5) -> ((2-2)^2 + (3-5)^2) / 2 = 2; the teacher is NOT normalised
    tokens, mask = T([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]]), T([[1, 1, 0]])
    assert KDLoss()(tokens, mask, T([[2.0, 5.0]])).item() == pytest.approx(2.0)


def _special_token_batch():
    """[CLS] x [SEP]: the attention mask covers all three, the content mask only x."""
    student = TokenBatch(T([[0, 3, 1]]), T([[1, 1, 1]]), T([[0, 1, 0]]))
    student_tokens = T([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    teacher = TeacherBatch(T([[[1.0, 0.0]]]), T([[1]]), T([[4]]), T([[1.0, 0.0]]))
    return student_tokens, student, teacher


def test_objective_transports_content_tokens_only_and_adds_the_weighted_kd_term():
    student_tokens, student, teacher = _special_token_batch()
    ot_only = Objective(LossConfig(method="ot", kd_weight=0.0))(student_tokens, student, teacher)
    # only x carries mass, and x matches the teacher token: cost 0 (the specials would cost 1 each)
    assert ot_only.loss.item() == pytest.approx(0.0, abs=1e-5)
    assert torch.allclose(ot_only.transport.a, T([[0.0, 1.0, 0.0]]))
    # KD pools over the attention mask, specials included: (1/3, 2/3) vs (1, 0) -> ((2/3)^2 + (2/3)^2) / 2
    kd = 4 / 9
    assert Objective(LossConfig(method="kd"))(student_tokens, student, teacher).loss.item() == pytest.approx(kd)
    both = Objective(LossConfig(method="ot", kd_weight=10.0))(student_tokens, student, teacher)
    assert both.loss.item() == pytest.approx(10 * kd, abs=1e-5)


def test_idf_marginals_weight_each_content_token_by_its_ids_idf():
    student_idf, teacher_idf = T([0.0, 1.0, 2.0, 3.0, 4.0]), T([1.0, 1.0, 1.0, 5.0, 1.0])
    objective = Objective(LossConfig(method="ot", marginals="idf", kd_weight=0.0), student_idf, teacher_idf)
    student = TokenBatch(T([[0, 3, 4, 1]]), T([[1, 1, 1, 1]]), T([[0, 1, 1, 0]]))
    teacher = TeacherBatch(T([[[1.0, 0.0], [0.0, 1.0]]]), T([[1, 1]]), T([[3, 2]]), T([[1.0, 1.0]]))
    out = objective.transport(torch.randn(1, 4, 2), student, teacher)
    assert torch.allclose(out.a, T([[0.0, 3 / 7, 4 / 7, 0.0]]))
    assert torch.allclose(out.b, T([[5 / 6, 1 / 6]]))
    message = r"^idf marginals need the student's and the teacher's idf tables \(build_objective\)$"
    with pytest.raises(ValueError, match=message):
        Objective(LossConfig(method="ot", marginals="idf"))
    with pytest.raises(ValueError, match=message):  # one table is not enough
        Objective(LossConfig(method="ot", marginals="idf"), student_idf=student_idf)


# ---- closed-form heads ----------------------------------------------------------------------------------

def test_ridge_head_by_hand():
    X, Y = T([[0.0], [1.0], [2.0]]), T([[1.0], [3.0], [5.0]])  # Y = 2X + 1
    weight, bias = ridge_head(X, Y, shrinkage=0.0)
    assert weight.item() == pytest.approx(2.0) and bias.item() == pytest.approx(1.0)
    # centred gram = 2, lambda = 0.1 * 2 / 1, W = Xc'Yc / (2 + 0.2) = 4 / 2.2, bias = mean Y - mean X * W
    weight, bias = ridge_head(X, Y, shrinkage=0.1)
    assert weight.item() == pytest.approx(4 / 2.2, rel=1e-6)
    assert bias.item() == pytest.approx(3 - 4 / 2.2, rel=1e-6)


def test_ridge_head_shape_is_that_of_a_linear_layer():
    X, W = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), T([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    weight, bias = ridge_head(X, X @ W.T + T([0.5, -2.0]), shrinkage=0.0)
    assert torch.allclose(weight, W, atol=1e-4) and torch.allclose(bias, T([0.5, -2.0]), atol=1e-4)


def test_procrustes_head_recovers_a_scaled_rotation():
    X = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    R = T([[0.0, -1.0], [1.0, 0.0]])  # 90 degrees
    weight, bias = procrustes_head(X, 2.0 * X @ R + T([1.0, -1.0]))
    assert torch.allclose(weight, 2.0 * R.T, atol=1e-4) and torch.allclose(bias, T([1.0, -1.0]), atol=1e-4)
    with pytest.raises(ValueError, match="equal widths"):
        procrustes_head(X, torch.zeros(40, 3))


# ---- significance: exact small cases ---------------------------------------------------------------------

def test_sign_flip_test_is_exact_paired_and_two_sided():
    """Differences (1, 2, 3, 4): of the 16 sign flips only all-plus and all-minus reach |mean| >= 2.5, so
    the two-sided p is 2/16 (one-sided: 1/16). A with B's order reversed changes the sign, not the p."""
    a, b = np.array([1.0, 2.0, 3.0, 4.0]) + 10, np.full(4, 10.0)
    result = paired_comparison(a, b)
    assert result.p_value == pytest.approx(2 / 16)
    assert result.difference == pytest.approx(2.5) and paired_comparison(b, a).difference == pytest.approx(-2.5)
    assert (result.mean_a, result.mean_b, result.n) == (12.5, 10.0, 4)
    # unpaired scores would see no difference at all here: the pairing is what makes it significant
    shifted = np.array([0.0, 1.0, 2.0, 3.0])
    assert paired_comparison(shifted + 0.5, shifted).p_value == pytest.approx(2 / 16)
    assert paired_comparison(a, a).p_value == 1.0
    with pytest.raises(ValueError, match="equal-length"):
        paired_comparison([1.0, 2.0], [1.0])


def test_bootstrap_interval_has_the_level_it_claims():
    """Resampled means of (0, 0, 3) take 0, 1, 2, 3 with chances 8, 12, 6, 1 (/27). The 97.5th percentile is 3
    (P(mean <= 2) = 26/27 < 0.975) but the 95th is 2: a 90% interval would end at 2."""
    mean, low, high = mean_ci([0.0, 0.0, 3.0], n_resamples=4000)
    assert (mean, low, high) == (1.0, 0.0, 3.0)
    assert mean_ci([0.0, 0.0, 3.0], n_resamples=4000, level=0.90)[2] == 2.0
    assert mean_ci([2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in mean_ci([]))
    d = paired_comparison(np.array([3.0, 0.0, 0.0]) + 1, np.ones(3))
    assert (d.ci_low, d.ci_high) == (0.0, 3.0)


# ---- diagnostics ------------------------------------------------------------------------------------------

def test_mean_pairwise_cosine_by_hand():
    e = T([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # pair cosines 0, 1, 0 -> 1/3
    assert mean_pairwise_cosine(e) == pytest.approx(1 / 3)
    assert mean_pairwise_cosine(T([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)


# ---- bitext de-duplication ---------------------------------------------------------------------------------

def test_normalise_and_ngrams():
    assert normalise("  Café, NAÏVE!  rôle ") == "cafe naive role"
    assert word_ngrams("a b c d", 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert word_ngrams("a b", 3) == set()


def test_dedup_drops_exact_and_ngram_overlaps_on_either_side():
    heldout = ["The cat sat on the mat today.", "one two three four five six seven eight nine"]
    bitext = Bitext("xx", ["paka", "THE CAT SAT ON THE MAT TODAY", "x one two three four five six seven eight y",
                           "safe", "salama"],
                    ["cat", "paka", "z", "zero one two three four five six seven eight", "one two three four"],
                    origin=("train",) * 5)
    clean, report = remove_heldout_overlap(bitext, heldout, ngram=8)
    # pair 2: exact (source); pair 3: 8-gram (source); pair 4: 8-gram (target); pair 5: only 4 words shared
    assert (report.kept, report.dropped_exact, report.dropped_ngram, report.dropped) == (2, 1, 2, 3)
    assert clean.source == ["paka", "salama"] and clean.target == ["cat", "one two three four"]
    exact_target = Bitext("xx", ["a"], ["the cat sat on the mat, today"], origin=("train",))
    assert remove_heldout_overlap(exact_target, heldout)[1].dropped_exact == 1
    # a punctuation-only held-out line (amh NTREX has "።") normalises to "": it must not match every empty line
    punctuation = Bitext("xx", ["...", "ok"], ["!", "fine"], origin=("train",) * 2)
    assert remove_heldout_overlap(punctuation, ["።"])[1].kept == 2


def test_dedup_counts_every_drop_and_keeps_the_bitexts_labels():
    heldout = ["the cat sat on the mat", "a b c d e f g h i j"]
    bitext = Bitext("xx", ["the cat sat on the mat", "ok", "x a b c d e f g h y", "fine", "THE CAT SAT ON THE MAT!"],
                    ["one", "two", "three", "four", "five"], origin=("train", "dev"), notes=("first note",))
    clean, report = remove_heldout_overlap(bitext, heldout, ngram=8)
    assert (report.kept, report.dropped_exact, report.dropped_ngram) == (2, 2, 1)
    assert (clean.lang, clean.origin, clean.notes) == ("xx", ("train", "dev"), ("first note",))


# ---- the analysis: exact bootstrap bounds, pairing, the verdict's words -------------------------------------

def _cells(tmp_path, spec):
    """results rows + per-query files; spec: (method, seed, {qid: score}) for one (family, size, language)."""
    import pandas as pd

    rows = []
    for method, seed, scores in spec:
        path = tmp_path / f"{method}-{seed}.csv"
        pd.DataFrame({"qid": list(scores), "mrr@10": list(scores.values())}).to_csv(path, index=False)
        rows.append(dict(cell_id=path.stem, lang="xx", family="fam", method=method, layers=2, seed=seed,
                         metric="mrr@10", value=float(np.mean(list(scores.values()))), params_total=30_000_000,
                         params_non_embedding=2_000_000, per_query_file=path.name))
    return pd.DataFrame(rows)


def test_accuracy_table_mean_and_exact_bootstrap_bounds(tmp_path):
    from optical_core.study.analysis import accuracy_table

    # queries (0, 0, 3) in both seeds: resampled means 0..3 as in test_bootstrap_interval_has_the_level_it_claims
    results = _cells(tmp_path, [("kd", s, {"q2": 3.0, "q0": 0.0, "q1": 0.0}) for s in (1, 0)])
    row = accuracy_table(results, tmp_path, n_boot=4000).iloc[0]
    assert (row["mean"], row.ci_low, row.ci_high) == (1.0, 0.0, 3.0)
    assert (row.n_seeds, row.n_queries, row.params_total, row.params_non_embedding) == (2, 3, 30_000_000, 2_000_000)
    assert (row.family, row.layers, row.lang, row.method, row.metric) == ("fam", 2, "xx", "kd", "mrr@10")


def test_gain_table_pairs_seeds_and_queries(tmp_path):
    from optical_core.study.analysis import GAIN_COLUMNS, gain_table

    kd = {0: {"q0": 1.0, "q1": 1.0, "q2": 1.0}, 1: {"q0": 2.0, "q1": 2.0, "q2": 2.0}}
    # OT = KD + (0, 0, 3) per query in every seed, its files in another query and seed order, and a seed KD lacks
    spec = [("kd", 0, kd[0]), ("kd", 1, kd[1]),
            ("ot", 2, {"q0": 9.0, "q1": 9.0, "q2": 9.0}),
            ("ot", 1, {"q2": 5.0, "q1": 2.0, "q0": 2.0}), ("ot", 0, {"q2": 4.0, "q0": 1.0, "q1": 1.0})]
    table = gain_table(_cells(tmp_path, spec), tmp_path, n_boot=4000)
    row = table.iloc[0]
    assert table.columns.tolist() == GAIN_COLUMNS and (row.n_seeds, row.n_queries) == (2, 3)
    assert (row.kd_mean, row.ot_mean, row.abs_diff) == (1.5, 2.5, 1.0)
    assert row.gain == pytest.approx(1.0 / 1.5)
    assert (row.abs_ci_low, row.abs_ci_high) == (0.0, 3.0)  # paired: the difference is (0, 0, 3) in each seed
    assert row.gain_ci_low == 0.0 and row.gain_ci_high > 1.0
    assert np.isnan(row.untrained_mean) and row.kd_above_floor is None


def test_gain_table_skips_a_size_without_shared_seeds_and_a_zero_kd_has_no_gain(tmp_path):
    from optical_core.study.analysis import gain_table

    from optical_core.study.analysis import GAIN_COLUMNS

    none = gain_table(_cells(tmp_path, [("kd", 0, {"q0": 1.0}), ("ot", 1, {"q0": 1.0})]), tmp_path)
    assert none.empty and none.columns.tolist() == GAIN_COLUMNS  # the published CSV's header even then
    with warnings.catch_warnings():  # a zero KD mean in a bootstrap draw is expected: no division warning for it
        warnings.filterwarnings("error", message=".* encountered in divide", category=RuntimeWarning)
        row = gain_table(_cells(tmp_path, [("kd", 0, {"q0": 0.0, "q1": 0.0}), ("ot", 0, {"q0": 1.0, "q1": 0.0})]),
                         tmp_path, n_boot=50).iloc[0]
    assert np.isnan(row.gain) and row.abs_diff == 0.5


def test_above_floor_needs_a_significant_positive_difference(tmp_path):
    import pandas as pd

    from optical_core.study.analysis import gain_table

    q = [f"q{i}" for i in range(12)]
    untrained = {k: 0.2 for k in q}
    kd = {k: 0.2 + 0.1 * (i % 2) for i, k in enumerate(q)}  # 6 of 12 better, none worse: p = 2/64
    ot = {k: 0.2 + 0.1 * (i == 0) for i, k in enumerate(q)}  # better on one query only: p = 1, not above
    results = _cells(tmp_path, [("kd", 0, kd), ("ot", 0, ot), ("untrained", 0, untrained)])
    row = gain_table(results, tmp_path, n_boot=50).iloc[0]
    assert row.untrained_mean == pytest.approx(0.2)
    assert row.kd_above_floor is True or row.kd_above_floor == True  # noqa: E712 (numpy bool)
    assert row.ot_above_floor == False  # noqa: E712
    below = {k: 0.2 - 0.1 * (i % 2) for i, k in enumerate(q)}  # 6 of 12 worse, none better: p = 2/64, but below
    sunk = _cells(tmp_path, [("kd", 0, kd), ("ot", 0, below), ("untrained", 0, untrained)])
    assert gain_table(sunk, tmp_path, n_boot=50).iloc[0].ot_above_floor == False  # noqa: E712
    other = pd.concat([results.assign(lang="yy")])  # the untrained cell of another language is not this floor
    other.loc[other.method == "untrained", "lang"] = "zz"
    assert np.isnan(gain_table(other, tmp_path, n_boot=50).iloc[0].untrained_mean)


def test_ols_slope_by_hand_and_degenerate_cases():
    from optical_core.study.analysis import ols_slope

    # y = 2x + 1 exactly: slope 2, zero residual (to rounding) -> a zero-width CI and p ~ 0
    s = ols_slope(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]), scope="pooled", y_name="gain")
    assert (s.slope, s.ci_low, s.ci_high) == pytest.approx((2.0, 2.0, 2.0), abs=1e-9) and s.p_value < 1e-9
    assert (s.n, s.scope, s.y) == (3, "pooled", "gain")
    assert not s.spans_zero
    # residuals (0.5, -1, 0.5) around slope 0: se^2 = 1.5 / 1 / 2 -> se = sqrt(0.75); t(0.975, 1) = 12.706
    s = ols_slope(np.array([0.0, 1.0, 2.0]), np.array([0.5, -1.0, 0.5]))
    assert s.slope == pytest.approx(0.0, abs=1e-12) and s.p_value == pytest.approx(1.0)
    assert s.ci_high == pytest.approx(12.7062047 * math.sqrt(0.75), rel=1e-6) and s.spans_zero
    assert (s.scope, s.y) == ("", "")  # nothing named: nothing invented
    # one language pooled: its intercept is the common one, so the fit equals the ungrouped fit
    x, y = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.5, 5.5, 6.0])
    single, plain = ols_slope(x, y, np.array(["swa"] * 4)), ols_slope(x, y)
    assert (single.slope, single.ci_low, single.p_value) == pytest.approx((plain.slope, plain.ci_low, plain.p_value))
    assert plain.slope == pytest.approx(1.8)  # sum (x - 1.5)(y - 3.75) / sum (x - 1.5)^2 = 9 / 5
    flat = ols_slope(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]), scope="swa", y_name="gain")
    assert all(math.isnan(v) for v in (flat.slope, flat.ci_low, flat.ci_high, flat.p_value))
    assert (flat.scope, flat.y, flat.n) == ("swa", "gain", 3)
    # non-finite points are dropped before fitting
    s = ols_slope(np.array([0.0, 1.0, np.nan, 2.0]), np.array([1.0, 3.0, 7.0, 5.0]))
    assert s.slope == pytest.approx(2.0) and s.n == 3


def test_verdict_text_for_a_crafted_study(tmp_path):
    """crafted_study: OT = KD x (1 + gain), KD = 0.4, gain = 0.05 [bbb] + 0.1 log10(p / 1M); so OT - KD =
    0.02 [bbb] + 0.04 log10(p / 1M): +0.007 at 1M, +0.066 at 30M and +0.036 over the four sizes (log10 0, 0.477,
    1, 1.477), averaged over the three languages."""
    from optical_core.study.analysis import gain_table, relative_slopes, scaling_slopes, verdict
    from tests.test_experiment import crafted_study

    gains = gain_table(crafted_study(tmp_path, slope_per_decade=0.1), tmp_path, n_boot=50)
    slopes = scaling_slopes(gains, "abs_diff")
    text = verdict(slopes, gains, "mrr@10", "fam", budget_note="Budget: 400 steps.", relative=relative_slopes(gains))
    assert slopes[0].p_value < 1e-9  # exact data: p is rounding noise, printed as is
    assert text == (
        "Across 4 fam student sizes (1.0M to 30.0M non-embedding parameters) and 3 languages (aaa, bbb, ccc), "
        "OT minus KD in mrr@10 at the last step averages +0.036 (+0.007 at the smallest size, +0.066 at the "
        "largest). OT gains on KD as students grow: slope +0.040 per 10x parameters (95% CI +0.040 to +0.040, "
        f"p = {slopes[0].p_value:.2g}, n = 12). Per language, the slope's CI excludes zero for aaa, bbb, ccc. "
        "No untrained start was scored, so whether KD learned is unknown and no relative gain is reported. "
        "Budget: 400 steps.")
    assert relative_slopes(gains) == []  # no start scored: nothing is known to have learned
    gains["kd_above_floor"] = True  # had every start been beaten, the relative gain's slope is 0.1 = 10 points
    relative = relative_slopes(gains)
    assert relative[0].p_value < 1e-9 and {s.y for s in relative} == {"gain"}
    assert (f"Where KD beats its start (12 of 12 size-language cells), OT's relative gain over KD averages "
            f"{gains.gain.mean():+.1%}; its slope is +10.0 percentage points per 10x parameters (95% CI +10.0 to "
            f"+10.0, p = {relative[0].p_value:.2g}, n = 12).") in verdict(slopes, gains, "mrr@10", "fam",
                                                                          relative=relative)
    assert [(s.scope, s.y) for s in slopes] == [("pooled", "abs_diff"), ("aaa", "abs_diff"), ("bbb", "abs_diff"),
                                                ("ccc", "abs_diff")]
    shrinking = gain_table(crafted_study(tmp_path, slope_per_decade=-0.1), tmp_path, n_boot=50)
    text = verdict(scaling_slopes(shrinking, "abs_diff"), shrinking, "mrr@10", "fam")
    assert "OT loses ground to KD as students grow: slope -0.040" in text
    assert text.endswith("no relative gain is reported.")  # no budget note: nothing after


# ---- vocabulary trimming and idf on tiny hand-built tokenizers ---------------------------------------------

def _tiny_wordpiece(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "##s", "ran", "mat"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    backbone = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=16, max_position_embeddings=512, pad_token_id=0))
    return vocab, tokenizer, backbone.eval()


def test_trimming_keeps_the_used_pieces_and_their_embedding_rows(tmp_path):
    from optical_core.models.vocab import trim_vocabulary, used_token_ids

    vocab, tokenizer, backbone = _tiny_wordpiece(tmp_path)
    texts = ["the cats", "dog sat"]
    # specials (0-4) + the, cat, ##s, dog, sat; [UNK] is kept even when unused
    assert used_token_ids(tokenizer, texts) == {0, 1, 2, 3, 4, 5, 6, 9, 7, 8}
    old_rows = backbone.get_input_embeddings().weight.detach().clone()
    full_ids = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = backbone(**full_ids).last_hidden_state
    backbone, trimmed, kept = trim_vocabulary(backbone, tokenizer, texts)
    assert kept == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert len(trimmed) == 10 and backbone.config.vocab_size == 10 and backbone.config.pad_token_id == 0
    assert trimmed.convert_ids_to_tokens(trimmed("the cats")["input_ids"]) == ["[CLS]", "the", "cat", "##s", "[SEP]"]
    assert trimmed.convert_ids_to_tokens(trimmed("ran")["input_ids"]) == ["[CLS]", "[UNK]", "[SEP]"]
    assert torch.equal(backbone.get_input_embeddings().weight, old_rows[kept])
    with torch.no_grad():  # same pieces, same rows: the same hidden states as before trimming
        after = backbone(**trimmed(texts, padding=True, return_tensors="pt")).last_hidden_state
    assert torch.allclose(before, after, atol=1e-6)


def test_trimming_reindexes_rows_when_pieces_in_the_middle_are_dropped(tmp_path):
    from optical_core.models.vocab import trim_vocabulary

    vocab, tokenizer, backbone = _tiny_wordpiece(tmp_path)
    old_rows = backbone.get_input_embeddings().weight.detach().clone()
    backbone, trimmed, kept = trim_vocabulary(backbone, tokenizer, ["mat ran"])
    assert kept == [0, 1, 2, 3, 4, 10, 11]
    ids = trimmed("mat ran")["input_ids"]
    assert ids == [2, 6, 5, 3] and trimmed.convert_ids_to_tokens(ids) == ["[CLS]", "mat", "ran", "[SEP]"]
    assert torch.equal(backbone.get_input_embeddings().weight[6], old_rows[11])  # "mat" keeps its vector
    assert trimmed.cls_token_id == 2 and trimmed.sep_token_id == 3 and trimmed.pad_token_id == 0


def test_trimming_a_unigram_tokenizer_remaps_unk_and_specials():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from optical_core.models.vocab import _remap_tokenizer_json

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁a", -1.0), ("▁b", -1.0), ("▁c", -1.0)]
    backend = Tokenizer(models.Unigram(pieces, unk_id=3))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                           special_tokens=[("<s>", 0), ("</s>", 2)])
    spec = json.loads(backend.to_str())
    out = _remap_tokenizer_json(spec, [0, 2, 3, 6])
    assert [p[0] for p in out["model"]["vocab"]] == ["<s>", "</s>", "<unk>", "▁c"] and out["model"]["unk_id"] == 2
    assert out["post_processor"]["special_tokens"]["</s>"]["ids"] == [1]
    trimmed = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(out)))
    assert trimmed("c a")["input_ids"] == [0, 3, 2, 1]  # <s> ▁c <unk> </s>
    backend.add_tokens(["<new>"])  # id 7, after the model's 7 pieces: kept, renumbered after the kept pieces
    out = _remap_tokenizer_json(json.loads(backend.to_str()), [0, 2, 3, 6, 7])
    assert len(out["model"]["vocab"]) == 4 and [(t["content"], t["id"]) for t in out["added_tokens"]] == [("<new>", 4)]
    with pytest.raises(ValueError, match="Unigram and WordPiece"):
        _remap_tokenizer_json({"model": {"type": "BPE"}}, [0])


def test_token_idf_by_hand(tmp_path):
    from optical_core.models.vocab import token_idf

    _, tokenizer, _ = _tiny_wordpiece(tmp_path)
    # N = 3 texts; "the" in 3 (repeats count once), "cat" in 2, "dog" in 1, others in 0
    idf = token_idf(tokenizer, ["the cat the", "the cat", "the dog"], 12)
    assert idf[5].item() == pytest.approx(math.log(4 / 4) + 1)
    assert idf[6].item() == pytest.approx(math.log(4 / 3) + 1)
    assert idf[7].item() == pytest.approx(math.log(4 / 2) + 1)
    assert idf[11].item() == pytest.approx(math.log(4 / 1) + 1)
    assert idf[2].item() == pytest.approx(math.log(4) + 1)  # specials are not counted


# ---- what training feeds the losses: masks, teacher targets, the batch plan -------------------------------

def test_tokenize_content_mask_drops_specials_and_padding(tmp_path):
    from optical_core.models.encoders import tokenize

    _, tokenizer, _ = _tiny_wordpiece(tmp_path)
    batch = tokenize(tokenizer, ["the cat sat", "dog", ""], max_length=4)  # the first is cut to [CLS] the cat [SEP]
    assert batch.input_ids.tolist() == [[2, 5, 6, 3], [2, 7, 3, 0], [2, 3, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]]
    assert batch.content_mask.tolist() == [[0, 1, 1, 0], [0, 1, 0, 0], [1, 1, 0, 0]]  # "" keeps its specials


def test_teacher_targets_are_raw_mean_pools_and_content_tokens(tmp_path):
    from optical_core.distil.train import teacher_targets
    from optical_core.models.encoders import Encoder, tokenize

    _, tokenizer, backbone = _tiny_wordpiece(tmp_path)
    teacher = Encoder(backbone, tokenizer)
    english = ["the cat sat", "dog", "the mat"]
    targets = teacher_targets(teacher, english, max_length=8, device="cpu", batch_size=2)
    with torch.no_grad():
        for i, text in enumerate(english):
            batch = tokenize(tokenizer, [text], 8)
            hidden = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state[0]
            assert torch.allclose(targets.embeddings[i], hidden.mean(0), atol=1e-5)  # specials included, no norm
            assert torch.allclose(targets.tokens[i], hidden[1:-1], atol=1e-5)  # content tokens only
            assert targets.input_ids[i].tolist() == batch.input_ids[0, 1:-1].tolist()
    assert not torch.allclose(targets.embeddings.norm(dim=1), torch.ones(3), atol=0.05)
    collated = targets.collate([2, 0], "cpu")
    assert collated.mask.tolist() == [[True, True, False], [True, True, True]]
    assert collated.input_ids.tolist() == [[5, 11, 0], [5, 6, 8]]
    assert torch.equal(collated.tokens[0, :2], targets.tokens[2]) and torch.equal(collated.tokens[0, 2], torch.zeros(8))
    assert torch.equal(collated.embedding, targets.embeddings[[2, 0]])


def test_batch_plan_exact_for_a_seed():
    from optical_core.distil.train import batch_plan

    plan = list(batch_plan(5, 2, 2, seed=0))
    assert [e for e, _ in plan] == [0, 0, 0, 1, 1, 1]
    for epoch in (0, 1):
        batches = [b for e, b in plan if e == epoch]
        assert [len(b) for b in batches] == [2, 2, 1] and sorted(sum(batches, [])) == [0, 1, 2, 3, 4]
    first = torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()
    assert plan[0][1] == first[:2] and plan[2][1] == first[4:]
    assert [b for _, b in batch_plan(5, 2, 2, seed=0, max_steps=4)] == [b for _, b in plan[:4]]
    assert list(batch_plan(5, 2, 2, seed=1)) != plan
    bucketed = list(batch_plan(6, 2, 1, seed=0, lengths=[5, 1, 4, 2, 6, 3]))
    # by length: 1 (id 1), 2 (3), 3 (5), 4 (2), 5 (0), 6 (4): neighbours in length share a batch
    assert sorted(sorted(b) for _, b in bucketed) == [[0, 4], [1, 3], [2, 5]]


# ---- ranking and the learning-curve evaluation ------------------------------------------------------------

def test_rank_returns_the_top_documents_by_cosine_in_order():
    from optical_core.evaluate.retrieval import rank

    q = T([[1.0, 0.0], [0.0, 1.0]])
    d = T([[0.6, 0.8], [1.0, 0.0], [-1.0, 0.0], [0.8, 0.6]])
    run = rank(q, d, ["qa", "qb"], ["d0", "d1", "d2", "d3"], depth=2)
    assert run == {"qa": pytest.approx({"d1": 1.0, "d3": 0.8}), "qb": pytest.approx({"d0": 0.8, "d3": 0.6})}
    assert list(run["qa"]) == ["d1", "d3"]
    assert len(rank(q, d, ["qa", "qb"], ["d0", "d1", "d2", "d3"], depth=100)["qa"]) == 4  # depth capped at |docs|


def _tiny_encoder(tmp_path, seed):
    from optical_core.models.encoders import Encoder

    _, tokenizer, backbone = _tiny_wordpiece(tmp_path)
    torch.manual_seed(seed)
    for p in backbone.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return Encoder(backbone, tokenizer).eval()  # as load_teacher returns it: no dropout


def test_curve_evaluator_scores_student_queries_against_teacher_documents(tmp_path, data_dir, monkeypatch):
    """The wiring, step by step: student encodes the task's queries in qid order, the teacher its documents,
    cosine ranking, the task's metrics per query, and the query cosine of the student's embeddings."""
    from optical_core.data.clir import build_collection
    from optical_core.evaluate.evaluator import RunEvaluator
    from optical_core.evaluate.retrieval import metrics_for, per_query_metrics, rank
    from optical_core.settings import DOC_MAX_LENGTH, QUERY_MAX_LENGTH, EvalPlan

    # the tiny vocabulary knows "the", "cat", ...: NTREX text becomes mostly [UNK], but the two encoders differ
    teacher, student = _tiny_encoder(tmp_path, 1), _tiny_encoder(tmp_path, 2)
    evaluator = RunEvaluator(teacher, "hau", EvalPlan(), record_plans=False)
    got = evaluator.score(7, student, "headline")
    c = build_collection("headline", "hau")
    qids = list(c.queries)
    with torch.no_grad():
        q = student.encode([c.queries[i] for i in qids], max_length=QUERY_MAX_LENGTH)
        d = teacher.encode(list(c.documents.values()), max_length=DOC_MAX_LENGTH)
    expected = per_query_metrics(c.qrels, rank(q, d, qids, list(c.documents)), metrics_for("headline"))
    assert (got.step, got.task) == (7, "headline") and 0 < got.seconds < 600
    pd_testing = pytest.importorskip("pandas").testing
    pd_testing.assert_frame_equal(got.scores, expected)
    assert got.query_cosine == pytest.approx(mean_pairwise_cosine(q), abs=1e-6)
    assert evaluator.alignment_pairs[0][-1] != evaluator.alignment_pairs[1][-1]  # LR query, English translation
    assert len(evaluator.alignment_pairs[0]) == 64
    # bf16 queries (autocast on the CPU) and the query length cut, as training would see them
    monkeypatch.setattr("optical_core.evaluate.evaluator.QUERY_MAX_LENGTH", 4)
    bf16 = RunEvaluator(teacher, "hau", EvalPlan(precision="bf16"), record_plans=False).score(0, student, "headline")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        q16 = student.encode([c.queries[i] for i in qids], max_length=4)
    with torch.no_grad():
        q32 = student.encode([c.queries[i] for i in qids], max_length=4)
    assert not torch.allclose(q16.float(), q) and not torch.equal(q16, q32)
    pd_testing.assert_frame_equal(
        bf16.scores, per_query_metrics(c.qrels, rank(q16, d, qids, list(c.documents)), metrics_for("headline")))
    # the same queries encoded the same way give the same bits; float32 ones differ (by ~1e-6 here: mostly [UNK])
    assert bf16.query_cosine == mean_pairwise_cosine(q16.float()) != mean_pairwise_cosine(q32)


def _noisy_pair(n=30, seed=5):
    rng = np.random.default_rng(seed)
    b = rng.uniform(0, 1, n)
    return b + rng.normal(0.05, 0.2, n), b


def test_significance_is_reproducible_and_uses_its_arguments():
    """Same seed, same numbers (published tables depend on it); the defaults are the documented ones (5000
    resamples, seed 0); the resample count and the seed are passed on, not ignored."""
    a, b = _noisy_pair()
    first = paired_comparison(a, b)
    assert paired_comparison(a, b) == first
    assert paired_comparison(a, b, n_resamples=5000, seed=0) == first
    other_seed = paired_comparison(a, b, seed=1)  # both the permutation test and the bootstrap get the seed
    assert other_seed.p_value != first.p_value and other_seed.ci_low != first.ci_low
    fewer = paired_comparison(a, b, n_resamples=500)  # and both get the resample count
    assert fewer.p_value != first.p_value and fewer.ci_low != first.ci_low
    x = a - b
    assert mean_ci(x) == mean_ci(x) == mean_ci(x, n_resamples=2000, seed=0, level=0.95)
    assert mean_ci(x, seed=1) != mean_ci(x) and mean_ci(x, n_resamples=500) != mean_ci(x)


def test_paired_comparison_rejects_what_it_cannot_pair():
    with pytest.raises(ValueError, match="equal-length"):
        paired_comparison([], [])
    with pytest.raises(ValueError, match="equal-length"):
        paired_comparison(np.ones((2, 2)), np.ones((2, 2)))
    one = paired_comparison([1.0], [0.0])  # a single query is allowed: p = 1 (both signs are as extreme)
    assert (one.difference, one.p_value, one.n) == (1.0, 1.0, 1)
    # a constant non-zero difference is still tested: (1, 1, 1, 1) -> p = 2/16
    assert paired_comparison(np.ones(4) + 1, np.ones(4)).p_value == pytest.approx(2 / 16)


def test_ridge_shrinkage_is_scaled_by_the_mean_eigenvalue_in_two_dimensions():
    """X columns centred: x1 = (-1, 1, -1, 1), x2 = (-1, -1, 1, 1) -> gram = 4 I, trace / d = 4, so lambda =
    0.5 * 4 = 2 and W = Xc'Yc / (4 + 2). With Y = 3 x1 - x2: Xc'Yc = (12, -4) -> W = (2, -2/3)."""
    X = T([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    Y = (X @ T([3.0, -1.0]))[:, None]
    weight, bias = ridge_head(X, Y, shrinkage=0.5)
    assert torch.allclose(weight, T([[2.0, -2 / 3]]), atol=1e-6) and torch.allclose(bias, T([0.0]), atol=1e-6)


def test_curve_diagnostics_score_the_fixed_dev_pairs_in_eval_mode(tmp_path, data_dir):
    from optical_core.distil.alignment import alignment_scores
    from optical_core.evaluate.evaluator import RunEvaluator
    from optical_core.settings import EvalPlan

    teacher, student = _tiny_encoder(tmp_path, 1), _tiny_encoder(tmp_path, 2)
    objective = Objective(LossConfig(method="ot"))
    evaluator = RunEvaluator(teacher, "hau", EvalPlan(), record_plans=False)
    student.train()
    got = evaluator.diagnose(student, objective, max_length=16)
    assert student.training  # restored after scoring in eval mode
    student.eval()
    expected = alignment_scores(student, teacher, objective, *evaluator.alignment_pairs, 16)
    assert got == pytest.approx(dict(plan_sharpness=expected.plan_sharpness, identical_share=expected.identical_share,
                                     identical_chance=expected.identical_chance), nan_ok=True)
    evaluator.alignment_pairs = None  # a language without a dev split: no diagnostics, said with nan
    assert all(math.isnan(v) for v in evaluator.diagnose(student, objective, 16).values())
    assert set(evaluator.diagnose(student, objective, 16)) == {"plan_sharpness", "identical_share", "identical_chance"}


def test_slopes_frame_has_one_row_per_slope_with_its_verdict_on_zero():
    from optical_core.study.analysis import Slope, slopes_frame

    frame = slopes_frame([Slope("pooled", "gain", 0.1, 0.05, 0.15, 0.01, 12),
                          Slope("swa", "gain", 0.1, -0.1, 0.3, 0.4, 4)])
    assert frame.scope.tolist() == ["pooled", "swa"] and frame.spans_zero.tolist() == [False, True]
    columns = ["slope", "ci_low", "ci_high", "p_value", "n", "y"]
    assert frame.loc[0, columns].tolist() == [0.1, 0.05, 0.15, 0.01, 12, "gain"]


def test_bm25_run_by_hand():
    """BM25 as bm25s' default ("lucene": k1 = 1.5, b = 0.75, no (k1 + 1) factor): "cat" is in 2 of 4 documents,
    idf = ln(1 + (4 - 2 + 0.5) / (2 + 0.5)) = ln 2; a single match in a document of average length scores
    idf * tf / (tf + k1) = ln 2 / 2.5. English stop words never match."""
    from optical_core.evaluate.retrieval import bm25_run

    # d0's "the" is a stop word: dropped from the index, so d0 keeps the average length and ties with d2
    documents = {"d0": "the cat sat", "d1": "dog ran", "d2": "cat dog", "d3": "bird flew"}
    queries = {"q_the": "the of", "q_cat": "cat", "q_none": "zebra", "q_dog_cat": "dog cat"}
    run = bm25_run(queries, documents, depth=2)
    assert list(run) == ["q_the", "q_cat", "q_none", "q_dog_cat"]
    assert run["q_the"] == {} and run["q_none"] == {}  # stop words only; an unknown word
    assert list(run["q_cat"]) == ["d0", "d2"]  # tie: the documents' order; d1, d3 score 0 and are left out
    one_match = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5)) / 2.5
    assert run["q_cat"]["d0"] == pytest.approx(one_match, rel=1e-5)
    assert list(run["q_dog_cat"]) == ["d2", "d0"] and run["q_dog_cat"]["d2"] == pytest.approx(2 * one_match, rel=1e-5)
    many = {f"d{i:02d}": "cat" for i in range(40)}  # 40 tied documents: a stable sort keeps their order
    assert list(bm25_run({"q": "cat"}, many, depth=5)["q"]) == ["d00", "d01", "d02", "d03", "d04"]
    # two score levels (the longer odd documents score less): numpy's default sort reorders ties among 40 of these
    mixed = {f"d{i:02d}": "cat" if i % 2 == 0 else "cat dog" for i in range(40)}
    assert list(bm25_run({"q": "cat"}, mixed, depth=5)["q"]) == ["d00", "d02", "d04", "d06", "d08"]


def _reference_seed_query_bootstrap(matrices, n_boot, seed):
    """The seed x query bootstrap spelled out with loops: one draw of seeds and queries per resample, shared by
    every matrix (paired), the mean over resampled seeds of the mean over resampled queries."""
    rng = np.random.default_rng(seed)
    n_seeds, n_queries = matrices[0].shape
    seeds = rng.integers(0, n_seeds, (n_boot, n_seeds))
    queries = rng.integers(0, n_queries, (n_boot, n_queries))
    return [np.array([np.mean([m[s, queries[i]].mean() for s in seeds[i]]) for i in range(n_boot)]) for m in matrices]


def test_accuracy_table_matches_a_loop_bootstrap_and_keeps_to_its_rows(tmp_path):
    import pandas as pd

    from optical_core.study.analysis import accuracy_table

    rng = np.random.default_rng(11)
    kd = rng.uniform(0, 1, (2, 20))
    ot = rng.uniform(0, 1, (1, 20))
    q = [f"q{i:02d}" for i in range(20)]
    rows = _cells(tmp_path, [("ot", 0, dict(zip(q, ot[0])))])  # listed first: the table sorts its groups
    rows = pd.concat([rows, _cells(tmp_path, [("kd", s, dict(zip(q, kd[s]))) for s in (0, 1)])], ignore_index=True)
    baseline = rows.iloc[0].to_dict() | dict(family="baseline", method="bm25", cell_id="bm25")
    ndcg = rows.iloc[1].to_dict() | dict(metric="ndcg@10")
    results = pd.concat([rows, pd.DataFrame([baseline, ndcg])], ignore_index=True)
    table = accuracy_table(results, tmp_path, n_boot=300)
    assert table.method.tolist() == ["kd", "ot"] and table.metric.tolist() == ["mrr@10", "mrr@10"]
    (kd_boot,) = _reference_seed_query_bootstrap([kd], 300, 0)
    row = table.iloc[0]
    assert row["mean"] == pytest.approx(kd.mean())
    assert (row.ci_low, row.ci_high) == pytest.approx((np.percentile(kd_boot, 2.5), np.percentile(kd_boot, 97.5)))
    assert table.iloc[1].n_seeds == 1
    assert accuracy_table(results, tmp_path).equals(accuracy_table(results, tmp_path, n_boot=1000, seed=0))
    assert not accuracy_table(results, tmp_path, seed=1).equals(accuracy_table(results, tmp_path))


def test_gain_table_matches_a_loop_bootstrap(tmp_path):
    import pandas as pd

    from optical_core.study.analysis import gain_table

    rng = np.random.default_rng(12)
    kd, ot = rng.uniform(0.2, 1, (2, 15)), rng.uniform(0.2, 1, (2, 15))
    q = [f"q{i:02d}" for i in range(15)]
    results = _cells(tmp_path, [(m, s, dict(zip(q, x[s]))) for m, x in (("kd", kd), ("ot", ot)) for s in (0, 1)])
    other_lang = results.assign(lang="aa")  # sorted first
    table = gain_table(pd.concat([results, other_lang], ignore_index=True), tmp_path, n_boot=300)
    assert table.lang.tolist() == ["aa", "xx"]
    row = table.iloc[0]
    kd_boot, ot_boot = _reference_seed_query_bootstrap([kd, ot], 300, 0)
    gain = (ot_boot - kd_boot) / kd_boot
    assert (row.gain_ci_low, row.gain_ci_high) == pytest.approx((np.percentile(gain, 2.5), np.percentile(gain, 97.5)))
    assert (row.abs_ci_low, row.abs_ci_high) == pytest.approx(
        (np.percentile(ot_boot - kd_boot, 2.5), np.percentile(ot_boot - kd_boot, 97.5)))
    assert row.gain == pytest.approx((ot.mean() - kd.mean()) / kd.mean())
    assert (row.params_total, row.params_non_embedding) == (30_000_000, 2_000_000)
    assert gain_table(results, tmp_path).equals(gain_table(results, tmp_path, n_boot=1000, seed=0))
    assert not gain_table(results, tmp_path, seed=1).equals(gain_table(results, tmp_path))


def _gains(langs, sizes, gain=0.05, **floors):
    """A gains table: KD at 0.4 everywhere, so OT - KD = 0.4 x the relative gain."""
    import pandas as pd

    return pd.DataFrame([dict(lang=lang, params_non_embedding=p, gain=gain, abs_diff=0.4 * gain, **floors)
                         for lang in langs for p in sizes])


def test_verdict_sentences_for_each_case():
    from optical_core.study.analysis import Slope, verdict

    nan = float("nan")
    one_lang = _gains(["swa"], [2_000_000, 21_300_000])
    text = verdict([Slope("pooled", "abs_diff", nan, nan, nan, nan, 2)], one_lang, "mrr@10", "me5")
    assert text == ("Across 2 me5 student sizes (2.0M to 21.3M non-embedding parameters) and 1 language (swa), OT "
                    "minus KD in mrr@10 at the last step averages +0.020 (+0.020 at the smallest size, +0.020 at the "
                    "largest). There are too few sizes to estimate how the difference changes with size. No "
                    "untrained start was scored, so whether KD learned is unknown and no relative gain is reported.")
    one_size = _gains(["swa"], [2_000_000], kd_above_floor=True, ot_above_floor=True)
    assert verdict([Slope("pooled", "abs_diff", nan, nan, nan, nan, 1)], one_size, "mrr@10", "me5").startswith(
        "Across 1 me5 student size (2.0M to 2.0M non-embedding parameters) and 1 language (swa), OT minus KD in "
        "mrr@10 at the last step averages +0.020. There are too few sizes")
    spans = [Slope("pooled", "abs_diff", 0.012, -0.02, 0.044, 0.41, 10),
             Slope("swa", "abs_diff", 0.01, -0.1, 0.12, 0.8, 5), Slope("yor", "abs_diff", nan, nan, nan, nan, 2)]
    relative = [Slope("pooled", "gain", 0.03, 0.01, 0.05, 0.004, 10)]
    gains = _gains(["swa", "yor"], [2e6, 4e6, 8e6, 12e6, 21e6], gain=-0.1, kd_above_floor=True, ot_above_floor=True)
    text = verdict(spans, gains, "ndcg@10", "me5", relative=relative)
    assert text == ("Across 5 me5 student sizes (2.0M to 21.0M non-embedding parameters) and 2 languages (swa, yor), "
                    "OT minus KD in ndcg@10 at the last step averages -0.040 (-0.040 at the smallest size, -0.040 at "
                    "the largest). Its slope on log10(non-embedding params) is +0.012 per 10x parameters (95% CI "
                    "-0.020 to +0.044, p = 0.41, n = 10): no detectable effect of student size on OT minus KD. Per "
                    "language, no slope's CI excludes zero. Where KD beats its start (10 of 10 size-language cells), "
                    "OT's relative gain over KD averages -10.0%; its slope is +3.0 percentage points per 10x "
                    "parameters (95% CI +1.0 to +5.0, p = 0.004, n = 10).")
    no_per_language = [Slope("pooled", "abs_diff", -0.05, -0.09, -0.01, 0.02, 6),
                       Slope("swa", "abs_diff", nan, nan, nan, nan, 2)]
    text = verdict(no_per_language, _gains(["swa"], [2e6, 4e6]), "mrr@10", "me5")
    assert "OT loses ground to KD as students grow: slope -0.050 per 10x parameters (95% CI -0.090 to -0.010, " \
           "p = 0.02, n = 6). No untrained start" in text


def test_relative_gain_is_reported_only_where_kd_beats_its_start():
    from optical_core.study.analysis import Slope, relative_slopes, verdict, where_kd_learned

    gains = _gains(["swa", "yor"], [2e6, 4e6, 8e6], kd_above_floor=True, ot_above_floor=True)
    gains["gain"] = [0.9, 0.1, 0.2, -0.3, 0.3, 0.5]  # 2M swa: KD did not learn, and its huge gain must not count
    gains.loc[0, "kd_above_floor"] = False
    pooled = [Slope("pooled", "abs_diff", 0.01, -0.02, 0.04, 0.5, 6)]
    text = verdict(pooled, gains, "mrr@10", "me5", relative=relative_slopes(gains))
    assert "Where KD beats its start (5 of 6 size-language cells), OT's relative gain over KD averages +16.0%; its " \
           "slope is " in text  # (0.1 + 0.2 - 0.3 + 0.3 + 0.5) / 5
    assert text.endswith("; left out: swa 2.0M.")
    assert relative_slopes(gains)[0].n == 5 and [s.scope for s in relative_slopes(gains)] == ["pooled", "swa", "yor"]
    unknown = gains.assign(kd_above_floor=[True, None, True, None, True, True])  # starts scored for some cells only
    learned, n_unknown = where_kd_learned(unknown)
    assert learned.index.tolist() == [0, 2, 4, 5] and n_unknown == 2
    assert "Where KD beats its start (4 of 6 size-language cells; 2 without a scored start), OT's relative gain " \
           "over KD averages +47.5%; left out: swa 4.0M, yor 2.0M." in verdict(pooled, unknown, "mrr@10", "me5")
    # (0.9 + 0.2 + 0.3 + 0.5) / 4: the cells with a start beaten (2M swa again) and none without a scored start
    nowhere = gains.assign(kd_above_floor=False)
    assert relative_slopes(nowhere) == []
    no_starts = gains.drop(columns="kd_above_floor")  # a table from before starts were scored: nothing is known
    assert where_kd_learned(no_starts)[0].empty and where_kd_learned(no_starts)[1] == 6
    assert relative_slopes(no_starts) == []
    odd = gains.assign(params_non_embedding=gains.params_non_embedding.replace(2e6, 1_050_001))
    assert verdict(pooled, odd, "mrr@10", "me5").endswith("; left out: swa 1.1M.")  # 1.050001M, in millions
    assert verdict(pooled, nowhere, "mrr@10", "me5").endswith(
        " KD beats its start in none of the cells, so no relative gain is reported.")


def test_verdict_reports_the_slope_along_training_and_collapse_counts():
    import pandas as pd

    from optical_core.study.analysis import Slope, verdict

    pooled = [Slope("pooled", "abs_diff", 0.01, -0.02, 0.04, 0.5, 6)]
    gains = _gains(["swa"], [2e6, 8e6], kd_above_floor=True, ot_above_floor=True)
    row = dict(scope="pooled", ci_low=-0.1, ci_high=0.3, p_value=0.2, n=10)
    along = pd.DataFrame([dict(row, a="ot", step=0, slope=0.0), dict(row, a="ot", step=400, slope=0.1),
                          dict(row, a="ot-kd", step=500, slope=0.3, scope="swa"),  # per language: not the last step
                          dict(row, a="ot", step=25, slope=-0.05, ci_low=-0.09, ci_high=-0.01),
                          dict(row, a="ot", step=50, slope=float("nan")),
                          dict(row, a="ot", step=25, scope="swa", slope=9),
                          dict(row, a="ot-kd", step=25, slope=0.7), dict(row, a="ot-kd", step=400, slope=0.02)])
    collapses = pd.DataFrame([dict(layers=2, method="ot", cells=4, collapsed_cells=3, collapsed_at_end=1),
                              dict(layers=1, method="ot", cells=4, collapsed_cells=2, collapsed_at_end=0),
                              dict(layers=8, method="ot", cells=4, collapsed_cells=0, collapsed_at_end=0),
                              dict(layers=1, method="kd", cells=4, collapsed_cells=0, collapsed_at_end=0)])
    text = verdict(pooled, gains, "mrr@10", "me5", along=along, collapses=collapses)
    assert text.endswith(
        "OT's relative gain over KD averages +5.0%. Along training, OT minus KD has a pooled slope per 10x "
        "parameters (95% CI, p; one test per step, not corrected for multiple comparisons) of: step 25 -0.050 "
        "(-0.090 to -0.010, p = 0.2); step 400 +0.100 (-0.100 to +0.300, p = 0.2). The ot-kd objective minus KD at "
        "the last step (step 400): slope +0.020 per 10x parameters (95% CI -0.100 to +0.300, p = 0.2, n = 10). "
        "Collapse (mean pairwise query cosine > 0.9 on some evaluated task at some step; runs = languages x seeds): "
        "ot in 5 of 12 runs (L1 2/4, L2 3/4; 1 still collapsed at the last step).")
    unfit = along.assign(slope=float("nan"))
    assert "The ot-kd objective minus KD at the last step (step 400): too few sizes for a slope." in verdict(
        pooled, gains, "mrr@10", "me5", along=unfit)
    # the first step after the start, a missing p-value, and the other objectives in name order
    others = pd.DataFrame([dict(row, a="zz", step=400, slope=0.1), dict(row, a="bb", step=400, slope=0.2),
                           dict(row, a="ot", step=1, slope=0.3, p_value=float("nan"))])
    tail = (" The bb objective minus KD at the last step (step 400): slope +0.200 per 10x parameters (95% CI -0.100 "
            "to +0.300, p = 0.2, n = 10). The zz objective minus KD at the last step (step 400): slope +0.100 per 10x "
            "parameters (95% CI -0.100 to +0.300, p = 0.2, n = 10).")
    assert verdict(pooled, gains, "mrr@10", "me5", along=others).endswith(
        "comparisons) of: step 1 +0.300 (-0.100 to +0.300, p = nan)." + tail)
    assert verdict(pooled, gains, "mrr@10", "me5", along=others[others.a != "ot"]).endswith("+5.0%." + tail)
    kd_too = pd.concat([collapses, pd.DataFrame([dict(layers=4, method="kd", cells=4, collapsed_cells=1,
                                                      collapsed_at_end=1)])])  # objectives in name order
    assert verdict(pooled, gains, "mrr@10", "me5", collapses=kd_too).endswith(
        "seeds): kd in 1 of 8 runs (L4 1/4; 1 still collapsed at the last step); ot in 5 of 12 runs (L1 2/4, L2 3/4; "
        "1 still collapsed at the last step).")
    calm = collapses.assign(collapsed_cells=0, collapsed_at_end=0)
    assert verdict(pooled, gains, "mrr@10", "me5", collapses=calm).endswith(
        " No trained cell collapsed (mean pairwise query cosine > 0.9) at any evaluated step.")


def test_verdict_cautions_about_floor_level_cells():
    from optical_core.study.analysis import Slope, verdict

    pooled = [Slope("pooled", "abs_diff", 0.01, -0.02, 0.04, 0.5, 4)]
    gains = _gains(["swa"], [2e6, 4e6, 8e6, 12e6], kd_above_floor=True, ot_above_floor=False)
    gains.loc[gains.params_non_embedding <= 4e6, "kd_above_floor"] = False
    text = verdict(pooled, gains, "mrr@10", "me5")
    assert text.endswith(" Caution: in 2 of 4 size-language cells neither KD nor OT beats the untrained student "
                         "(p < 0.05), so OT minus KD there compares two floor-level students (sizes 2.0M, 4.0M; in the "
                         "absolute slope, not in the relative one). OT beats the untrained student in none of the "
                         "cells at this budget.")
    gains.loc[0, "ot_above_floor"] = True  # OT beats its start in one cell: no "none of the cells" sentence
    gains.loc[0, "kd_above_floor"] = True
    assert verdict(pooled, gains, "mrr@10", "me5").endswith(
        " Caution: in 1 of 4 size-language cells neither KD nor OT beats the untrained student (p < 0.05), so OT "
        "minus KD there compares two floor-level students (sizes 4.0M; in the absolute slope, not in the relative "
        "one).")
    above = _gains(["swa"], [2e6, 4e6], kd_above_floor=True, ot_above_floor=True)
    assert "Caution" not in verdict(pooled, above, "mrr@10", "me5")


def test_plan_sharpness_counts_only_tokens_with_mass():
    """Two real student tokens (two padded) against three teacher tokens: KL = (2/3) ln 2 and min(n, m) = 2, so
    sharpness = 2/3; counting the padded tokens would divide by ln 3. The second pair (4 x 3, independent
    plan) has sharpness 0 and different counts, so counts must be per pair."""
    a = T([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    b = T([[1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]])
    P = torch.stack([T([[1 / 3, 1 / 6, 0.0], [0.0, 1 / 6, 1 / 3], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
                     a[1][:, None] * b[1][None, :]])
    assert torch.allclose(plan_sharpness(P, a, b), T([2 / 3, 0.0]), atol=1e-6)
    assert torch.allclose(plan_sharpness(P.transpose(1, 2), b, a), T([2 / 3, 0.0]), atol=1e-6)  # the teacher side


def test_gain_table_filters_metric_and_method_and_skips_only_unpaired_sizes(tmp_path):
    import pandas as pd

    from optical_core.study.analysis import gain_table

    q = {"q0": 0.5, "q1": 0.25}
    paired = _cells(tmp_path, [("kd", 0, q), ("ot", 0, {"q0": 0.75, "q1": 0.25}), ("untrained", 0, q)])
    unpaired = _cells(tmp_path, [("kd", 3, q), ("ot", 4, q)]).assign(lang="aa")  # sorted first, skipped
    ndcg = paired[paired.method != "untrained"].assign(metric="ndcg@10", per_query_file="ndcg.csv")
    pd.DataFrame({"qid": ["q0", "q1"], "mrr@10": [0.0, 0.0]}).to_csv(tmp_path / "ndcg.csv", index=False)  # differs
    table = gain_table(pd.concat([unpaired, paired, ndcg], ignore_index=True), tmp_path, n_boot=50)
    assert table.lang.tolist() == ["xx"] and table.metric.tolist() == ["mrr@10"]
    assert (table.iloc[0].n_seeds, table.iloc[0].kd_mean, table.iloc[0].ot_mean) == (1, 0.375, 0.5)


def test_ols_slope_with_an_exact_fit():
    from optical_core.study.analysis import ols_slope

    exact = ols_slope(np.array([-1.0, 1.0, -1.0, 1.0]), np.array([-1.0, 1.0, -1.0, 1.0]))
    assert (exact.slope, exact.ci_low, exact.ci_high, exact.p_value) == (1.0, 1.0, 1.0, 0.0)
    flat = ols_slope(np.array([0.0, 1.0, 2.0]), np.zeros(3))
    assert (flat.slope, flat.p_value, flat.spans_zero) == (0.0, 1.0, True)
    level = ols_slope(np.array([-1.0, 1.0, -1.0, 1.0]), np.full(4, 3.0))  # exact: no slope, intercept 3
    assert (level.slope, level.ci_low, level.ci_high, level.p_value) == (0.0, 0.0, 0.0, 1.0)


def _tiny_student(tmp_path, head_init="ridge", projection=True):
    from optical_core.models.encoders import Encoder
    from optical_core.models.students import Student
    from optical_core.settings import StudentSpec

    _, tokenizer, backbone = _tiny_wordpiece(tmp_path)
    torch.manual_seed(3)
    for p in backbone.parameters():
        torch.nn.init.normal_(p, std=0.5)
    head = torch.nn.Linear(8, 4) if projection else None
    encoder = Encoder(backbone, tokenizer, head).train()
    return Student(StudentSpec("me5", 1, head_init=head_init), encoder, params=None, original_vocab_size=12)


def test_pooled_features_are_the_backbones_mean_pool_without_dropout(tmp_path):
    from optical_core.distil.train import pooled_features

    student = _tiny_student(tmp_path)
    texts = ["the cat sat", "dog ran mat the cat"]
    X = pooled_features(student, texts, max_length=4, device="cpu", batch_size=1)
    assert student.encoder.training  # restored
    student.encoder.eval()
    with torch.no_grad():
        for i, text in enumerate(texts):
            batch = student.encoder.tokenize([text], 4)
            assert batch.input_ids.shape[1] == 4  # cut to max_length
            hidden = student.encoder.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            assert torch.allclose(X[i], hidden.last_hidden_state[0].mean(0), atol=1e-5)
    assert X.shape == (2, 8)  # the backbone's width, before the projection head


def test_fit_head_sets_the_projection_to_the_closed_form_map(tmp_path):
    from optical_core.distil.train import TeacherTargets, fit_head, pooled_features

    texts = ["the cat", "dog ran", "cat sat mat", "the dog", "mat", "ran the cat"]
    bitext = Bitext("xx", texts, texts, origin=("train",) * 6)
    targets = TeacherTargets([], torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), [])
    student = _tiny_student(tmp_path)
    fit_head(student, bitext, targets, max_length=3, device="cpu")  # 3: the features are cut as training cuts
    weight, bias = ridge_head(pooled_features(student, texts, 3, "cpu"), targets.embeddings)
    assert torch.allclose(student.encoder.projection.weight, weight, atol=1e-5)
    assert torch.allclose(student.encoder.projection.bias, bias, atol=1e-5)
    assert student.notes == ["projection head: closed-form ridge fit on the 6 training pairs (mean-pooled student "
                             "features -> the teacher's mean-pooled embeddings)"]
    for kept in (_tiny_student(tmp_path, head_init="random"), _tiny_student(tmp_path, projection=False)):
        before = {k: v.clone() for k, v in kept.encoder.state_dict().items()}
        fit_head(kept, bitext, targets, max_length=8, device="cpu")
        assert all(torch.equal(before[k], v) for k, v in kept.encoder.state_dict().items()) and kept.notes == []


def test_run_records_round_trip(tmp_path):
    from optical_core.settings import TrainConfig
    from optical_core.store.checkpoints import RunManifest, read_manifest, read_train_log, write_run_records

    manifest = RunManifest(name="r", config=TrainConfig(), params_total=10, params_non_embedding=4, vocab_size=3,
                           original_vocab_size=5, steps=2, n_pairs=8, data={"sha256": "ab"}, versions={"torch": "x"},
                           git_commit="c0ffee", device="cpu", wall_time_s=1.5, created="2026-11-26", notes=["n"],
                           precision="bf16")
    history = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    write_run_records(tmp_path, manifest, history)
    assert read_train_log(tmp_path) == history
    assert read_manifest(tmp_path) == manifest
    (tmp_path / "empty").mkdir()
    write_run_records(tmp_path / "empty", manifest)  # no history: an empty log, the manifest still written
    assert read_train_log(tmp_path / "empty") == [] and (tmp_path / "empty" / "manifest.json").is_file()


def test_ridge_default_shrinkage_and_bucketed_plans_over_several_pools():
    from optical_core.distil.train import BUCKET_POOL_BATCHES, batch_plan

    X = torch.randn(30, 3, generator=torch.Generator().manual_seed(4))
    Y = torch.randn(30, 2, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(ridge_head(X, Y), ridge_head(X, Y, shrinkage=0.1)))
    n = 3 * BUCKET_POOL_BATCHES  # batch size 1: three pools per epoch
    lengths = [(7 * i) % 13 for i in range(n)]
    plan = list(batch_plan(n, 1, 2, seed=0, lengths=lengths))
    for epoch in (0, 1):
        assert sorted(b[0] for e, b in plan if e == epoch) == list(range(n))  # every pool's batches are kept
    assert plan == list(batch_plan(n, 1, 2, seed=0, lengths=lengths))  # the batch shuffle is seeded too


def _manifest(name="ck"):
    from optical_core.settings import TrainConfig
    from optical_core.store.checkpoints import RunManifest

    return RunManifest(name=name, config=TrainConfig(), params_total=1, params_non_embedding=1, vocab_size=12,
                       original_vocab_size=12, steps=1, n_pairs=1, data={}, versions={}, git_commit="", device="cpu",
                       wall_time_s=0.0, created="")


def test_save_checkpoint_replaces_atomically_and_cleans_up(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from optical_core.store import checkpoints
    from optical_core.store.checkpoints import save_checkpoint

    root = tmp_path / "nested" / "ckpts"  # parents are created
    first, second = _tiny_encoder(tmp_path, 1), _tiny_encoder(tmp_path, 2)
    target = save_checkpoint(root, first, _manifest(), extra_files={"README.md": "première\n"})
    assert target == root / "ck" and (target / "README.md").read_text(encoding="utf-8") == "première\n"
    assert save_checkpoint(root, second, _manifest(), history=[{"step": 1}]) == target  # replace
    weights = load_file(str(target / "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(weights[key], second.backbone.state_dict()[key])
    assert not (target / "README.md").exists()  # the old version is gone, not merged
    assert sorted(p.name for p in root.iterdir()) == [".lock", "ck"]  # no .tmp-, .old-, .deleting- left

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the records")

    monkeypatch.setattr(checkpoints, "write_run_records", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(root, first, _manifest())
    assert sorted(p.name for p in root.iterdir()) == [".lock", "ck"]  # the half-written copy is removed
    assert torch.equal(load_file(str(target / "model.safetensors"))[key], second.backbone.state_dict()[key])


def test_manifest_and_projection_errors_name_the_file(tmp_path):
    from optical_core.errors import CheckpointError
    from optical_core.store.checkpoints import MANIFEST_MAX_BYTES, load_checkpoint, read_manifest, save_checkpoint

    with pytest.raises(CheckpointError) as err:
        read_manifest(tmp_path)
    assert str(err.value) == f"{tmp_path}: manifest.json is missing (not an optical checkpoint, or never finished)"
    text = _manifest("m").to_json()
    (tmp_path / "manifest.json").write_text(text + " " * (MANIFEST_MAX_BYTES - len(text.encode())))
    assert read_manifest(tmp_path).name == "m"  # exactly the limit is allowed, one byte more is not
    with open(tmp_path / "manifest.json", "a") as f:
        f.write(" ")
    with pytest.raises(CheckpointError, match=f"{MANIFEST_MAX_BYTES + 1} bytes, more than a manifest ever holds"):
        read_manifest(tmp_path)
    encoder = _tiny_encoder(tmp_path, 1)
    encoder.projection = torch.nn.Linear(8, 4)
    target = save_checkpoint(tmp_path / "ck", encoder, _manifest("p"))
    (target / "projection.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(target)
    assert str(err.value).startswith(f"{target / 'projection.safetensors'}: unreadable projection (")


def test_padding_costs_become_each_pairs_largest_real_cost():
    from optical_core.distil.ot import neutralise_padding_costs

    C = T([[[1.0, -50.0], [2.0, 9.0]], [[5.0, 7.0], [6.0, 3.0]]])
    a = T([[1.0, 0.0], [0.5, 0.5]])  # pair 0: the second student token is padding
    b = T([[0.5, 0.5], [1.0, 0.0]])  # pair 1: the second teacher token is padding
    assert torch.equal(neutralise_padding_costs(C, a, b), T([[[1.0, -50.0], [1.0, 1.0]], [[5.0, 6.0], [6.0, 6.0]]]))


def test_curve_evaluator_uses_the_dev_collection_and_copes_without_one(tmp_path, data_dir, monkeypatch):
    from optical_core.data.dev import dev_collection
    from optical_core.errors import DataError
    from optical_core.evaluate import evaluator as curves
    from optical_core.settings import EvalPlan

    teacher = _tiny_encoder(tmp_path, 1)
    evaluator = curves.RunEvaluator(teacher, "hau", EvalPlan(tasks=("dev",), task="dev"), record_plans=False)
    assert evaluator.collections["dev"].queries == dev_collection("hau").queries
    assert evaluator.plan.precision == "float32"

    def no_dev(lang, *args, **kwargs):
        raise DataError(f"no dev split for {lang}")

    monkeypatch.setattr(curves, "dev_collection", no_dev)
    without = curves.RunEvaluator(teacher, "hau", EvalPlan())
    assert without.alignment_pairs is None
    assert all(math.isnan(v) for v in without.diagnose(_tiny_encoder(tmp_path, 2), Objective(LossConfig()), 8).values())


def test_an_unreadable_manifest_says_why(tmp_path):
    from optical_core.errors import CheckpointError
    from optical_core.store.checkpoints import read_manifest

    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError) as err:
        read_manifest(tmp_path)
    assert str(err.value) == (f"{tmp_path / 'manifest.json'}: not valid JSON (JSONDecodeError: Expecting property name "
                              "enclosed in double quotes: line 1 column 2 (char 1))")


def test_ot_loss_relative_epsilon_and_plan_gradient_reach_the_solver():
    from optical_core.distil.ot import transport_plan

    g = torch.Generator().manual_seed(7)
    s, t = torch.randn(2, 3, 4, generator=g) + 1, torch.randn(2, 4, 4, generator=g) + 1  # related: costs < 1
    ms, mt = T([[1, 1, 1], [1, 1, 0]]), T([[1, 1, 1, 1], [1, 1, 1, 0]])
    config = LossConfig(method="ot", reg=0.1, reg_scale="relative", sinkhorn_iters=200)
    out = OTLoss(config)(s, ms, t, mt)
    C, a, b = cost_matrix(s, t, "cosine"), marginals(ms), marginals(mt)
    median = median_real_cost(C, a, b)
    assert 0 < median < 1  # cosine costs: the 1e-6 floor must not lift epsilon here
    expected = transport_plan(C, a, b, 0.1 * median, 200, config.sinkhorn_tol)
    assert torch.allclose(out.plan, expected, atol=1e-6)
    # autodiff: the loss's gradient also flows through the plan, so it differs from the envelope gradient
    grads = {}
    for mode in ("detach", "autodiff"):
        x = s.clone().requires_grad_(True)
        OTLoss(LossConfig(method="ot", reg=0.1, plan_gradient=mode, sinkhorn_iters=20))(x, ms, t, mt).loss.backward()
        grads[mode] = x.grad
    assert not torch.allclose(grads["detach"], grads["autodiff"], atol=1e-6)


def test_sinkhorn_divergence_output_carries_the_cross_plan_and_its_inputs():
    from optical_core.distil.ot import transport_plan

    g = torch.Generator().manual_seed(8)
    s, t = torch.randn(1, 3, 4, generator=g), torch.randn(1, 2, 4, generator=g)
    m1, m2 = T([[1, 1, 1]]), T([[1, 1]])
    config = LossConfig(method="ot", ot_form="sinkhorn_divergence", reg=0.1, sinkhorn_iters=200)
    out = OTLoss(config)(s, m1, t, m2)
    C = cost_matrix(s, t, "cosine")
    assert torch.equal(out.cost, C) and torch.equal(out.a, marginals(m1)) and torch.equal(out.b, marginals(m2))
    assert torch.allclose(out.plan, transport_plan(C, out.a, out.b, 0.1, 200, config.sinkhorn_tol), atol=1e-6)


def test_trimming_needs_a_fast_tokenizer():
    from types import SimpleNamespace

    from optical_core.models.vocab import trim_vocabulary

    for tokenizer in (object(), SimpleNamespace(is_fast=False)):  # no attribute at all, or a slow tokenizer
        with pytest.raises(ValueError, match=r"^vocabulary trimming needs a fast \(tokenizer.json\) tokenizer$"):
            trim_vocabulary(None, tokenizer, ["text"])


# ---- the OT solver's arguments, its choice of path and the scaling path's per-pair shift ---------------

def _uniform(B, n):
    return torch.full((B, n), 1.0 / n)


def test_transport_plan_rejects_bad_arguments_with_their_values():
    from optical_core.distil.ot import transport_plan

    C, a = torch.zeros(1, 2, 2), _uniform(1, 2)
    with pytest.raises(ValueError, match=r"^unknown plan_gradient 'exact'; choose one of \('detach', 'autodiff'\)$"):
        transport_plan(C, a, a, reg=0.1, max_iter=10, tol=1e-5, plan_gradient="exact")
    with pytest.raises(ValueError, match=r"^entropic regularisation must be > 0, got 0$"):
        transport_plan(C, a, a, reg=0, max_iter=10, tol=1e-5)
    with pytest.raises(ValueError, match=r"^max_iter must be >= 1, got 0$"):
        transport_plan(C, a, a, reg=0.1, max_iter=0, tol=1e-5)
    no_mass = r"^a sequence has no token with positive mass \(all padding or zero weights\)$"
    with pytest.raises(ValueError, match=no_mass):
        marginals(T([[1.0, 1.0], [0.0, 0.0]]))


def test_one_sinkhorn_iteration_already_meets_the_column_marginals():
    """After each Sinkhorn-Knopp iteration the plan's columns sum to b exactly (rows not yet): max_iter=1 is
    legal, and the re-gauging of alpha and beta must leave the plan unchanged."""
    from optical_core.distil.ot import transport_plan

    C = T([[[0.0, 1.0, 0.5], [1.0, 0.0, 0.2]]])
    a, b = T([[0.3, 0.7]]), T([[0.2, 0.3, 0.5]])
    P = transport_plan(C, a, b, reg=0.5, max_iter=1, tol=1e-9)
    torch.testing.assert_close(P.sum(1), b, atol=1e-6, rtol=0)
    assert (P.sum(2) - a).abs().max() > 1e-3  # one iteration is not converged: the rows are still off


def test_scaling_path_shifts_each_pair_by_its_own_minimum_cost():
    """Two pairs with the same shape of costs, ten units apart: each pair's range is 1 (scaling path at reg 0.05),
    and each gets the plan it gets alone. A shift by the batch's minimum would underflow the second pair."""
    import ot as pot

    from optical_core.distil.ot import choose_solver, transport_plan

    base = T([[0.0, 1.0, 0.5], [1.0, 0.0, 0.2]])
    C = torch.stack([base, base + 10.0])
    a, b = _uniform(2, 2), _uniform(2, 3)
    assert choose_solver(C, 0.05) == "scaling"
    P = transport_plan(C, a, b, reg=0.05, max_iter=2000, tol=1e-9)
    expected = torch.from_numpy(pot.sinkhorn(a[0].double().numpy(), b[0].double().numpy(), base.double().numpy(),
                                             0.05, stopThr=1e-12, numItermax=10_000)).float()
    torch.testing.assert_close(P[0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(P[1], expected, atol=1e-5, rtol=0)  # a constant shift of C leaves the plan as it is


def test_choose_solver_measures_each_pairs_own_range_inclusively():
    from optical_core.distil.ot import SCALING_MAX_RANGE, choose_solver

    low, high = T([[0.0, 1.0]]), T([[10.0, 11.0]])
    C = torch.stack([low, high])  # per-pair range 1; the batch's overall range would be 11
    assert choose_solver(C, reg=1.0 / SCALING_MAX_RANGE) == "scaling"  # range / reg == 50 exactly: still scaling
    assert choose_solver(C, reg=0.99 / SCALING_MAX_RANGE) == "log"


def test_transport_plan_takes_the_path_choose_solver_names(monkeypatch):
    """Narrow costs with a constant plan go to the scaling path; autodiff, and ranges too wide, go to POT's
    log-domain solver (the scaling path is ~6x faster, the log path the only one that differentiates)."""
    from optical_core.distil import ot as solver

    calls = []
    for name in ("scaling_sinkhorn", "log_sinkhorn"):
        original = getattr(solver, name)
        monkeypatch.setattr(solver, name, lambda *args, _f=original, _n=name, **kw: calls.append(_n) or _f(*args, **kw))
    C, a, b = T([[[0.0, 1.0], [1.0, 0.0]]]), _uniform(1, 2), _uniform(1, 2)
    solver.transport_plan(C, a, b, reg=0.1, max_iter=50, tol=1e-6)
    solver.transport_plan(C, a, b, reg=0.1, max_iter=50, tol=1e-6, plan_gradient="autodiff")
    solver.transport_plan(C * 100, a, b, reg=0.1, max_iter=50, tol=1e-6)
    # a wild cost on a padded token makes the range look wide; once padding is neutralised the pair is narrow
    padded = T([[[0.0, -1e6], [1.0, 0.5]]])  # the teacher's second token is padding
    solver.transport_plan(padded, a, T([[1.0, 0.0]]), reg=0.1, max_iter=50, tol=1e-6)
    assert calls == ["scaling_sinkhorn", "log_sinkhorn", "log_sinkhorn", "scaling_sinkhorn"]


def test_a_non_finite_plan_is_an_error_that_names_reg():
    from optical_core.distil.ot import transport_plan

    C = T([[[0.0, float("nan")], [1.0, 0.0]]])
    message = r"^Sinkhorn returned a non-finite plan \(reg=0.1\); raise reg or max_iter$"
    with pytest.raises(FloatingPointError, match=message):
        transport_plan(C, _uniform(1, 2), _uniform(1, 2), reg=0.1, max_iter=20, tol=1e-6)


def test_scaling_path_stops_on_the_worst_pair_not_the_batchs_total_error():
    """The stop rule is per pair (max over pairs of each pair's L2 row error < tol): a batch of identical
    pairs stops at the same iteration as one of them alone and returns bit-for-bit the same plan."""
    from optical_core.distil.ot import transport_plan

    C = T([[[0.0, 1.0, 0.5], [1.0, 0.0, 0.2], [0.3, 0.6, 0.0]]])
    a, b = T([[0.2, 0.3, 0.5]]), _uniform(1, 3)
    alone = transport_plan(C, a, b, reg=0.1, max_iter=500, tol=1e-2)
    batch = transport_plan(C.repeat(8, 1, 1), a.repeat(8, 1), b.repeat(8, 1), reg=0.1, max_iter=500, tol=1e-2)
    more = transport_plan(C, a, b, reg=0.1, max_iter=500, tol=1e-2 / math.sqrt(8))
    assert not torch.equal(alone, more)  # the tolerance matters here: a total error would stop later
    for plan in batch:
        torch.testing.assert_close(plan, alone[0], atol=0, rtol=0)


def test_log_path_uses_pots_log_domain_sinkhorn_with_the_iteration_budget(monkeypatch):
    import ot as pot

    from optical_core.distil.ot import log_sinkhorn

    C = T([[[0.0, 1.0], [1.0, 0.0]]])
    a = _uniform(1, 2)
    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    original = pot.batch.solve_batch
    monkeypatch.setattr(pot.batch, "solve_batch", spy)
    log_sinkhorn(C, a, a, reg=0.1, max_iter=7, tol=1e-6, plan_gradient="autodiff")
    assert (seen["method"], seen["max_iter"], seen["grad"], seen["reg"], seen["tol"]) == (
        "log_sinkhorn", 7, "autodiff", 0.1, 1e-6)


def test_an_early_stop_of_the_log_solver_is_silent():
    """A fixed iteration budget is by design; POT's 'did not converge' warning is filtered, nothing else is."""
    import warnings

    from optical_core.distil.ot import log_sinkhorn

    C = T([[[0.0, 1.0, 0.5], [1.0, 0.0, 0.2]]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_sinkhorn(C, _uniform(1, 2), _uniform(1, 3), reg=0.01, max_iter=1, tol=1e-12)
        warnings.warn("an unrelated warning")
    assert [str(w.message) for w in caught] == ["an unrelated warning"]


# ---- vocabulary trimming when specials sit after dropped pieces; what the trimmed tokenizer is loaded from ------

def _specials_last_tokenizer(post):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["the", "cat", "dog", "sat", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece({p: i for i, p in enumerate(vocab)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    bert = processors.BertProcessing(("[SEP]", 7), ("[CLS]", 6))
    backend.post_processor = bert if post == "bert" else processors.Sequence([bert])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


@pytest.mark.parametrize("post", ["bert", "sequence"])
def test_trimming_moves_specials_that_sit_after_dropped_pieces(post):
    """Specials after the dropped "dog" and "sat" move down by two: the vocabulary, the added tokens, the
    post-processor's [CLS]/[SEP] (plain or inside a Sequence) and the model's pad id must all follow."""
    from transformers import BertConfig, BertModel

    from optical_core.models.vocab import trim_vocabulary

    tokenizer = _specials_last_tokenizer(post)
    assert tokenizer("the cat")["input_ids"] == [6, 0, 1, 7]
    backbone = BertModel(BertConfig(vocab_size=9, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=16, pad_token_id=4))
    backbone, trimmed, kept = trim_vocabulary(backbone, tokenizer, ["the cat"])
    assert kept == [0, 1, 4, 5, 6, 7, 8] and len(trimmed) == 7
    assert trimmed("the cat")["input_ids"] == [4, 0, 1, 5]  # [CLS] the cat [SEP]
    assert trimmed("the [SEP] dog")["input_ids"] == [4, 0, 5, 3, 5]  # a literal special, and dog -> [UNK]
    added = json.loads(trimmed.backend_tokenizer.to_str())["added_tokens"]
    assert [(t["content"], t["id"]) for t in added] == [("[PAD]", 2), ("[UNK]", 3), ("[CLS]", 4), ("[SEP]", 5),
                                                         ("[MASK]", 6)]
    assert trimmed.pad_token_id == 2 and backbone.config.pad_token_id == 2 and backbone.config.vocab_size == 7


def test_trimmed_tokenizer_is_loaded_from_its_own_files_only(tmp_path, monkeypatch):
    """The folder the trimmed tokenizer is read from holds no file of the full vocabulary (a stale
    sentencepiece model or vocab.txt would be picked up by a slow tokenizer, or by a fast one rebuilt from
    the slow files), and for WordPiece a vocab.txt that lists the kept pieces in id order."""
    from transformers import BertTokenizer

    from optical_core.models import vocab as vocab_module

    _, tokenizer, backbone = _tiny_wordpiece(tmp_path)
    stale = ("sentencepiece.bpe.model", "tokenizer.model", "spiece.model")
    save = tokenizer.save_pretrained

    def save_with_stale_files(folder, *args, **kwargs):  # what an XLM-R or T5 tokenizer would also write
        out = save(folder, *args, **kwargs)
        for name in stale:
            (Path(folder) / name).write_text("full vocabulary")
        return out

    seen = {}
    load = vocab_module.AutoTokenizer.from_pretrained

    def spy(folder, *args, **kwargs):
        seen["files"] = sorted(p.name for p in Path(folder).iterdir())
        seen["vocab.txt"] = (Path(folder) / "vocab.txt").read_bytes()
        seen["slow"] = BertTokenizer.from_pretrained(folder)("mat ran")["input_ids"]
        return load(folder, *args, **kwargs)

    tokenizer.save_pretrained = save_with_stale_files
    monkeypatch.setattr(vocab_module.AutoTokenizer, "from_pretrained", spy)
    _, trimmed, kept = vocab_module.trim_vocabulary(backbone, tokenizer, ["mat ran"])
    assert not set(stale) & set(seen["files"]) and "tokenizer.json" in seen["files"]
    assert seen["vocab.txt"] == "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nran\nmat\n".encode("utf-8")
    assert seen["slow"] == trimmed("mat ran")["input_ids"] == [2, 6, 5, 3]


# ---- checkpoints: where the temporary copy lives; the manifest's recursion message ----------------------

def test_checkpoint_is_written_beside_its_target_under_a_recognisable_name(tmp_path, monkeypatch):
    """The copy is written in the target's own folder (a rename there is atomic; across filesystems it is not)
    and named .tmp-<name>-*, the prefix a listing recognises as an abandoned write."""
    from optical_core.store import checkpoints

    folders = []
    write = checkpoints.write_run_records
    monkeypatch.setattr(checkpoints, "write_run_records", lambda folder, *a, **kw: folders.append(folder) or
                        write(folder, *a, **kw))
    target = checkpoints.save_checkpoint(tmp_path / "ckpts", _tiny_encoder(tmp_path, 1), _manifest())
    (tmp,) = folders
    assert tmp.parent == target.parent and tmp.name.startswith(".tmp-ck-") and len(tmp.name) > len(".tmp-ck-")
    assert (target / "model.safetensors").is_file() and not (target / "pytorch_model.bin").exists()


def test_a_manifest_too_deep_to_read_is_a_checkpoint_error(tmp_path, monkeypatch):
    from optical_core.errors import CheckpointError
    from optical_core.store import checkpoints

    (tmp_path / "manifest.json").write_text(_manifest("m").to_json())

    def too_deep(*args, **kwargs):  # what a deeply nested value does to the settings reader
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(checkpoints, "from_mapping", too_deep)
    with pytest.raises(CheckpointError) as err:
        checkpoints.read_manifest(tmp_path)
    assert str(err.value) == f"{tmp_path / 'manifest.json'}: nested too deeply to be a manifest"


def test_trimming_keeps_added_tokens_beyond_the_model_vocabulary():
    """Tokens added on top of a model's vocabulary (ids after it) are kept like specials and renumbered after
    the kept pieces; tokenizer.json is the one record of them (tokenizer_config.json's old ids are dropped)."""
    from transformers import BertConfig, BertModel

    from optical_core.models.vocab import trim_vocabulary

    tokenizer = _specials_last_tokenizer("bert")
    tokenizer.add_tokens(["[NEW]", "[OLD]"])  # ids 9 and 10
    backbone = BertModel(BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=16, pad_token_id=4))
    rows = backbone.get_input_embeddings().weight.detach().clone()
    backbone, trimmed, kept = trim_vocabulary(backbone, tokenizer, ["the [NEW] cat"])  # "[OLD]" unused: kept
    assert kept == [0, 1, 4, 5, 6, 7, 8, 9, 10] and len(trimmed) == 9 == backbone.config.vocab_size
    assert trimmed("the [NEW] cat [OLD] dog")["input_ids"] == [4, 0, 7, 1, 8, 3, 5]
    added = json.loads(trimmed.backend_tokenizer.to_str())["added_tokens"]
    assert [(t["content"], t["id"]) for t in added][-2:] == [("[NEW]", 7), ("[OLD]", 8)]
    assert torch.equal(backbone.get_input_embeddings().weight[7:], rows[9:])


# ---- from the review of the equivalent-mutant list: behaviours that the "equivalent" reasons got wrong ----

def test_sizes_in_the_verdict_are_rounded_from_the_exact_count():
    """1,050,001 parameters is 1.1M (1.050001 rounds up); the tables and the verdict must agree on such sizes."""
    from optical_core.study.analysis import Slope, verdict

    pooled = [Slope("pooled", "abs_diff", 0.01, -0.02, 0.04, 0.5, 4)]
    gains = _gains(["swa"], [1_050_001, 2_350_001], kd_above_floor=False, ot_above_floor=False)
    text = verdict(pooled, gains, "mrr@10", "me5")
    assert text.startswith("Across 2 me5 student sizes (1.1M to 2.4M non-embedding parameters)")
    assert "(sizes 1.1M, 2.4M; " in text


def test_scaling_path_keeps_raw_padding_costs_and_one_gauge_per_pair():
    """The fast path neither rewrites padding costs (its plan after one iteration is scaling_sinkhorn's on the raw
    costs) nor shares a gauge across pairs: a pair whose kernel sums are e^50 apart from its neighbour's would
    underflow under a batch-wide scale."""
    from optical_core.distil.ot import scaling_sinkhorn, transport_plan

    C = T([[[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]])
    a, b = T([[0.5, 0.5]]), T([[0.5, 0.5, 0.0]])  # the third teacher token is padding
    one = transport_plan(C, a, b, reg=0.5, max_iter=1, tol=1e-9)
    torch.testing.assert_close(one, scaling_sinkhorn(C.clone(), a, b, 0.5, 1, 1e-9), atol=0, rtol=0)
    torch.testing.assert_close(one, T([[[0.4074, 0.0373, 0.0], [0.0926, 0.4627, 0.0]]]), atol=1e-4, rtol=0)
    apart = T([[[0.0, 50.0], [0.0, 50.0]], [[0.0, 0.0], [50.0, 50.0]]])
    half = torch.full((2, 2), 0.5)
    plan = transport_plan(apart, half, half, reg=1.0, max_iter=100, tol=1e-5)
    torch.testing.assert_close(plan, torch.full((2, 2, 2), 0.25), atol=1e-6, rtol=0)


def test_mean_pool_keeps_the_dtype_of_the_token_vectors():
    v = torch.tensor([[[1.0, 2.0], [3.0, 5.0], [100.0, 100.0]]], dtype=torch.bfloat16)
    pooled = mean_pool(v, T([[1, 1, 0]]))
    assert pooled.dtype == torch.bfloat16 and pooled.tolist() == [[2.0, 3.5]]


def test_token_idf_copes_with_an_empty_text(tmp_path):
    from optical_core.models.vocab import token_idf

    _, tokenizer, _ = _tiny_wordpiece(tmp_path)
    idf = token_idf(tokenizer, ["", "cat"], 12)
    assert idf[6].item() == pytest.approx(math.log(3 / 2) + 1) and idf[5].item() == pytest.approx(math.log(3) + 1)


def test_significance_computes_in_float64_whatever_the_input_dtype():
    values = np.float32([0.1, 0.2, 0.7])
    assert mean_ci(values)[0] == np.float64(values).mean()  # not float32's 0.33333334
    a, b = np.float32([0.1, 0.2, 0.7]), np.float32([0.0, 0.0, 0.0])
    assert paired_comparison(a, b).difference == np.float64(a).mean()
    assert paired_comparison(b, a).difference == -np.float64(a).mean()
    assert paired_comparison(a, b).mean_a == np.float64(a).mean() == paired_comparison(b, a).mean_b


def test_pure_ot_never_reads_the_kd_target():
    """kd_weight = 0: the KD term is not computed at all, so a broken KD target (NaN) cannot leak in as 0 x NaN."""
    config = LossConfig(method="ot", kd_weight=0.0, reg=0.1, sinkhorn_iters=50)
    s = T([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]], requires_grad=True)
    student = TokenBatch(T([[2, 5, 3]]), T([[1, 1, 1]]), T([[0, 1, 0]]))
    teacher = TeacherBatch(T([[[1.0, 0.0], [0.0, 1.0]]]), T([[True, True]]), T([[5, 6]]), T([[float("nan")] * 2]))
    out = Objective(config)(s, student, teacher)
    assert torch.isfinite(out.loss).all()


def test_teacher_batches_land_on_the_requested_device(tmp_path):
    """Every tensor of a collated batch is moved (checked on the 'meta' device: no GPU needed)."""
    from optical_core.distil.train import teacher_targets
    from optical_core.models.encoders import Encoder

    _, tokenizer, backbone = _tiny_wordpiece(tmp_path)
    targets = teacher_targets(Encoder(backbone, tokenizer), ["the cat sat", "dog"], max_length=8, device="cpu")
    batch = targets.collate([0, 1], "meta")
    assert [t.device.type for t in (batch.tokens, batch.mask, batch.input_ids, batch.embedding)] == ["meta"] * 4


def _save_twice_with(tmp_path, monkeypatch, fake_rename=None, fake_rmtree=None):
    """Save a checkpoint, then save over it with rename/rmtree replaced; returns (root, the error raised or None)."""
    import pathlib
    import shutil

    from optical_core.store import checkpoints

    root = tmp_path / "ckpts"
    checkpoints.save_checkpoint(root, _tiny_encoder(tmp_path, 1), _manifest())
    if fake_rename:
        real = pathlib.Path.rename
        monkeypatch.setattr(pathlib.Path, "rename", lambda self, to: fake_rename(real, self, to))
    if fake_rmtree:
        real_rmtree = shutil.rmtree
        monkeypatch.setattr(checkpoints.shutil, "rmtree",
                            lambda path, ignore_errors=False: fake_rmtree(real_rmtree, path, ignore_errors))
    try:
        checkpoints.save_checkpoint(root, _tiny_encoder(tmp_path, 2), _manifest())
        return root, None
    except BaseException as err:  # noqa: BLE001 - the test inspects what a kill or failure leaves
        return root, err
    finally:
        monkeypatch.undo()


def test_a_kill_between_the_two_renames_is_repaired_by_the_next_listing(tmp_path, monkeypatch):
    from optical_core.store.checkpoints import list_checkpoints

    def kill_on_swap(real, self, to):
        if self.name.startswith(".tmp-"):
            raise KeyboardInterrupt("killed between the renames")
        return real(self, to)

    root, err = _save_twice_with(tmp_path, monkeypatch, fake_rename=kill_on_swap)
    assert isinstance(err, KeyboardInterrupt) and not (root / "ck").exists()
    assert [e.name for e in list_checkpoints(root)] == ["ck"]  # the .old- copy is renamed back
    assert sorted(p.name for p in root.iterdir()) == [".lock", "ck"]


def test_a_kill_before_the_old_copy_is_deleted_leaves_nothing_after_a_listing(tmp_path, monkeypatch):
    from optical_core.store.checkpoints import list_checkpoints

    def kill_on_delete(real, path, ignore_errors):
        if ".deleting-" in str(path):
            raise KeyboardInterrupt("killed before deleting the old copy")
        return real(path, ignore_errors=ignore_errors)

    root, err = _save_twice_with(tmp_path, monkeypatch, fake_rmtree=kill_on_delete)
    assert isinstance(err, KeyboardInterrupt) and any(p.name.startswith(".deleting-ck-") for p in root.iterdir())
    assert [e.name for e in list_checkpoints(root)] == ["ck"]
    assert sorted(p.name for p in root.iterdir()) == [".lock", "ck"]


def test_a_failure_to_delete_the_old_copy_does_not_fail_the_save(tmp_path, monkeypatch):
    def undeletable(real, path, ignore_errors):
        if ".deleting-" in str(path) and not ignore_errors:
            raise PermissionError(f"cannot delete {path}")
        return real(path, ignore_errors=ignore_errors)

    root, err = _save_twice_with(tmp_path, monkeypatch, fake_rmtree=undeletable)
    assert err is None and (root / "ck" / "manifest.json").is_file()


def test_a_failed_swap_reraises_its_own_error(tmp_path, monkeypatch):
    def fail_on_trash(real, self, to):
        if Path(to).name.startswith(".deleting-"):
            raise OSError("boom")
        return real(self, to)

    _, err = _save_twice_with(tmp_path, monkeypatch, fake_rename=fail_on_trash)
    assert type(err) is OSError and str(err) == "boom"  # not the FileNotFoundError of cleaning up a moved copy
