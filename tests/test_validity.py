"""Validity of whole SPNs: normalization over all joint states and exact marginalization."""

import itertools

import keras
import numpy as np
import pytest
from scipy.special import logsumexp

from libspn_keras import layers, models
from tests.backend_utils import run, tensor

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")

MODES = ["eager", "function", "jit"]


def randomize_accumulators(model, rng):
    """Give every sum layer random, clearly non-uniform accumulators."""
    for layer in model.layers:
        if isinstance(layer, layers.BaseSum):
            shape = tuple(layer.accumulators.shape)
            values = rng.normal(scale=1.5, size=shape) if layer.logspace_accumulators else rng.gamma(0.5, size=shape)
            layer.accumulators.assign(np.maximum(values, 1e-3).astype(layer.accumulators.dtype))


def region_layers(structure, logspace, num_components):
    """Region layers (after the leaf) of a few RAT-SPN-like structures."""
    sums = {"logspace_accumulators": logspace}
    if structure == "two_levels":  # 4 scopes, no padding
        return [
            layers.PermuteAndPadScopesRandom(seed=0),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3, **sums),
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, **sums),
        ]
    if structure == "padded":  # 5 scopes padded to 8
        return [
            layers.PermuteAndPadScopesRandom(seed=1),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3, **sums),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, **sums),
            layers.ReduceProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, **sums),
        ]
    if structure == "ternary_products":  # 5 scopes padded to 9, products of three factors
        return [
            layers.PermuteAndPadScopesRandom(seed=2),
            layers.DenseProduct(num_factors=3),
            layers.DenseSum(num_sums=2, **sums),
            layers.DenseProduct(num_factors=3),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, **sums),
        ]
    if structure == "mixing_decomps":  # decompositions merged in two steps, with a sum in between
        return [
            layers.PermuteAndPadScopesRandom(seed=3),
            layers.DenseSum(num_sums=num_components, **sums),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, **sums),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, **sums),
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(num_decomps=2),
            layers.DenseSum(num_sums=3, **sums),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=True, **sums),
        ]
    raise ValueError(structure)


NUM_DECOMPS = {"two_levels": 2, "padded": 3, "ternary_products": 2, "mixing_decomps": 4}


def build_discrete_spn(structure, num_vars, num_states, logspace, rng):
    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(num_vars,)),
            layers.FlatToRegions(num_decomps=NUM_DECOMPS[structure]),
            layers.IndicatorLeaf(num_components=num_states, dtype="float32"),
            *region_layers(structure, logspace, num_states),
        ]
    )
    randomize_accumulators(model, rng)
    return model


def log_joint(model, states, mode="eager"):
    """``log p`` of every row of ``states`` (a ``RootSum`` returning child logits is marginalized)."""
    out = np.asarray(run(model, mode, tensor(states)), np.float64)
    return logsumexp(out, axis=-1)


def all_states(num_vars, num_states, dtype):
    return np.array(list(itertools.product(range(num_states), repeat=num_vars)), dtype)


CASES = [
    pytest.param("two_levels", 4, 2, id="two_levels-4vars-binary"),
    pytest.param("two_levels", 4, 3, id="two_levels-4vars-ternary"),
    pytest.param("padded", 5, 2, id="padded-5vars-binary"),
    pytest.param("padded", 5, 3, id="padded-5vars-ternary"),
    pytest.param("ternary_products", 5, 2, id="ternary_products-5vars-binary"),
    pytest.param("mixing_decomps", 8, 2, id="mixing_decomps-8vars-binary"),
]


def atol(dtype):
    return 1e-5 if dtype == "float32" else 1e-10


@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
@pytest.mark.parametrize(("structure", "num_vars", "num_states"), CASES)
def test_joint_sums_to_one(structure, num_vars, num_states, logspace, floatx):
    rng = np.random.default_rng(0)
    model = build_discrete_spn(structure, num_vars, num_states, logspace, rng)
    states = all_states(num_vars, num_states, floatx)

    log_p = log_joint(model, states)

    assert np.all(log_p <= atol(floatx))
    assert np.ptp(log_p) > 0.5  # a non-trivial distribution, not a constant
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, rtol=0, atol=atol(floatx))


@pytest.mark.parametrize("mode", MODES)
def test_validity_in_every_execution_mode(mode, floatx):
    model = build_discrete_spn("padded", 5, 3, True, np.random.default_rng(1))
    states = all_states(5, 3, floatx)

    log_p = log_joint(model, states, mode)

    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, rtol=0, atol=atol(floatx))
    rows = states[states[:, 2] == 0].copy()
    rows[:, 2] = np.nan
    expected = logsumexp(log_p.reshape((3,) * 5), axis=2).reshape(-1)
    np.testing.assert_allclose(log_joint(model, rows, mode), expected, rtol=0, atol=10 * atol(floatx))


@pytest.mark.parametrize("how", ["nan", "evidence_mask"])
@pytest.mark.parametrize(("structure", "num_vars", "num_states"), CASES[1:5])
def test_marginalizing_one_variable_sums_it_out(structure, num_vars, num_states, how, float64):
    model = build_discrete_spn(structure, num_vars, num_states, True, np.random.default_rng(2))
    states = all_states(num_vars, num_states, float64)
    joint = log_joint(model, states).reshape((num_states,) * num_vars)

    for var in range(num_vars):
        rows = states[states[:, var] == 0].copy()
        if how == "nan":
            rows[:, var] = np.nan
            marginal = log_joint(model, rows)
        else:
            mask = np.ones(rows.shape, bool)
            mask[:, var] = False
            rows[:, var] = 1.0  # any observed value behind a False mask must be ignored
            marginal = logsumexp(np.asarray(model((rows, mask)), np.float64), axis=-1)
        expected = logsumexp(joint, axis=var).reshape(-1)
        np.testing.assert_allclose(marginal, expected, rtol=0, atol=1e-10)


def test_marginalizing_several_variables(float64):
    model = build_discrete_spn("padded", 5, 3, False, np.random.default_rng(3))
    states = all_states(5, 3, float64)
    joint = log_joint(model, states).reshape((3,) * 5)
    rows = all_states(3, 3, float64)
    query = np.full((len(rows), 5), np.nan)
    query[:, [0, 2, 3]] = rows

    marginal = log_joint(model, query)

    np.testing.assert_allclose(marginal, logsumexp(joint, axis=(1, 4)).reshape(-1), rtol=0, atol=1e-10)
    # Marginalizing everything leaves probability one.
    np.testing.assert_allclose(log_joint(model, np.full((2, 5), np.nan)), 0.0, atol=1e-12)


@pytest.mark.parametrize("leaf_cls", [layers.NormalLeaf, layers.LaplaceLeaf], ids=["normal", "laplace"])
def test_continuous_spn_integrates_to_one_and_marginalizes(leaf_cls, float64):
    rng = np.random.default_rng(5)
    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(2,)),
            layers.FlatToRegions(num_decomps=2),
            leaf_cls(num_components=3, scale_trainable=True),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )
    randomize_accumulators(model, rng)
    leaf = model.layers[1]
    leaf.location.assign(rng.uniform(-2, 2, size=leaf.location.shape))
    leaf.scale.assign(np.log(np.expm1(rng.uniform(0.5, 1.5, size=leaf.scale.shape))))  # softplus^-1(scale)
    grid = np.linspace(-25.0, 25.0, 2001)

    # p(x0) by marginalizing x1 (NaN) equals the integral of the joint over x1, and p(x0) integrates to one.
    x0 = np.array([-1.3, 0.2, 2.5])
    pairs = np.stack(np.meshgrid(x0, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    joint = np.exp(np.asarray(model(pairs), np.float64)).reshape(len(x0), len(grid))
    marginal = np.exp(np.asarray(model(np.stack([x0, np.full(3, np.nan)], axis=-1)), np.float64)).ravel()
    # (The trapezoid rule is accurate to ~1e-5 at the kinks of the Laplace density.)
    np.testing.assert_allclose(np.trapezoid(joint, grid, axis=1), marginal, rtol=1e-4)

    on_grid = np.stack([grid, np.full_like(grid, np.nan)], axis=-1)
    density = np.exp(np.asarray(model(on_grid), np.float64)).ravel()
    np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, atol=1e-4)


def test_predict_with_unknown_batch_size():
    model = build_discrete_spn("padded", 5, 2, True, np.random.default_rng(6))
    assert model.input_shape == (None, 5)
    assert model.output_shape == (None, 1)
    states = all_states(5, 2, "float32")
    expected = np.asarray(model(states))
    for batch_size in (1, 7, 32):
        np.testing.assert_allclose(model.predict(states, batch_size=batch_size, verbose=0), expected, atol=1e-6)


def test_functional_model_with_unknown_batch_size(floatx):
    x_in = keras.Input(shape=(5,))
    h = layers.FlatToRegions(num_decomps=3)(x_in)
    h = layers.IndicatorLeaf(num_components=2, dtype="float32")(h)
    region = region_layers("padded", True, 2)
    region[0].generate_factors([2, 2, 2])  # only SequentialSumProductNetwork infers them
    for layer in region:
        h = layer(h)
    model = models.SumProductNetwork(x_in, h)
    randomize_accumulators(model, np.random.default_rng(7))
    states = all_states(5, 2, floatx)

    predicted = model.predict(states, batch_size=5, verbose=0)

    assert predicted.dtype == floatx
    np.testing.assert_allclose(np.exp(logsumexp(predicted.astype(np.float64))), 1.0, rtol=0, atol=atol(floatx))
