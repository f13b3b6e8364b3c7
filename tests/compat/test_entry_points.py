"""Completion and sampling through the original library's entry points (issue 17, item 2).

In LibSPN Keras 0.6.0, a ``SequentialSumProductNetwork(infer_no_evidence=True)`` called on ``(x, evidence_mask)``
(or ``zero_evidence_inference(n)``) backpropagates from the root to the leaves with the layers' own sum ops and
combines the leaf representations with the signals that arrive there (``infer_weighted_sum=True`` by default).
So the sum op decides the query: gradient / soft EM give posterior-weighted leaf values, hard EM the max path and
``SumOpSampleBackprop`` a sample (the "Sampling with conv SPNs" tutorial draws images from a DGC-SPN this way).
Checked here against brute-force enumeration of small discrete SPNs and, for samples, by statistics.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import scipy.stats

from libspn_keras import layers, models
from libspn_keras.layers._base_leaf import LeafRepresentation
from libspn_keras.sum_ops import (
    SumOpEMBackprop,
    SumOpGradBackprop,
    SumOpHardEMBackprop,
    SumOpSampleBackprop,
    SumOpUnweightedHardEMBackprop,
)
from tests.backend_utils import to_numpy
from tests.models.test_queries import _max_product
from tests.reference_spn import all_states

NUM_VARS = 4
NUM_STATES = 3


def discrete_layers(sum_op, num_decomps: int = 2) -> list[keras.layers.Layer]:
    """A RAT-SPN over four ternary variables with random weights (``IndicatorLeaf``: component k = state k)."""
    weights = keras.initializers.RandomUniform(0.05, 1.0)
    return [
        keras.Input(shape=(NUM_VARS,)),
        layers.FlatToRegions(num_decomps=num_decomps),
        layers.IndicatorLeaf(num_components=NUM_STATES),
        layers.PermuteAndPadScopesRandom(seed=0),
        layers.DenseProduct(num_factors=2),
        layers.DenseSum(num_sums=3, accumulator_initializer=weights, sum_op=sum_op),
        layers.DenseProduct(num_factors=2),
        layers.Undecompose(),
        layers.RootSum(return_weighted_child_logits=False, accumulator_initializer=weights, sum_op=sum_op),
    ]


def completer(sum_op, num_decomps: int = 2, **kwargs) -> tuple[models.SequentialSumProductNetwork, np.ndarray]:
    """An ``infer_no_evidence`` model and the joint probability of every state (from the same layers)."""
    keras.utils.set_random_seed(0)
    spn = models.SequentialSumProductNetwork(discrete_layers(sum_op, num_decomps), infer_no_evidence=True, **kwargs)
    joint = np.exp(to_numpy(spn.log_marginal(all_states(NUM_VARS, NUM_STATES).astype("float64"))))
    return spn, joint


X = np.array([[0, 2, 0, 1], [1, 0, 0, 2]], "float64")
MASK = np.array([[False, True, False, True], [True, False, False, False]])


def consistent(states: np.ndarray, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.all((states == x) | ~mask, axis=1)


def test_defaults_are_the_original_ones():
    spn = models.SequentialSumProductNetwork(discrete_layers(None))
    assert spn.infer_weighted_sum is True and spn.unsupervised is True
    inferring = models.SequentialSumProductNetwork(discrete_layers(None), infer_no_evidence=True)
    assert inferring.unsupervised is False  # "inferred from infer_no_evidence" (0.5.2 manual)
    revived = models.SequentialSumProductNetwork.from_config(inferring.get_config())
    assert revived.infer_no_evidence and revived.infer_weighted_sum and not revived.unsupervised


@pytest.mark.parametrize("sum_op", [SumOpGradBackprop(), SumOpEMBackprop()], ids=type)
def test_gradient_and_soft_em_ops_give_the_posterior_mean(sum_op, float64):
    spn, joint = completer(sum_op)
    states = all_states(NUM_VARS, NUM_STATES)
    completed = to_numpy(spn((X, MASK)))
    for row in range(len(X)):
        match = consistent(states, X[row], MASK[row])
        expected = joint[match] @ states[match] / joint[match].sum()
        np.testing.assert_allclose(completed[row], np.where(MASK[row], X[row], expected), rtol=1e-9)
    prior_mean = joint @ states
    np.testing.assert_allclose(to_numpy(spn.zero_evidence_inference(2)), np.tile(prior_mean, (2, 1)), rtol=1e-9)


def test_argmax_of_the_signals_without_infer_weighted_sum(float64):
    """One decomposition: the signal of state k of a variable is its posterior marginal; the argmax is taken."""
    spn, joint = completer(SumOpGradBackprop(), num_decomps=1, infer_weighted_sum=False)
    states = all_states(NUM_VARS, NUM_STATES)
    completed = to_numpy(spn((X, MASK)))
    for row in range(len(X)):
        match = consistent(states, X[row], MASK[row])
        marginals = [np.bincount(states[match, v], joint[match], NUM_STATES) for v in range(NUM_VARS)]
        expected = np.argmax(marginals, axis=1)
        np.testing.assert_array_equal(completed[row], np.where(MASK[row], X[row], expected))


@pytest.mark.parametrize("sum_op", [SumOpHardEMBackprop(), SumOpUnweightedHardEMBackprop()], ids=type)
def test_hard_em_ops_give_the_max_path(sum_op, float64):
    spn, _ = completer(sum_op)
    states = all_states(NUM_VARS, NUM_STATES).astype("float64")
    completed = to_numpy(spn((X, MASK)))
    for row in range(len(X)):
        candidates = states[consistent(states, X[row], MASK[row])]
        np.testing.assert_array_equal(completed[row][MASK[row]], X[row][MASK[row]])
        best = _max_product(spn, candidates).max()
        np.testing.assert_allclose(_max_product(spn, completed[row : row + 1])[0], best, rtol=1e-12)
    mpe = to_numpy(spn.zero_evidence_inference(3))
    assert len(np.unique(mpe, axis=0)) == 1  # deterministic
    np.testing.assert_allclose(_max_product(spn, mpe[:1])[0], _max_product(spn, states).max(), rtol=1e-12)


def chi_square_pvalue(samples: np.ndarray, probabilities: np.ndarray, states: np.ndarray) -> float:
    index = samples.astype(int) @ (NUM_STATES ** np.arange(states.shape[1])[::-1])
    observed = np.bincount(index, minlength=NUM_STATES ** states.shape[1])
    order = states @ (NUM_STATES ** np.arange(states.shape[1])[::-1])
    return scipy.stats.chisquare(observed[order], probabilities * len(samples)).pvalue


def test_sample_op_draws_from_the_joint_and_the_conditional(float64):
    spn, joint = completer(SumOpSampleBackprop())
    states = all_states(NUM_VARS, NUM_STATES)
    calls = [to_numpy(spn.zero_evidence_inference(1)) for _ in range(6)]
    assert len(np.unique(np.concatenate(calls), axis=0)) > 1  # 0.6.0's tutorial: a new sample per call
    samples = to_numpy(spn.zero_evidence_inference(30000))
    assert chi_square_pvalue(samples, joint, states) > 1e-3
    # A wrong distribution (uniform) fails the same test.
    uniform = np.random.default_rng(0).integers(0, NUM_STATES, samples.shape)
    assert chi_square_pvalue(uniform, joint, states) < 1e-3
    x, mask = np.tile(X[:1], (30000, 1)), np.tile(MASK[:1], (30000, 1))
    conditional = to_numpy(spn((x, mask)))
    np.testing.assert_array_equal(conditional[:, [1, 3]], x[:, [1, 3]])
    match = consistent(states, X[0], MASK[0])
    free = states[match][:, [0, 2]]
    assert chi_square_pvalue(conditional[:, [0, 2]], joint[match] / joint[match].sum(), free) > 1e-3


def mixture_sampler(leaf_representation) -> tuple[models.SequentialSumProductNetwork, np.ndarray]:
    """Two factorized normal components over two variables, weights 0.3 / 0.7, sampled by SumOpSampleBackprop."""
    locations = np.array([[-2.0, 1.0], [3.0, -1.0]])  # [component, variable]
    spn = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(2,)),
            layers.FlatToRegions(num_decomps=1),
            layers.NormalLeaf(
                num_components=2,
                location_initializer=keras.initializers.Constant(locations.T[None, :, None, :, None]),
                scale_initializer=keras.initializers.Constant(0.5),
                leaf_representation=leaf_representation,
            ),
            layers.ReduceProduct(num_factors=2),
            layers.RootSum(return_weighted_child_logits=False, sum_op=SumOpSampleBackprop()),
        ],
        infer_no_evidence=True,
    )
    spn.layers[-1].accumulators.assign(np.reshape([0.3, 0.7], (1, 1, 2, 1)))
    return spn, locations


def test_leaf_representation_mode_gives_the_modes_of_sampled_components(float64):
    spn, locations = mixture_sampler("mode")
    samples = to_numpy(spn.zero_evidence_inference(20000))
    first = np.isclose(samples, locations[0]).all(axis=1)
    assert np.all(first | np.isclose(samples, locations[1]).all(axis=1))
    assert abs(first.mean() - 0.3) < 4 * np.sqrt(0.21 / len(samples))


def test_leaf_representation_sample_draws_from_the_components(float64):
    spn, locations = mixture_sampler(LeafRepresentation.SAMPLE)
    samples = to_numpy(spn.zero_evidence_inference(20000))
    mean = np.array([0.3, 0.7]) @ locations
    variance = np.array([0.3, 0.7]) @ (0.25 + locations**2) - mean**2
    np.testing.assert_array_less(np.abs(samples.mean(axis=0) - mean), 4 * np.sqrt(variance / len(samples)))
    np.testing.assert_allclose(samples.var(axis=0), variance, rtol=0.05)


def test_leaf_representation_argument_and_accessors(floatx):
    leaf = layers.NormalLeaf(
        num_components=2,
        location_initializer=keras.initializers.Constant(np.arange(6.0).reshape(3, 1, 2, 1)),
        leaf_representation="sample",
    )
    leaf.build((None, 3, 1, 1))
    assert leaf.leaf_representation is LeafRepresentation.SAMPLE
    assert leaf.get_config()["leaf_representation"] == "sample"
    revived = layers.NormalLeaf.from_config(leaf.get_config())
    assert revived.leaf_representation is LeafRepresentation.SAMPLE
    np.testing.assert_array_equal(to_numpy(leaf.get_modes()), np.arange(6.0).reshape(1, 3, 1, 2, 1))
    modes = layers.NormalLeaf.from_config({**leaf.get_config(), "leaf_representation": "mode"})
    modes.build((None, 3, 1, 1))
    modes.set_weights(leaf.get_weights())
    np.testing.assert_array_equal(
        to_numpy(modes.get_leaf_representation(4)), np.tile(to_numpy(leaf.get_modes()), (4, 1, 1, 1, 1))
    )
    indicator = layers.IndicatorLeaf(num_components=3, leaf_representation=LeafRepresentation.MODE)
    indicator.build((None, 2, 1, 1))
    np.testing.assert_array_equal(to_numpy(indicator.get_modes())[0, 1, 0, :, 0], [0, 1, 2])
    with pytest.raises(
        ValueError, match=r"NormalLeaf expects leaf_representation .* Received: leaf_representation='median'"
    ):
        layers.NormalLeaf(num_components=2, leaf_representation="median")


def normalized_mixture(sample_wise: bool) -> tuple[models.SequentialSumProductNetwork, np.ndarray]:
    locations = np.array([[-1.0, 0.5], [1.5, -0.5]])  # [component, variable], in the normalized space
    normalize = layers.NormalizeStandardScore(sample_wise=sample_wise, normalization_epsilon=1e-3)
    spn = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(2,)),
            normalize,
            layers.FlatToRegions(num_decomps=1),
            layers.NormalLeaf(
                num_components=2,
                location_initializer=keras.initializers.Constant(locations.T[None, :, None, :, None]),
                scale_initializer=keras.initializers.Constant(0.6),
            ),
            layers.ReduceProduct(num_factors=2),
            layers.RootSum(return_weighted_child_logits=False),
        ],
        infer_no_evidence=True,
    )
    spn.layers[-1].accumulators.assign(np.log(np.reshape([0.4, 0.6], (1, 1, 2, 1))))
    return spn, locations


def test_normalization_before_the_leaf_is_undone_on_the_completion(float64):
    spn, locations = normalized_mixture(sample_wise=False)
    normalize = spn.layers[0]
    normalize.adapt(np.array([[10.0, 20.0], [30.0, 40.0]]))  # mean 25, standard deviation sqrt(125)
    mean, scale = 25.0, np.sqrt(125.0) + 1e-3
    x = np.array([[31.0, 0.0]])
    z = (31.0 - mean) / scale
    like = np.array([0.4, 0.6]) * scipy.stats.norm.pdf(z, locations[:, 0], 0.6)
    posterior = like / like.sum()
    completed = to_numpy(spn((x, np.array([[True, False]]))))
    # The adapted statistics are stored in float32.
    np.testing.assert_allclose(completed[0], [31.0, mean + scale * (posterior @ locations[:, 1])], rtol=1e-7)
    mpe = to_numpy(spn.mpe(x, np.array([[True, False]])))
    np.testing.assert_allclose(mpe[0, 1], mean + scale * locations[np.argmax(posterior), 1], rtol=1e-7)
    np.testing.assert_allclose(
        to_numpy(spn.zero_evidence_inference(1))[0], mean + scale * (np.array([0.4, 0.6]) @ locations), rtol=1e-7
    )


def test_sample_wise_normalization_uses_the_statistics_of_the_evidence(float64):
    spn, locations = normalized_mixture(sample_wise=True)
    x = np.array([[4.0, 123.0]])  # the masked value must not enter the statistics
    # One observed value: mean 4, standard deviation 0, so z = 0 and values map back as 4 + 1e-3 * z.
    like = np.array([0.4, 0.6]) * scipy.stats.norm.pdf(0.0, locations[:, 0], 0.6)
    posterior = like / like.sum()
    completed = to_numpy(spn((x, np.array([[True, False]]))))
    np.testing.assert_allclose(completed[0], [4.0, 4.0 + 1e-3 * (posterior @ locations[:, 1])], rtol=1e-10)


def test_dgcspn_sampling_as_in_the_tutorial():
    """The tutorial's model at a tiny size: NormalizeStandardScore -> NormalLeaf -> Conv2DProduct / Local2DSum."""
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).uniform(0, 255, size=(16, 4, 4, 1)).astype("float32")
    normalize = layers.NormalizeStandardScore(sample_wise=False, normalization_epsilon=1e-3)
    normalize.adapt(images)
    spn = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(4, 4, 1)),
            normalize,
            layers.NormalLeaf(num_components=2, location_initializer=keras.initializers.RandomNormal(stddev=1.0)),
            layers.Conv2DProduct(depthwise=False, strides=2, dilations=1, kernel_size=2, padding="valid"),
            layers.Local2DSum(num_sums=3, sum_op=SumOpSampleBackprop()),
            layers.Conv2DProduct(depthwise=True, strides=2, dilations=1, kernel_size=2, padding="valid"),
            layers.DenseSum(num_sums=2, sum_op=SumOpSampleBackprop()),
            layers.RootSum(return_weighted_child_logits=False, sum_op=SumOpSampleBackprop()),
        ],
        infer_no_evidence=True,
        unsupervised=False,
    )
    rows = [to_numpy(spn.zero_evidence_inference(1)) for _ in range(6)]
    assert rows[0].shape == (1, 4, 4, 1)
    assert len({row.tobytes() for row in rows}) > 1
    mean, std = float(to_numpy(normalize.mean)), float(to_numpy(normalize.stddev))
    locations = to_numpy(spn.layers[1].get_modes())[0, ..., 0]  # [4, 4, components]
    # Every pixel is the mode of one of its leaf components, mapped back to the data's units.
    pixels = (np.concatenate(rows)[..., 0] - mean) / (std + 1e-3)
    assert np.all(np.min(np.abs(pixels[..., None] - locations[None]), axis=-1) < 1e-4)
    predicted = spn.predict([images[:2], np.zeros(images[:2].shape, bool)], verbose=0)
    assert predicted.shape == (2, 4, 4, 1) and np.all(np.isfinite(predicted))


def test_mixed_queries_in_one_model_are_rejected():
    stack = discrete_layers(SumOpSampleBackprop())
    stack[-1] = layers.RootSum(return_weighted_child_logits=False, sum_op=SumOpHardEMBackprop())
    spn = models.SequentialSumProductNetwork(stack, infer_no_evidence=True)
    with pytest.raises(
        ValueError, match=r"must agree on the query .* Received: \{.*SumOpSampleBackprop.*SumOpHardEMBackprop"
    ):
        spn.zero_evidence_inference(1)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("sum_op", [SumOpGradBackprop(), SumOpHardEMBackprop(), SumOpSampleBackprop()], ids=type)
def test_predict_and_xla_give_the_eager_inference(sum_op, jit_compile, floatx):
    """As 0.6.0's ``zero_evidence_inference`` (which calls ``predict([x, evidence_mask])``), in float32 and float64."""
    spn, _ = completer(sum_op)
    spn.compile(jit_compile=jit_compile)
    x, mask = np.tile(X[:1], (8, 1)).astype(floatx), np.tile(MASK[:1], (8, 1))
    predicted = spn.predict([x, mask], verbose=0)
    assert predicted.dtype == floatx and predicted.shape == x.shape
    np.testing.assert_array_equal(predicted[:, [1, 3]], x[:, [1, 3]])
    if isinstance(sum_op, SumOpSampleBackprop):
        assert np.all(np.isin(predicted, range(NUM_STATES)))
        assert not np.array_equal(predicted, spn.predict([x, mask], verbose=0))  # a new sample per call
    else:
        np.testing.assert_allclose(predicted, to_numpy(spn((x, mask))), rtol=1e-5 if floatx == "float32" else 1e-12)
