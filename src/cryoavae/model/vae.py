"""The Affinity-VAE: a convolutional encoder, latent and pose heads, and two decoders.

Read top to bottom (the settings are :class:`cryoavae.model.config.ModelConfig`): the
:class:`Encoder`, the two decoders (the Gaussian-splat one renders with
:mod:`cryoavae.model.splats` and turns by :func:`cryoavae.model.pose.pose_to_rotation`),
:class:`AffinityVAE` which composes them, and :func:`load_model`, which rebuilds a trained model
from its checkpoint alone.

Conventions used throughout (2-D images are ``(n, 1, h, w)``, 3-D volumes ``(n, 1, d, h, w)``):

- Array axes are ``(y, x)`` in 2-D and ``(z, y, x)`` in 3-D; coordinate vectors are written in the
  reverse order, ``(x, y)`` / ``(x, y, z)``, so ``x`` is the last (fastest) array axis.
- Coordinates are in voxels relative to the box centre, the voxel with index ``box_size_px // 2``
  on every axis (the cryo-EM convention for even boxes).
- A rotation matrix ``R`` acts on column coordinate vectors: a point at ``c`` moves to ``R @ c``.
  In 2-D a positive angle turns ``+x`` towards ``+y`` (for an image shown with row 0 at the top,
  that is clockwise); in 3-D a positive rotation about an axis follows the right-hand rule
  (``+x`` towards ``+y`` about ``+z``).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cryoavae.core.errors import InputError
from cryoavae.geometry.ctf import CtfModel
from cryoavae.geometry.translation import shift_ramp
from cryoavae.model.config import ModelConfig
from cryoavae.model.decoders import CNNDecoder, GaussianSplatDecoder
from cryoavae.model.layers import GaussianBlur, batch_norm, conv
from cryoavae.model.measurement import Measurement
from cryoavae.model.pose import pose_to_rotation
from cryoavae.model.pose_search import best_orientation, offset_rotations


class Encoding(NamedTuple):
    mu: torch.Tensor  # (n, latent_dims)
    log_var: torch.Tensor  # (n, latent_dims)
    pose: torch.Tensor  # (n, pose_dims); (n, 0) without a pose
    shift_px: torch.Tensor | None = None  # (n, ndim) (x, y[, z]) voxels; None: centred


class VAEOutput(NamedTuple):
    reconstruction: torch.Tensor  # (n, 1, *box), same shape as the input
    mu: torch.Tensor  # (n, latent_dims)
    log_var: torch.Tensor  # (n, latent_dims)
    pose: torch.Tensor  # (n, pose_dims)
    z: torch.Tensor  # (n, latent_dims), the sample that was decoded
    shift_error: torch.Tensor | None = None  # scalar: see AffinityVAE.forward's shift_delta


class Encoder(nn.Module):
    """Stride-2 convolutions (each level optionally followed by size-keeping ones), then linear
    heads for mu, log-variance and the pose."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in config.channels:
            for k in range(config.convs_per_level):  # the first halves the size
                layers.append(
                    conv(config.ndim)(
                        c_in if k == 0 else c_out,
                        c_out,
                        3,
                        stride=2 if k == 0 else 1,
                        padding=1,
                        bias=not config.batch_norm,
                    )
                )
                if config.batch_norm:
                    layers.append(batch_norm(config.ndim)(c_out))
                layers.append(nn.ReLU(inplace=True))
            c_in = c_out
        if config.input_blur_px > 0:
            layers.insert(0, GaussianBlur(config.ndim, config.input_blur_px))
        self.features = nn.Sequential(*layers)
        n_features = config.channels[-1] * config.feature_size_px**config.ndim
        n_shape = 2 * config.channels[-1] if config.shape_pooling == "global" else n_features
        self.mu = nn.Linear(n_shape, config.latent_dims)
        self.log_var = nn.Linear(n_shape, config.latent_dims)
        self.pose = nn.Linear(n_features, config.pose_dims) if config.pose_dims else None
        self.shift = None  # where the particle's centre sits, within translation_px per axis
        if config.translation_px > 0:
            self.shift = nn.Linear(n_features, config.ndim)
            with torch.no_grad():  # training starts from centred renderings
                self.shift.weight.mul_(0.1)
                self.shift.bias.zero_()
        if config.pose_encoding == "circular":
            # A zero head output means angle 0, so the unit vector starts well defined.
            self.register_buffer("pose_origin", torch.tensor([1.0, 0.0]), persistent=False)

    def input_spectrum(self, x: torch.Tensor) -> torch.Tensor | None:
        """``x``'s ``rfftn`` (float32), which every read of ``x`` through :meth:`forward` can
        share; None when a read needs none (no input blur and no shift)."""
        if not isinstance(self.features[0], GaussianBlur) and self.shift is None:
            return None
        return torch.fft.rfftn(x.float(), dim=tuple(range(2, x.dim())))

    def _filtered(self, x, moved_by, spectrum) -> tuple[torch.Tensor, nn.Module]:
        """The input to the convolutions: ``x`` moved by ``moved_by`` and blurred, both as one
        product with its spectrum (blur and move commute), and the layers that take it."""
        blur = self.features[0] if isinstance(self.features[0], GaussianBlur) else None
        body = self.features if blur is None else self.features[1:]
        if blur is None and moved_by is None:
            return x, body
        dims = tuple(range(2, x.dim()))
        if spectrum is None:
            spectrum = torch.fft.rfftn(x.float(), dim=dims)
        grid = tuple(x.shape[2:])
        if blur is not None:
            spectrum = spectrum * blur.transfer(grid, x.device)
        if moved_by is not None:
            spectrum = spectrum * shift_ramp(grid, moved_by)
        return torch.fft.irfftn(spectrum, s=grid, dim=dims).to(x.dtype), body

    def forward(
        self,
        x: torch.Tensor,
        moved_by: torch.Tensor | None = None,
        spectrum: torch.Tensor | None = None,
    ) -> Encoding:
        """The encoding of ``x`` ``(n, 1, *box)``, or of ``x`` moved by ``moved_by`` ``(n, ndim)``
        (voxels, ``(x, y[, z])``, the box wrapping round); ``spectrum``: ``x``'s
        :meth:`input_spectrum`, when several reads of ``x`` share it (each read is then one
        inverse transform, its move and the input blur in one product)."""
        image, body = self._filtered(x, moved_by, spectrum)
        maps = body(image)  # (n, c_last, s, s[, s])
        h = maps.flatten(1)  # (n, c_last * s^ndim)
        shape = h
        if self.config.shape_pooling == "global":
            per_channel = maps.flatten(2)  # (n, c_last, s^ndim)
            shape = torch.cat([per_channel.mean(-1), per_channel.amax(-1)], -1)  # (n, 2 c_last)
        mu, log_var = self.mu(shape), self.log_var(shape)  # (n, latent_dims) each
        if self.pose is None:
            pose = h.new_zeros(h.shape[0], 0)
        elif self.config.pose_encoding == "circular":
            pose = F.normalize(self.pose(h) + self.pose_origin, dim=-1)  # (n, 2) = (cos, sin)
        else:
            pose = self.pose(h)  # (n, pose_dims)
        shift = None
        if self.shift is not None:
            shift = torch.tanh(self.shift(h).float()) * self.config.translation_px  # (n, ndim)
        return Encoding(mu, log_var, pose, shift)


class AffinityVAE(nn.Module):
    """Encoder + decoder; ``forward`` returns a :class:`VAEOutput`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        decoder = CNNDecoder if config.decoder == "cnn" else GaussianSplatDecoder
        self.decoder = decoder(config)
        offsets = offset_rotations(config.ndim, config.pose_hypotheses)
        self.register_buffer("pose_offsets", offsets, persistent=False)  # (k, d, d)
        self.measure = None  # what the data measure of a rendering (None: all of it)
        microscope = CtfModel(**config.microscope) if config.measure_ctf else None
        if config.wedge_tilt_max_deg is not None or microscope is not None:
            self.measure = Measurement(config.box_size_px, config.wedge_tilt_max_deg, microscope)

    def _as_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Accept ``(n, *box)`` or ``(n, 1, *box)``; return the latter."""
        return x.unsqueeze(1) if x.dim() == self.config.ndim + 1 else x

    def encode(
        self,
        x: torch.Tensor,
        first: Encoding | None = None,
        defocus_um: torch.Tensor | None = None,
        spectrum: torch.Tensor | None = None,
    ) -> Encoding:
        """mu, log-variance and pose; with ``pose_hypotheses > 1`` the pose is the offset
        orientation that reconstructs ``x`` best from ``z = mu``
        (:mod:`cryoavae.model.pose_search`). ``first``: the encoder's reading of ``x`` as
        picked, when the caller has it already; ``defocus_um`` ``(n,)``: each particle's
        defocus, which that search needs when the model measures the CTF; ``spectrum``:
        :meth:`Encoder.input_spectrum` of ``x``, when the caller has it."""
        x = self._as_batch(x)
        if spectrum is None:
            spectrum = self.encoder.input_spectrum(x)
        encoding = self.encoder(x, spectrum=spectrum) if first is None else first
        if self.config.centring_passes and encoding.shift_px is not None:
            # read the shape again from the particle moved to where the head says it sits; the
            # head's answer on the moved particle refines the shift
            shift = encoding.shift_px
            for _ in range(self.config.centring_passes):
                encoding = self.encoder(x, moved_by=-shift.detach(), spectrum=spectrum)
                shift = shift + encoding.shift_px
            encoding = encoding._replace(shift_px=shift)
        if len(self.pose_offsets) == 1:
            return encoding
        pose = best_orientation(
            self.decoder,
            encoding.mu,
            encoding.pose,
            x,
            self.pose_offsets,
            self.measure,
            encoding.shift_px,
            defocus_um,
        )
        return encoding._replace(pose=pose)

    def decode(self, z: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        """Image ``(n, 1, *box)`` from ``z`` ``(n, latent_dims)`` and ``pose``
        ``(n, pose_dims)`` (zeros, i.e. no rotation, when omitted)."""
        if pose is None:
            pose = z.new_zeros(z.shape[0], self.config.pose_dims)
        return self.decoder(z, pose)

    def pose_rotation(self, pose: torch.Tensor) -> torch.Tensor | None:
        """The rotation ``(n, ndim, ndim)`` the decoder turns its canonical particle by for
        ``pose``: the model's estimate of each particle's orientation, in its own canonical
        frame. None when the pose is not a rotation (the CNN decoder's free pose vector)."""
        if self.config.pose_dims == 0 or self.config.decoder != "gaussian_splat":
            return None
        return pose_to_rotation(pose.float(), self.config.ndim)

    def forward(
        self,
        x: torch.Tensor,
        eps: torch.Tensor | None = None,
        shift_delta: torch.Tensor | None = None,
        defocus_um: torch.Tensor | None = None,
    ) -> VAEOutput:
        """Encode, sample ``z = mu + eps * exp(log_var / 2)`` and decode.

        ``eps`` ``(n, latent_dims)`` is standard-normal noise from the caller's seeded generator.
        Without it, training mode draws from torch's global generator and eval mode decodes
        ``z = mu``. ``shift_delta`` ``(n, ndim)`` (voxels; with the shift head): the output's
        ``shift_error`` is how far the head's answer for each particle moved by its delta is
        from its answer for the particle plus the delta (mean square, voxels^2), so that the head
        says where the particle sits, whatever else the reconstruction rewards. ``defocus_um``
        ``(n,)``: each particle's defocus (µm), needed when the model measures the CTF.
        """
        x = self._as_batch(x)
        spectrum = self.encoder.input_spectrum(x)  # shared by every read of x below
        shift_error, first = None, self.encoder(x, spectrum=spectrum)
        if shift_delta is not None and self.encoder.shift is not None:
            there = self.encoder(x, moved_by=shift_delta, spectrum=spectrum).shift_px
            shift_error = (there - first.shift_px - shift_delta.float()).square().sum(1).mean()
        mu, log_var, pose, shift_px = self.encode(x, first, defocus_um, spectrum)
        if eps is None and self.training:
            eps = torch.randn_like(mu)
        z = mu if eps is None else mu + eps * torch.exp(0.5 * log_var)  # (n, latent_dims)
        reconstruction = self.decoder(z, pose, shift_px)
        if self.measure is not None:  # compared with the data as the data were measured
            reconstruction = self.measure(reconstruction, defocus_um)
        return VAEOutput(reconstruction, mu, log_var, pose, z, shift_error)


def build_model(config: ModelConfig, seed: int) -> AffinityVAE:
    """Build a model whose initial weights depend only on ``seed`` (torch's global RNG is left as
    it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AffinityVAE(config)


def read_checkpoint(
    checkpoint_path: str | Path, device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """A checkpoint file's contents, read with ``torch.load(weights_only=True)``: a file that
    holds pickled Python code is refused, never run. Any cryoavae ``.pt`` (the final model, a
    resume file) reads here; :func:`load_model` then checks that it is a model.

    Raises:
        InputError: one line naming the file: missing, unreadable, unsafe, not a dict.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise InputError(f"{path}: model checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found is None:  # not a pickle at all, or a damaged one
            raise InputError(f"{path}: not a loadable checkpoint (damaged or not one)") from None
        raise InputError(
            f"{path}: refused: it holds pickled Python objects ({found.group(1)}), not only "
            "weights and settings; a cryoavae checkpoint never does"
        ) from None
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        reason = " ".join(str(exc).split())[:200]
        raise InputError(f"{path}: not a loadable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise InputError(f"{path}: not a cryoavae model checkpoint (holds a {type(checkpoint)})")
    return checkpoint


def load_model(
    checkpoint_path: str | Path,
    device: str | torch.device = "cpu",
    checkpoint: dict[str, Any] | None = None,
) -> tuple[AffinityVAE, ModelConfig, dict[str, Any]]:
    """Rebuild a trained model from its checkpoint alone -> ``(model in eval mode, ModelConfig,
    checkpoint dict)``.

    A checkpoint is ``{"model_config": ..., "state_dict": ..., ...}`` (see
    :func:`cryoavae.train.train_model`), read by :func:`read_checkpoint` (or handed over as
    ``checkpoint`` when the caller has read it already).

    Raises:
        InputError: one line naming the file: missing, unreadable, unsafe, not a cryoavae
            checkpoint, or weights that do not fit its own model config.
    """
    path = Path(checkpoint_path)
    if checkpoint is None:
        checkpoint = read_checkpoint(path, device)
    missing = [k for k in ("model_config", "state_dict") if k not in checkpoint]
    if missing or not isinstance(checkpoint["model_config"], dict):
        raise InputError(f"{path}: not a cryoavae model checkpoint (no {missing or 'config'})")
    try:
        model_config = ModelConfig.from_dict(checkpoint["model_config"])
    except InputError as exc:
        raise InputError(f"{path}: its model_config is invalid: {exc}") from None
    model = AffinityVAE(model_config)
    weights = checkpoint["state_dict"]
    if not isinstance(weights, dict):
        raise InputError(f"{path}: state_dict is a {type(weights).__name__}, not weights")
    expected = model.state_dict()
    wrong = sorted(set(expected) ^ set(weights)) or [
        k
        for k, v in expected.items()
        if not isinstance(weights[k], torch.Tensor) or weights[k].shape != v.shape
    ]
    if wrong:
        raise InputError(
            f"{path}: its weights do not fit its own model_config (first mismatch: {wrong[0]}); "
            "the file is damaged or was edited"
        )
    model.load_state_dict(weights)
    model.to(device).eval()
    return model, model_config, checkpoint
