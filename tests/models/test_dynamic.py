"""DynamicSumProductNetwork: unrolled reference, padding, validity, HMM oracle, training, saving, errors."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from libspn_keras import layers, losses, models, optimizers, sum_ops
from tests.backend_utils import eager_check_errors, function, grad, graph_check_error, jit, to_numpy

OPS = {
    "grad": sum_ops.SumOpGradBackprop,
    "em": sum_ops.SumOpEMBackprop,
    "hard-em": sum_ops.SumOpHardEMBackprop,
}
RUNNERS = {
    "function": lambda model: function(lambda x: model(x)),
    "xla": lambda model: jit(lambda x: model(x)),
}


# --- A small dynamic SPN over two binary variables per step, and its numpy twin ---------------------------------


def small_networks(op=None, weighted_children=False):
    """Template 2 vars -> 3 nodes, interface_t0 3 -> 2 nodes, interface_t_minus_1 6 -> 3 nodes, root over 6."""
    template = keras.Sequential(
        [
            keras.Input(shape=(2,)),
            layers.FlatToRegions(num_decomps=1),
            layers.IndicatorLeaf(num_components=2),
            layers.DenseSum(num_sums=2, sum_op=op),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3, sum_op=op),
        ]
    )
    return {
        "template_network": template,
        "interface_network_t0": layers.DenseSum(num_sums=2, sum_op=op),  # a bare layer is fine here
        "interface_network_t_minus_1": keras.Sequential([keras.Input(shape=(1, 1, 6)), layers.DenseSum(3, sum_op=op)]),
        "top_network": layers.RootSum(return_weighted_child_logits=weighted_children, sum_op=op),
    }


def sum_layers(networks):
    template = networks["template_network"]
    return [
        template.layers[2],
        template.layers[4],
        networks["interface_network_t0"],
        networks["interface_network_t_minus_1"].layers[0],
        networks["top_network"],
    ]


def randomize(model, networks, rng, max_len=2):
    """Build ``model`` and give every sum random, clearly non-uniform weights."""
    model(np.zeros((1, max_len, 2), keras.config.floatx()))
    for layer in sum_layers(networks):
        values = rng.uniform(0.05, 1.0, size=layer.accumulators.shape)
        layer.accumulators.assign(np.log(values) if layer.logspace_accumulators else values)


def weights(layer):
    acc = to_numpy(layer.accumulators).astype("float64")
    if layer.logspace_accumulators:
        acc = np.exp(acc - acc.max(axis=-2, keepdims=True))
    return acc / acc.sum(axis=-2, keepdims=True)


def reference_log_probs(networks, x):
    """Log-roots of every prefix of unpadded sequences ``x`` [n, T, 2], computed step by step in linear space."""
    w_leaf, w_template, w_t0, w_tm1, w_top = (weights(layer) for layer in sum_layers(networks))
    w_top = w_top[0, 0]  # the RootSum's [1, 1, num_in, 1]
    indicators = np.eye(2)[x.astype(int)]  # [n, T, var, state]
    mixtures = np.einsum("ntvs,vso->ntvo", indicators, w_leaf[:, 0])  # [n, T, var, 2]
    products = np.einsum("nti,ntj->ntij", mixtures[:, :, 0], mixtures[:, :, 1]).reshape(*x.shape[:2], 4)
    current = products @ w_template[0, 0] @ w_t0[0, 0]  # [n, T, 2]
    previous = np.ones((x.shape[0], 3))  # no previous interface: the empty product
    roots = []
    for t in range(x.shape[1]):
        product = (previous[:, :, None] * current[:, t, None, :]).reshape(x.shape[0], 6)
        if networks["top_network"].return_weighted_child_logits:
            roots.append(np.log(product * w_top[:, 0]))
        else:
            roots.append(np.log(product @ w_top))
        previous = product @ w_tm1[0, 0]
    return np.stack(roots, axis=1)


def binary_sequences(rng, num, length):
    return rng.integers(0, 2, size=(num, length, 2)).astype(keras.config.floatx())


def pre_pad(sequences, max_len, fill=np.nan):
    """Pre-pad a list of [T_i, 2] sequences to [n, max_len, 2] and return it with the lengths."""
    out = np.full((len(sequences), max_len, 2), fill, keras.config.floatx())
    for i, sequence in enumerate(sequences):
        out[i, max_len - len(sequence) :] = sequence
    return out, np.array([len(s) for s in sequences], "int32")


# --- Values ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", list(OPS))
def test_matches_unrolled_reference_for_each_length(float64, op):
    rng = np.random.default_rng(1)
    networks = small_networks(OPS[op]())
    every_step = models.DynamicSumProductNetwork(**networks, return_last_step=False)
    last_step = models.DynamicSumProductNetwork(**networks)  # shares the networks (and weights)
    randomize(every_step, networks, rng)
    for length in range(1, 5):
        x = binary_sequences(rng, 5, length)
        expected = reference_log_probs(networks, x)
        np.testing.assert_allclose(np.asarray(every_step(x)), expected, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(last_step(x)), expected[:, -1], rtol=1e-10)


@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("op", ["grad", "hard-em"])
def test_matches_unrolled_reference_when_compiled(float64, op, mode):
    """One padded batch with every length 1..4, traced once."""
    rng = np.random.default_rng(1)
    networks = small_networks(OPS[op]())
    model = models.DynamicSumProductNetwork(**networks, return_last_step=False)
    randomize(model, networks, rng)
    sequences = [binary_sequences(rng, 1, length)[0] for length in (1, 2, 3, 4) for _ in range(2)]
    x, lengths = pre_pad(sequences, max_len=4)
    out = np.asarray(RUNNERS[mode](model)((x, lengths)))
    for i, sequence in enumerate(sequences):
        expected = reference_log_probs(networks, sequence[np.newaxis])[0]
        np.testing.assert_allclose(out[i, 4 - len(sequence) :], expected, rtol=1e-10)


@pytest.mark.parametrize("padding", ["nan", "lengths", "dict"])
def test_sequences_of_different_lengths_match_each_alone(padding):
    rng = np.random.default_rng(2)
    networks = small_networks(weighted_children=True)
    every_step = models.DynamicSumProductNetwork(**networks, return_last_step=False)
    last_step = models.DynamicSumProductNetwork(**networks)
    randomize(every_step, networks, rng)
    sequences = [binary_sequences(rng, 1, length)[0] for length in (1, 4, 2, 3, 1)]
    # With explicit lengths the padding values are never looked at, even values no leaf accepts.
    x, lengths = pre_pad(sequences, max_len=5, fill=np.nan if padding == "nan" else 7.0)
    inputs = {"nan": x, "lengths": (x, lengths), "dict": {"sequences": x, "sequence_lengths": lengths}}[padding]
    batched, batched_last = np.asarray(every_step(inputs)), np.asarray(last_step(inputs))
    for i, sequence in enumerate(sequences):
        alone = np.asarray(every_step(sequence[np.newaxis]))[0]
        np.testing.assert_allclose(batched[i, 5 - len(sequence) :], alone, rtol=1e-5)
        np.testing.assert_array_equal(batched[i, : 5 - len(sequence)], 0.0)  # log p(empty sequence)
        np.testing.assert_allclose(batched_last[i], alone[-1], rtol=1e-5)


@pytest.mark.parametrize("op", ["grad", "hard-em"])
def test_padding_receives_no_signal(float64, op):
    """The gradient (or EM count) of a padded batch is the sum of those of each sequence alone."""
    rng = np.random.default_rng(3)
    networks = small_networks(OPS[op]())
    model = models.DynamicSumProductNetwork(**networks)
    randomize(model, networks, rng)
    sequences = [binary_sequences(rng, 1, length)[0] for length in (2, 4, 1)]

    def signal(x):
        gradients = grad(model, x, variables=model.trainable_variables)[1:]
        # A single step never uses interface_network_t_minus_1, whose gradient is then None.
        return [
            np.zeros(v.shape) if g is None else np.asarray(g)
            for g, v in zip(gradients, model.trainable_variables, strict=True)
        ]

    batched = signal(pre_pad(sequences, max_len=4)[0])
    alone = [signal(s[np.newaxis]) for s in sequences]
    for got, *parts in zip(batched, *alone, strict=True):
        np.testing.assert_allclose(got, sum(parts), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("length", "max_len"), [(1, 1), (2, 2), (3, 3), (3, 4)])
def test_sums_to_one_over_all_sequences_of_a_length(float64, length, max_len):
    rng = np.random.default_rng(length)
    networks = small_networks(weighted_children=True)
    model = models.DynamicSumProductNetwork(**networks)
    randomize(model, networks, rng)
    states = np.array(list(itertools.product([0.0, 1.0], repeat=2 * length))).reshape(-1, length, 2)
    x, lengths = pre_pad(list(states), max_len, fill=0.0)
    log_probs = keras.ops.logsumexp(model((x, lengths)), axis=-1)
    np.testing.assert_allclose(np.exp(np.asarray(log_probs)).sum(), 1.0, rtol=1e-10)


def test_symbolic_use_and_output_shapes():
    model = models.DynamicSumProductNetwork(**small_networks(weighted_children=True), return_last_step=False)
    out = model(keras.Input(shape=(5, 2)))
    assert tuple(out.shape) == (None, 5, 6)
    assert model.compute_output_shape({"sequences": (4, 5, 2), "sequence_lengths": (4,)}) == (4, 5, 6)
    last = models.DynamicSumProductNetwork(**small_networks())
    assert last.compute_output_shape(((None, 7, 2), (None,))) == (None, 1)


# --- HMM oracle ---------------------------------------------------------------------------------------------------


def stationary(transitions):
    values, vectors = np.linalg.eig(transitions.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return pi / pi.sum()


def hmm_forward_log_likelihood(sequence, pi, transitions, emissions):
    """log p(x_0..x_T) of a binary-output HMM by the scaled forward algorithm."""

    def emit(x):
        return np.prod(np.where(x == 1, emissions, 1.0 - emissions), axis=-1)

    alpha, total = pi * emit(sequence[0]), 0.0
    for t in range(1, len(sequence) + 1):
        scale = alpha.sum()
        total += np.log(scale)
        if t < len(sequence):
            alpha = (alpha / scale) @ transitions * emit(sequence[t])
    return total


def hmm_dynamic_spn(pi, transitions, emissions):
    """A dynamic SPN with the weights of a stationary HMM: its likelihood is the HMM's."""
    num_states, num_vars = emissions.shape
    op = sum_ops.SumOpGradBackprop()
    template = keras.Sequential(
        [
            keras.Input(shape=(num_vars,)),
            layers.FlatToRegions(num_decomps=1),
            layers.IndicatorLeaf(num_components=2),
            layers.DenseSum(num_states, logspace_accumulators=False, sum_op=op),
            layers.ReduceProduct(num_factors=num_vars),
        ]
    )
    interface_t0 = layers.DenseSum(num_states, logspace_accumulators=False, sum_op=op)
    interface_tm1 = keras.Sequential(
        [
            keras.Input(shape=(1, 1, num_states**2)),
            layers.DenseSum(num_states, logspace_accumulators=False, sum_op=op),
        ]
    )
    top = layers.RootSum(return_weighted_child_logits=False, logspace_accumulators=False, sum_op=op)
    model = models.DynamicSumProductNetwork(template, interface_t0, interface_tm1, top)
    model(np.zeros((1, 1, num_vars)))
    # Emission of variable v in state z; interface_t0 passes the states through; P_t[i, j] = B_t[i] * e_j(x_t).
    template.layers[2].accumulators.assign(np.stack([1.0 - emissions.T, emissions.T], axis=1)[:, np.newaxis])
    interface_t0.accumulators.assign(np.eye(num_states)[np.newaxis, np.newaxis])
    # B_{t+1}[z] = p(x_<=t | z_{t+1} = z) = sum_i p(z_t = i | z_{t+1} = z) P_t[i, i] (the reversed chain).
    backward = pi[:, np.newaxis] * transitions / pi[np.newaxis, :]
    interface_tm1_weights = np.zeros((num_states, num_states, num_states))
    interface_tm1_weights[np.arange(num_states), np.arange(num_states)] = backward
    interface_tm1.layers[0].accumulators.assign(interface_tm1_weights.reshape(1, 1, num_states**2, num_states))
    top.accumulators.assign(np.diag(pi).reshape(1, 1, -1, 1))  # sum_z p(z_t = z) p(x_<=t | z_t = z)
    return model


def test_stationary_hmm_weights_reproduce_the_forward_algorithm(float64):
    rng = np.random.default_rng(4)
    transitions = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.05, 0.7]])
    emissions = np.array([[0.9, 0.1], [0.2, 0.3], [0.5, 0.95]])  # p(x_v = 1 | z)
    pi = stationary(transitions)
    model = hmm_dynamic_spn(pi, transitions, emissions)
    sequences = [rng.integers(0, 2, size=(length, 2)).astype("float64") for length in (1, 6, 3, 5, 2)]
    expected = [hmm_forward_log_likelihood(s, pi, transitions, emissions) for s in sequences]
    np.testing.assert_allclose(np.asarray(model(pre_pad(sequences, max_len=6)[0]))[:, 0], expected, rtol=1e-10)


# --- Training ------------------------------------------------------------------------------------------------------


def hmm_data(rng, num_sequences, lengths=(2, 7)):
    transitions = np.array([[0.9, 0.1], [0.2, 0.8]])
    emissions = np.array([[0.9, 0.8, 0.1], [0.1, 0.3, 0.9]])
    pi = stationary(transitions)
    sequences = []
    for _ in range(num_sequences):
        z = rng.choice(2, p=pi)
        states = []
        for _ in range(rng.integers(*lengths)):
            states.append(z)
            z = rng.choice(2, p=transitions[z])
        sequences.append((rng.uniform(size=(len(states), 3)) < emissions[states]).astype("float32"))
    out = np.full((num_sequences, lengths[1] - 1, 3), np.nan, "float32")
    for i, sequence in enumerate(sequences):
        out[i, out.shape[1] - len(sequence) :] = sequence
    return out


def hmm_like_spn(op, num_states=3, num_vars=3, initializer=None):
    def dense_sum(num_sums):
        return layers.DenseSum(num_sums, sum_op=op, accumulator_initializer=initializer)

    template = keras.Sequential(
        [
            keras.Input(shape=(num_vars,)),
            layers.FlatToRegions(num_decomps=1),
            layers.IndicatorLeaf(num_components=2),
            dense_sum(num_states),
            layers.ReduceProduct(num_factors=num_vars),
        ]
    )
    return models.DynamicSumProductNetwork(
        template,
        dense_sum(num_states),
        keras.Sequential([keras.Input(shape=(1, 1, num_states**2)), dense_sum(num_states)]),
        layers.RootSum(return_weighted_child_logits=False, sum_op=op, accumulator_initializer=initializer),
    )


def mean_log_likelihood(model, x):
    return float(np.mean(np.asarray(model(x))))


def test_fit_by_gradient_improves_the_likelihood():
    x = hmm_data(np.random.default_rng(5), 192)
    model = hmm_like_spn(sum_ops.SumOpGradBackprop())
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.NegativeLogLikelihood())
    before = mean_log_likelihood(model, x)
    history = model.fit(x, epochs=3, batch_size=32, verbose=0).history["loss"]
    after = mean_log_likelihood(model, x)
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
    assert after > before + 1.0, (before, after)


def test_fit_by_hard_em_improves_the_likelihood():
    x = hmm_data(np.random.default_rng(6), 192)
    model = hmm_like_spn(sum_ops.SumOpHardEMBackprop(), initializer=keras.initializers.RandomUniform(0.5, 1.5))
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(0.1), loss=losses.NegativeLogLikelihood())
    before = mean_log_likelihood(model, x)
    model.fit(x, epochs=3, batch_size=32, verbose=0)
    after = mean_log_likelihood(model, x)
    assert after > before + 1.0, (before, after)


def test_full_batch_soft_em_never_decreases_the_likelihood(float64):
    """EM counts summed over time steps are the E-step of the tied parameters: exact EM is monotone."""
    x = hmm_data(np.random.default_rng(7), 64).astype("float64")
    model = hmm_like_spn(sum_ops.SumOpEMBackprop(), initializer=keras.initializers.RandomUniform(0.5, 1.5))
    model.compile(
        optimizer=optimizers.OnlineExpectationMaximization(learning_rate=1.0), loss=losses.NegativeLogLikelihood()
    )
    history = [mean_log_likelihood(model, x)]
    for _ in range(5):
        model.fit(x, epochs=1, batch_size=len(x), verbose=0, shuffle=False)
        history.append(mean_log_likelihood(model, x))
    assert all(b >= a - 1e-9 for a, b in zip(history, history[1:], strict=False)), history
    assert history[-1] > history[0] + 0.5, history


@pytest.mark.parametrize(
    "op",
    [
        "grad",
        "hard-em",
    ],
)
def test_fit_under_xla_matches_fit_without(op):
    """Keras resolves jit_compile='auto' to XLA on GPUs: training must compile and give the same weights.

    Gradient training uses SGD: Adam divides by the root of the squared gradients, so the float32 rounding of
    gradients near zero (relative 1e-3 at 1e-6) would move the weights by up to its learning rate.
    """
    x = hmm_data(np.random.default_rng(9), 64)
    trained = []
    for jit_compile in (True, False):
        model = hmm_like_spn(OPS[op](), initializer=keras.initializers.RandomUniform(0.5, 1.5, seed=0))
        optimizer = keras.optimizers.SGD(0.5) if op == "grad" else optimizers.OnlineExpectationMaximization(0.1)
        model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood(), jit_compile=jit_compile)
        model.fit(x, epochs=1, batch_size=32, shuffle=False, verbose=0)
        trained.append(model.get_weights())
    for with_xla, without in zip(*trained, strict=True):
        np.testing.assert_allclose(with_xla, without, rtol=1e-4, atol=1e-6)


# --- Saving --------------------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    networks = small_networks(sum_ops.SumOpHardEMBackprop())
    model = models.DynamicSumProductNetwork(**networks, return_last_step=False, unsupervised=True, name="dspn")
    sequences = [binary_sequences(rng, 1, length)[0] for length in (1, 3, 2, 3)] * 4
    x, lengths = pre_pad(sequences, max_len=3, fill=0.0)
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(0.2), loss=losses.NegativeLogLikelihood())
    model.fit((x, lengths), epochs=1, batch_size=8, verbose=0)  # lengths travel with the inputs

    path = tmp_path / "dspn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is models.DynamicSumProductNetwork
    assert (loaded.name, loaded.return_last_step, loaded.unsupervised) == ("dspn", False, True)
    assert loaded.top_network.sum_op == sum_ops.SumOpHardEMBackprop()
    assert int(loaded.optimizer.iterations) == 2
    inputs = {"sequences": x, "sequence_lengths": lengths}
    np.testing.assert_array_equal(np.asarray(loaded(inputs)), np.asarray(model((x, lengths))))

    clone = models.DynamicSumProductNetwork.from_config(model.get_config())
    clone(inputs)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(np.asarray(clone(inputs)), np.asarray(model(inputs)))


# --- Errors --------------------------------------------------------------------------------------------------------


@pytest.fixture
def model():
    networks = small_networks()
    spn = models.DynamicSumProductNetwork(**networks)
    spn(np.zeros((2, 3, 2), "float32"))
    return spn


@pytest.mark.parametrize(
    "graph", [False, pytest.param(True, marks=pytest.mark.requires_tensorflow)], ids=["eager", "function"]
)
@pytest.mark.parametrize(
    ("x", "lengths", "match"),
    [
        ([[[0, 0], [np.nan, np.nan], [1, 1]]], None, "all-NaN row follows a real step"),
        ([[[0, 0], [1, 1], [np.nan, np.nan]]], None, "all-NaN row follows a real step"),
        ([[[np.nan, np.nan]] * 3], None, "no real step"),
        ([[[0, 0]] * 3], [0], r"integers in \[1, max_len\]"),
        ([[[0, 0]] * 3], [4], r"integers in \[1, max_len\]"),
        ([[[0, 0]] * 3], [1.5], r"integers in \[1, max_len\]"),
    ],
    ids=["nan-inside", "post-padded", "empty", "zero-length", "too-long", "fraction"],
)
def test_bad_sequences_raise(model, graph, x, lengths, match):
    x = np.array(x, "float32")
    inputs = x if lengths is None else (x, np.array(lengths))
    call = function(lambda inputs: model(inputs)) if graph else model
    with pytest.raises(graph_check_error() if graph else eager_check_errors(), match=match):
        call(inputs)


def test_missing_values_and_steps_are_marginalized(model):
    """Partly NaN rows are missing values, not padding; with lengths an all-NaN row is a marginalized step."""
    x = np.array([[[0, 1], [1, np.nan], [np.nan, np.nan]]], "float32")
    completions = np.array([[[0, 1], [1, a], [b, c]] for a, b, c in itertools.product([0, 1], repeat=3)], "float32")
    expected = np.log(np.exp(np.asarray(model(completions))).sum())
    np.testing.assert_allclose(np.asarray(model((x, np.array([3]))))[0, 0], expected, rtol=1e-5)
    partly = np.array([[[0, 1], [1, np.nan]]], "float32")  # no lengths: a partly NaN row is a real step
    expected = np.log(np.exp(np.asarray(model(completions[[0, 4], :2]))).sum())
    np.testing.assert_allclose(np.asarray(model(partly))[0, 0], expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        ((np.zeros((1, 3, 2)), np.ones(1), np.ones(1)), ValueError, "3 elements"),
        ({"x": np.zeros((1, 3, 2))}, ValueError, "keys 'sequences'"),
        ((np.zeros((1, 3, 2), "float32"), np.ones((1, 2), "int32")), ValueError, r"shape \[batch\]"),
        ((np.zeros((1, 3, 2), "float32"), np.ones(2, "int32")), ValueError, "one length per sequence"),
        ((np.zeros((1, 3, 2), "float32"), np.array([True])), TypeError, "integer sequence_lengths"),
    ],
    ids=["three-inputs", "dict-keys", "lengths-shape", "lengths-count", "lengths-dtype"],
)
def test_bad_input_structure_raises(model, inputs, error, match):
    with pytest.raises(error, match=match):
        model(inputs)


def test_rank_two_input_raises():
    with pytest.raises(ValueError, match="max_len"):
        models.DynamicSumProductNetwork(**small_networks())(np.zeros((2, 2), "float32"))


def _replace(**changes):
    networks = small_networks()
    networks.update(changes)
    return networks


@pytest.mark.parametrize(
    ("networks", "match"),
    [
        (_replace(interface_network_t_minus_1=layers.DenseSum(3)), "needs a known input shape"),
        (
            _replace(interface_network_t_minus_1=keras.Sequential([keras.Input((1, 1, 4)), layers.DenseSum(3)])),
            r"input shape must be \(None, 1, 1, 6\)",
        ),
        (_replace(template_network=keras.Sequential([keras.Input((3,)), layers.FlatToRegions()])), "does not accept"),
        (_replace(top_network=layers.DenseSum(1)), "must end with a RootSum"),
        (_replace(interface_network_t0=layers.RootSum()), "interface_network_t0 must output region tensors"),
        (_replace(interface_network_t0=layers.DenseSum(3)), r"input shape must be \(None, 1, 1, 9\)"),
    ],
    ids=["unknown-input", "wrong-width", "template-input", "top-rank", "interface-rank", "interface-width"],
)
def test_mismatched_networks_raise_at_build(networks, match):
    model = models.DynamicSumProductNetwork(**networks)
    with pytest.raises(ValueError, match=match):
        model(np.zeros((1, 2, 2), "float32"))


def test_non_layer_network_raises():
    with pytest.raises(TypeError, match="template_network to be a Keras layer"):
        models.DynamicSumProductNetwork(lambda x: x, *list(small_networks().values())[1:])
