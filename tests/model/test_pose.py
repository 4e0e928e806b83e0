"""Rotations from a pose vector (cryoavae.model.pose): proper rotations, the representations
agree, every encoding's zero pose is the identity (with finite gradients), and the 6-D pose is
Gram-Schmidt of its two vectors."""

import pytest
import torch

from cryoavae.model.pose import pose_to_rotation

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rotation_helpers_agree_and_are_rotations():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(6, 3, generator=gen)
    r = pose_to_rotation(v, 3)
    torch.testing.assert_close(
        r @ r.transpose(1, 2), torch.eye(3).expand(6, 3, 3), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(6))
    # the same rotation as a quaternion: (cos t/2, sin t/2 * axis)
    t = v.norm(dim=1, keepdim=True)
    q = torch.cat([torch.cos(t / 2), torch.sin(t / 2) * v / t], 1)
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(pose_to_rotation(q - identity, 3), r, atol=1e-5, rtol=0)
    # zero rotation vector: identity with finite gradients
    zero = torch.zeros(1, 3, requires_grad=True)
    pose_to_rotation(zero, 3).sum().backward()
    assert torch.isfinite(zero.grad).all()


@pytest.mark.parametrize("ndim, p", [(2, 0), (2, 1), (2, 2), (3, 0), (3, 3), (3, 4), (3, 6)])
def test_every_encodings_zero_pose_is_the_identity(ndim, p):
    """A zero pose means no turn (2-D ``(cos, sin)`` has no zero: its ``(1, 0)`` is)."""
    pose = torch.zeros(2, p)
    if (ndim, p) == (2, 2):
        pose[:, 0] = 1.0
    torch.testing.assert_close(pose_to_rotation(pose, ndim), torch.eye(ndim).expand(2, -1, -1))


def test_the_6d_pose_is_a_rotation_whose_first_column_follows_the_first_vector():
    gen = torch.Generator().manual_seed(1)
    pose = torch.randn(5, 6, generator=gen)
    r = pose_to_rotation(pose, 3)
    eye = torch.eye(3).expand(5, 3, 3)
    torch.testing.assert_close(r.transpose(1, 2) @ r, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(5))
    first = pose[:, :3] + torch.tensor([1.0, 0.0, 0.0])  # offset by the identity's first column
    torch.testing.assert_close(r[:, :, 0], first / first.norm(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="pose_dims 5"):
        pose_to_rotation(torch.zeros(1, 5), 3)
