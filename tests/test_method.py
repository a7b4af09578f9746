"""The study's method: closed-form heads, OT variants against POT, collapse and alignment measures, the
dev collection and the learning-curve schedule."""

import numpy as np
import ot
import pytest
import torch

from optical_core.data.bitext import normalise, training_bitext
from optical_core.data.clir import heldout_texts
from optical_core.data.dev import dev_collection
from optical_core.distil.alignment import identical_token_share
from optical_core.distil.losses import OTLoss
from optical_core.distil.ot import (cost_matrix, entropic_ot_value, marginals, median_real_cost, plan_sharpness,
                                    transport_plan)
from optical_core.evaluate.evaluator import mean_pairwise_cosine
from optical_core.models.heads import procrustes_head, ridge_head
from optical_core.settings import Budget, EvalPlan, LossConfig


def test_ridge_head_recovers_a_linear_map_and_centres_with_the_bias():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(500, 8, generator=g) + 3.0  # far from the origin: the bias must be fitted from the means
    W, c = torch.randn(8, 5, generator=g), torch.randn(5, generator=g)
    weight, bias = ridge_head(X, X @ W + c, shrinkage=1e-6)
    torch.testing.assert_close(weight, W.T, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bias, c, atol=1e-3, rtol=1e-3)
    shrunk, _ = ridge_head(X, X @ W + c, shrinkage=10.0)  # heavy shrinkage pulls the map towards zero
    assert shrunk.norm() < 0.5 * weight.norm()


def test_procrustes_head_recovers_a_scaled_rotation():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(300, 6, generator=g)
    R, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    weight, bias = procrustes_head(X, 2.5 * X @ R + 1.0)
    torch.testing.assert_close(weight, 2.5 * R.T, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bias, torch.ones(6), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="equal widths"):
        procrustes_head(X, torch.randn(300, 4))


def _problem(seed=0, n=7, m=9, d=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, n, d, generator=g), torch.randn(1, m, d, generator=g)


@pytest.mark.parametrize("reg", [0.05, 0.5])
def test_entropic_value_matches_pot(reg):
    s, t = _problem()
    C = cost_matrix(s, t, "cosine")
    a, b = marginals(torch.ones(1, 7)), marginals(torch.ones(1, 9))
    P = transport_plan(C, a, b, reg, 5000, 1e-9)
    ours = entropic_ot_value(P, C, a, b, reg).item()
    pot = ot.solve(C[0].double(), a[0].double(), b[0].double(), reg=reg, max_iter=5000, tol=1e-12).value.item()
    assert abs(ours - pot) < 1e-5, (ours, pot)


def test_sinkhorn_divergence_matches_pot_and_vanishes_for_a_perfect_student():
    s, t = _problem(seed=2)
    reg = 0.1
    config = LossConfig(method="ot", ot_form="sinkhorn_divergence", reg=reg, sinkhorn_iters=5000, sinkhorn_tol=1e-9)
    mask_s, mask_t = torch.ones(1, 7, dtype=torch.bool), torch.ones(1, 9, dtype=torch.bool)
    ours = OTLoss(config)(s, mask_s, t, mask_t).loss.item()
    a, b = np.full(7, 1 / 7), np.full(9, 1 / 9)

    def value(x, y, wx, wy):
        M = cost_matrix(x, y, "cosine")[0].double()
        return ot.solve(M, torch.from_numpy(wx), torch.from_numpy(wy), reg=reg, max_iter=5000, tol=1e-12).value.item()

    pot = value(s, t, a, b) - value(s, s, a, a) / 2 - value(t, t, b, b) / 2
    assert abs(ours - pot) < 1e-5, (ours, pot)
    assert ours > 0
    copy = OTLoss(config)(t, mask_t, t, mask_t).loss.item()
    assert abs(copy) < 1e-5
    # The plain transport cost of a perfect copy is not zero (the entropic plan blurs): the divergence is.
    plain = OTLoss(LossConfig(method="ot", reg=reg, sinkhorn_iters=5000, sinkhorn_tol=1e-9))(t, mask_t, t, mask_t)
    assert plain.loss.item() > 1e-3 and plain.loss.item() > 100 * abs(copy)


def test_sinkhorn_divergence_penalises_a_collapsed_student_more_than_plain_ot_does():
    """Every student token the mean teacher direction: plain <P, C> rates it better than random tokens; the
    divergence does not reward it over a perfect copy by the same margin it rewards it over random tokens."""
    s, t = _problem(seed=3, n=9, m=9)
    mask = torch.ones(1, 9, dtype=torch.bool)
    collapsed = t.mean(1, keepdim=True).expand(1, 9, 16)
    for form in ("transport_cost", "sinkhorn_divergence"):
        loss = OTLoss(LossConfig(method="ot", ot_form=form, reg=0.05, sinkhorn_iters=2000, sinkhorn_tol=1e-8))
        random_tokens, constant, copy = (loss(x, mask, t, mask).loss.item() for x in (s, collapsed, t))
        assert copy < constant < random_tokens, (form, copy, constant, random_tokens)
        if form == "sinkhorn_divergence":
            assert abs(copy) < 1e-4


def test_relative_epsilon_scales_with_the_cost():
    s, t = _problem(seed=4)
    C = cost_matrix(s, t, "sqeuclidean")
    a, b = marginals(torch.ones(1, 7)), marginals(torch.ones(1, 9))
    assert median_real_cost(C, a, b) == pytest.approx(C.flatten().median().item())
    padded_a = torch.cat([a, torch.zeros(1, 3)], 1)
    padded_C = torch.cat([C, torch.full((1, 3, 9), 1e6)], 1)  # padding rows never count
    assert median_real_cost(padded_C, padded_a, b) == pytest.approx(median_real_cost(C, a, b))
    scaled = OTLoss(LossConfig(method="ot", cost="sqeuclidean", reg=0.05, reg_scale="relative"))
    out, out_x10 = scaled(s, torch.ones(1, 7), t, torch.ones(1, 9)), scaled(10 * s, torch.ones(1, 7), 10 * t,
                                                                             torch.ones(1, 9))
    torch.testing.assert_close(out.plan, out_x10.plan, atol=1e-5, rtol=1e-4)  # same plan at 100x the costs


def test_plan_sharpness_is_zero_for_the_independent_plan_and_one_for_a_permutation():
    a = b = marginals(torch.ones(1, 5))
    independent = a[:, :, None] * b[:, None, :]
    permutation = torch.eye(5)[None] / 5
    assert plan_sharpness(independent, a, b).item() == pytest.approx(0.0, abs=1e-6)
    assert plan_sharpness(permutation, a, b).item() == pytest.approx(1.0, abs=1e-6)


def test_identical_token_share_by_hand():
    plan = np.array([[0.2, 0.1, 0.0],
                     [0.05, 0.05, 0.2],
                     [0.1, 0.1, 0.2]])
    lr = ["▁Nairobi", "▁2019", "▁ya"]
    en = ["nairobi", "in", "2019"]
    share, chance, n = identical_token_share(plan, lr, en)
    # Nairobi: 0.2 of its 0.3 on 'nairobi'; 2019: 0.2 of its 0.3 on '2019'; 'ya' has no counterpart
    assert n == 2 and share == pytest.approx(2 / 3)
    # the independent plan puts column mass 0.35 on 'nairobi' and 0.4 on '2019'
    assert chance == pytest.approx((0.35 + 0.4) / 2)


def test_mean_pairwise_cosine_by_hand():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert mean_pairwise_cosine(e) == pytest.approx(1 / 3)  # pairs: 0, 1, 0
    assert mean_pairwise_cosine(torch.ones(4, 2) / 2**0.5) == pytest.approx(1.0)


@pytest.mark.parametrize("lang", ["swa", "hau"])
def test_dev_collection_is_disjoint_from_training_and_test(lang):
    dev = dev_collection(lang)
    train, _ = training_bitext(lang, None)
    seen = {normalise(x) for x in train.source + train.target}
    test = {normalise(x) for x in heldout_texts(lang)}
    texts = [normalise(x) for x in list(dev.queries.values()) + list(dev.documents.values())]
    assert not (set(texts) & seen) and not (set(texts) & test)
    assert len(dev.queries) == 500 and all(len(r) == 1 for r in dev.qrels.values())
    assert all(dev.documents[next(iter(dev.qrels[q]))] == dev.query_translations[q] for q in dev.queries)


def test_dev_collection_refuses_a_language_whose_dev_split_is_training_data():
    with pytest.raises(ValueError, match="no train split"):
        dev_collection("amh")


def test_learning_curve_steps_end_at_the_last_step():
    plan = EvalPlan(steps=(0, 25, 50, 100, 200, 400))
    assert plan.steps_for(130) == (0, 25, 50, 100, 130)
    assert plan.steps_for(400) == (0, 25, 50, 100, 200, 400)
    assert EvalPlan(steps=()).steps_for(7) == (7,)
    assert EvalPlan(steps=(0,), every=100).steps_for(350) == (0, 100, 200, 300, 350)
    assert Budget(n_pairs=2000, batch_size=32, epochs=7, max_steps=400).steps_for(1990) == 400
    assert Budget(n_pairs=2000, batch_size=32, epochs=1).steps_for(100) == 4


def test_trimmed_vocabulary_covers_the_dev_collection():
    """Dev queries must encode as with the full vocabulary, or choices made on dev see <unk>s."""
    from optical_core.distil.train import study_vocabulary_texts

    bitext, _ = training_bitext("swa", 64)
    texts = study_vocabulary_texts(bitext, "swa")
    dev = list(dev_collection("swa").queries.values())
    assert set(dev) <= set(texts)
    assert len(study_vocabulary_texts(training_bitext("amh", 64)[0], "amh")) > 0  # no dev split: no error
