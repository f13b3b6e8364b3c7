"""Gradients of log-likelihoods with respect to sum accumulators and leaf parameters.

Hand-derived numpy derivatives for single layers, central finite differences (float64) for whole SPNs.
"""

import keras
import numpy as np
import pytest
from scipy.special import softmax

from libspn_keras import layers, models
from tests.backend_utils import function, grad, run, tensor, to_numpy

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")

MODES = ["eager", "function", "jit"]


def gradient_of_weighted_output(layer, x, upstream, variables):
    """Gradients of ``sum(upstream * layer(x))`` with respect to ``x`` and ``variables``."""

    def fn(x):
        return grad(layer, x, variables=variables, cotangent=upstream)

    return fn


# ------------------------------------------------------------------------------------------ Single layers, by hand


def dense_sum_gradients(x, accumulators, upstream, logspace):
    """Derivatives of ``L = sum(c * log sum_i w_io exp(x_i))`` w.r.t. ``x`` and the accumulators.

    With posterior ``q_io = w_io exp(x_i) / sum_j w_jo exp(x_j)``:
    ``dL/dx_i = sum_o c_o q_io``; log-space (``w = softmax(a)``): ``dL/da_io = sum_b c_o (q_io - w_io)``;
    linear (``w = a / sum(a)``): ``dL/da_io = sum_b c_o (q_io / a_io - 1 / sum_j a_jo)``.
    """
    weights = softmax(accumulators, axis=-2) if logspace else accumulators / accumulators.sum(axis=-2, keepdims=True)
    joint = np.exp(x)[..., :, np.newaxis] * weights[np.newaxis]  # [b, s, d, i, o]
    posterior = joint / joint.sum(axis=-2, keepdims=True)
    c = upstream[..., np.newaxis, :]
    d_x = (c * posterior).sum(axis=-1)
    if logspace:
        d_acc = (c * (posterior - weights[np.newaxis])).sum(axis=0)
    else:
        d_acc = (c * (posterior / accumulators - 1.0 / accumulators.sum(axis=-2, keepdims=True))).sum(axis=0)
    return d_x, d_acc


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
def test_dense_sum_gradient_matches_hand_derivation(logspace, mode, float64):
    rng = np.random.default_rng(0)
    x_shape = (5, 3, 2, 4)
    layer = layers.DenseSum(num_sums=3, logspace_accumulators=logspace)
    layer.build(x_shape)
    acc = rng.normal(size=(3, 2, 4, 3)) if logspace else rng.uniform(0.2, 2.0, size=(3, 2, 4, 3))
    layer.accumulators.assign(acc)
    x = np.log(rng.uniform(0.01, 1.0, size=x_shape))
    upstream = rng.normal(size=(5, 3, 2, 3))

    d_x, d_acc = run(gradient_of_weighted_output(layer, x, upstream, [layer.accumulators]), mode, tensor(x))

    expected_x, expected_acc = dense_sum_gradients(x, acc, upstream, logspace)
    np.testing.assert_allclose(d_x, expected_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_acc, expected_acc, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
def test_dense_sum_gradient_is_finite_for_impossible_children(logspace, mode, float64):
    # Children with probability zero (-inf, e.g. non-matching indicators) get zero gradient, never NaN; a region
    # whose children are all impossible passes nothing back.
    rng = np.random.default_rng(1)
    x_shape = (3, 2, 1, 4)
    layer = layers.DenseSum(num_sums=2, logspace_accumulators=logspace)
    layer.build(x_shape)
    acc = rng.normal(size=(2, 1, 4, 2)) if logspace else rng.uniform(0.2, 2.0, size=(2, 1, 4, 2))
    layer.accumulators.assign(acc)
    x = np.log(rng.uniform(0.01, 1.0, size=x_shape))
    x[0, 0, 0, [1, 3]] = -np.inf
    x[1, 1, 0, :] = -np.inf
    upstream = rng.normal(size=(3, 2, 1, 2))  # the -inf sums of sample 1, scope 1 get a non-zero signal too

    d_x, d_acc = run(gradient_of_weighted_output(layer, x, upstream, [layer.accumulators]), mode, tensor(x))

    d_x, d_acc = np.asarray(d_x), np.asarray(d_acc)
    assert np.all(np.isfinite(d_x))
    assert np.all(np.isfinite(d_acc))
    np.testing.assert_array_equal(d_x[0, 0, 0, [1, 3]], 0.0)
    np.testing.assert_array_equal(d_x[1, 1], 0.0)
    # Sample 1, scope 1 contributes nothing; compare the rest with the hand derivation.
    x_ref, up_ref = x.copy(), upstream.copy()
    x_ref[1, 1] = 0.0
    up_ref[1, 1] = 0.0
    expected_x, expected_acc = dense_sum_gradients(x_ref, acc, up_ref, logspace)
    np.testing.assert_allclose(d_x, expected_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_acc, expected_acc, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
@pytest.mark.parametrize("weighted_children", [True, False], ids=["children", "marginal"])
def test_root_sum_gradient_matches_hand_derivation(weighted_children, logspace, mode, float64):
    rng = np.random.default_rng(2)
    layer = layers.RootSum(return_weighted_child_logits=weighted_children, logspace_accumulators=logspace)
    layer.build((None, 5))
    acc = rng.normal(size=(5, 1)) if logspace else rng.uniform(0.2, 2.0, size=(5, 1))
    layer.accumulators.assign(acc.reshape(1, 1, 5, 1))  # the original's root accumulator shape
    x = np.log(rng.uniform(0.01, 1.0, size=(4, 5)))
    upstream = rng.normal(size=(4, 5) if weighted_children else (4, 1))

    d_x, d_acc = run(gradient_of_weighted_output(layer, x, upstream, [layer.accumulators]), mode, tensor(x))
    d_acc = np.reshape(d_acc, (5, 1))

    if weighted_children:
        # L = sum_bc u_bc (x_bc + log w_c): dL/dx = u; dL/da_c = sum_b [u_bc - w_c sum_k u_bk] (log-space) or
        # sum_b [u_bc / a_c - sum_k u_bk / sum(a)] (linear).
        expected_x = upstream
        total = upstream.sum(axis=1, keepdims=True)
        if logspace:
            expected_acc = (upstream - softmax(acc[:, 0])[np.newaxis] * total).sum(axis=0)
        else:
            expected_acc = (upstream / acc[:, 0][np.newaxis] - total / acc.sum()).sum(axis=0)
        expected_acc = expected_acc[:, np.newaxis]
    else:
        expected_x, expected_acc = dense_sum_gradients(x, acc, upstream, logspace)
    np.testing.assert_allclose(d_x, expected_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_acc, expected_acc, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_normal_leaf_gradient_matches_hand_derivation(mode, float64):
    # d/dmu log N(x | mu, s) = (x - mu) / s^2;  d/ds log N(x | mu, s) = -1 / s + (x - mu)^2 / s^3. Missing
    # dimensions contribute nothing. The trainable scale is stored as r = softplus^-1(s) (LibSPN Keras 0.6):
    # d/dr = d/ds * sigmoid(r).
    rng = np.random.default_rng(3)
    x_shape = (6, 3, 2, 2)
    leaf = layers.NormalLeaf(num_components=4, scale_trainable=True)
    leaf.build(x_shape)
    mu = rng.normal(size=(3, 2, 4, 2))
    s = rng.uniform(0.5, 2.0, size=(3, 2, 4, 2))
    leaf.location.assign(mu[np.newaxis])  # the weights have the original's leading axis
    r = np.log(np.expm1(s))
    leaf.scale.assign(r[np.newaxis])
    x = rng.normal(size=x_shape)
    missing = rng.uniform(size=x_shape) < 0.3
    x[missing] = np.nan
    upstream = rng.normal(size=(6, 3, 2, 4))

    fn = gradient_of_weighted_output(leaf, x, upstream, [leaf.location, leaf.scale])
    _, d_mu, d_r = run(fn, mode, tensor(x))

    diff = np.where(missing, 0.0, x)[:, :, :, np.newaxis, :] - mu[np.newaxis]
    observed = ~missing[:, :, :, np.newaxis, :]
    c = upstream[..., np.newaxis]
    expected_mu = (c * observed * diff / s**2).sum(axis=0, keepdims=True)
    expected_s = (c * observed * (-1.0 / s + diff**2 / s**3)).sum(axis=0, keepdims=True)
    expected_r = expected_s / (1.0 + np.exp(-r))
    np.testing.assert_allclose(d_mu, expected_mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_r, expected_r, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------- Whole SPNs, finite differences


def finite_difference_check(loss_fn, variables, rng, num_coordinates=4, eps=1e-6):
    """Compare backend gradients with central differences on random coordinates of each variable."""
    gradients = grad(loss_fn, variables=variables)
    checked = 0
    for variable, gradient in zip(variables, gradients, strict=True):
        assert gradient is not None, f"no gradient for {variable.path}"
        gradient = to_numpy(gradient)
        assert np.all(np.isfinite(gradient)), variable.path
        value = np.asarray(to_numpy(variable))
        flat_indices = rng.choice(value.size, size=min(num_coordinates, value.size), replace=False)
        for flat in flat_indices:
            index = np.unravel_index(flat, value.shape)
            shifted = value.copy()
            shifted[index] += eps
            variable.assign(shifted)
            up = float(loss_fn())
            shifted[index] -= 2 * eps
            variable.assign(shifted)
            down = float(loss_fn())
            variable.assign(value)
            numeric = (up - down) / (2 * eps)
            np.testing.assert_allclose(gradient[index], numeric, rtol=1e-5, atol=1e-7, err_msg=variable.path)
            checked += 1
    assert checked >= len(variables)
    assert max(np.abs(to_numpy(g)).max() for g in gradients) > 1e-3


def continuous_spn(leaf_cls, logspace):
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(5,)),
            layers.FlatToRegions(num_decomps=2),
            leaf_cls(num_components=3, scale_trainable=True),
            layers.PermuteAndPadScopesRandom(seed=0),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, logspace_accumulators=logspace),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, logspace_accumulators=logspace),
            layers.ReduceProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, logspace_accumulators=logspace),
        ]
    )


def randomize(model, rng):
    for layer in model.layers:
        if isinstance(layer, layers.BaseSum):
            shape = tuple(layer.accumulators.shape)
            values = rng.normal(size=shape) if layer.logspace_accumulators else rng.uniform(0.2, 2.0, size=shape)
            layer.accumulators.assign(values)
        elif isinstance(layer, layers.BaseLocationScaleLeaf):
            layer.location.assign(rng.normal(size=layer.location.shape))
            # Trainable scales in [0.5, 1.5], stored as softplus^-1(scale).
            layer.scale.assign(np.log(np.expm1(rng.uniform(0.5, 1.5, size=layer.scale.shape))))


@pytest.mark.parametrize(
    ("leaf_cls", "logspace"),
    [
        pytest.param(layers.NormalLeaf, True, id="normal-logspace"),
        pytest.param(layers.NormalLeaf, False, id="normal-linear"),
        pytest.param(layers.CauchyLeaf, True, id="cauchy-logspace"),
        pytest.param(layers.LaplaceLeaf, False, id="laplace-linear"),
    ],
)
def test_spn_gradient_matches_finite_differences(leaf_cls, logspace, float64):
    rng = np.random.default_rng(4)
    model = continuous_spn(leaf_cls, logspace)
    randomize(model, rng)
    x = rng.normal(size=(8, 5))
    x[0, 1] = x[3, 4] = np.nan
    loss = function(lambda: keras.ops.sum(model(x)), variables=model.trainable_variables)

    variables = model.trainable_variables
    assert len(variables) == 5  # location, scale and three sum accumulators
    finite_difference_check(loss, variables, rng)


@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
def test_indicator_spn_gradient_matches_finite_differences(logspace, float64):
    # Indicator leaves make most intermediate nodes -inf (probability zero); the gradient must stay exact.
    rng = np.random.default_rng(5)
    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(5,)),
            layers.FlatToRegions(num_decomps=2),
            layers.IndicatorLeaf(num_components=3, dtype="float64"),
            layers.PermuteAndPadScopesRandom(seed=1),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, logspace_accumulators=logspace),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, logspace_accumulators=logspace),
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, logspace_accumulators=logspace),
        ]
    )
    randomize(model, rng)
    x = rng.integers(0, 3, size=(10, 5)).astype("float64")
    x[2, 0] = np.nan
    loss = function(lambda: keras.ops.sum(model(x)), variables=model.trainable_variables)
    finite_difference_check(loss, model.trainable_variables, rng, num_coordinates=8)


@pytest.mark.parametrize("mode", ["function", "jit"])
def test_spn_gradient_is_the_same_in_graph_and_xla(mode, float64):
    rng = np.random.default_rng(6)
    model = continuous_spn(layers.NormalLeaf, True)
    randomize(model, rng)
    x = tensor(rng.normal(size=(8, 5)))

    def gradients(x):
        return grad(model, x, variables=model.trainable_variables)[1:]

    eager = gradients(x)
    compiled = run(gradients, mode, x)
    for expected, got in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
