"""Affinity-VAE loss: reconstruction + beta * KL + gamma * affinity, as pure functions.

Shapes: images ``(n, 1, *box)``; ``mu`` and ``log_var`` ``(n, latent_dims)``; ``labels`` ``(n,)``
0-based class indices (``rlnClassNumber - 1``) into the affinity matrix ``(n_classes, n_classes)``.
Every term is computed in float32, whatever autocast produced.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_schema

_TRAINING = section_schema("training")["properties"]
RECONSTRUCTION_LOSSES = tuple(_TRAINING["reconstruction_loss"]["enum"])  # ("mse", "bce")
KL_REDUCTIONS = tuple(_TRAINING["kl_reduction"]["enum"])  # ("mean", "sum")


class LossTerms(NamedTuple):
    total: torch.Tensor  # scalar: reconstruction + beta * kl + gamma * affinity
    reconstruction: torch.Tensor  # scalar
    kl: torch.Tensor  # scalar
    affinity: torch.Tensor  # scalar


def reconstruction_error(
    reconstruction: torch.Tensor, target: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """Mean over every pixel/voxel of the batch.

    ``mse``: squared error. ``bce``: binary cross-entropy with ``reconstruction`` read as logits and
    ``target`` as probabilities in [0, 1] (the original code passed them the other way round).
    """
    if kind not in RECONSTRUCTION_LOSSES:
        raise InputError(
            f"training.reconstruction_loss = {kind!r}; expected one of {RECONSTRUCTION_LOSSES}"
        )
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"reconstruction_error: reconstruction {tuple(reconstruction.shape)} and target "
            f"{tuple(target.shape)} differ in shape"
        )
    reconstruction, target = reconstruction.float(), target.float()
    if kind == "mse":
        return F.mse_loss(reconstruction, target, reduction="mean")
    return F.binary_cross_entropy_with_logits(reconstruction, target, reduction="mean")


def kl_divergence(mu: torch.Tensor, log_var: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)), summed over latent dimensions, then the batch ``mean``
    or ``sum``. Zero exactly at ``mu = 0, log_var = 0``."""
    if reduction not in KL_REDUCTIONS:
        raise InputError(f"training.kl_reduction = {reduction!r}; expected one of {KL_REDUCTIONS}")
    mu, log_var = mu.float(), log_var.float()
    per_sample = -0.5 * torch.sum(1 + log_var - mu.square() - log_var.exp(), dim=1)  # (n,)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def affinity_loss(mu: torch.Tensor, labels: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
    """Mean over pairs ``i < j`` of ``|cos(mu_i, mu_j) - A[y_i, y_j]|``; 0 for fewer than 2 rows.

    All pairs at once: the cosine matrix of the batch, its strict upper triangle, and the matching
    affinity entries gathered by label.
    """
    n = mu.shape[0]
    if n < 2:
        return mu.float().sum() * 0.0
    unit = F.normalize(mu.float(), dim=1, eps=1e-8)  # (n, latent_dims)
    i, j = torch.triu_indices(n, n, offset=1, device=mu.device)  # (2, n(n-1)/2)
    cosine = (unit @ unit.T)[i, j]  # (pairs,)
    target = affinity.to(device=mu.device, dtype=torch.float32)[labels[i], labels[j]]  # (pairs,)
    return (cosine - target).abs().mean()


def avae_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    labels: torch.Tensor | None,
    affinity: torch.Tensor | None,
    beta: float,
    gamma: float,
    reconstruction_loss: str = "mse",
    kl_reduction: str = "mean",
    term_weights: tuple[float, float] = (1.0, 1.0),
    affinity_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LossTerms:
    """The Affinity-VAE objective with its components.

    Refuses settings that cannot mean what they say: a negative weight, or ``gamma > 0`` without
    an affinity matrix or labels. With ``gamma == 0`` the affinity term is still reported when a
    matrix and labels are given (it measures the plain VAE's agreement with the prior).

    For one piece of a batch shared by several processes (:mod:`cryoavae.train.distributed`):
    ``term_weights`` scale this piece's reconstruction and KL terms in the total so that the
    processes' averaged gradients are those of the whole batch, and ``affinity_batch`` is the
    whole batch's ``(mu, labels)`` for the affinity term (a property of pairs). The reported
    components are this piece's, unweighted.
    """
    if beta < 0:
        raise InputError(f"training.beta = {beta!r}; expected a weight >= 0")
    if gamma < 0:
        raise InputError(f"training.gamma = {gamma!r}; expected a weight >= 0")
    if gamma > 0 and (affinity is None or labels is None):
        raise InputError(
            f"training.gamma = {gamma} needs an affinity matrix and class labels; "
            "set gamma to 0 for a plain beta-VAE"
        )
    if affinity is not None:
        if affinity.dim() != 2 or affinity.shape[0] != affinity.shape[1]:
            raise InputError(f"affinity matrix has shape {tuple(affinity.shape)}; expected square")
    recon = reconstruction_error(reconstruction, target, reconstruction_loss)
    kl = kl_divergence(mu, log_var, kl_reduction)
    if affinity is not None and labels is not None:
        pair_mu, pair_labels = affinity_batch if affinity_batch is not None else (mu, labels)
        aff = affinity_loss(pair_mu, pair_labels, affinity)
    else:
        aff = torch.zeros((), device=mu.device)
    w_recon, w_kl = term_weights
    total = w_recon * recon + beta * (w_kl * kl) + gamma * aff
    return LossTerms(total, recon, kl, aff)
