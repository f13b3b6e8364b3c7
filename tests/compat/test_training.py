"""Training means what it meant in the original LibSPN Keras 0.6.0 (issue 17, item 3).

The original's ``OnlineExpectationMaximization`` applied ``v <- (1 - lr) v + lr * (-g)`` to every variable, where
``-g`` is what the sum ops sent backward: for its soft EM op the counts of each sum divided by their total (its
``divide_no_nan(dy, |sum(dy)|)``), for its hard EM ops the counts themselves. Its default accumulator constraint,
``GreaterEqualEpsilonNormalized``, then renormalized each sum, and also applied to the initial accumulators. The
references below compute counts by enumerating the model by hand in numpy, independently of the library.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import libspn_keras as spnk
from libspn_keras import constraints, initializers, layers, losses, models, optimizers, sum_ops
from tests.backend_utils import to_numpy

X = np.array([[0, 1], [1, 1], [0, 0], [1, 0], [0, 1], [0, 1]], "float64")
DENSE = np.array(  # [scope, child (state), sum]: the DenseSum's initial weights, normalized per sum
    [[[0.7, 0.2], [0.3, 0.8]], [[0.4, 0.9], [0.6, 0.1]]]
)
ROOT = np.array([0.35, 0.65])
OPS = {
    "soft": sum_ops.SumOpEMBackprop,
    "hard": sum_ops.SumOpHardEMBackprop,
    "unweighted_hard": sum_ops.SumOpUnweightedHardEMBackprop,
}


def two_variable_spn(op: sum_ops.SumOpBase, **compile_kwargs: object) -> models.SequentialSumProductNetwork:
    """``root = sum_k r_k prod_s sum_i w[s, i, k] [x_s = i]``: two sums per variable, a product per sum index."""
    model = models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(2,)),
            layers.IndicatorLeaf(num_components=2),
            layers.DenseSum(num_sums=2, sum_op=op),
            layers.ReduceProduct(num_factors=2),
            layers.RootSum(return_weighted_child_logits=False, sum_op=op),
        ]
    )
    model.layers[2].accumulators.assign(DENSE[:, np.newaxis])
    model.layers[4].accumulators.assign(ROOT[np.newaxis, np.newaxis, :, np.newaxis])  # [1, 1, child, 1]
    return model


def reference_counts(x: np.ndarray, kind: str, dense: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch-averaged edge counts ``(dense [scope, child, sum], root [child])`` of ``two_variable_spn``."""
    dense_counts, root_counts = np.zeros_like(dense), np.zeros_like(root)
    for sample in x.astype(int):
        products = np.array([np.prod([dense[s, sample[s], k] for s in range(2)]) for k in range(2)])
        if kind == "soft":
            share = root * products / np.sum(root * products)  # posterior of each product
        else:  # the winner of the weighted (hard) or unweighted (unweighted hard) children of the root
            share = np.eye(2)[np.argmax(root * products if kind == "hard" else products)]
        root_counts += share
        for s in range(2):
            dense_counts[s, sample[s]] += share  # each sum has a single non-zero child, its observed state
    return dense_counts / len(x), root_counts / len(x)


def original_update(accumulators: np.ndarray, counts: np.ndarray, lr: float, normalize: bool) -> np.ndarray:
    """The original's step on accumulators ``[..., child, sum]``, then its ``GreaterEqualEpsilonNormalized``."""
    if normalize:
        total = counts.sum(axis=-2, keepdims=True)
        counts = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    mixed = np.maximum((1.0 - lr) * accumulators + lr * counts, 1e-10)
    return mixed / mixed.sum(axis=-2, keepdims=True)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("kind", list(OPS))
def test_default_update_is_the_originals(floatx, kind, jit_compile):
    model = two_variable_spn(OPS[kind]())
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(0.3), loss=losses.NegativeLogLikelihood())
    model.jit_compile = jit_compile
    model.fit(X, batch_size=len(X), epochs=1, verbose=0, shuffle=False)
    dense_counts, root_counts = reference_counts(X, kind, DENSE, ROOT)
    normalize = kind == "soft"  # the original's hard EM ops did not normalize their counts
    expected_dense = original_update(DENSE, dense_counts, 0.3, normalize)
    expected_root = original_update(ROOT[:, np.newaxis], root_counts[:, np.newaxis], 0.3, normalize)
    rtol = 1e-10 if floatx == "float64" else 1e-5
    np.testing.assert_allclose(to_numpy(model.layers[2].accumulators)[:, 0], expected_dense, rtol=rtol)
    np.testing.assert_allclose(to_numpy(model.layers[4].accumulators)[0, 0], expected_root, rtol=rtol)
    # The rules differ on this data: the dense sums' counts do not sum to one.
    assert not np.allclose(original_update(DENSE, dense_counts, 0.3, not normalize), expected_dense)


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_accumulate_batches_applies_the_mean_of_k_batches_every_kth_step(float64, kind):
    model = two_variable_spn(OPS[kind]())
    optimizer = optimizers.OnlineExpectationMaximization(0.3, accumulate_batches=3)
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    batches = np.split(X, 3)
    per_batch = [reference_counts(batch, kind, DENSE, ROOT)[0] for batch in batches]
    if kind == "soft":  # normalized per batch, as the original's op did, then averaged
        per_batch = [counts / counts.sum(axis=-2, keepdims=True) for counts in per_batch]
    for batch in batches[:2]:
        model.train_on_batch(batch)
        np.testing.assert_allclose(to_numpy(model.layers[2].accumulators)[:, 0], DENSE, rtol=1e-12)
    model.train_on_batch(batches[2])
    expected = original_update(DENSE, np.mean(per_batch, axis=0), 0.3, normalize=False)
    np.testing.assert_allclose(to_numpy(model.layers[2].accumulators)[:, 0], expected, rtol=1e-10)
    # The next three batches start from the updated weights.
    model.train_on_batch(batches[0])
    np.testing.assert_allclose(to_numpy(model.layers[2].accumulators)[:, 0], expected, rtol=1e-12)


def test_leaf_parameters_get_the_originals_update(float64):
    """Locations and raw scales without accumulators: ``v <- (1 - lr) v - lr g`` with ``g`` the loss gradient.

    A trainable scale is stored as ``r = softplus^-1(scale)`` (the original's weight), so the update acts on ``r``
    with ``g = dloss/dscale * sigmoid(r)``; the scale is then ``softplus(r)``.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 2))
    location = np.array([[-0.5, 0.8], [0.3, -0.2]])  # [variable, component]
    scale = np.array([[0.9, 0.6], [1.3, 0.75]])
    root, lr = np.array([0.4, 0.6]), 0.1
    model = models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(2,)),
            layers.NormalLeaf(
                num_components=2,
                location_initializer=keras.initializers.Constant(location[:, np.newaxis, :, np.newaxis]),
                scale_initializer=keras.initializers.Constant(scale[:, np.newaxis, :, np.newaxis]),
                scale_trainable=True,
            ),
            layers.ReduceProduct(num_factors=2),
            layers.RootSum(return_weighted_child_logits=False, sum_op=sum_ops.SumOpEMBackprop()),
        ]
    )
    leaf = model.layers[1]
    raw = np.log(np.expm1(scale))
    np.testing.assert_allclose(to_numpy(leaf.scale)[0, :, 0, :, 0], raw, rtol=1e-12)
    model.layers[-1].accumulators.assign(root[np.newaxis, np.newaxis, :, np.newaxis])
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(lr), loss=losses.NegativeLogLikelihood())
    model.fit(x, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    z = (x[:, :, np.newaxis] - location) / scale  # [batch, variable, component]
    log_normal = -0.5 * z**2 - np.log(scale) - 0.5 * np.log(2 * np.pi)
    joint = np.log(root) + log_normal.sum(axis=1)
    posterior = np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))[:, np.newaxis]
    grad_location = -np.mean(posterior * z / scale, axis=0)
    grad_raw = -np.mean(posterior * (z**2 - 1.0) / scale, axis=0) / (1.0 + np.exp(-raw))
    new_raw = (1 - lr) * raw - lr * grad_raw
    np.testing.assert_allclose(to_numpy(leaf.scale)[0, :, 0, :, 0], new_raw, rtol=1e-7)
    new_location, new_scale = leaf.parameters()
    np.testing.assert_allclose(to_numpy(new_location)[:, 0, :, 0], (1 - lr) * location - lr * grad_location, rtol=1e-7)
    np.testing.assert_allclose(to_numpy(new_scale)[:, 0, :, 0], np.log1p(np.exp(new_raw)), rtol=1e-7)


def test_raw_scale_is_floored_at_minus_two_after_an_update(float64):
    """The original's ``GreaterEqualEpsilon(-2.0)`` on the raw scale: the scale stays >= ``softplus(-2)``."""
    leaf = layers.NormalLeaf(num_components=2, scale_trainable=True)
    leaf.build((None, 3, 1, 1))
    optimizer = optimizers.OnlineExpectationMaximization(0.5)
    gradient = np.zeros(leaf.scale.shape)
    gradient[0, 0] = 10.0  # (1 - 0.5) r - 0.5 * 10 < -2 for the first variable
    optimizer.apply([gradient], [leaf.scale])
    raw = np.log(np.expm1(1.0))
    np.testing.assert_allclose(to_numpy(leaf.scale)[0, 0], -2.0)
    np.testing.assert_allclose(to_numpy(leaf.scale)[0, 1:], 0.5 * raw, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(leaf.parameters()[1])[0], np.log1p(np.exp(-2.0)), rtol=1e-12)


def test_random_uniform_initial_accumulators_pass_through_the_constraint(floatx):
    """``RandomUniform()`` draws negative values; the original clipped them at epsilon and renormalized."""
    layer = layers.DenseSum(
        num_sums=3, accumulator_initializer=keras.initializers.RandomUniform(seed=7), sum_op=sum_ops.SumOpEMBackprop()
    )
    layer.build((None, 2, 1, 4))
    drawn = keras.ops.convert_to_numpy(keras.initializers.RandomUniform(seed=7)((2, 1, 4, 3), dtype=floatx))
    assert drawn.min() < 0
    clipped = np.maximum(drawn, 1e-10)
    np.testing.assert_allclose(to_numpy(layer.accumulators), clipped / clipped.sum(axis=-2, keepdims=True), rtol=1e-5)


def test_invalid_accumulators_after_the_constraint_raise_naming_the_layer():
    with pytest.raises(ValueError, match=r"Layer 'bad_sum'.*after linear_accumulator_constraint=Clip.*min=-"):
        layers.DenseSum(
            num_sums=2,
            name="bad_sum",
            accumulator_initializer=keras.initializers.Constant(-1.0),
            linear_accumulator_constraint=constraints.Clip(-2.0),
            sum_op=sum_ops.SumOpEMBackprop(),
        ).build((None, 1, 1, 3))


def test_defaults_are_the_originals():
    assert isinstance(spnk.get_default_accumulator_initializer(), initializers.Dirichlet)
    assert spnk.get_default_accumulator_initializer().get_config()["alpha"] == 1.0
    linear = spnk.get_default_linear_accumulator_constraint()
    assert isinstance(linear, constraints.GreaterEqualEpsilonNormalized)
    assert (linear.epsilon, linear.axis) == (1e-10, -2)
    assert isinstance(spnk.get_default_logspace_accumulator_constraint(), constraints.LogNormalized)
    optimizer = optimizers.OnlineExpectationMaximization()
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    assert (optimizer.gliding_average, optimizer.accumulate_batches, optimizer.normalized_update) == (True, 1, None)
    revived = optimizers.OnlineExpectationMaximization.from_config(
        optimizers.OnlineExpectationMaximization(0.2, accumulate_batches=4).get_config()
    )
    assert (revived.accumulate_batches, revived.normalized_update) == (4, None)


def test_a_small_rat_spn_fitted_with_the_default_em_improves_its_likelihood(float64):
    rng = np.random.default_rng(1)
    centers = rng.integers(0, 2, size=(2, 6))
    x = np.where(rng.random((240, 6)) < 0.9, centers[rng.integers(0, 2, size=240)], 1 - centers[0]).astype("float64")
    previous = spnk.get_default_sum_op()
    spnk.set_default_sum_op(sum_ops.SumOpEMBackprop())
    try:
        model = models.SequentialSumProductNetwork(
            [
                layers.FlatToRegions(num_decomps=2, input_shape=(6,)),
                layers.IndicatorLeaf(num_components=2),
                layers.DenseSum(num_sums=3),
                layers.PermuteAndPadScopesRandom(),
                layers.ReduceProduct(num_factors=3),
                layers.DenseProduct(num_factors=2),
                layers.DenseSum(num_sums=1),
                layers.Undecompose(),
                layers.RootSum(return_weighted_child_logits=False),
            ]
        )
    finally:
        spnk.set_default_sum_op(previous)
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(), loss=losses.NegativeLogLikelihood())
    history = model.fit(x, batch_size=24, epochs=4, verbose=0).history["loss"]
    assert history[-1] < history[0] - 0.3, history
    assert all(b < a for a, b in zip(history, history[1:], strict=False)), history


def test_default_initializer_draws_per_layer_and_follows_the_global_seed():
    def two_layers() -> list[np.ndarray]:
        built = []
        for _ in range(2):
            layer = layers.DenseSum(num_sums=3, sum_op=sum_ops.SumOpEMBackprop())
            layer.build((None, 2, 1, 4))
            built.append(to_numpy(layer.accumulators))
        return built

    keras.utils.set_random_seed(5)
    first, second = two_layers()
    assert not np.allclose(first, second)
    np.testing.assert_allclose(first.sum(axis=-2), 1.0, rtol=1e-5)
    keras.utils.set_random_seed(5)
    np.testing.assert_array_equal(two_layers()[0], first)
