"""Online EM: one step equals the closed-form update; full-batch EM never decreases the likelihood.

The closed-form tests run each update both as plain TF ops and XLA-compiled (``compiled``), the path that large
variables (``XLA_UPDATE_MIN_SIZE`` entries) take.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import constraints, initializers, layers, losses, models, optimizers, sum_ops
from libspn_keras.optimizers import _online_em
from libspn_keras.optimizers._em_statistics import mark_em_statistic
from tests.backend_utils import to_numpy
from tests.reference_spn import all_states


@pytest.fixture(params=[False, True], ids=["ops", "xla"])
def compiled(request, monkeypatch) -> bool:
    """Whether every variable's update is XLA-compiled (by default only those of XLA_UPDATE_MIN_SIZE entries)."""
    if request.param:
        monkeypatch.setattr(_online_em, "XLA_UPDATE_MIN_SIZE", 1)
    return request.param


def mixture_model(op: sum_ops.SumOpBase, num_states: int = 3) -> models.SequentialSumProductNetwork:
    """A single root sum over the states of one discrete variable (a categorical distribution).

    Its accumulators are unnormalized counts (``GreaterEqualEpsilon``, not the default normalizing constraint).
    """
    return models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1, input_shape=(1,)),
            layers.IndicatorLeaf(num_components=num_states),
            layers.RootSum(
                return_weighted_child_logits=False,
                sum_op=op,
                accumulator_initializer=initializers.EpsilonInverseFanIn(epsilon=0.3),
                linear_accumulator_constraint=constraints.GreaterEqualEpsilon(),
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
def test_one_step_equals_closed_form(float64, compiled, op, gliding_average):
    model = mixture_model(op)
    root = model.layers[-1]
    before = to_numpy(root.accumulators).reshape(-1).copy()
    np.testing.assert_allclose(before, 0.1)  # epsilon / fan-in
    fit_one_batch(model, optimizers.OnlineExpectationMaximization(learning_rate=0.25, gliding_average=gliding_average))
    expected = 0.75 * before + 0.25 * FREQUENCIES if gliding_average else before + 0.25 * FREQUENCIES
    np.testing.assert_allclose(to_numpy(root.accumulators).reshape(-1), expected, rtol=1e-12)
    # With cumulative counts and EpsilonInverseFanIn, weights are the paper's additively smoothed estimate.
    if not gliding_average:
        weights = np.exp(to_numpy(model.log_marginal(np.array([[0.0], [1.0], [2.0]]))))
        c = 0.25 * FREQUENCIES
        np.testing.assert_allclose(weights, (c + 0.3 / 3) / (c.sum() + 0.3), rtol=1e-12)


@pytest.mark.parametrize(
    "op", [sum_ops.SumOpEMBackprop(), sum_ops.SumOpHardEMBackprop()], ids=lambda op: type(op).__name__
)
def test_normalized_update_interpolates_the_weights(float64, compiled, op):
    model = mixture_model(op)
    root = model.layers[-1]
    root.accumulators.assign(np.array([0.5, 0.3, 0.2]).reshape(1, 1, 3, 1) * 7.0)  # unnormalized on purpose
    fit_one_batch(model, optimizers.OnlineExpectationMaximization(learning_rate=0.25, normalized_update=True))
    expected = 0.75 * np.array([0.5, 0.3, 0.2]) + 0.25 * FREQUENCIES
    np.testing.assert_allclose(to_numpy(root.accumulators).reshape(-1), expected, rtol=1e-12)


def test_normalized_update_keeps_the_weights_of_sums_no_sample_reached(float64, compiled):
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
    root.accumulators.assign(np.array([1e6, 1e-6]).reshape(1, 1, 2, 1))
    x = np.array([[0], [1], [1], [2]], "float64")
    fit_one_batch(model, optimizers.OnlineExpectationMaximization(learning_rate=0.5, normalized_update=True), x)
    after = to_numpy(dense.accumulators)[0, 0]
    weights_before = dense_before / dense_before.sum(axis=0)
    np.testing.assert_allclose(after[:, 1], weights_before[:, 1], rtol=1e-12)  # not reached: unchanged
    np.testing.assert_allclose(after[:, 0], 0.5 * weights_before[:, 0] + 0.5 * np.array([1, 2, 1]) / 4, rtol=1e-12)


def test_normalized_update_needs_the_gliding_average():
    with pytest.raises(ValueError, match="needs gliding_average=True"):
        optimizers.OnlineExpectationMaximization(gliding_average=False, normalized_update=True)
    config = optimizers.OnlineExpectationMaximization(normalized_update=True).get_config()
    assert config["normalized_update"] is True
    assert optimizers.OnlineExpectationMaximization.from_config(config).normalized_update


@pytest.mark.parametrize(
    ("normalized_update", "expected"),
    [(None, [0.4, 1.2]), (True, [0.9, 2.2]), (False, [0.9, 2.2])],
    ids=["original", "normalized", "counts"],
)
def test_non_em_variables_get_the_original_step_by_default_else_sgd(float64, compiled, normalized_update, expected):
    """The original's optimizer applied (1 - lr) v - lr g to every variable; the explicit rules keep an SGD step."""
    opt = optimizers.OnlineExpectationMaximization(learning_rate=0.5, normalized_update=normalized_update)
    variable = keras.Variable(np.array([1.0, 2.0]))
    opt.apply([np.array([0.2, -0.4])], [variable])
    np.testing.assert_allclose(to_numpy(variable), expected)
    assert bool(opt._compiled_updates) == compiled


def test_large_variables_are_updated_by_xla_like_small_ones():
    """A variable of XLA_UPDATE_MIN_SIZE entries takes the compiled update, with the uncompiled one's values."""
    rng = np.random.default_rng(0)
    shape = (4, _online_em.XLA_UPDATE_MIN_SIZE // 64, 16)  # [groups, num_in, num_out]
    start = rng.uniform(0.1, 1.0, size=shape).astype("float32")
    counts = rng.uniform(0.0, 1.0, size=shape).astype("float32")
    counts[0, :, 3] = 0.0  # a sum no sample reached keeps its weights
    small = (2, 3, 16)
    results = []
    for normalized_update in (True, False):
        opt = optimizers.OnlineExpectationMaximization(learning_rate=0.1, normalized_update=normalized_update)
        variables = [keras.Variable(start), keras.Variable(start[:2, :3])]
        for variable in variables:
            mark_em_statistic(variable, outcome_axis=-2)
        opt.apply([-counts, -counts[:2, :3]], variables)
        assert sorted(opt._compiled_updates) == [0]  # only the large one
        results.append([to_numpy(v) for v in variables])
    for got, a, n in zip(results[0], (start, start[:2, :3]), (counts, counts[:2, :3]), strict=True):
        total = n.sum(1, keepdims=True)
        expected = np.where(
            total > 0,
            0.9 * a / a.sum(1, keepdims=True) + 0.1 * n / np.where(total > 0, total, 1),
            a / a.sum(1, keepdims=True),
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(results[1][0], 0.9 * start + 0.1 * counts, rtol=1e-6)
    assert results[0][1].shape == small


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
    assert abs(np.exp(to_numpy(model.log_marginal(states.astype("float64")))).sum() - 1.0) < 1e-9


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
    np.testing.assert_allclose(np.sort(to_numpy(location)[:, 0, :, 0], axis=-1), [[-3, 3]] * 3, atol=0.35)
    assert np.all(to_numpy(scale) > 0.3) and np.all(to_numpy(scale) < 1.6)


@pytest.mark.parametrize("accumulate_batches", [1, 2])
def test_default_rule_normalizes_marked_counts_per_batch_and_mixes_them(float64, compiled, accumulate_batches):
    """The original's rule on variables marked directly: soft EM counts normalized per sum, hard EM counts as is."""
    rng = np.random.default_rng(3)
    start = rng.dirichlet(np.ones(4), size=(2, 3)).transpose(0, 2, 1)  # [groups, num_in, num_out]
    counts = rng.uniform(0.0, 0.4, size=(accumulate_batches, *start.shape))
    counts[0, 1, :, 2] = 0.0  # a sum the first batch did not reach
    opt = optimizers.OnlineExpectationMaximization(learning_rate=0.2, accumulate_batches=accumulate_batches)
    soft, hard, other = keras.Variable(start), keras.Variable(start), keras.Variable(start)
    mark_em_statistic(soft, outcome_axis=-2, normalized_counts=True)
    mark_em_statistic(hard, outcome_axis=-2, normalized_counts=False)
    for batch in counts:
        opt.apply([-batch, -batch, -batch], [soft, hard, other])
    totals = counts.sum(axis=-2, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    np.testing.assert_allclose(to_numpy(soft), 0.8 * start + 0.2 * normalized.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(hard), 0.8 * start + 0.2 * counts.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(other), 0.8 * start + 0.2 * counts.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_invalid_accumulate_batches_raises(value):
    with pytest.raises(ValueError, match=rf"accumulate_batches to be a positive integer. Received: {value!r}"):
        optimizers.OnlineExpectationMaximization(accumulate_batches=value)


def test_normalized_update_must_be_none_or_a_bool():
    with pytest.raises(ValueError, match="normalized_update to be None, True or False. Received: 'yes'"):
        optimizers.OnlineExpectationMaximization(normalized_update="yes")


@pytest.mark.parametrize("accumulate_batches", [1, 2])
@pytest.mark.parametrize("normalized_update", [None, True, False], ids=["original", "normalized", "counts"])
def test_pseudocount_is_a_symmetric_dirichlet_prior_on_each_sum(
    float64, compiled, accumulate_batches, normalized_update
):
    """``pseudocount=c`` adds c / K to each of a sum's K counts (per batch) before the rule uses them."""
    rng = np.random.default_rng(5)
    start = rng.dirichlet(np.ones(4), size=(2, 3)).transpose(0, 2, 1)  # [groups, num_in=4, num_out=3]
    counts = rng.uniform(0.0, 0.4, size=(accumulate_batches, *start.shape))
    counts[:, 1, :, 2] = 0.0  # a sum that no batch reached
    c, lr = 0.3, 0.2
    opt = optimizers.OnlineExpectationMaximization(
        learning_rate=lr, accumulate_batches=accumulate_batches, normalized_update=normalized_update, pseudocount=c
    )
    soft, hard, moments = keras.Variable(start), keras.Variable(start), keras.Variable(start)
    mark_em_statistic(soft, outcome_axis=-2, normalized_counts=True)
    mark_em_statistic(hard, outcome_axis=-2, normalized_counts=False)
    mark_em_statistic(moments)  # leaf statistics: no outcome axis, no pseudocount
    for batch in counts:
        opt.apply([-batch, -batch, -batch], [soft, hard, moments])
    smoothed = counts + c / 4
    normalized = (smoothed / smoothed.sum(axis=-2, keepdims=True)).mean(axis=0)
    weights = start / start.sum(axis=-2, keepdims=True)
    expected_soft, expected_hard = {
        None: (0.8 * start + 0.2 * normalized, 0.8 * start + 0.2 * smoothed.mean(axis=0)),
        True: (0.8 * weights + 0.2 * normalized, 0.8 * weights + 0.2 * normalized),
        False: (0.8 * start + 0.2 * smoothed.mean(axis=0), 0.8 * start + 0.2 * smoothed.mean(axis=0)),
    }[normalized_update]
    if normalized_update is True and accumulate_batches == 2:  # the mean of the counts is normalized once
        mean = smoothed.mean(axis=0)
        expected_soft = expected_hard = 0.8 * weights + 0.2 * mean / mean.sum(axis=-2, keepdims=True)
    np.testing.assert_allclose(to_numpy(soft), expected_soft, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(hard), expected_hard, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(moments), 0.8 * start + 0.2 * counts.mean(axis=0), rtol=1e-12)
    if normalized_update is True:  # the sum no sample reached moves towards uniform weights
        np.testing.assert_allclose(to_numpy(soft)[1, :, 2], 0.8 * weights[1, :, 2] + 0.2 * 0.25, rtol=1e-12)


def test_pseudocount_smooths_the_weights_of_a_trained_model(float64):
    """A state that never occurs keeps weight c / K / (1 + c) after one normalized step with the whole step size."""
    model = mixture_model(sum_ops.SumOpEMBackprop())
    x = np.array([[0], [2], [2], [0]], "float64")
    fit_one_batch(model, optimizers.OnlineExpectationMaximization(1.0, normalized_update=True, pseudocount=0.6), x)
    weights = np.exp(to_numpy(model.log_marginal(np.array([[0.0], [1.0], [2.0]])))).reshape(-1)
    np.testing.assert_allclose(weights, (np.array([0.5, 0.0, 0.5]) + 0.2) / 1.6, rtol=1e-12)


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "0.1", None])
def test_invalid_pseudocount_raises(value):
    with pytest.raises(ValueError, match=rf"pseudocount to be a finite number >= 0. Received: pseudocount={value!r}"):
        optimizers.OnlineExpectationMaximization(pseudocount=value)


def test_pseudocount_round_trips_through_the_config():
    config = optimizers.OnlineExpectationMaximization(pseudocount=0.25).get_config()
    assert config["pseudocount"] == 0.25
    assert optimizers.OnlineExpectationMaximization.from_config(config).pseudocount == 0.25
    assert optimizers.OnlineExpectationMaximization().pseudocount == 0.0
