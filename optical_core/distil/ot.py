"""Entropic optimal transport between token sets, batched, with zero-mass padding.

Notation follows POT: a, b are marginals (token weights), M / C the cost matrix, reg the entropic
epsilon. One call solves a whole batch of different-length sentence pairs on the device the tensors
live on; padded tokens get zero mass. Two solvers, chosen per batch:

- Scaling-domain Sinkhorn-Knopp on a shifted kernel, the fast path: two batched vector-matrix
  products per iteration. It is exact to float32 rounding only while every pair's cost range spans at
  most `SCALING_MAX_RANGE` multiples of reg (cosine costs lie in [0, 2], so reg >= 0.04 always
  qualifies); beyond that, kernel entries that matter would underflow, the trap that makes plain
  Sinkhorn return a zero plan in float32 (../shared/FIELD_NOTES.md).
- POT's batched log-domain Sinkhorn (`ot.batch.solve_batch`, Schmitzer 2019 stabilisation) for wider
  ranges and for differentiating through the iterations. It is ~6x slower at batch 32 x 32 tokens on
  CPU (benchmarks/run.py), which is why it is not the only path.

On an accelerator, reading a value back makes the host wait for every kernel queued before it, and a
training step that waits mid-way leaves the device idle while the host queues the rest. So the fast path
reads its convergence flag every CHECK_EVERY iterations (on the CPU, where a read is free, every one), and
checks that need a tensor's values (a massless sequence, a non-finite plan) raise only on the CPU; on an
accelerator the same fault makes <P, C> non-finite, which the training loop reports (NonFiniteLoss).
"""

from __future__ import annotations

import math

import ot.batch
import torch
import torch.nn.functional as F

from optical_core.settings import COSTS, PLAN_GRADIENTS

# Largest per-pair (max - min cost) / reg the scaling path accepts. With the kernel shifted so its
# largest entry is 1, every kernel entry is >= exp(-50) and every product that moves a marginal by more
# than float32 rounding stays a normal float (>= exp(-50 - 17 - log n^2)); exp(-87) is the limit.
SCALING_MAX_RANGE = 50.0
# Sinkhorn iterations between two reads of the convergence flag on an accelerator. The plan does not depend on
# it: the scalings freeze on the device at the first converged iteration (`scaling_sinkhorn`).
CHECK_EVERY = 10


def read_is_free(tensor: torch.Tensor) -> bool:
    """Reading `tensor`'s values on the host costs no device synchronisation (it lives in host memory)."""
    return tensor.device.type == "cpu"


def cost_matrix(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """C[b, i, j] = distance(student token i, teacher token j), shape [B, n, m], in float32.

    cosine: 1 - <s_i/|s_i|, t_j/|t_j|> in [0, 2] (the token vectors are normalised, not the similarity
    matrix). sqeuclidean: |s_i - t_j|^2.
    """
    s, t = student_tokens.float(), teacher_tokens.float()
    if kind == "cosine":
        return 1.0 - F.normalize(s, dim=-1) @ F.normalize(t, dim=-1).transpose(1, 2)
    if kind == "sqeuclidean":
        return torch.cdist(s, t).pow(2)
    raise ValueError(f"unknown cost '{kind}'; choose one of {COSTS}")


def marginals(mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Token masses: `weights` (default uniform) on unmasked tokens, zero on padding, each row summing to 1."""
    mass = mask.float() if weights is None else weights.float().clamp(min=0) * mask.float()
    total = mass.sum(-1, keepdim=True)
    if read_is_free(total) and (total <= 0).any():  # elsewhere the row's 0 / 0 makes the loss NaN
        raise ValueError("a sequence has no token with positive mass (all padding or zero weights)")
    return mass / total


def choose_solver(C: torch.Tensor, reg: float, plan_gradient: str = "detach") -> str:
    """"scaling" when the plan is a constant and every pair's cost range is within SCALING_MAX_RANGE * reg,
    "log" (POT) otherwise. The range is taken over all entries, padding included: conservative, and two
    reductions instead of masked ones (this runs every training step)."""
    if plan_gradient != "detach":
        return "log"
    C = C.detach().float()
    spread = (C.amax(dim=(1, 2)) - C.amin(dim=(1, 2))).max().item()
    return "scaling" if spread / reg <= SCALING_MAX_RANGE else "log"


def transport_plan(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, reg: float, max_iter: int, tol: float,
                   plan_gradient: str = "detach") -> torch.Tensor:
    """Entropic OT plan P [B, n, m] with P 1 = a, P^T 1 = b (rows/cols of zero mass get zero plan).

    Stops when every pair's row-marginal violation (L2, as POT measures it) is below `tol`, or after
    `max_iter` iterations. plan_gradient="detach": P is a constant (gradient of <P, C> w.r.t. C is P,
    the envelope gradient); "autodiff": differentiate through every Sinkhorn iteration.
    """
    if plan_gradient not in PLAN_GRADIENTS:
        raise ValueError(f"unknown plan_gradient '{plan_gradient}'; choose one of {PLAN_GRADIENTS}")
    if reg <= 0:
        raise ValueError(f"entropic regularisation must be > 0, got {reg}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    a, b = a.float(), b.float()
    C = C.float() if plan_gradient == "autodiff" else C.detach().float()
    solver = choose_solver(C, reg, plan_gradient)
    if solver == "log":  # the slow path anyway: worth making padding harmless first
        C = neutralise_padding_costs(C, a, b)
        solver = choose_solver(C, reg, plan_gradient)
    if solver == "scaling":
        plan = scaling_sinkhorn(C, a, b, reg, max_iter, tol)
    else:
        plan = log_sinkhorn(C, a, b, reg, max_iter, tol, plan_gradient)
    # a sum is ~7x cheaper than isfinite(plan).all() and as telling; on an accelerator <P, C> tells instead
    if read_is_free(plan) and not torch.isfinite(plan.sum()):
        raise FloatingPointError(f"Sinkhorn returned a non-finite plan (reg={reg}); raise reg or max_iter")
    return plan


def neutralise_padding_costs(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Costs where a row or column has zero mass, set to the pair's largest real cost.

    They never carry plan mass, but they do enter the first iteration: a very negative one there pushes
    float32 log potentials to ~1e7, where rounding alone moves the plan by ~3% (measured), and any
    outlier makes the cost range look wider than it is.
    """
    real = (a[:, :, None] > 0) & (b[:, None, :] > 0)
    largest = C.masked_fill(~real, -math.inf).amax(dim=(1, 2), keepdim=True)
    return torch.where(real, C, largest)


def scaling_sinkhorn(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, reg: float, max_iter: int,
                     tol: float, check_every: int | None = None) -> torch.Tensor:
    """Sinkhorn-Knopp (Cuturi 2013) with P = diag(alpha) K diag(beta), K = exp((min C - C) / reg).

    Needs cost ranges within SCALING_MAX_RANGE * reg (see `choose_solver`). Vectors are kept as [B, 1, n]
    rows: a batched row-vector x matrix product is ~4x cheaper on CPU than matrix x column-vector, and
    it reads the transposed kernel as a strided view without a copy.

    Convergence is tested on the device at every iteration and read by the host every `check_every`
    iterations (default: 1 on the CPU, CHECK_EVERY elsewhere). Once converged, alpha and beta stay as they
    were at that iteration, so the plan is bit for bit the one an every-iteration check returns.
    """
    check_every = check_every or (1 if read_is_free(C) else CHECK_EVERY)
    kernel = (C.amin(dim=(1, 2), keepdim=True) - C).div_(reg).exp_()  # largest entry 1 in every pair
    kernel_t = kernel.transpose(1, 2)
    a_row, b_row = a[:, None, :], b[:, None, :]
    alpha, beta = None, torch.ones_like(b_row)
    converged = torch.zeros((), dtype=torch.bool, device=C.device)
    for iteration in range(max_iter):
        row_mass = torch.bmm(beta, kernel_t)  # (K beta)_i; alpha * row_mass is the plan's row marginal
        if alpha is not None:
            converged |= (alpha * row_mass - a_row).norm(dim=2).max() < tol
            if iteration % check_every == 0 and converged:  # the only read: every check_every iterations
                break
        new_alpha = a_row / row_mass
        new_beta = b_row / torch.bmm(new_alpha, kernel)
        # Re-gauge so max(beta) = 1: keeps K beta >= exp(-range / reg) without changing the plan.
        scale = new_beta.amax(2, keepdim=True)
        new_beta, new_alpha = new_beta / scale, new_alpha * scale
        alpha = new_alpha if alpha is None else torch.where(converged, alpha, new_alpha)
        beta = torch.where(converged, beta, new_beta)
    return kernel.mul_(alpha.transpose(1, 2)).mul_(beta)  # in place: the kernel is not needed any more


def log_sinkhorn(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, reg: float, max_iter: int, tol: float,
                 plan_gradient: str = "detach") -> torch.Tensor:
    """POT's batched log-domain Sinkhorn: any cost range, float32-safe at small reg, differentiable.

    A stop at max_iter is by design (a fixed budget) and POT's batched solver does not warn about it; the
    marginal error is reported by the caller."""
    return ot.batch.solve_batch(C, reg=reg, a=a, b=b, max_iter=max_iter, tol=tol, method="log_sinkhorn",
                                grad=plan_gradient).plan


def marginal_violation(plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Largest violation of either marginal constraint, a convergence diagnostic, as a 0-d tensor on the plan's
    device (the training loop reads it with the loss, not every step)."""
    return torch.maximum((plan.sum(2) - a).abs().max(), (plan.sum(1) - b).abs().max())


def marginal_error(plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """`marginal_violation` as a float."""
    return marginal_violation(plan, a, b).item()


def transport_cost(plan: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """<P, C>_F per pair, shape [B]."""
    return (plan * C.float()).sum(dim=(1, 2))


def plan_kl(plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(P || a b^T) per pair, shape [B]: 0 for the independent (maximally blurred) plan; zero-mass
    rows and columns and zero plan entries contribute nothing."""
    outer = a[:, :, None] * b[:, None, :]
    positive = plan > 0
    ratio = torch.where(positive, plan, 1.0) / torch.where(positive, outer, 1.0)
    return (plan * torch.log(ratio)).sum(dim=(1, 2))


def plan_sharpness(plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(P || a b^T) / log min(n, m) per pair, n and m counting tokens with mass: 0 when every token
    spreads its mass like the marginals (no alignment), ~1 for a one-to-one alignment of uniform tokens."""
    n, m = (a > 0).sum(1).float(), (b > 0).sum(1).float()
    return plan_kl(plan, a, b) / torch.log(torch.minimum(n, m)).clamp(min=math.log(2))


def entropic_ot_value(plan: torch.Tensor, C: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                      reg: float | torch.Tensor) -> torch.Tensor:
    """OT_eps(a, b) = <P, C> + eps KL(P || a b^T) per pair (Cuturi 2013; the form Feydy et al. 2019 debias).

    With P the (detached) optimal plan, its gradient with respect to C is P (envelope theorem)."""
    return transport_cost(plan, C) + reg * plan_kl(plan, a, b)


def median_real_cost(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """The median cost over token pairs that both carry mass: the batch's cost scale (relative epsilon)."""
    real = (a[:, :, None] > 0) & (b[:, None, :] > 0)
    return C.detach()[real].float().median().item()
