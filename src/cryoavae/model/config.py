"""The ``model`` section as a dataclass: what it takes to build an Affinity-VAE.

Its own module so that the decoders, the model and everything that validates a study can read the
settings without importing the network.
"""

from __future__ import annotations

from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass, section_schema
from cryoavae.geometry.point_groups import GROUP_ORDERS_3D

__all__ = ["DECODERS", "POSE_ENCODINGS", "ModelConfig"]

SECTION = "model"
DECODERS = tuple(section_schema(SECTION)["properties"]["decoder"]["enum"])
POSE_ENCODINGS = tuple(section_schema(SECTION)["properties"]["pose_encoding"]["enum"])


#: the keys of a model's ``microscope`` (those of :class:`cryoavae.geometry.ctf.CtfModel`)
MICROSCOPE_KEYS = ("voxel_size_angstrom", "voltage_kv", "cs_mm", "amplitude_contrast")

_FROM_THE_DATA = [
    ("ndim", int, 3),
    ("box_size_px", int, 32),
    ("wedge_tilt_max_deg", float, None),
    ("microscope", dict, None),
]


class ModelConfig(section_dataclass(SECTION, extra=_FROM_THE_DATA)):
    """Everything needed to build an :class:`AffinityVAE`: the YAML keys of ``model:`` (their
    defaults and bounds are the schema's) and ``ndim``, ``box_size_px`` and
    ``wedge_tilt_max_deg``, which come from the data (the workflow fills them in; the wedge is the
    study's ``missing_wedge`` when ``measure_wedge`` asks for it, else None).

    ``microscope`` (the CTF's voxel size, voltage, Cs and amplitude contrast: the keys of
    :class:`~cryoavae.geometry.ctf.CtfModel`) is filled in when ``measure_ctf`` asks for it.

    ``pose_dims = 0`` gives a plain beta-VAE without a pose. With ``pose_encoding = "circular"``
    (2-D only) the pose is a unit vector ``(cos a, sin a)`` of an in-plane angle ``a``, so it can
    follow a full turn; it then needs ``pose_dims = 2``. ``rotation6d`` (3-D only, ``pose_dims =
    6``) is a rotation continuous over all of SO(3). ``pose_hypotheses > 1`` corrects the
    encoder's orientation by search (:mod:`cryoavae.model.pose_search`).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if type(self.ndim) is not int or self.ndim not in (2, 3):
            raise InputError(f"model.ndim = {self.ndim!r}; expected 2 or 3")
        if type(self.box_size_px) is not int or self.box_size_px < 4:
            raise InputError(f"model.box_size_px = {self.box_size_px!r}; expected an integer >= 4")
        if 2 ** len(self.channels) > self.box_size_px:
            raise InputError(
                f"model.channels = {list(self.channels)} halves the box "
                f"{len(self.channels)} times, too often for box_size_px = {self.box_size_px}; "
                "use fewer levels"
            )
        if self.pose_encoding == "circular" and (self.ndim != 2 or self.pose_dims != 2):
            raise InputError(
                "model.pose_encoding = 'circular' encodes an in-plane angle as (cos, sin): it "
                f"needs 2-D data and pose_dims = 2, got ndim = {self.ndim}, "
                f"pose_dims = {self.pose_dims}"
            )
        if self.pose_encoding == "rotation6d" and (self.ndim != 3 or self.pose_dims != 6):
            raise InputError(
                "model.pose_encoding = 'rotation6d' is a 3-D rotation of 6 numbers: it needs 3-D "
                f"data and pose_dims = 6, got ndim = {self.ndim}, pose_dims = {self.pose_dims}"
            )
        if self.decoder == "gaussian_splat":
            accepted = (0, 1, 2) if self.ndim == 2 else (0, 3, 4, 6)
            if self.pose_dims not in accepted or (
                self.pose_dims in (2, 6) and self.pose_encoding not in ("circular", "rotation6d")
            ):
                what = (
                    "0, 1 (an angle) or 2 with pose_encoding 'circular'"
                    if self.ndim == 2
                    else "0, 3 (axis-angle), 4 (quaternion) or 6 with pose_encoding 'rotation6d'"
                )
                raise InputError(
                    f"model.pose_dims = {self.pose_dims} cannot rotate the gaussian_splat decoder "
                    f"in {self.ndim}-D; expected {what}"
                )

        wedge = self.wedge_tilt_max_deg
        if wedge is not None and (self.ndim != 3 or not 0 < wedge <= 90):
            raise InputError(
                f"model: a missing wedge of +-{wedge} degrees needs 3-D subtomograms and an "
                "angle in (0, 90]"
            )
        if self.measure_wedge and wedge is None:
            raise InputError(
                "model.measure_wedge needs the particles' missing wedge (missing_wedge.enabled)"
            )
        if self.measure_ctf and (self.ndim != 3 or not self.microscope):
            raise InputError(
                "model.measure_ctf needs 3-D particles with a simulated CTF (simulation.ctf)"
            )
        unknown = set(self.microscope or {}) - set(MICROSCOPE_KEYS)
        if unknown or (self.microscope and "voxel_size_angstrom" not in self.microscope):
            raise InputError(
                f"model.microscope = {self.microscope!r}; expected voxel_size_angstrom and "
                f"optionally {', '.join(MICROSCOPE_KEYS[1:])}"
            )
        self._check_pose_hypotheses()
        self._check_centring()

    def _check_centring(self) -> None:
        if self.centring_passes and self.translation_px <= 0:
            raise InputError(
                "model.centring_passes needs the encoder's shift (model.translation_px > 0)"
            )

    def _check_pose_hypotheses(self) -> None:
        k = self.pose_hypotheses
        if k == 1:
            return
        needs = "circular" if self.ndim == 2 else "rotation6d"
        if self.decoder != "gaussian_splat" or self.pose_encoding != needs:
            raise InputError(
                f"model.pose_hypotheses = {k} searches orientations of the canonical particle: "
                f"it needs decoder 'gaussian_splat' and pose_encoding '{needs}' in {self.ndim}-D"
            )
        if self.ndim == 3 and k not in GROUP_ORDERS_3D:
            raise InputError(
                f"model.pose_hypotheses = {k}: in 3-D the offsets are a point group's "
                "rotations, so 1, 12 (T), 24 (O) or 60 (I)"
            )

    @property
    def feature_size_px(self) -> int:
        """Edge of the encoder's last feature map: the box halved (rounding up) per level."""
        size = self.box_size_px
        for _ in self.channels:
            size = (size + 1) // 2
        return size
