"""PoonDomingosMeanOfQuantileSplit against a direct per-variable computation."""

from __future__ import annotations

import numpy as np
import pytest

from libspn_keras import initializers, layers
from tests.backend_utils import to_numpy


def reference(column: np.ndarray, k: int) -> np.ndarray:
    values = np.sort(column[np.isfinite(column)])
    return np.array([chunk.mean() for chunk in np.array_split(values, k)])


def test_region_leaf_locations_are_quantile_means_repeated_over_decompositions():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 5)) * np.arange(1, 6)
    init = initializers.PoonDomingosMeanOfQuantileSplit(data, samplewise_normalization=False)
    values = np.asarray(init((5, 3, 4, 1)))
    for var in range(5):
        for decomp in range(3):
            np.testing.assert_allclose(values[var, decomp, :, 0], reference(data[:, var], 4), rtol=1e-6)


def test_image_leaf_and_nan_values():
    rng = np.random.default_rng(1)
    data = rng.uniform(size=(30, 2, 3, 1))
    data[::4, 0, 0, 0] = np.nan
    init = initializers.PoonDomingosMeanOfQuantileSplit(data, samplewise_normalization=False)
    values = np.asarray(init((2, 3, 2, 1)))
    for h in range(2):
        for w in range(3):
            np.testing.assert_allclose(values[h, w, :, 0], reference(data[:, h, w, 0], 2), rtol=1e-6)


def test_samplewise_normalization_and_use_in_a_leaf():
    rng = np.random.default_rng(2)
    data = rng.normal(3.0, 2.0, size=(50, 4))
    init = initializers.PoonDomingosMeanOfQuantileSplit(data, samplewise_normalization=True)
    z = (data - data.mean(1, keepdims=True)) / (data.std(1, keepdims=True) + 1e-2)
    leaf = layers.NormalLeaf(num_components=2, location_initializer=init)
    leaf.build((None, 4, 1, 1))
    np.testing.assert_allclose(
        to_numpy(leaf.location)[0, :, 0, :, 0], [reference(z[:, v], 2) for v in range(4)], rtol=1e-5
    )


def test_mismatched_data_raises():
    init = initializers.PoonDomingosMeanOfQuantileSplit(np.zeros((10, 7)), samplewise_normalization=False)
    with pytest.raises(ValueError, match="cannot be mapped onto leaf parameters"):
        init((5, 1, 2, 1))
    with pytest.raises(ValueError, match="needs data"):
        initializers.PoonDomingosMeanOfQuantileSplit()((2, 1, 2, 1))
