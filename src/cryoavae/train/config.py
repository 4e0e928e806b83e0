"""How to train: the ``training`` section of a study, and which device that means here."""

from __future__ import annotations

import logging

import torch

from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass, section_schema
from cryoavae.train.schedules import ScheduleConfig

log = logging.getLogger(__name__)

SECTION = "training"
DEVICES = tuple(section_schema(SECTION)["properties"]["device"]["enum"])


class TrainingConfig(
    section_dataclass(SECTION, nested={"beta": ScheduleConfig, "gamma": ScheduleConfig})
):
    """How to train: the YAML keys of ``training:``, with the schema's defaults and bounds
    (``beta`` and ``gamma`` are :class:`~cryoavae.train.schedules.ScheduleConfig`)."""


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
