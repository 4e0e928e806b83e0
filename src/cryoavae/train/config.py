"""How to train: the ``training`` section of a study, and which device that means here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..schedules import ScheduleConfig
from ..schema import check_fields, default, from_mapping, section_schema

log = logging.getLogger(__name__)

SECTION = "training"
DEVICES = tuple(section_schema(SECTION)["properties"]["device"]["enum"])


@dataclass(frozen=True)
class TrainingConfig:
    """How to train. Field names are the YAML keys of the ``training:`` section; defaults and
    bounds come from the schema."""

    epochs: int = default(SECTION, "epochs")
    batch_size: int = default(SECTION, "batch_size")
    learning_rate: float = default(SECTION, "learning_rate")
    beta: ScheduleConfig = ScheduleConfig(**default(SECTION, "beta"))
    gamma: ScheduleConfig = ScheduleConfig(**default(SECTION, "gamma"))
    reconstruction_loss: str = default(SECTION, "reconstruction_loss")
    kl_reduction: str = default(SECTION, "kl_reduction")
    checkpoint_every_epochs: int = default(SECTION, "checkpoint_every_epochs")
    device: str = default(SECTION, "device")
    amp: bool = default(SECTION, "amp")
    compile: bool = default(SECTION, "compile")

    def __post_init__(self) -> None:
        check_fields(self, SECTION)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """Build from a plain mapping (``beta``/``gamma`` as mappings); unknown keys raise."""

        def schedule(name):
            def convert(value):
                if isinstance(value, ScheduleConfig):
                    return value
                return ScheduleConfig.from_dict(value, where=f"{SECTION}.{name}")

            return convert

        return from_mapping(cls, d, SECTION, beta=schedule("beta"), gamma=schedule("gamma"))


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU (and say so)."""
    if requested not in DEVICES:
        raise InputError(f"training.device = {requested!r}; expected one of {DEVICES}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "training.device = 'cuda' but CUDA is not available here; use 'auto' or 'cpu'"
        )
    if requested == "auto" and not torch.cuda.is_available():
        log.info("CUDA not available: training on CPU")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")
