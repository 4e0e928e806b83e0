"""The model's settings (cryoavae.model.config): lists become tuples, and unknown keys and
inconsistent combinations are refused with the key named."""

import pytest

from cryoavae.core.errors import InputError
from cryoavae.model.config import ModelConfig


def test_from_dict_makes_tuples_and_refuses_unknown_keys():
    config = ModelConfig.from_dict({"channels": [4, 8], "ndim": 2, "box_size_px": 16})
    assert config.channels == (4, 8)
    with pytest.raises(InputError, match="unknown key 'latent_dim'"):
        ModelConfig.from_dict({"latent_dim": 4})


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"ndim": 3, "pose_encoding": "circular", "pose_dims": 2}, "circular"),
        ({"ndim": 2, "pose_encoding": "circular", "pose_dims": 1}, "circular"),
        ({"ndim": 2, "decoder": "gaussian_splat", "pose_dims": 4}, "pose_dims"),
        ({"ndim": 3, "decoder": "gaussian_splat", "pose_dims": 2}, "pose_dims"),
        ({"box_size_px": 8, "channels": (4, 4, 4, 4)}, "channels"),
        ({"decoder": "mlp"}, "decoder"),
    ],
)
def test_inconsistent_configs_are_refused(kwargs, word):
    with pytest.raises(InputError, match=word):
        ModelConfig(**kwargs)
