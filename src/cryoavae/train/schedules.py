"""Per-epoch schedules for the loss weights beta (KL) and gamma (affinity).

Cyclical annealing (Fu et al. 2019, "Cyclical annealing schedule") splits training into
``n_cycles`` equal cycles; in each, the weight rises from ``min_value`` to ``value`` during the
first ``ratio`` of the cycle and then stays at ``value``. ``ramp`` is a single such rise over the
whole run; ``flat`` is ``value`` throughout.

The original Affinity-VAE code divided by zero for some of its defaults; here every bound is
checked when the config is built, so a bad schedule fails before training starts.
"""

from __future__ import annotations

import math
from typing import Any

from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass

SECTION = "training.beta"  # training.gamma has the same schema ($defs.schedule)

# The sigmoid shape spans logistic(-6)..logistic(6), rescaled to run exactly from 0 to 1.
_SIGMOID_HALF_WIDTH = 6.0


class ScheduleConfig(section_dataclass(SECTION, label="schedule")):
    """A weight that changes with the epoch: the YAML keys of ``training.beta`` and
    ``training.gamma``, with the schema's defaults and bounds.

    ``value``: the weight reached (and kept by ``flat``); ``min_value``: where each rise starts;
    ``n_cycles``: number of rises for the ``cycle_*`` schedules; ``ratio``: fraction of a cycle
    (or, for ``ramp``, of the run) spent rising, in (0, 1].
    """

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "schedule") -> ScheduleConfig:
        """Build from a YAML mapping; unknown keys and a missing ``value`` raise InputError."""
        if isinstance(d, dict) and "value" not in d:
            raise InputError(f"{where}: missing key 'value' (the weight, a number >= 0)")
        return super().from_dict(d, where)

    def value_at(self, epoch: int, n_epochs: int) -> float:
        """The weight for 0-based ``epoch`` of a run of ``n_epochs`` epochs."""
        if n_epochs < 1 or not 0 <= epoch < n_epochs:
            raise ValueError(f"value_at: epoch {epoch} outside a run of {n_epochs} epochs")
        if self.schedule == "flat":
            return float(self.value)
        if self.schedule == "ramp":
            progress = epoch / (n_epochs * self.ratio)
            shape = "linear"
        else:
            period = n_epochs / self.n_cycles
            phase = (epoch % period) / period  # in [0, 1)
            progress = phase / self.ratio
            shape = self.schedule.removeprefix("cycle_")
        t = _shape(min(progress, 1.0), shape)
        return float(self.min_value + (self.value - self.min_value) * t)


def _shape(progress: float, shape: str) -> float:
    """Map progress in [0, 1] to a weight fraction in [0, 1], monotone, 0 -> 0 and 1 -> 1."""
    if shape == "linear":
        return progress
    if shape == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    # sigmoid
    lo = 1.0 / (1.0 + math.exp(_SIGMOID_HALF_WIDTH))
    s = 1.0 / (1.0 + math.exp(-_SIGMOID_HALF_WIDTH * (2.0 * progress - 1.0)))
    return (s - lo) / (1.0 - 2.0 * lo)
