"""Point groups as rotations (cryoavae.geometry.point_groups): groups by name, arrays as given,
and the orders the model's pose search relies on."""

import numpy as np
import pytest

from cryoavae.geometry.point_groups import GROUP_ORDERS_3D, symmetry_group


def _closed_group_of_proper_rotations(group: np.ndarray) -> None:
    k = len(group)
    np.testing.assert_allclose(
        group @ group.transpose(0, 2, 1), np.eye(3)[None].repeat(k, 0), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(group), 1.0)
    products = (group[:, None] @ group[None]).reshape(-1, 1, 9)
    distance = np.abs(products - group.reshape(1, k, 9)).max(axis=-1)  # (k * k, k)
    assert (distance.min(axis=1) < 1e-9).all()  # every product is a member
    members = np.abs(group.reshape(k, 1, 9) - group.reshape(1, k, 9)).max(axis=-1)
    assert (members + np.eye(k) > 1e-6).all()  # and the members are distinct


@pytest.mark.parametrize("name, order", [("O", 24), ("t", 12), ("I", 60), ("D3", 6), ("C5", 5)])
def test_a_named_group_is_its_closed_set_of_proper_rotations(name, order):
    group = symmetry_group(name)
    assert group.shape == (order, 3, 3)
    _closed_group_of_proper_rotations(group)


def test_the_search_orders_name_groups_of_that_size_and_none_is_c1():
    for order, name in GROUP_ORDERS_3D.items():
        assert len(symmetry_group(name)) == order, name
    np.testing.assert_array_equal(symmetry_group(None), np.eye(3)[None])


def test_an_array_of_rotations_is_returned_as_it_is():
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    placed = np.stack([np.eye(3), turn, turn @ turn, turn.T])  # C4 in its own frame
    np.testing.assert_array_equal(symmetry_group(placed), placed)
    np.testing.assert_array_equal(symmetry_group(turn.ravel()), turn[None])  # one, flattened
