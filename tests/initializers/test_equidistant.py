"""Equidistant spaces the leaf components (axis -2) by default."""

import numpy as np

from libspn_keras import initializers, layers
from tests.backend_utils import to_numpy


def test_leaf_components_are_equidistant_per_variable():
    leaf = layers.NormalLeaf(num_components=4, location_initializer=initializers.Equidistant(-1.5, 1.5))
    leaf.build((None, 5, 6, 1))
    np.testing.assert_allclose(to_numpy(leaf.location)[0, 2, 3, :, 0], [-1.5, -0.5, 0.5, 1.5], rtol=1e-6)
    assert np.all(to_numpy(leaf.location) == to_numpy(leaf.location)[:, :1, :1])


def test_last_axis_and_rank_one():
    np.testing.assert_allclose(np.asarray(initializers.Equidistant(0, 2, axis=-1)((2, 3)))[1], [0, 1, 2])
    np.testing.assert_allclose(np.asarray(initializers.Equidistant(0, 1)((3,))), [0, 0.5, 1])
