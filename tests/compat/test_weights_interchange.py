"""Weights interchange with the original 0.6.0: ``get_weights`` / ``set_weights`` / weight files list its weights.

The expected lists are written from reading the original's ``build`` methods: leaf parameters
``[1, *variables, K, var_dim]`` (``BaseLeaf.build``'s ``distribution_shape``), sums' ``sum_weights``
(``DenseSum``: ``[scopes, decomps, in, sums]``, ``Local2DSum``: ``[H, W, C, sums]``, ``Conv2DSum``:
``[1, 1, C, sums]``, ``RootSum``: ``[1, 1, decomps * nodes, 1]``), ``Conv2DProduct``'s ``onehot_kernel``
(``[kh, kw, C, num_channels]``, ``[kh, kw, 1, 1]`` if depthwise) and ``PermuteAndPadScopesRandom``'s int32
``permutations`` ``[decomps, prod(factors)]``. Per layer, trainable weights come before non-trainable ones (Keras).
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from libspn_keras import layers, models
from tests.backend_utils import to_numpy

# ----------------------------------------------------------------------------------------------- expected lists

README_RATSPN = [
    ("location", (1, 16, 4, 4, 1)),
    ("scale", (1, 16, 4, 4, 1)),
    ("permutations", (4, 16)),
    ("sum_weights", (8, 4, 16, 8)),
    ("sum_weights", (4, 4, 64, 8)),
    ("sum_weights", (1, 1, 32, 1)),
]

README_DGCSPN = [
    ("location", (1, 28, 28, 16, 1)),
    ("scale", (1, 28, 28, 16, 1)),
    ("onehot_kernel", (2, 2, 1, 1)),
    ("sum_weights", (14, 14, 16, 16)),
    ("onehot_kernel", (2, 2, 1, 1)),
    ("sum_weights", (7, 7, 16, 32)),
    ("onehot_kernel", (2, 2, 1, 1)),
    ("sum_weights", (8, 8, 32, 32)),
    ("onehot_kernel", (2, 2, 1, 1)),
    ("sum_weights", (10, 10, 32, 64)),
    ("onehot_kernel", (2, 2, 1, 1)),
    ("sum_weights", (14, 14, 64, 64)),
    ("onehot_kernel", (2, 2, 1, 1)),
    ("sum_weights", (1, 1, 4096, 10)),
    ("sum_weights", (1, 1, 10, 1)),
]

SMALL_REGION = [
    ("location", (1, 4, 2, 2, 1)),
    ("scale", (1, 4, 2, 2, 1)),
    ("permutations", (2, 4)),
    ("sum_weights", (2, 2, 4, 2)),
    ("sum_weights", (1, 1, 8, 1)),
]

SMALL_SPATIAL = [
    ("location", (1, 4, 4, 2, 1)),
    ("scale", (1, 4, 4, 2, 1)),
    ("onehot_kernel", (2, 2, 1, 1)),
    ("sum_weights", (2, 2, 2, 3)),
    ("onehot_kernel", (2, 2, 3, 4)),
    ("sum_weights", (1, 1, 4, 2)),
    ("sum_weights", (1, 1, 2, 1)),
]

LINEAR = {"logspace_accumulators": False}


def weight_list(model: keras.Model) -> list[tuple[str, tuple[int, ...]]]:
    return [(weight.name, tuple(weight.shape)) for weight in model.weights]


def readme_ratspn(seed: int = 0) -> models.SequentialSumProductNetwork:
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(16,)),
            layers.FlatToRegions(num_decomps=4),
            layers.NormalLeaf(num_components=4),
            layers.PermuteAndPadScopesRandom(seed=seed),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=8),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=8),
            layers.ReduceProduct(num_factors=4),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )


def readme_dgcspn() -> keras.Sequential:
    def product(dilations: int, padding: str, strides: int = 1) -> layers.Conv2DProduct:
        return layers.Conv2DProduct(
            depthwise=True, strides=strides, dilations=dilations, kernel_size=2, padding=padding
        )

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.NormalLeaf(num_components=16),
            product(1, "valid", strides=2),
            layers.Local2DSum(num_sums=16),
            product(1, "valid", strides=2),
            layers.Local2DSum(num_sums=32),
            product(1, "full"),
            layers.Local2DSum(num_sums=32),
            product(2, "full"),
            layers.Local2DSum(num_sums=64),
            product(4, "full"),
            layers.Local2DSum(num_sums=64),
            product(8, "final"),
            layers.SpatialToRegions(),
            layers.DenseSum(num_sums=10),
            layers.RootSum(return_weighted_child_logits=True),
        ]
    )


def small_region(seed: int = 0, scale_trainable: bool = False) -> models.SequentialSumProductNetwork:
    """A RAT-SPN ending ``DenseProduct -> RootSum`` over two decompositions (no ``Undecompose``)."""
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(4,)),
            layers.FlatToRegions(num_decomps=2),
            layers.NormalLeaf(num_components=2, scale_trainable=scale_trainable),
            layers.PermuteAndPadScopesRandom(factors=[2, 2], seed=seed),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, **LINEAR),
            layers.DenseProduct(num_factors=2),
            layers.RootSum(return_weighted_child_logits=False, **LINEAR),
        ]
    )


def small_spatial(seed: int = 0) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.Input(shape=(4, 4, 1)),
            layers.NormalLeaf(num_components=2),
            layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, depthwise=True),
            layers.Local2DSum(num_sums=3, **LINEAR),
            layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, num_channels=4, seed=seed),
            layers.Conv2DSum(num_sums=2, **LINEAR),
            layers.SpatialToRegions(),
            layers.RootSum(return_weighted_child_logits=False, **LINEAR),
        ]
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (readme_ratspn, README_RATSPN),
        (readme_dgcspn, README_DGCSPN),
        (small_region, SMALL_REGION),
        (small_spatial, SMALL_SPATIAL),
    ],
    ids=["readme-ratspn", "readme-dgcspn", "small-region", "small-spatial"],
)
def test_weight_list_is_the_originals(make, expected):
    model = make()
    assert weight_list(model) == expected
    assert [w.shape for w in model.get_weights()] == [shape for _, shape in expected]
    permutations = [w for w in model.weights if w.name == "permutations"]
    assert all(w.dtype == "int32" and not w.trainable for w in permutations)


def test_readme_dgcspn_summary_parameter_counts():
    # The seeds' README summary: 1,214,498 parameters, 12,568 of them non-trainable (scales and kernels).
    model = readme_dgcspn()
    assert model.count_params() == 1_214_498
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 12_568


# ----------------------------------------------------------------------- original-layout weights, numpy reference


def original_region_weights(rng: np.random.Generator) -> list[np.ndarray]:
    """Weights of ``small_region`` in the original's layout and order."""
    return [
        rng.normal(size=(1, 4, 2, 2, 1)),  # location
        rng.uniform(0.5, 1.5, size=(1, 4, 2, 2, 1)),  # scale
        np.array([[3, 1, 0, 2], [2, 0, 3, 1]]),  # permutations [decomps, scopes]
        rng.uniform(0.1, 1.0, size=(2, 2, 4, 2)),  # sum_weights [scopes, decomps, in, sums]
        rng.uniform(0.1, 1.0, size=(1, 1, 8, 1)),  # root sum_weights
    ]


def region_reference(x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """``log p(x)`` of ``small_region`` with ``weights``, node by node."""
    location, scale, perms, sums, root = weights
    out = np.zeros(len(x))
    for b in range(len(x)):
        children = []
        for d in range(2):
            leaf = []
            for s in range(4):
                var = perms[d, s]
                if var < 0:
                    leaf.append(np.ones(2))
                else:
                    leaf.append(norm.pdf(x[b, var], location[0, var, d, :, 0], scale[0, var, d, :, 0]))
            mixed = []
            for s in range(2):
                products = np.array(
                    [leaf[2 * s][i] * leaf[2 * s + 1][j] for i, j in itertools.product(range(2), repeat=2)]
                )
                w = sums[s, d] / sums[s, d].sum(axis=0)
                mixed.append(products @ w)
            children.extend(mixed[0][i] * mixed[1][j] for i, j in itertools.product(range(2), repeat=2))
        w_root = root.reshape(-1) / root.sum()
        out[b] = np.log(np.dot(children, w_root))
    return out


def test_set_weights_in_the_originals_layout_gives_the_reference_log_likelihood(float64):
    rng = np.random.default_rng(0)
    weights = original_region_weights(rng)
    model = small_region(seed=5)
    model.set_weights(weights)
    x = rng.normal(size=(6, 4))
    expected = region_reference(x, weights)
    np.testing.assert_allclose(to_numpy(model(x))[:, 0], expected, rtol=1e-10)
    np.testing.assert_allclose(model.predict(x, verbose=0)[:, 0], expected, rtol=1e-10)
    np.testing.assert_array_equal(model.layers[2].permutations, weights[2])


def test_trainable_scale_weights_are_the_originals_softplus_inverse(float64):
    """The original stores a trainable scale as ``r = softplus^-1(scale)``: its weight ``r`` means ``softplus(r)``."""
    rng = np.random.default_rng(5)
    weights = original_region_weights(rng)
    weights[1] = rng.uniform(-1.9, 2.0, size=weights[1].shape)  # raw values, negative ones included
    model = small_region(seed=5, scale_trainable=True)
    assert weight_list(model) == SMALL_REGION
    model.set_weights(weights)
    x = rng.normal(size=(6, 4))
    expected = region_reference(x, [weights[0], np.log1p(np.exp(weights[1])), *weights[2:]])
    np.testing.assert_allclose(to_numpy(model(x))[:, 0], expected, rtol=1e-10)
    np.testing.assert_allclose(model.predict(x, verbose=0)[:, 0], expected, rtol=1e-10)
    np.testing.assert_array_equal(model.get_weights()[1], weights[1])


def test_copied_permutations_make_another_random_model_compute_the_same_values(float64):
    x = np.random.default_rng(1).normal(size=(5, 4))
    first, second = small_region(seed=1), small_region(seed=2)
    assert not np.array_equal(first.layers[2].permutations, second.layers[2].permutations)
    before = second.predict(x, verbose=0)  # traced with its own permutations
    second.set_weights(first.get_weights())
    assert not np.allclose(before, first.predict(x, verbose=0))
    np.testing.assert_allclose(second.predict(x, verbose=0), first.predict(x, verbose=0), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(second(x)), to_numpy(first(x)), rtol=1e-12)
    assert second.layers[2].get_config()["permutations"] == first.layers[2].permutations.tolist()


def spatial_reference(x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """``log p(x)`` of ``small_spatial`` with ``weights`` (original layout), in log-space with explicit loops."""
    location, scale, depthwise_kernel, local, onehot, conv, root = weights
    leaf = norm.logpdf(x[:, :, :, np.newaxis, 0], location[0, ..., 0], scale[0, ..., 0])  # [b, 4, 4, 2]
    batch = len(x)
    prod1 = np.zeros((batch, 2, 2, 2))
    for i, j, c, u, v in itertools.product(range(2), range(2), range(2), range(2), range(2)):
        prod1[:, i, j, c] += depthwise_kernel[u, v, 0, 0] * leaf[:, 2 * i + u, 2 * j + v, c]
    sums1 = np.zeros((batch, 2, 2, 3))
    for i, j, o in itertools.product(range(2), range(2), range(3)):
        sums1[:, i, j, o] = logsumexp(prod1[:, i, j] + np.log(local[i, j, :, o] / local[i, j, :, o].sum()), axis=-1)
    prod2 = np.zeros((batch, 4))
    for o, u, v in itertools.product(range(4), range(2), range(2)):
        prod2[:, o] += sums1[:, u, v, int(np.argmax(onehot[u, v, :, o]))]
    sums2 = np.stack(
        [logsumexp(prod2 + np.log(conv[0, 0, :, o] / conv[0, 0, :, o].sum()), axis=-1) for o in range(2)], axis=-1
    )
    return logsumexp(sums2 + np.log(root.reshape(-1) / root.sum()), axis=-1)


def original_spatial_weights(rng: np.random.Generator) -> list[np.ndarray]:
    selected = np.array([[[0, 2, 1, 2], [1, 1, 0, 2]], [[2, 0, 0, 1], [0, 2, 1, 1]]])  # [kh, kw, out]
    onehot = np.swapaxes(np.eye(3)[selected], -1, -2)  # the original's [kh, kw, C, out]
    return [
        rng.normal(size=(1, 4, 4, 2, 1)),
        rng.uniform(0.5, 1.5, size=(1, 4, 4, 2, 1)),
        np.ones((2, 2, 1, 1)),
        rng.uniform(0.1, 1.0, size=(2, 2, 2, 3)),
        onehot,
        rng.uniform(0.1, 1.0, size=(1, 1, 4, 2)),
        rng.uniform(0.1, 1.0, size=(1, 1, 2, 1)),
    ]


def test_spatial_weights_in_the_originals_layout_give_the_reference(float64):
    rng = np.random.default_rng(2)
    weights = original_spatial_weights(rng)
    model = small_spatial(seed=3)
    model.set_weights(weights)
    x = rng.normal(size=(5, 4, 4, 1))
    expected = spatial_reference(x, weights)
    np.testing.assert_allclose(to_numpy(model(x))[:, 0], expected, rtol=1e-10)
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict(x, verbose=0)[:, 0], expected, rtol=1e-10)


@pytest.mark.parametrize("make", [small_region, small_spatial], ids=["region", "spatial"])
def test_weight_file_round_trip_restores_outputs(tmp_path, float64, make):
    x = np.random.default_rng(3).normal(size=(4, 4) if make is small_region else (4, 4, 4, 1))
    source = make(seed=1)
    rng = np.random.default_rng(4)
    source.set_weights([w * rng.uniform(0.8, 1.2, w.shape) if w.dtype.kind == "f" else w for w in source.get_weights()])
    path = str(tmp_path / "model.weights.h5")
    source.save_weights(path)
    target = make(seed=2)
    target.load_weights(path)
    np.testing.assert_allclose(to_numpy(target(x)), to_numpy(source(x)), rtol=1e-12)
    for a, b in zip(source.get_weights(), target.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_invalid_permutations_from_weights_are_rejected(tmp_path, float64):
    model = small_region(seed=1)
    weights = model.get_weights()
    weights[2] = np.array([[3, 1, 0, 0], [2, 0, 3, 1]])  # scope 0 twice in decomposition 0
    match = r"Layer 'permute_and_pad_scopes_random.*': decomposition 0 uses a scope more than once"
    with pytest.raises(ValueError, match=match):
        model.set_weights(weights)
    variable = model.layers[2].permutations_variable
    type(variable).assign(variable, weights[2])  # past the check of assignments, as a corrupted file would be
    with pytest.raises(ValueError, match=match):
        model(np.zeros((2, 4)))
    path = str(tmp_path / "bad.weights.h5")
    model.save_weights(path)
    with pytest.raises(ValueError, match=match):
        small_region(seed=2).load_weights(path)


@pytest.mark.parametrize(
    ("permutations", "match"),
    [
        ([[3, 1, 0, 0], [2, 0, 3, 1]], r"decomposition 0 uses a scope more than once.*Received: permutations\[0\]"),
        ([[3, 1, 0, -1], [2, 0, 3, 1]], r"permutation of the scopes 0..3, each exactly once.*permutations\[0\]"),
        ([[3, 1, 0, 2], [2, 4, 3, 1]], r"entries in \[-1, 4\).*Received: min=0, max=4"),
        ([[3, 1, 0, 2], [2, 0, 3, -2]], r"entries in \[-1, 4\).*Received: min=-2, max=3"),
    ],
    ids=["repeated", "missing-scope", "above-range", "below-range"],
)
def test_set_weights_rejects_invalid_permutations_at_once(float64, permutations, match):
    model = small_region(seed=1)
    layer = model.layers[2]
    before = layer.permutations.copy()
    weights = model.get_weights()
    weights[2] = np.array(permutations)
    with pytest.raises(ValueError, match=rf"Layer '{layer.name}'.*{match}"):
        model.set_weights(weights)
    with pytest.raises(ValueError, match=rf"Layer '{layer.name}'.*{match}"):
        layer.set_weights([np.array(permutations)])
    np.testing.assert_array_equal(layer.permutations, before)
    layer.set_weights([before[::-1].copy()])  # a valid permutation is taken
    np.testing.assert_array_equal(layer.permutations, before[::-1])
