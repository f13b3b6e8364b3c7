"""learn_spn against brute force: enumeration of all joint states, an independent NumPy evaluation, scipy's G-test."""

import functools
import itertools

import keras
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp, softmax

from libspn_keras import layers, losses, models, optimizers
from libspn_keras.structure import LearnedSPN, learn_spn, learn_spn_structure
from libspn_keras.structure._learn_spn import dependence_p_values
from tests.backend_utils import jit
from tests.sum_op_cases import OPS


def mixture_data(num_rows=800, num_vars=6, num_states=2, seed=0):
    """Two clusters of noisy copies of a hidden state, and an independent variable: all kinds of splits."""
    rng = np.random.default_rng(seed)
    hidden = rng.integers(0, num_states, (num_rows, 1))
    noise = rng.random((num_rows, num_vars - 1)) < 0.15
    copies = np.where(noise, rng.integers(0, num_states, (num_rows, num_vars - 1)), hidden)
    return np.concatenate([copies, rng.integers(0, num_states, (num_rows, 1))], axis=1)


def all_states(num_vars, num_states):
    return np.array(list(itertools.product(range(num_states), repeat=num_vars)), dtype=keras.config.floatx())


def weights_of(layer):
    values = np.asarray(layer.accumulators, dtype=np.float64)
    return softmax(values, axis=-2) if layer.logspace_accumulators else values / values.sum(axis=-2, keepdims=True)


def numpy_log_likelihood(spn, x):
    """Evaluate the model's structure and weights top-down in NumPy (NaN: the leaf is 1)."""
    _, _, gather, leaf_sum, tree, root = spn.layers
    leaves = weights_of(leaf_sum)[:, 0, :, 0]  # [L, S]
    sums = dict(zip(tree.sum_nodes, weights_of(tree)[:, 0, :, 0], strict=True)) if tree.num_sums else {}
    root_weights = weights_of(root)[0, 0, :, 0]

    @functools.cache
    def value(n):
        if n < tree.num_leaves:
            column = x[:, gather.indices[n]]
            observed = ~np.isnan(column)
            states = np.where(observed, column, 0).astype(int)
            return np.where(observed, np.log(leaves[n, states]), 0.0)
        kind, children = tree.nodes[n - tree.num_leaves]
        if kind == "product":
            return sum(value(c) for c in children)
        return logsumexp([value(c) + np.log(w) for c, w in zip(children, sums[n - tree.num_leaves], strict=True)], 0)

    return logsumexp([value(o) + np.log(w) for o, w in zip(tree.outputs, root_weights, strict=True)], axis=0)


def sum_arity(learned):
    return {len(children) for kind, children in learned.nodes if kind == "sum"}


@pytest.mark.parametrize("num_states", [2, 3])
def test_learned_structure_has_every_kind_of_node_and_sums_of_num_clusters(num_states):
    learned = learn_spn_structure(
        mixture_data(num_states=num_states), min_instances_slice=100, num_clusters=3 if num_states == 3 else 2
    )
    kinds = {kind for kind, _ in learned.nodes}
    assert kinds == {"product", "sum"}
    assert sum_arity(learned) == {3 if num_states == 3 else 2}
    assert learned.leaf_probabilities.shape == (learned.num_leaves, num_states)
    np.testing.assert_allclose(learned.leaf_probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(learned.sum_weights.sum(axis=1), 1.0)
    assert learned.root == learned.num_leaves + len(learned.nodes) - 1


@pytest.mark.parametrize(("num_vars", "num_states", "op"), [(6, 2, "em"), (6, 2, "grad"), (4, 3, "em")])
def test_initial_model_is_the_learned_spn_and_normalized(num_vars, num_states, op, floatx):
    data = mixture_data(num_vars=num_vars, num_states=num_states)
    spn = learn_spn(data, min_instances_slice=100, sum_op=OPS[op]())
    learned = learn_spn_structure(data, min_instances_slice=100)
    states = all_states(num_vars, num_states)
    log_p = np.asarray(spn(states), dtype=np.float64)[:, 0]
    tolerance = 1e-5 if floatx == "float32" else 1e-10
    np.testing.assert_allclose(logsumexp(log_p), 0.0, atol=tolerance)
    np.testing.assert_allclose(log_p, learned.log_likelihood(states.astype(int)), rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(log_p, numpy_log_likelihood(spn, states), rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(np.asarray(jit(spn)(states))[:, 0], log_p, rtol=tolerance, atol=tolerance)


def test_learned_log_likelihood_matches_a_direct_evaluation_of_a_tiny_spn():
    """LearnedSPN.log_likelihood of a hand-made SPN: 0.4 p1(x0) p1(x1) + 0.6 p2(x0) p2(x1)."""
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    learned = LearnedSPN(
        2,
        2,
        np.array([0, 1, 0, 1]),
        p,
        [("product", (0, 1)), ("product", (2, 3)), ("sum", (4, 5))],
        np.array([[0.4, 0.6]]),
        6,
    )
    x = np.array([[0, 1], [1, 1]])
    expected = np.log(0.4 * p[0, x[:, 0]] * p[1, x[:, 1]] + 0.6 * p[2, x[:, 0]] * p[3, x[:, 1]])
    np.testing.assert_allclose(learned.log_likelihood(x), expected)


def test_missing_values_are_summed_out():
    data = mixture_data()
    spn = learn_spn(data, min_instances_slice=100, sum_op=OPS["em"]())
    rng = np.random.default_rng(1)
    x = data[:6].astype("float32")
    x[rng.random(x.shape) < 0.4] = np.nan
    x[0] = np.nan
    completions = []  # every completion of every row, evaluated in one call
    for row in x:
        missing = np.flatnonzero(np.isnan(row))
        filled = np.repeat(row[np.newaxis], 2 ** len(missing), axis=0)
        filled[:, missing] = all_states(len(missing), 2)
        completions.append(filled)
    log_p = np.asarray(spn(np.concatenate(completions)), np.float64)[:, 0]
    ends = np.cumsum([len(filled) for filled in completions])
    expected = [logsumexp(part) for part in np.split(log_p, ends[:-1])]
    np.testing.assert_allclose(np.asarray(spn(x))[:, 0], expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(spn(x))[:, 0], numpy_log_likelihood(spn, x), atol=1e-5)


@pytest.mark.parametrize("num_states", [2, 3])
def test_dependence_p_values_match_scipy_g_test(num_states):
    rng = np.random.default_rng(2)
    data = rng.integers(0, num_states, (60, 4))
    data[:, 1] = np.where(rng.random(60) < 0.3, data[:, 1], data[:, 0])
    weights = rng.uniform(0.5, 2.0, 60)
    alpha = 0.7
    p_values = dependence_p_values(data, num_states, alpha, weights)
    for i, j in itertools.combinations(range(4), 2):
        table = np.zeros((num_states, num_states))
        np.add.at(table, (data[:, i], data[:, j]), weights)
        _, expected, _, _ = stats.chi2_contingency(
            table + alpha / num_states**2, correction=False, lambda_="log-likelihood"
        )
        np.testing.assert_allclose(p_values[i, j], expected, rtol=1e-8)
        np.testing.assert_allclose(p_values[j, i], expected, rtol=1e-8)
    assert p_values[0, 1] < 1e-3 < p_values[2, 3]


def test_independent_variables_become_a_product_and_small_slices_a_factorization():
    rng = np.random.default_rng(3)
    independent = learn_spn_structure(rng.integers(0, 2, (1000, 4)), min_instances_slice=10)
    assert independent.nodes == [("product", (0, 1, 2, 3))]
    small = learn_spn_structure(mixture_data(num_rows=50), min_instances_slice=51)
    assert small.nodes == [("product", tuple(range(6)))]
    np.testing.assert_array_equal(small.leaf_variables, np.arange(6))


def test_max_depth_factorizes_below_it():
    data = mixture_data()
    deep = learn_spn_structure(data, min_instances_slice=100)
    shallow = learn_spn_structure(data, min_instances_slice=100, max_depth=1)
    assert len(shallow.nodes) < len(deep.nodes)

    def depth(node, structure):
        if node < structure.num_leaves:
            return 0
        kind, children = structure.nodes[node - structure.num_leaves]
        below = max(depth(child, structure) for child in children)
        factorization = kind == "product" and all(child < structure.num_leaves for child in children)
        return below + (0 if factorization else 1)

    assert depth(shallow.root, shallow) == 1 < depth(deep.root, deep)


def test_splits_deeper_than_the_recursion_limit(monkeypatch):
    # Clustering that peels one row off per split makes a chain of 1,500 nested sums, deeper than Python's
    # recursion limit (1,000): the learner walks the slices with an explicit stack.
    from libspn_keras.structure import _learn_spn

    monkeypatch.setattr(_learn_spn._Builder, "_independent_components", lambda self, rows, variables: [variables])
    monkeypatch.setattr(_learn_spn._Builder, "_clusters", lambda self, rows, variables: [rows[:1], rows[1:]])
    data = np.random.default_rng(0).integers(0, 2, (1502, 3))
    learned = learn_spn_structure(data, min_instances_slice=3)
    sums = [children for kind, children in learned.nodes if kind == "sum"]
    assert len(sums) == 1500 and learned.root == learned.num_leaves + len(learned.nodes) - 1
    log_likelihood = learned.log_likelihood(data[:5])
    assert log_likelihood.shape == (5,) and np.all(np.isfinite(log_likelihood)) and np.all(log_likelihood < 0)


def test_deterministic_for_a_seed():
    data = mixture_data(num_vars=5, seed=4)
    first, again = (learn_spn_structure(data, min_instances_slice=60, seed=7) for _ in range(2))
    assert first.nodes == again.nodes
    np.testing.assert_array_equal(first.leaf_probabilities, again.leaf_probabilities)
    np.testing.assert_array_equal(first.sum_weights, again.sum_weights)
    x = data[:20].astype("float32")
    one, two = (learn_spn(data, min_instances_slice=60, seed=7) for _ in range(2))
    np.testing.assert_array_equal(np.asarray(one(x)), np.asarray(two(x)))


def test_sample_weight_counts_rows():
    data = mixture_data(num_rows=300, num_vars=4, seed=5)
    weights = np.random.default_rng(6).integers(0, 3, len(data))
    weighted = learn_spn_structure(data, min_instances_slice=1000, sample_weight=weights)
    repeated = learn_spn_structure(np.repeat(data, weights, axis=0), min_instances_slice=1000)
    np.testing.assert_allclose(weighted.leaf_probabilities, repeated.leaf_probabilities)


def test_full_batch_em_does_not_decrease_the_training_log_likelihood(float64):
    data = mixture_data(num_rows=400, seed=8).astype("float64")
    spn = learn_spn(data, min_instances_slice=80, sum_op=OPS["em"]())
    spn.compile(
        optimizer=optimizers.OnlineExpectationMaximization(learning_rate=1.0), loss=losses.NegativeLogLikelihood()
    )
    scores = [float(np.mean(spn(data)))]
    for _ in range(4):
        spn.fit(data, epochs=1, batch_size=len(data), verbose=0, shuffle=False)
        scores.append(float(np.mean(spn(data))))
    assert np.all(np.diff(scores) >= -1e-10), scores
    assert scores[-1] > scores[0] + 1e-5, scores  # LearnSPN starts close to a maximum
    log_p = np.asarray(spn(all_states(6, 2)))[:, 0]
    np.testing.assert_allclose(logsumexp(log_p), 0.0, atol=1e-10)
    np.testing.assert_allclose(log_p, numpy_log_likelihood(spn, all_states(6, 2)), atol=1e-10)


@pytest.mark.parametrize(("op", "jit_compile"), [*((op, False) for op in sorted(OPS)), ("em", True), ("grad", True)])
def test_fit_with_every_sum_op_runs_and_stays_normalized(op, jit_compile):
    data = mixture_data(num_rows=300, num_vars=5, seed=9).astype("float32")
    spn = learn_spn(data, min_instances_slice=60, sum_op=OPS[op]())
    optimizer = (
        keras.optimizers.Adam(0.01)
        if op == "grad"
        else optimizers.OnlineExpectationMaximization(learning_rate=0.2, normalized_update=True)
    )
    spn.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood(), jit_compile=jit_compile)
    before = float(np.mean(spn.predict(data, verbose=0)))
    spn.fit(data, epochs=2, batch_size=100, verbose=0)
    assert float(np.mean(spn.predict(data, verbose=0))) > before - 0.05  # fine-tuning, not undoing, the learned SPN
    log_p = np.asarray(spn(all_states(5, 2)), np.float64)[:, 0]
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(logsumexp(log_p), 0.0, atol=1e-5)


def test_mpe_completion_maximizes_over_missing_values_and_sums():
    data = mixture_data(num_rows=300, num_vars=4, seed=10)
    spn = learn_spn(data, min_instances_slice=60, sum_op=OPS["em"]())
    tree = spn.layers[4]
    assert tree.num_sums > 0
    rng = np.random.default_rng(11)
    x = data[:8].astype("float32")
    x[rng.random(x.shape) < 0.5] = np.nan
    completed = np.asarray(spn.mpe(x))
    observed = ~np.isnan(x)
    np.testing.assert_array_equal(completed[observed], x[observed])
    assert set(np.unique(completed)) <= {0.0, 1.0}
    # Max-product: the completion maximizes the max-product value, which for a completion is the best induced tree.
    for row, result in zip(x, completed, strict=True):
        missing = np.flatnonzero(np.isnan(row))
        candidates = np.repeat(row[np.newaxis], 2 ** len(missing), axis=0)
        candidates[:, missing] = all_states(len(missing), 2)
        best = max_product(spn, candidates)
        np.testing.assert_allclose(max_product(spn, result[np.newaxis])[0], best.max(), rtol=1e-5)


def max_product(spn, x):
    """The max-product value of each complete row: sums replaced by maxima of their weighted children."""
    _, _, gather, leaf_sum, tree, root = spn.layers
    leaves = weights_of(leaf_sum)[:, 0, :, 0]
    sums = dict(zip(tree.sum_nodes, weights_of(tree)[:, 0, :, 0], strict=True))
    root_weights = weights_of(root)[0, 0, :, 0]

    def value(n):
        if n < tree.num_leaves:
            return np.log(leaves[n, x[:, gather.indices[n]].astype(int)])
        kind, children = tree.nodes[n - tree.num_leaves]
        if kind == "product":
            return sum(value(c) for c in children)
        return np.max([value(c) + np.log(w) for c, w in zip(children, sums[n - tree.num_leaves], strict=True)], 0)

    return np.max([value(o) + np.log(w) for o, w in zip(tree.outputs, root_weights, strict=True)], axis=0)


def test_sampling_follows_the_model():
    data = mixture_data(num_rows=400, num_vars=3, seed=12)
    spn = learn_spn(data, min_instances_slice=50, sum_op=OPS["em"]())
    assert spn.layers[4].num_sums > 0
    probabilities = np.exp(np.asarray(spn(all_states(3, 2)), np.float64)[:, 0])
    samples = np.asarray(spn.sample(20000, seed=0))
    frequencies = np.bincount(samples.astype(int) @ np.array([4, 2, 1]), minlength=8) / len(samples)
    np.testing.assert_allclose(frequencies, probabilities, atol=0.015)


def test_keras_file_round_trip(tmp_path):
    data = mixture_data(num_rows=300, seed=13)
    spn = learn_spn(data, min_instances_slice=60, sum_op=OPS["em"](), name="learned")
    x = data[:10].astype("float32")
    x[0, 1] = np.nan
    path = tmp_path / "learnspn.keras"
    spn.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, models.SequentialSumProductNetwork)
    assert isinstance(loaded.layers[4], layers.SumProductTree) and loaded.layers[4].nodes == spn.layers[4].nodes
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(spn(x)), rtol=1e-6)


def test_a_full_factorization_trains_and_round_trips(tmp_path):
    data = mixture_data(num_rows=100, num_vars=4, seed=14).astype("float32")
    spn = learn_spn(data, min_instances_slice=1000, sum_op=OPS["em"]())
    tree = spn.layers[4]
    assert tree.num_sums == 0 and not tree.accumulators.trainable
    spn.compile(optimizer=optimizers.OnlineExpectationMaximization(0.5), loss=losses.NegativeLogLikelihood())
    spn.fit(data, epochs=2, batch_size=50, verbose=0)
    np.testing.assert_allclose(logsumexp(np.asarray(spn(all_states(4, 2)), np.float64)), 0.0, atol=1e-5)
    path = tmp_path / "factorized.keras"
    spn.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(data)), np.asarray(spn(data)), rtol=1e-6)


def test_a_single_variable_is_a_leaf():
    data = np.array([[0], [1], [1], [2]])
    spn = learn_spn(data, alpha=3.0)
    expected = np.log((np.array([1, 2, 1]) + 1.0) / 7.0)
    np.testing.assert_allclose(np.asarray(spn(np.array([[0.0], [1.0], [2.0]], "float32")))[:, 0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"data": np.zeros((0, 3))}, ValueError, r"learn_spn expects data of shape \[num_rows, num_vars\]"),
        ({"data": np.array([[0.0, np.nan]])}, ValueError, "learn_spn expects complete data"),
        ({"data": np.array([[0, -1]])}, ValueError, "non-negative integer states"),
        ({"data": np.array([["a", "b"]])}, TypeError, "learn_spn expects integer states"),
        ({"min_instances_slice": 0}, ValueError, "min_instances_slice to be a positive integer"),
        ({"independence_threshold": 1.5}, ValueError, r"independence_threshold to be a number in \(0, 1\)"),
        ({"num_clusters": 1}, ValueError, "num_clusters >= 2. Received: num_clusters=1"),
        ({"alpha": 0.0}, ValueError, "alpha to be a positive finite number"),
        ({"num_states": 1}, ValueError, r"states in \[0, num_states\)"),
        ({"sample_weight": np.ones(3)}, ValueError, "sample_weight of shape"),
        ({"seed": -1}, ValueError, "seed to be a non-negative integer. Received: seed=-1"),
        ({"max_depth": 0}, ValueError, "max_depth to be a positive integer. Received: max_depth=0"),
    ],
)
def test_rejects_bad_arguments(kwargs, error, message):
    kwargs = {"data": np.array([[0, 1], [1, 0]]), **kwargs}
    with pytest.raises(error, match=message):
        learn_spn(**kwargs)
