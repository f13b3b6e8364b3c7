"""KMeans leaf-location initializer: recovered centers, Lloyd fixed points, grouping, shapes, seeds and errors."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from libspn_keras import initializers, layers
from tests.backend_utils import to_numpy


def clustered_data(rng, centers, num_samples, noise=0.05):
    """``centers [H, W, k, D]`` -> samples ``[N, H, W, D]``, each cell drawing its own cluster label."""
    height, width, k, dim = centers.shape
    labels = rng.integers(k, size=(num_samples, height, width))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return centers[rows, cols, labels] + noise * rng.normal(size=(num_samples, height, width, dim))


def match_sets(found, expected):
    """Largest distance between matched points of two sets of ``k`` points (best of all matchings)."""
    k = len(expected)
    return min(np.abs(found[list(perm)] - expected).max() for perm in itertools.permutations(range(k)))


@pytest.mark.parametrize("group_centroids", [False, True])
def test_recovers_well_separated_centers_of_every_cell(group_centroids):
    rng = np.random.default_rng(0)
    centers = rng.uniform(-10, 10, size=(3, 4, 3, 2))
    centers[..., 1, :] = centers[..., 0, :] + 6.0  # keep the three centers of a cell apart
    centers[..., 2, :] = centers[..., 0, :] - 6.0
    data = clustered_data(rng, centers, num_samples=300)
    init = initializers.KMeans(
        data, samplewise_normalization=False, data_fraction=0.5, group_centroids=group_centroids, seed=1
    )

    locations = np.asarray(init((3, 4, 3, 2), dtype="float64"))

    assert locations.shape == (3, 4, 3, 2) and locations.dtype == np.float64
    for i, j in itertools.product(range(3), range(4)):
        assert match_sets(locations[i, j], centers[i, j]) < 0.05


def test_centroids_are_means_of_their_voronoi_cells():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(200, 2, 2, 3))  # no cluster structure: Lloyd's fixed point is still checkable
    init = initializers.KMeans(
        data,
        samplewise_normalization=False,
        data_fraction=1.0,
        stop_epsilon=0.0,
        num_iters=500,
        group_centroids=False,
        max_num_clusters=4,
        seed=2,
    )
    locations = np.asarray(init((2, 2, 4, 3), dtype="float64"))
    for i, j in itertools.product(range(2), range(2)):
        points, centroids = data[:, i, j], locations[i, j]
        nearest = np.argmin(((points[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
        for c in range(4):
            np.testing.assert_allclose(centroids[c], points[nearest == c].mean(axis=0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("use_groups", [False, True])
def test_group_centroids_line_components_up_across_cells(use_groups):
    rng = np.random.default_rng(2)
    shared = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, -4.0]])
    offsets = 0.3 * rng.normal(size=(4, 4, 1, 2))  # cells differ slightly
    data = clustered_data(rng, shared + offsets, num_samples=200)
    init = initializers.KMeans(data, samplewise_normalization=False, use_groups=use_groups, seed=3)

    locations = np.asarray(init((4, 4, 4, 2)))

    # Component c of every cell is near the same shared center (k-means alone orders clusters arbitrarily).
    first = locations[0, 0]
    order = [int(np.argmin(np.abs(shared - c).sum(-1))) for c in first]
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_allclose(locations, np.broadcast_to(shared[order], locations.shape), atol=1.5)
    if use_groups:
        np.testing.assert_array_equal(locations, np.broadcast_to(locations[0, 0], locations.shape))
    else:
        for i, j in itertools.product(range(4), range(4)):
            assert match_sets(locations[i, j], shared + offsets[i, j]) < 0.1


def test_more_components_than_clusters_are_jittered_copies():
    rng = np.random.default_rng(3)
    centers = np.broadcast_to(np.array([[-3.0], [3.0]]), (2, 2, 2, 1))
    data = clustered_data(rng, centers, num_samples=100, noise=0.01)
    init = initializers.KMeans(
        data, samplewise_normalization=False, max_num_clusters=2, jitter_factor=0.05, seed=4, data_fraction=1.0
    )

    locations = np.asarray(init((2, 2, 6, 1), dtype="float64"))

    assert locations.shape == (2, 2, 6, 1)
    copies = locations[..., 0].reshape(2, 2, 2, 3)  # component c * 3 + r is copy r of centroid c
    base = np.round(copies[..., :1])
    assert np.all(np.abs(base) == 3.0) and np.all(base[..., 0, 0] != base[..., 1, 0])
    assert np.all(np.abs(copies - base) <= 2 * 0.05 + 0.01)  # noise truncated at two standard deviations
    assert np.all(np.std(copies, axis=-1) > 0)  # the copies differ


def test_reproducible_with_a_seed():
    data = np.random.default_rng(4).normal(size=(100, 3, 3, 2))
    kwargs = dict(max_num_clusters=3, seed=5)
    a = np.asarray(initializers.KMeans(data, **kwargs)((3, 3, 3, 2)))
    b = np.asarray(initializers.KMeans(data, **kwargs)((3, 3, 3, 2)))
    c = np.asarray(initializers.KMeans(data, max_num_clusters=3, seed=6)((3, 3, 3, 2)))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    keras.utils.set_random_seed(7)  # without a seed, Keras' global seeding makes it reproducible
    d = np.asarray(initializers.KMeans(data, centroid_initialization="random")((3, 3, 3, 2)))
    keras.utils.set_random_seed(7)
    e = np.asarray(initializers.KMeans(data, centroid_initialization="random")((3, 3, 3, 2)))
    np.testing.assert_array_equal(d, e)


def test_samplewise_normalization_removes_per_sample_scale_and_shift():
    rng = np.random.default_rng(5)
    data = rng.normal(size=(80, 2, 3, 2))
    scaled = data * rng.uniform(0.5, 3.0, size=(80, 1, 1, 1)) + rng.normal(size=(80, 1, 1, 1))
    kwargs = dict(normalization_epsilon=1e-12, max_num_clusters=2, seed=8)
    a = np.asarray(initializers.KMeans(data, **kwargs)((2, 3, 2, 2), dtype="float64"))
    b = np.asarray(initializers.KMeans(scaled, **kwargs)((2, 3, 2, 2), dtype="float64"))
    np.testing.assert_allclose(a, b, atol=1e-8)
    flat = data.reshape(80, -1)
    assert np.abs(a).max() < np.abs((flat - flat.mean(1, keepdims=True)) / flat.std(1, keepdims=True)).max()


def test_downsample_clusters_blocks_of_cells():
    rng = np.random.default_rng(6)
    block_centers = rng.uniform(-10, 10, size=(2, 2, 1, 1)) + np.array([[-3.0], [3.0]])  # [2, 2, 2, 1]
    centers = np.repeat(np.repeat(block_centers, 2, axis=0), 2, axis=1)[:3]  # [3, 4, 2, 1]: a partial last row
    labels = np.repeat(np.repeat(rng.integers(2, size=(200, 2, 2)), 2, axis=1), 2, axis=2)[:, :3]  # per block
    rows, cols = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    data = centers[rows, cols, labels] + 0.01 * rng.normal(size=(200, 3, 4, 1))
    init = initializers.KMeans(data, samplewise_normalization=False, downsample=2, group_centroids=False, seed=9)

    locations = np.asarray(init((3, 4, 2, 1), dtype="float64"))

    assert locations.shape == (3, 4, 2, 1)
    for i, j in itertools.product(range(3), range(4)):
        np.testing.assert_array_equal(locations[i, j], locations[i // 2 * 2, j // 2 * 2])
        assert match_sets(locations[i, j], centers[i, j]) < 0.05


def test_initializes_a_normal_leaf_and_serializes(float64):
    rng = np.random.default_rng(7)
    data = rng.normal(size=(50, 3, 3, 2))
    init = initializers.KMeans(data, max_num_clusters=4, seed=10)
    leaf = layers.NormalLeaf(num_components=4, location_initializer=init)
    leaf.build((None, 3, 3, 2))
    np.testing.assert_array_equal(to_numpy(leaf.location)[0], np.asarray(init((3, 3, 4, 2), dtype="float64")))

    config = init.get_config()
    assert config["data"] is None and config["seed"] == 10 and config["max_num_clusters"] == 4
    restored = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert type(restored) is initializers.KMeans and restored.get_config() == config
    assert initializers.KMeans.from_config(config).get_config() == config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(data_fraction=0.0), r"0 < data_fraction <= 1. Received: data_fraction=0.0"),
        (dict(data_fraction=1.5), "data_fraction=1.5"),
        (dict(normalization_epsilon=0.0), "normalization_epsilon > 0"),
        (dict(stop_epsilon=-1.0), "stop_epsilon >= 0"),
        (dict(jitter_factor=-0.1), "jitter_factor >= 0"),
        (dict(num_iters=0), "num_iters to be a positive integer. Received: num_iters=0"),
        (dict(max_num_clusters=2.5), "max_num_clusters to be a positive integer"),
        (dict(downsample=0), "downsample to be a positive integer or None. Received: downsample=0"),
        (dict(centroid_initialization="kmeans"), r"centroid_initialization in \('kmeans\+\+', 'random'\)"),
        (dict(data=np.zeros((10, 4))), r"\[num_samples, height, width, var_dim\]. Received: data.shape=\(10, 4\)"),
        (dict(data=np.full((10, 2, 2, 1), np.nan)), "finite data"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        initializers.KMeans(**kwargs)


@pytest.mark.parametrize(
    ("data_shape", "shape", "kwargs", "match"),
    [
        (None, (2, 2, 2, 1), {}, "needs data to learn centroids from. Received: data=None"),
        ((10, 2, 2, 1), (2, 3, 2, 1), {}, r"Received: shape=\(2, 3, 2, 1\) for data.shape=\(10, 2, 2, 1\)"),
        ((10, 2, 2, 1), (4, 2, 1), {}, r"Received: shape=\(4, 2, 1\)"),
        ((10, 2, 2, 1), (2, 2, 6, 1), dict(max_num_clusters=4), "multiple of max_num_clusters=4.*num_components=6"),
        ((3, 2, 2, 1), (2, 2, 4, 1), {}, "needs at least 4 samples to find 4 clusters. Received: 3"),
    ],
)
def test_bad_calls(data_shape, shape, kwargs, match):
    data = None if data_shape is None else np.random.default_rng(0).normal(size=data_shape)
    init = initializers.KMeans(data, **kwargs)
    with pytest.raises(ValueError, match=match):
        init(shape)
