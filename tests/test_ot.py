import warnings

import numpy as np
import ot
import pytest
import torch

from optical_core.distil.losses import OTLoss
from optical_core.distil.ot import (
    PLAN_GRADIENTS,
    SCALING_MAX_RANGE,
    choose_solver,
    cost_matrix,
    log_sinkhorn,
    marginal_error,
    marginals,
    scaling_sinkhorn,
    transport_cost,
    transport_plan,
)
from optical_core.settings import LossConfig


def random_masked_problem(seed, batch=6, n=9, m=7, d=16):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(batch, n, d, generator=g), torch.randn(batch, m, d, generator=g)
    s_len = torch.randint(1, n + 1, (batch,), generator=g)
    t_len = torch.randint(1, m + 1, (batch,), generator=g)
    s_mask = torch.arange(n)[None] < s_len[:, None]
    t_mask = torch.arange(m)[None] < t_len[:, None]
    return s, t, s_mask, t_mask


@pytest.mark.parametrize("seed", range(4))
def test_batched_plan_and_cost_match_pot_per_pair(seed):
    s, t, sm, tm = random_masked_problem(seed)
    C = cost_matrix(s, t, "cosine")
    a, b = marginals(sm), marginals(tm)
    P = transport_plan(C, a, b, reg=0.1, max_iter=2000, tol=1e-9)
    for i in range(len(C)):
        n, m = int(sm[i].sum()), int(tm[i].sum())
        args = (a[i, :n].double().numpy(), b[i, :m].double().numpy(), C[i, :n, :m].double().numpy(), 0.1)
        ref = ot.sinkhorn(*args, method="sinkhorn_log", stopThr=1e-9, numItermax=3000)
        np.testing.assert_allclose(P[i, :n, :m].numpy(), ref, atol=2e-5)
        assert P[i, n:].abs().sum() == 0 and P[i, :, m:].abs().sum() == 0  # padding carries no mass
        ref_cost = float((ref * args[2]).sum())
        assert abs(transport_cost(P, C)[i].item() - ref_cost) < 1e-4


def test_cost_approaches_exact_ot_as_regularisation_shrinks():
    s, t, sm, tm = random_masked_problem(7, batch=1, n=6, m=6)
    C = cost_matrix(s, t, "cosine")
    a, b = marginals(sm), marginals(tm)
    n, m = int(sm.sum()), int(tm.sum())
    exact = ot.emd2(a[0, :n].double().numpy(), b[0, :m].double().numpy(), C[0, :n, :m].double().numpy())
    gaps = [transport_cost(transport_plan(C, a, b, reg=r, max_iter=5000, tol=1e-7), C).item() - exact
            for r in (0.5, 0.1, 0.01)]
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-4
    assert gaps[2] < 0.02


def test_small_regularisation_gives_a_real_plan_not_zeros_or_nan():
    s, t, sm, tm = random_masked_problem(3)
    C = cost_matrix(s, t, "cosine")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numerical warning may escape
        P = transport_plan(C, marginals(sm), marginals(tm), reg=1e-3, max_iter=200, tol=1e-5)
    assert torch.isfinite(P).all()
    np.testing.assert_allclose(P.sum(dim=(1, 2)).numpy(), 1.0, atol=1e-3)
    assert (transport_cost(P, C) > 0).all()


def test_plain_pot_sinkhorn_in_float32_fails_where_ours_does_not():
    # The documented trap (FIELD_NOTES): float32 + small reg + plain Sinkhorn returns a zero plan.
    s, t, sm, tm = random_masked_problem(5, batch=1, n=8, m=8)
    C = cost_matrix(s, t, "cosine")[0]
    a = b = torch.full((8,), 1 / 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ot.sinkhorn(a, b, C, 0.005, method="sinkhorn")
    ours = transport_plan(C[None], a[None], b[None], reg=0.005, max_iter=100, tol=1e-5)
    assert not torch.isfinite(plain).all() or plain.sum() < 0.5
    assert abs(ours.sum().item() - 1) < 1e-3


def test_all_padding_row_is_a_clear_error():
    with pytest.raises(ValueError, match="no token with positive mass"):
        marginals(torch.tensor([[True, True], [False, False]]))


def test_length_one_sequences_transport_all_mass_to_one_token():
    s, t = torch.randn(1, 1, 8), torch.randn(1, 3, 8)
    C = cost_matrix(s, t, "cosine")
    P = transport_plan(C, marginals(torch.ones(1, 1)), marginals(torch.ones(1, 3)), reg=0.05, max_iter=100, tol=1e-5)
    np.testing.assert_allclose(P[0, 0].numpy(), [1 / 3] * 3, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_token_vectors_give_a_finite_float32_loss(dtype):
    s, t, sm, tm = random_masked_problem(1)
    out = OTLoss(LossConfig(method="ot", reg=0.01))(s.to(dtype), sm, t.to(dtype), tm)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss) and out.loss > 0


@pytest.mark.parametrize("plan_gradient", ["detach", "autodiff"])
def test_loss_gradient_reaches_the_student_tokens(plan_gradient):
    s, t, sm, tm = random_masked_problem(2)
    s.requires_grad_(True)
    out = OTLoss(LossConfig(method="ot", plan_gradient=plan_gradient))(s, sm, t, tm)
    out.loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert s.grad[~sm].abs().max() == 0  # padded tokens get no gradient


def test_detached_plan_gradient_equals_the_plan():
    # d<P, C>/dC with P held fixed is P itself (the envelope gradient of entropic OT).
    s, t, sm, tm = random_masked_problem(4)
    C = cost_matrix(s, t, "cosine").requires_grad_(True)
    a, b = marginals(sm), marginals(tm)
    P = transport_plan(C, a, b, reg=0.05, max_iter=100, tol=1e-5)
    transport_cost(P, C).sum().backward()
    assert torch.allclose(C.grad, P, atol=1e-7)


def test_sqeuclidean_cost_matches_pot_dist():
    s, t, _, _ = random_masked_problem(6, batch=1)
    C = cost_matrix(s, t, "sqeuclidean")[0]
    np.testing.assert_allclose(C.numpy(), ot.dist(s[0].numpy(), t[0].numpy()), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("solver", [scaling_sinkhorn, log_sinkhorn])
@pytest.mark.parametrize("seed", range(3))
def test_each_solver_matches_pot_per_pair(solver, seed):
    s, t, sm, tm = random_masked_problem(seed + 10, batch=5, n=11, m=8)
    C = cost_matrix(s, t, "cosine")
    a, b = marginals(sm), marginals(tm)
    P = solver(C, a, b, 0.05, 5000, 1e-7)
    for i in range(len(C)):
        n, m = int(sm[i].sum()), int(tm[i].sum())
        ref = ot.sinkhorn(a[i, :n].double().numpy(), b[i, :m].double().numpy(), C[i, :n, :m].double().numpy(),
                          0.05, method="sinkhorn_log", stopThr=1e-9, numItermax=5000)
        np.testing.assert_allclose(P[i, :n, :m].numpy(), ref, atol=1e-5)
        assert P[i, n:].abs().sum() == 0 and P[i, :, m:].abs().sum() == 0


def test_solver_choice_follows_cost_range_and_gradient_mode():
    s, t, _, _ = random_masked_problem(0)
    cosine = cost_matrix(s, t, "cosine")  # range <= 2
    assert choose_solver(cosine, reg=0.05) == "scaling"
    assert choose_solver(cosine, reg=0.05, plan_gradient="autodiff") == "log"
    assert choose_solver(cosine, reg=0.01) == "log"  # range / reg up to 200
    wide = cost_matrix(s, t, "sqeuclidean")
    assert choose_solver(wide, reg=0.05) == "log"
    assert choose_solver(wide, reg=1.01 * float(wide.max() - wide.min()) / SCALING_MAX_RANGE) == "scaling"


@pytest.mark.parametrize("plan_gradient", PLAN_GRADIENTS)
def test_extreme_costs_on_padding_do_not_change_the_plan(plan_gradient):
    # Unneutralised, a -1e6 cost on padding moved POT's float32 log-domain plan by 0.03.
    s, t, sm, tm = random_masked_problem(8)
    C = cost_matrix(s, t, "cosine")
    a, b = marginals(sm), marginals(tm)
    padded = ~(sm[:, :, None] & tm[:, None, :])
    wild = C.masked_fill(padded, 1e6)
    wild[:, 0, -1] = torch.where(padded[:, 0, -1], -1e6, wild[:, 0, -1])
    assert choose_solver(wild, reg=0.05) == "log" and choose_solver(C, reg=0.05) == "scaling"
    clean = transport_plan(C, a, b, reg=0.05, tol=1e-7, max_iter=2000)
    torch.testing.assert_close(transport_plan(wild, a, b, reg=0.05, tol=1e-7, max_iter=2000,
                                              plan_gradient=plan_gradient),
                               clean, atol=1e-6, rtol=0)


@pytest.mark.parametrize("reg", [0.05, 0.02])  # one per solver
def test_plan_meets_the_tolerance_it_was_given(reg):
    s, t, sm, tm = random_masked_problem(9, batch=16, n=20, m=20)
    C = cost_matrix(s, t, "cosine")
    a, b = marginals(sm), marginals(tm)
    loose, tight = transport_plan(C, a, b, reg, 5000, 1e-2), transport_plan(C, a, b, reg, 5000, 1e-5)
    assert choose_solver(C, reg) == ("scaling" if reg == 0.05 else "log")
    assert marginal_error(tight, a, b) < 1e-5 < marginal_error(loose, a, b) < 1e-2


def test_zero_iterations_is_refused():
    with pytest.raises(ValueError, match="max_iter"):
        half = torch.full((1, 2), 0.5)
        transport_plan(torch.zeros(1, 2, 2), half, half, reg=0.05, max_iter=0, tol=1e-5)


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_reading_convergence_every_k_iterations_returns_the_same_plan_bit_for_bit(tol):
    """On an accelerator the host reads the convergence flag every CHECK_EVERY iterations; the scalings freeze on
    the device at the first converged iteration, so the plan is the every-iteration plan exactly, whatever k."""
    s, t, sm, tm = random_masked_problem(11, batch=8, n=12, m=10)
    C = cost_matrix(s, t, "cosine")
    a, b = marginals(sm), marginals(tm)
    every = scaling_sinkhorn(C.clone(), a, b, 0.05, 500, tol, check_every=1)
    for k in (2, 7, 10, 1000):
        torch.testing.assert_close(scaling_sinkhorn(C.clone(), a, b, 0.05, 500, tol, check_every=k), every,
                                   atol=0, rtol=0)
    assert not torch.equal(scaling_sinkhorn(C.clone(), a, b, 0.05, 3, tol, check_every=1), every)  # it did iterate
