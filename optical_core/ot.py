"""Entropic optimal transport between token sets, batched, in the log domain.

Notation follows POT: a, b are marginals (token weights), M / C the cost matrix, reg the entropic
epsilon. The solver is POT's batched log-domain Sinkhorn (`ot.batch.solve_batch`, Cuturi 2013;
log-domain stabilisation, Schmitzer 2019): float32-safe at small reg (plain Sinkhorn silently returns a
zero plan there, see ../shared/FIELD_NOTES.md). Padded tokens get zero mass, so one call solves a whole
batch of different-length sentence pairs on the device the tensors live on.
"""

from __future__ import annotations

import warnings

import ot.batch
import torch
import torch.nn.functional as F

COSTS = ("cosine", "sqeuclidean")
PLAN_GRADIENTS = ("detach", "autodiff")


def cost_matrix(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
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
    if (total <= 0).any():
        raise ValueError("a sequence has no token with positive mass (all padding or zero weights)")
    return mass / total


def transport_plan(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, reg: float = 0.05, max_iter: int = 100,
                   tol: float = 1e-5, plan_gradient: str = "detach") -> torch.Tensor:
    """Entropic OT plan P [B, n, m] with P 1 = a, P^T 1 = b (rows/cols of zero mass get zero plan).

    plan_gradient="detach": P is a constant (gradient of <P, C> w.r.t. C is P, the envelope gradient);
    "autodiff": differentiate through every Sinkhorn iteration.
    """
    if plan_gradient not in PLAN_GRADIENTS:
        raise ValueError(f"unknown plan_gradient '{plan_gradient}'; choose one of {PLAN_GRADIENTS}")
    if reg <= 0:
        raise ValueError(f"entropic regularisation must be > 0, got {reg}")
    C32 = C.float() if plan_gradient == "autodiff" else C.detach().float()
    with warnings.catch_warnings():
        # A stop at max_iter is by design (a fixed budget); the marginal error is reported by the caller.
        warnings.filterwarnings("ignore", message="Sinkhorn did not converge")
        result = ot.batch.solve_batch(C32, reg=reg, a=a.float(), b=b.float(), max_iter=max_iter, tol=tol,
                                      method="log_sinkhorn", grad=plan_gradient)
    plan = result.plan
    if not torch.isfinite(plan).all():
        raise FloatingPointError(f"Sinkhorn returned a non-finite plan (reg={reg}); raise reg or max_iter")
    return plan


def marginal_error(plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest violation of either marginal constraint, a convergence diagnostic."""
    return max((plan.sum(2) - a).abs().max().item(), (plan.sum(1) - b).abs().max().item())


def transport_cost(plan: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """<P, C>_F per pair, shape [B]."""
    return (plan * C.float()).sum(dim=(1, 2))
