"""One epoch of training and one validation pass, and the state a resume file holds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..data import ResidentBatches, StreamedBatches, batch_indices
from ..losses import LossTerms, avae_loss
from ..model import AffinityVAE
from .config import TrainingConfig


class LossSums:
    """Sample-weighted running sums of the loss terms, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros(4, device=device)
        self.n = 0

    def add(self, terms: LossTerms, n: int) -> None:
        self.total += torch.stack([t.detach().float() for t in terms]) * n
        self.n += n

    def means(self) -> list[float]:
        """total, reconstruction, kl, affinity; NaN for an empty split."""
        if self.n == 0:
            return [math.nan] * 4
        return (self.total / self.n).tolist()


@dataclass
class TrainingLoop:
    """Everything an epoch needs, built once; its state is what a resume file holds."""

    model: AffinityVAE
    step_model: torch.nn.Module  # the model, or torch.compile(model)
    optimizer: torch.optim.Optimizer
    train: StreamedBatches | ResidentBatches
    val: StreamedBatches | ResidentBatches
    affinity: torch.Tensor  # (n_classes, n_classes) on the device
    config: TrainingConfig
    use_amp: bool
    shuffle_rng: torch.Generator  # CPU: the order of the training particles
    noise_rng: torch.Generator  # on the device: the reparameterisation noise

    def loss(self, x: torch.Tensor, y: torch.Tensor, eps, beta: float, gamma: float) -> LossTerms:
        device_type = x.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.use_amp):
            out = self.step_model(x, eps)
        return avae_loss(
            out.reconstruction,
            x,
            out.mu,
            out.log_var,
            y,
            self.affinity,
            beta,
            gamma,
            reconstruction_loss=self.config.reconstruction_loss,
            kl_reduction=self.config.kl_reduction,
        )

    def train_epoch(self, beta: float, gamma: float, bar=None) -> list[float]:
        """One shuffled pass over the train split; mean loss terms."""
        self.model.train()
        device = self.affinity.device
        sums = LossSums(device)
        order = batch_indices(len(self.train), self.config.batch_size, self.shuffle_rng)
        for x, y in self.train.iterate(order):  # (b, 1, *box), (b,)
            shape = (len(y), self.model.config.latent_dims)
            eps = torch.randn(shape, generator=self.noise_rng, device=device)
            terms = self.loss(x, y, eps, beta, gamma)
            self.optimizer.zero_grad()
            terms.total.backward()
            self.optimizer.step()
            sums.add(terms, len(y))
            if bar is not None:
                bar.update(len(y))
        return sums.means()

    def evaluate(self, beta: float, gamma: float) -> list[float]:
        """Mean loss terms over the val split with ``z = mu``, in eval mode, without gradients."""
        self.model.eval()
        sums = LossSums(self.affinity.device)
        with torch.inference_mode():
            for x, y in self.val.iterate(batch_indices(len(self.val), self.config.batch_size)):
                sums.add(self.loss(x, y, None, beta, gamma), len(y))
        self.model.train()
        return sums.means()

    def state(self) -> dict[str, Any]:
        return {
            "state_dict": cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "shuffle_rng": self.shuffle_rng.get_state(),
            "noise_rng": self.noise_rng.get_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.shuffle_rng.set_state(state["shuffle_rng"])
        self.noise_rng.set_state(state["noise_rng"])


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def make_optimizer(
    model: torch.nn.Module, config: TrainingConfig, device: torch.device
) -> torch.optim.Adam:
    """``torch.optim.Adam``: the fused kernel on CUDA, the multi-tensor (``foreach``) one on the
    CPU (the same update, to the bit, as the loop the project used before)."""
    if device.type == "cuda":
        return torch.optim.Adam(model.parameters(), lr=config.learning_rate, fused=True)
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate, foreach=True)
