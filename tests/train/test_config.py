"""How to train (cryoavae.train.config): the ``training`` section, and the device it means here."""

import logging

import pytest
import torch

from cryoavae.core.errors import InputError
from cryoavae.train.config import TrainingConfig, resolve_device
from cryoavae.train.schedules import ScheduleConfig


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cuda_where_there_is_none_is_refused_and_auto_falls_back_to_the_cpu(no_cuda, caplog):
    with pytest.raises(InputError, match="training.device = 'cuda' but CUDA is not available"):
        resolve_device("cuda")
    with caplog.at_level(logging.INFO, logger="cryoavae.train.config"):
        assert resolve_device("auto") == torch.device("cpu")
    assert "training on CPU" in caplog.text
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="training.device = 'tpu'"):
        resolve_device("tpu")


def test_auto_and_cuda_mean_the_gpu_where_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")  # asked for: kept


def test_the_section_nests_its_schedules_and_refuses_bad_keys_by_name():
    config = TrainingConfig.from_dict({"epochs": 3, "beta": {"value": 2.0}})
    assert config.epochs == 3
    assert config.beta == ScheduleConfig(value=2.0) and config.gamma == ScheduleConfig(value=10.0)
    with pytest.raises(InputError, match="training: unknown key 'epoch'"):
        TrainingConfig.from_dict({"epoch": 3})
    with pytest.raises(InputError, match="training.epochs = 0 is invalid"):
        TrainingConfig(epochs=0)
