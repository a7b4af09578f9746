"""Closed-form starts for a student's projection head, fitted on the run's own training pairs.

A random head maps every me5 query to nearly the same direction (the pooled features share one
dominant direction: 73% of their squared norm at L2), so a student starts at chance and 24-400 steps
of gradient descent spend themselves learning the mean. A linear map fitted in closed form starts the
student where a linear probe of its features can reach (../shared/FIELD_NOTES.md: me5-L12 swa MRR@10
0.546 from 2,000 pairs before any training). The map is linear, so it commutes with mean pooling and
serves the token vectors OT aligns as well as the pooled ones KD regresses.
"""

from __future__ import annotations

import torch


def ridge_head(X: torch.Tensor, Y: torch.Tensor, shrinkage: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression Y ~ X W + c on centred features (Hoerl & Kennard, 1970), in float64.

    X [N, d_in]: the student's mean-pooled features; Y [N, d_out]: the teacher's mean-pooled embeddings.
    lambda = `shrinkage` x the mean eigenvalue of Xc^T Xc (scale-free). Returns (weight [d_out, d_in],
    bias [d_out]) as an nn.Linear holds them.
    """
    X, Y = X.double(), Y.double()
    x_mean, y_mean = X.mean(0), Y.mean(0)
    Xc, Yc = X - x_mean, Y - y_mean
    gram = Xc.T @ Xc
    lam = shrinkage * torch.trace(gram) / gram.shape[0]
    regularised = gram.clone()
    regularised.diagonal().add_(lam)  # gram + lambda I, all in float64
    W = torch.linalg.solve(regularised, Xc.T @ Yc)  # [d_in, d_out]
    return W.T.float(), (y_mean - x_mean @ W).float()


def procrustes_head(X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthogonal Procrustes with a scale (Schoenemann, 1966) on centred features: Y ~ s X R + c, R^T R = I.

    Needs d_in == d_out. Returns (weight [d_out, d_in], bias [d_out]).
    """
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"procrustes needs equal widths, got {X.shape[1]} and {Y.shape[1]}")
    X, Y = X.double(), Y.double()
    x_mean, y_mean = X.mean(0), Y.mean(0)
    Xc, Yc = X - x_mean, Y - y_mean
    U, S, Vh = torch.linalg.svd(Xc.T @ Yc)
    R = U @ Vh
    scale = S.sum() / (Xc * Xc).sum()
    W = scale * R
    return W.T.float(), (y_mean - x_mean @ W).float()


HEADS = {"ridge": ridge_head, "procrustes": procrustes_head}
