"""Inference queries (marginals, conditionals, completion, MPE, sampling) against brute-force enumeration."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import scipy.special
import scipy.stats

from libspn_keras import layers, models
from tests.backend_utils import to_numpy
from tests.reference_spn import all_states

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")

NUM_VARS = 4


def discrete_spn(num_states: int = 2, seed: int = 0) -> models.SequentialSumProductNetwork:
    keras.utils.set_random_seed(seed)
    return models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=2, input_shape=(NUM_VARS,)),
            layers.IndicatorLeaf(num_components=num_states),
            layers.PermuteAndPadScopesRandom(seed=seed),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3, accumulator_initializer=keras.initializers.RandomUniform(0.05, 1.0)),
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(
                return_weighted_child_logits=False, accumulator_initializer=keras.initializers.RandomUniform(0.05, 1.0)
            ),
        ]
    )


@pytest.fixture
def spn_and_joint(float64):
    spn = discrete_spn(num_states=3)
    states = all_states(NUM_VARS, 3)
    joint = np.exp(to_numpy(spn.log_marginal(states.astype("float64"))))
    return spn, states, joint


def test_joint_sums_to_one_and_marginals_sum_out(spn_and_joint):
    spn, states, joint = spn_and_joint
    assert abs(joint.sum() - 1.0) < 1e-10
    for var in range(NUM_VARS):
        mask = np.ones((1, NUM_VARS), bool)
        mask[0, var] = False
        x = states[:1].astype("float64")
        expected = joint[np.all(np.delete(states, var, 1) == np.delete(x, var, 1), axis=1)].sum()
        got = np.exp(to_numpy(spn.log_marginal(x, mask))[0])
        np.testing.assert_allclose(got, expected, rtol=1e-10)
        x_nan = x.copy()
        x_nan[0, var] = np.nan
        np.testing.assert_allclose(np.exp(to_numpy(spn.log_marginal(x_nan))[0]), expected, rtol=1e-10)


def test_log_conditional_equals_brute_force(spn_and_joint):
    spn, states, joint = spn_and_joint
    x = np.array([[2, 0, 1, 1]], "float64")
    query = np.array([[True, False, False, False]])
    evidence = np.array([[False, True, False, True]])  # variable 2 is marginalized
    match_e = (states[:, 1] == 0) & (states[:, 3] == 1)
    expected = np.log(joint[match_e & (states[:, 0] == 2)].sum() / joint[match_e].sum())
    np.testing.assert_allclose(to_numpy(spn.log_conditional(x, query, evidence))[0], expected, rtol=1e-10)
    with pytest.raises(ValueError, match="must not overlap"):
        spn.log_conditional(x, query, query)


def test_posterior_completion_equals_the_brute_force_posterior_mean(spn_and_joint):
    spn, states, joint = spn_and_joint
    x = np.array([[0, 2, 0, 0]], "float64")
    evidence = np.array([[False, True, False, True]])
    match = (states[:, 1] == 2) & (states[:, 3] == 0)
    posterior = joint[match] / joint[match].sum()
    expected = posterior @ states[match]
    completed = to_numpy(spn.complete(x, evidence, method="posterior"))[0]
    np.testing.assert_allclose(completed, expected, rtol=1e-9)


def _log_weights(layer, axis):
    acc = to_numpy(layer.accumulators)
    if layer.logspace_accumulators:
        return acc - scipy.special.logsumexp(acc, axis=axis, keepdims=True)
    return np.log(acc / acc.sum(axis=axis, keepdims=True))


def _max_product(spn, x):
    """Brute-force value of the max-product network at a complete state, from the layers' weights."""
    leaves = to_numpy(spn.layers[1](spn.layers[0](x)))
    h = to_numpy(spn.layers[2](leaves))
    for layer in spn.layers[3:]:
        if isinstance(layer, layers.DenseSum):
            w = _log_weights(layer, axis=2)
            h = np.max(h[..., :, None] + w[None], axis=-2)
        elif isinstance(layer, layers.RootSum):
            w = _log_weights(layer, axis=2).reshape(-1)  # accumulators [1, 1, num_in, 1]
            h = np.max(h.reshape(len(x), -1) + w, axis=-1)
        else:
            h = to_numpy(layer(h))
    return h


def test_mpe_completion_maximizes_the_max_product_value(spn_and_joint):
    spn, states, _ = spn_and_joint
    x = np.array([[0, 1, 0, 0]], "float64")
    evidence = np.array([[False, True, False, False]])
    candidates = states[states[:, 1] == 1].astype("float64")
    values = _max_product(spn, candidates)
    completed = to_numpy(spn.mpe(x, evidence))
    assert completed[0, 1] == 1
    np.testing.assert_allclose(_max_product(spn, completed)[0], values.max(), rtol=1e-12)


def test_unconditional_samples_match_the_joint(float64):
    spn = discrete_spn(num_states=2, seed=1)
    states = all_states(NUM_VARS, 2)
    joint = np.exp(to_numpy(spn.log_marginal(states.astype("float64"))))
    samples = to_numpy(spn.sample(num_samples=20000, seed=3)).astype(int)
    index = samples @ (2 ** np.arange(NUM_VARS)[::-1])
    observed = np.bincount(index, minlength=len(states))
    result = scipy.stats.chisquare(observed, joint * len(samples))
    assert result.pvalue > 1e-3, (observed, joint * len(samples))
    # A sample from a wrong distribution (uniform) is rejected by the same test.
    uniform = np.random.default_rng(0).integers(0, len(states), 20000)
    assert scipy.stats.chisquare(np.bincount(uniform, minlength=len(states)), joint * 20000).pvalue < 1e-3


def test_conditional_samples_match_the_conditional(float64):
    spn = discrete_spn(num_states=2, seed=2)
    states = all_states(NUM_VARS, 2)
    joint = np.exp(to_numpy(spn.log_marginal(states.astype("float64"))))
    evidence = np.tile(np.array([[np.nan, 1, np.nan, 0]]), (20000, 1))
    samples = to_numpy(spn.sample(evidence=evidence, seed=4))
    assert np.all(samples[:, 1] == 1) and np.all(samples[:, 3] == 0)
    match = (states[:, 1] == 1) & (states[:, 3] == 0)
    conditional = joint[match] / joint[match].sum()
    index = samples[:, 0].astype(int) * 2 + samples[:, 2].astype(int)
    expected_order = [int(s[0]) * 2 + int(s[2]) for s in states[match]]
    observed = np.bincount(index, minlength=4)[expected_order]
    assert scipy.stats.chisquare(observed, conditional * len(samples)).pvalue > 1e-3


def test_continuous_posterior_completion_and_samples(float64):
    """A mixture of two factorized normals: E[x_m | x_e] = sum_c p(c | x_e) mu_cm."""
    keras.utils.set_random_seed(0)
    locations = np.array([[-2.0, 1.0], [3.0, -1.0]])  # [component, variable]
    spn = models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(2,)),
            layers.NormalLeaf(
                num_components=2,
                location_initializer=keras.initializers.Constant(locations.T[:, None, :, None]),
                scale_initializer=keras.initializers.Constant(0.7),
            ),
            layers.ReduceProduct(num_factors=2),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )
    spn.layers[-1].accumulators.assign(np.log([0.3, 0.7]).reshape(1, 1, 2, 1))
    x = np.array([[0.5, np.nan]])
    like = 0.3 * scipy.stats.norm.pdf(0.5, -2.0, 0.7), 0.7 * scipy.stats.norm.pdf(0.5, 3.0, 0.7)
    post = np.array(like) / np.sum(like)
    completed = to_numpy(spn.complete(x, method="posterior"))
    np.testing.assert_allclose(completed[0], [0.5, post @ locations[:, 1]], rtol=1e-9)
    np.testing.assert_allclose(to_numpy(spn.mpe(x))[0], [0.5, locations[np.argmax(post), 1]], rtol=1e-12)
    samples = to_numpy(spn.sample(evidence=np.tile(x, (20000, 1)), seed=1))[:, 1]
    mixture_mean = post @ locations[:, 1]
    mixture_var = post @ (0.49 + locations[:, 1] ** 2) - mixture_mean**2
    assert abs(samples.mean() - mixture_mean) < 4 * np.sqrt(mixture_var / len(samples))
    assert abs(samples.var() - mixture_var) < 0.05 * mixture_var


def test_infer_no_evidence_call_returns_completions(float64):
    spn = discrete_spn()
    completer = models.SequentialSumProductNetwork(
        [layer for layer in spn.layers], infer_no_evidence=True, infer_weighted_sum=True
    )
    x = np.array([[1, 0, 1, 0]], "float64")
    mask = np.array([[True, False, True, False]])
    np.testing.assert_allclose(to_numpy(completer((x, mask))), to_numpy(spn.complete(x, mask, method="posterior")))
    # Gradient sum ops and infer_weighted_sum=True (the default): the posterior mean, here of the joint.
    states = all_states(NUM_VARS, 2)
    joint = np.exp(to_numpy(spn.log_marginal(states.astype("float64"))))
    zero = to_numpy(spn.zero_evidence_inference(3))
    np.testing.assert_allclose(zero, np.tile(joint @ states, (3, 1)), rtol=1e-9)


def test_query_with_unsupported_layers_before_the_leaf_raises():
    spn = models.SequentialSumProductNetwork(
        [
            keras.layers.Rescaling(2.0, input_shape=(4,)),
            layers.FlatToRegions(num_decomps=1),
            layers.NormalLeaf(num_components=2),
            layers.ReduceProduct(num_factors=4),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )
    with pytest.raises(ValueError, match="only FlatToRegions and NormalizeStandardScore may precede"):
        spn.complete(np.zeros((1, 4), "float32"), np.ones((1, 4), bool))
    with pytest.raises(ValueError, match="method must be one of"):
        spn.complete(np.zeros((1, 4), "float32"), method="median")
