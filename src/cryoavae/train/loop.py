"""One epoch of training and one validation pass, and the state a resume file holds.

On several processes (:mod:`.distributed`) each takes its piece of every global batch; the loss
sums are added over the processes at the end of the pass, so every rank reports the whole
split's means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from cryoavae.core.progress import Progress
from cryoavae.model.vae import AffinityVAE
from cryoavae.particles.batches import ResidentBatches, StreamedBatches, batch_indices
from cryoavae.train.augment import wedge_turns
from cryoavae.train.config import TrainingConfig
from cryoavae.train.distributed import Cluster
from cryoavae.train.losses import LossTerms, avae_loss


class LossSums:
    """Sample-weighted running sums of the loss terms, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros(4, device=device)
        self.n = 0

    def add(self, terms: LossTerms, n: int) -> None:
        self.total += torch.stack([t.detach().float() for t in terms]) * n
        self.n += n

    def means(self, cluster: Cluster | None = None) -> list[float]:
        """total, reconstruction, kl, affinity over every rank's particles; NaN for none."""
        totals = torch.cat([self.total, self.total.new_tensor([float(self.n)])])
        if cluster is not None:
            totals = cluster.sum(totals)
        n = float(totals[-1])
        if n == 0:
            return [math.nan] * 4
        return (totals[:4] / n).tolist()


@dataclass
class TrainingLoop:
    """Everything an epoch needs, built once; its state is what a resume file holds."""

    model: AffinityVAE
    step_model: torch.nn.Module  # the model, or torch.compile(model)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # stepped once per epoch
    train: StreamedBatches | ResidentBatches
    val: StreamedBatches | ResidentBatches
    affinity: torch.Tensor  # (n_classes, n_classes) on the device
    config: TrainingConfig
    use_amp: bool
    shuffle_rng: torch.Generator  # CPU: the order of the training particles
    noise_rng: torch.Generator  # on the device: the reparameterisation noise
    cluster: Cluster = Cluster()  # the training processes this one is among

    def loss(
        self,
        x,
        y,
        eps,
        beta: float,
        gamma: float,
        n_batch: int,
        grad: bool,
        shift_delta=None,
        defocus_um=None,
    ) -> LossTerms:
        """This rank's loss terms for its piece ``x``, ``y`` (defocus ``defocus_um``, when the
        model measures the CTF) of a global batch of ``n_batch``; with ``shift_delta``, the total
        adds ``training.shift_equivariance`` times the shift head's error
        (:meth:`~cryoavae.model.vae.AffinityVAE.forward`)."""
        device_type = x.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.use_amp):
            out = self.step_model(x, eps, shift_delta, defocus_um)
        cluster = self.cluster
        share = len(y) * cluster.world / n_batch  # 1 on one rank, or for equal pieces
        kl_share = share if self.config.kl_reduction == "mean" else float(cluster.world)
        pairs = None
        if cluster.world > 1:
            pairs = (
                cluster.gather_rows(out.mu, n_batch, grad=grad),
                cluster.gather_rows(y, n_batch, grad=False),
            )
        terms = avae_loss(
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
            term_weights=(share, kl_share),
            affinity_batch=pairs,
        )
        if out.shift_error is not None:
            total = terms.total + self.config.shift_equivariance * share * out.shift_error
            terms = terms._replace(total=total)
        return terms

    def _pieces(self, batches: list[torch.Tensor]) -> tuple[list, list]:
        """This rank's piece of each global batch; batches smaller than the world are left out
        on every rank (a rank with nothing would stall the others' gradient exchange)."""
        world = self.cluster.world
        whole = [b for b in batches if len(b) >= world] if world > 1 else batches
        return whole, [self.cluster.shard(b) for b in whole]

    def train_epoch(
        self, beta: float, gamma: float, progress: Progress | None = None
    ) -> list[float]:
        """One shuffled pass over the train split; mean loss terms. ``progress`` counts the
        global batch's particles after each step (no device sync: it only reads the clock)."""
        self.model.train()
        device = self.affinity.device
        sums = LossSums(device)
        order = list(batch_indices(len(self.train), self.config.batch_size, self.shuffle_rng))
        whole, pieces = self._pieces(order)
        latent = self.model.config.latent_dims
        batches = zip(self.train.iterate(pieces), whole, pieces, strict=True)
        for (x, y), batch, piece in batches:
            # the whole batch's noise on every rank, each taking its rows: as on one rank
            noise = torch.randn((len(batch), latent), generator=self.noise_rng, device=device)
            lo, hi = self.cluster.bounds(len(batch))
            if self.config.augment == "wedge_turns":  # drawn for the whole batch, as the noise
                turn = torch.randint(0, 4, (len(batch),), generator=self.shuffle_rng)
                x = wedge_turns(x, turn[lo:hi])
            delta = None
            if self.config.shift_equivariance > 0 and self.model.config.translation_px > 0:
                # a move of up to a voxel per axis, drawn for the whole batch as the noise is
                ndim = self.model.config.ndim
                delta = torch.rand((len(batch), ndim), generator=self.noise_rng, device=device)
                delta = (2 * delta - 1)[lo:hi]
            focus = self._defocus(self.train, piece)
            terms = self.loss(x, y, noise[lo:hi], beta, gamma, len(batch), True, delta, focus)
            self.optimizer.zero_grad()
            terms.total.backward()
            self.optimizer.step()
            sums.add(terms, len(y))
            if progress is not None:
                progress.advance(len(batch))
        return sums.means(self.cluster)

    def evaluate(self, beta: float, gamma: float, progress: Progress | None = None) -> list[float]:
        """Mean loss terms over the val split with ``z = mu``, in eval mode, without gradients
        (``progress`` counts the particles, as in :meth:`train_epoch`)."""
        self.model.eval()
        sums = LossSums(self.affinity.device)
        whole, pieces = self._pieces(list(batch_indices(len(self.val), self.config.batch_size)))
        with torch.inference_mode():
            for (x, y), batch, piece in zip(self.val.iterate(pieces), whole, pieces, strict=True):
                focus = self._defocus(self.val, piece)
                terms = self.loss(x, y, None, beta, gamma, len(batch), False, defocus_um=focus)
                sums.add(terms, len(y))
                if progress is not None:
                    progress.advance(len(batch))
        self.model.train()
        return sums.means(self.cluster)

    def _defocus(self, source, piece: torch.Tensor) -> torch.Tensor | None:
        """The defocus of a batch's particles when the model measures the CTF, else None."""
        return source.defocus_um(piece) if self.model.config.measure_ctf else None

    def state(self) -> dict[str, Any]:
        """What a resume file holds: the same on every rank, so any number of ranks resumes."""
        return {
            "state_dict": cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "shuffle_rng": self.shuffle_rng.get_state(),
            "noise_rng": self.noise_rng.get_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
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


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainingConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule: ``constant`` keeps ``learning_rate``; ``cosine``
    anneals it to ``learning_rate * final_learning_rate_fraction`` over the epochs (the last
    epoch runs at the final rate)."""
    if config.learning_rate_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer,
            T_max=max(config.epochs - 1, 1),
            eta_min=config.learning_rate * config.final_learning_rate_fraction,
        )
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
