"""Schedules: hand-computed values, shapes of the rise, and bounds that fail early."""

import math

import numpy as np
import pytest

from cryoavae.core.errors import InputError
from cryoavae.train.schedules import ScheduleConfig


def values(config: ScheduleConfig, n_epochs: int) -> np.ndarray:
    return np.array([config.value_at(e, n_epochs) for e in range(n_epochs)])


def test_flat_is_constant():
    assert np.all(values(ScheduleConfig(3.5), 7) == 3.5)


def test_cycle_linear_hand_computed():
    config = ScheduleConfig(1.0, "cycle_linear", n_cycles=2, ratio=0.5)
    # period 4 epochs, rising during the first 2: 0, 0.5, then the top for 2 epochs
    np.testing.assert_allclose(values(config, 8), [0, 0.5, 1, 1, 0, 0.5, 1, 1])


def test_cycle_linear_with_min_value():
    config = ScheduleConfig(4.0, "cycle_linear", min_value=2.0, n_cycles=1, ratio=0.5)
    np.testing.assert_allclose(values(config, 4), [2, 3, 4, 4])


def test_ramp_hand_computed():
    config = ScheduleConfig(10.0, "ramp", ratio=0.5)
    np.testing.assert_allclose(values(config, 10), [0, 2, 4, 6, 8, 10, 10, 10, 10, 10])


@pytest.mark.parametrize("schedule", ["cycle_sigmoid", "cycle_cosine", "cycle_linear"])
def test_cycle_shapes_rise_monotonically_from_min_to_value(schedule):
    config = ScheduleConfig(2.0, schedule, min_value=0.5, n_cycles=2, ratio=0.5)
    v = values(config, 40)  # two cycles of 20 epochs, rising for 10
    for cycle in (v[:20], v[20:]):
        assert cycle[0] == pytest.approx(0.5)
        assert np.all(np.diff(cycle) >= -1e-12)
        assert np.all(cycle[10:] == pytest.approx(2.0))
        assert cycle[9] < 2.0


def test_cosine_is_halfway_at_half_the_rise():
    config = ScheduleConfig(1.0, "cycle_cosine", n_cycles=1, ratio=1.0)
    assert config.value_at(5, 10) == pytest.approx(0.5)
    assert config.value_at(2, 10) == pytest.approx(0.5 * (1 - math.cos(math.pi * 0.2)))


def test_sigmoid_is_symmetric_about_half_the_rise():
    config = ScheduleConfig(1.0, "cycle_sigmoid", n_cycles=1, ratio=1.0)
    assert config.value_at(5, 10) == pytest.approx(0.5)
    assert config.value_at(2, 10) + config.value_at(8, 10) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"value": 1.0, "ratio": 0.0}, "ratio"),
        ({"value": 1.0, "ratio": 1.5}, "ratio"),
        ({"value": 1.0, "n_cycles": 0}, "n_cycles"),
        ({"value": 1.0, "min_value": 2.0}, "min_value"),
        ({"value": -1.0}, "value"),
        ({"value": 1.0, "schedule": "cyclic"}, "schedule"),
    ],
)
def test_bad_settings_fail_naming_the_key(kwargs, word):
    with pytest.raises(InputError, match=word):
        ScheduleConfig(**kwargs)


def test_from_dict_names_the_yaml_path():
    with pytest.raises(InputError, match=r"training\.beta: unknown key 'rate'"):
        ScheduleConfig.from_dict({"value": 1.0, "rate": 2}, where="training.beta")
    with pytest.raises(InputError, match=r"training\.gamma\.ratio = 0 is invalid; expected > 0"):
        ScheduleConfig.from_dict({"value": 1.0, "ratio": 0}, where="training.gamma")
    with pytest.raises(InputError, match="missing key 'value'"):
        ScheduleConfig.from_dict({"schedule": "flat"})
    config = ScheduleConfig.from_dict({"value": 2, "schedule": "ramp"})
    assert config == ScheduleConfig(2, "ramp")


def test_epoch_outside_the_run_is_refused():
    with pytest.raises(ValueError):
        ScheduleConfig(1.0).value_at(5, 5)
