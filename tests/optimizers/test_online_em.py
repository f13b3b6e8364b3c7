"""Online EM: one step equals the closed-form update; full-batch EM never decreases the likelihood."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import initializers, layers, losses, models, optimizers, sum_ops
from tests.reference_spn import all_states


def mixture_model(op: sum_ops.SumOpBase, num_states: int = 3) -> models.SequentialSumProductNetwork:
    """A single root sum over the states of one discrete variable (a categorical distribution)."""
    return models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(1,)),
            layers.IndicatorLeaf(num_components=num_states),
            layers.RootSum(
                return_weighted_child_logits=False,
                sum_op=op,
                accumulator_initializer=initializers.EpsilonInverseFanIn(epsilon=0.3),
            ),
        ]
    )


STATES = np.array([[0], [2], [2], [1], [2], [0], [2], [2]], "float64")
FREQUENCIES = np.bincount(STATES[:, 0].astype(int), minlength=3) / len(STATES)


def fit_one_batch(model: models.SequentialSumProductNetwork, optimizer, x: np.ndarray = STATES) -> None:
    """One optimizer step on the whole of ``x`` as a single batch."""
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    model.fit(x, batch_size=len(x), epochs=1, verbose=0, shuffle=False)


@pytest.mark.parametrize("gliding_average", [True, False])
@pytest.mark.parametrize(
    "op", [sum_ops.SumOpEMBackprop(), sum_ops.SumOpHardEMBackprop()], ids=lambda op: type(op).__name__
)
def test_one_step_equals_closed_form(float64, op, gliding_average):
    model = mixture_model(op)
    root = model.layers[-1]
    before = root.accumulators.numpy()[:, 0].copy()
    np.testing.assert_allclose(before, 0.1)  # epsilon / fan-in
    fit_one_batch(model, optimizers.OnlineExpectationMaximization(learning_rate=0.25, gliding_average=gliding_average))
    expected = 0.75 * before + 0.25 * FREQUENCIES if gliding_average else before + 0.25 * FREQUENCIES
    np.testing.assert_allclose(root.accumulators.numpy()[:, 0], expected, rtol=1e-12)
    # With cumulative counts and EpsilonInverseFanIn, weights are the paper's additively smoothed estimate.
    if not gliding_average:
        weights = np.exp(model.log_marginal(np.array([[0.0], [1.0], [2.0]])).numpy())
        c = 0.25 * FREQUENCIES
        np.testing.assert_allclose(weights, (c + 0.3 / 3) / (c.sum() + 0.3), rtol=1e-12)


@pytest.mark.parametrize(
    "op", [sum_ops.SumOpEMBackprop(), sum_ops.SumOpHardEMBackprop()], ids=lambda op: type(op).__name__
)
def test_normalized_update_interpolates_the_weights(float64, op):
    model = mixture_model(op)
    root = model.layers[-1]
    root.accumulators.assign(np.array([[0.5], [0.3], [0.2]]) * 7.0)  # unnormalized on purpose
    fit_one_batch(model, optimizers.OnlineExpectationMaximization(learning_rate=0.25, normalized_update=True))
    expected = 0.75 * np.array([0.5, 0.3, 0.2]) + 0.25 * FREQUENCIES
    np.testing.assert_allclose(root.accumulators.numpy()[:, 0], expected, rtol=1e-12)


def test_normalized_update_keeps_the_weights_of_sums_no_sample_reached(float64):
    # Hard EM with a root that always selects sum 0: sum 1 of the dense layer receives no counts.
    op = sum_ops.SumOpHardEMBackprop()
    model = models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(1,)),
            layers.IndicatorLeaf(num_components=3),
            layers.DenseSum(num_sums=2, sum_op=op),
            layers.RootSum(return_weighted_child_logits=False, sum_op=op),
        ]
    )
    dense, root = model.layers[2], model.layers[3]
    dense_before = np.array([[1.0, 2.0], [3.0, 2.0], [4.0, 4.0]])
    dense.accumulators.assign(dense_before[np.newaxis, np.newaxis])
    root.accumulators.assign(np.array([[1e6], [1e-6]]))
    x = np.array([[0], [1], [1], [2]], "float64")
    fit_one_batch(model, optimizers.OnlineExpectationMaximization(learning_rate=0.5, normalized_update=True), x)
    after = dense.accumulators.numpy()[0, 0]
    weights_before = dense_before / dense_before.sum(axis=0)
    np.testing.assert_allclose(after[:, 1], weights_before[:, 1], rtol=1e-12)  # not reached: unchanged
    np.testing.assert_allclose(after[:, 0], 0.5 * weights_before[:, 0] + 0.5 * np.array([1, 2, 1]) / 4, rtol=1e-12)


def test_normalized_update_needs_the_gliding_average():
    with pytest.raises(ValueError, match="needs gliding_average=True"):
        optimizers.OnlineExpectationMaximization(gliding_average=False, normalized_update=True)
    config = optimizers.OnlineExpectationMaximization(normalized_update=True).get_config()
    assert config["normalized_update"] is True
    assert optimizers.OnlineExpectationMaximization.from_config(config).normalized_update


def test_non_em_variables_get_an_sgd_step(float64):
    opt = optimizers.OnlineExpectationMaximization(learning_rate=0.5)
    variable = keras.Variable(np.array([1.0, 2.0]))
    opt.apply([np.array([0.2, -0.4])], [variable])
    np.testing.assert_allclose(variable.numpy(), [0.9, 2.2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"learning_rate": 0.0}, "learning_rate > 0"), ({"learning_rate": 1.5}, "learning_rate <= 1")],
)
def test_invalid_learning_rate_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.OnlineExpectationMaximization(**kwargs)


def test_full_batch_em_never_decreases_the_training_likelihood(float64):
    """Full-batch EM: learning_rate=1 with gliding average replaces the accumulators by the expected counts."""
    rng = np.random.default_rng(0)
    num_vars = 4
    permutations = np.array([[0, 1, 2, 3], [3, 1, 0, 2]])
    model = models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=2, input_shape=(num_vars,)),
            layers.IndicatorLeaf(num_components=2),
            layers.PermuteAndPadScopes(permutations),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3, sum_op=sum_ops.SumOpEMBackprop()),
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, sum_op=sum_ops.SumOpEMBackprop()),
        ]
    )
    states = all_states(num_vars, 2)
    probs = rng.dirichlet(np.full(len(states), 0.3))
    x = states[rng.choice(len(states), size=200, p=probs)].astype("float64")
    model.compile(
        optimizer=optimizers.OnlineExpectationMaximization(learning_rate=1.0, gliding_average=True),
        loss=losses.NegativeLogLikelihood(),
    )
    history = [float(np.mean(model.log_marginal(x)))]
    for _ in range(8):
        model.fit(x, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
        history.append(float(np.mean(model.log_marginal(x))))
    assert all(b >= a - 1e-9 for a, b in zip(history, history[1:], strict=False)), history
    assert history[-1] > history[0] + 0.05
    # The model stays normalized after EM updates.
    assert abs(np.exp(model.log_marginal(states.astype("float64")).numpy()).sum() - 1.0) < 1e-9


@pytest.mark.parametrize("normalized_update", [False, True], ids=["counts", "normalized"])
@pytest.mark.parametrize(
    "op",
    [sum_ops.SumOpEMBackprop(), sum_ops.SumOpHardEMBackprop(), sum_ops.SumOpUnweightedHardEMBackprop()],
    ids=lambda op: type(op).__name__,
)
def test_em_leaves_learn_a_two_component_mixture(op, normalized_update):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.5, (300, 3)), rng.normal(3, 1.0, (300, 3))]).astype("float32")
    model = models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(3,)),
            layers.NormalLeaf(
                num_components=2,
                use_accumulators=True,
                scale_trainable=True,
                location_initializer=keras.initializers.Constant([[[[-1.0], [1.0]]]]),
            ),
            layers.ReduceProduct(num_factors=3),
            layers.RootSum(return_weighted_child_logits=False, sum_op=op),
        ]
    )
    optimizer = optimizers.OnlineExpectationMaximization(0.3, normalized_update=normalized_update)
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    before = float(np.mean(model.log_marginal(x)))
    model.fit(x, epochs=6, batch_size=100, verbose=0)
    after = float(np.mean(model.log_marginal(x)))
    location, scale = model.layers[1].parameters()
    assert after > before + 1.0
    np.testing.assert_allclose(np.sort(location.numpy()[:, 0, :, 0], axis=-1), [[-3, 3]] * 3, atol=0.35)
    assert np.all(scale.numpy() > 0.3) and np.all(scale.numpy() < 1.6)
