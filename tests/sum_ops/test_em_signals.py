"""EM, hard-EM and unweighted hard-EM signals against brute-force numpy computations."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import layers, models, sum_ops
from libspn_keras.math import WeightedSumParts
from libspn_keras.math import _argmax as argmax_module
from tests.backend_utils import grad, jit, tensor, to_numpy
from tests.reference_spn import ReferenceSPN

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")

NUM_VARS, NUM_DECOMPS, NUM_STATES, NUM_SUMS = 3, 2, 2, 3
PERMUTATIONS = np.array([[0, 1, 2, -1], [2, -1, 0, 1]])  # padding in both decompositions


def make_reference(rng: np.random.Generator) -> ReferenceSPN:
    weights = rng.gamma(1.0, size=(2, NUM_DECOMPS, NUM_STATES**2, NUM_SUMS))
    root = rng.gamma(1.0, size=(NUM_DECOMPS * NUM_SUMS**2,))
    return ReferenceSPN(
        num_states=NUM_STATES,
        permutations=PERMUTATIONS,
        sum_weights=[weights / weights.sum(axis=2, keepdims=True)],
        root_weights=root / root.sum(),
    )


def make_model(ref: ReferenceSPN, op: sum_ops.SumOpBase) -> models.SequentialSumProductNetwork:
    model = models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=NUM_DECOMPS, input_shape=(NUM_VARS,)),
            layers.IndicatorLeaf(num_components=NUM_STATES),
            layers.PermuteAndPadScopes(PERMUTATIONS),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=NUM_SUMS, sum_op=op, logspace_accumulators=False),
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, sum_op=op, logspace_accumulators=False),
        ]
    )
    dense, root = model.layers[4], model.layers[7]
    dense.accumulators.assign(ref.sum_weights[0] * 3.0)  # unnormalized accumulators on purpose
    root.accumulators.assign(ref.root_weights.reshape(1, 1, -1, 1) * 2.0)
    return model


def counts_and_child_signal(model, x, observed=None):
    dense, root = model.layers[4], model.layers[7]
    variables = [dense.accumulators, root.accumulators]
    if observed is None:
        _, dense_grad, root_grad = grad(model, x, variables=variables)
    else:
        _, _, dense_grad, root_grad = grad(lambda a, m: model((a, m)), x, observed, variables=variables)
    return to_numpy(dense_grad), to_numpy(root_grad).reshape(-1, 1)  # the root's [1, 1, n, 1] as [n, 1]


@pytest.fixture(params=["whole", "chunks_of_2", "chunks_of_5"])
def selection_chunks(request, monkeypatch):
    """Selection ops compare all children of a sum one after another, or in chunks (``argmax_module.CHUNK``).

    The DenseSum has 4 children and the RootSum 18: chunks of 2 compare the DenseSum's in 2 chunks and the
    RootSum's in 9 (more chunks than ``CHUNK``: an argmax over them); chunks of 5 compare the RootSum's in 4
    chunks of 5, the last padded by 2.
    """
    if request.param != "whole":
        monkeypatch.setattr(argmax_module, "CHUNK", int(request.param[-1]))
    return request.param


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    ref = make_reference(rng)
    x = rng.integers(0, NUM_STATES, size=(6, NUM_VARS))
    return ref, x


def test_soft_em_counts_equal_posterior_expected_counts(setup, float64):
    ref, x = setup
    model = make_model(ref, sum_ops.SumOpEMBackprop())
    dense_counts, root_counts = counts_and_child_signal(model, x)
    p = ref.forward(x)
    # Expected count of an edge = w * dp/dw / p; p is multilinear in w, so central differences are exact.
    expected = np.zeros_like(ref.sum_weights[0])
    delta = 1e-4
    for index in np.ndindex(*expected.shape):
        w = ref.sum_weights[0]
        orig = w[index]
        w[index] = orig + delta
        up = ref.forward(x)
        w[index] = orig - delta
        down = ref.forward(x)
        w[index] = orig
        expected[index] = np.sum(orig * (up - down) / (2 * delta) / p)
    np.testing.assert_allclose(dense_counts, expected, rtol=1e-6, atol=1e-9)
    # Each sum node's incoming edge counts sum to its posterior; the root's counts sum to the batch size.
    np.testing.assert_allclose(root_counts.sum(), len(x), rtol=1e-9)
    p = ref.forward(x)  # refresh the stored values after the perturbed evaluations
    flat = ref.values[-1].reshape(len(x), -1)
    root_expected = (flat * ref.root_weights / p[:, None]).sum(axis=0)
    np.testing.assert_allclose(root_counts[:, 0], root_expected, rtol=1e-9)


def _hard_counts_reference(ref: ReferenceSPN, x: np.ndarray, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Top-down max-child selection on the forward values of the numpy reference."""
    ref.forward(x)
    with np.errstate(divide="ignore"):  # log(0) = -inf for impossible children
        return _select(ref, x, weighted)


def _select(ref: ReferenceSPN, x: np.ndarray, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    prod1, prod2 = ref.values[1], ref.values[3]
    w = ref.sum_weights[0]
    dense_counts = np.zeros_like(w)
    root_counts = np.zeros_like(ref.root_weights)
    for b in range(len(x)):
        top = prod2[b].reshape(-1)
        scores = np.log(top) + (np.log(ref.root_weights) if weighted else 0.0)
        winner = int(np.argmax(scores))
        root_counts[winner] += 1
        d, node = divmod(winner, NUM_SUMS**2)
        for s, child_sum in ((0, node // NUM_SUMS), (1, node % NUM_SUMS)):
            child_scores = np.log(prod1[b, s, d]) + (np.log(w[s, d, :, child_sum]) if weighted else 0.0)
            dense_counts[s, d, int(np.argmax(child_scores)), child_sum] += 1
    return dense_counts, root_counts


@pytest.mark.parametrize(
    ("op", "weighted"),
    [(sum_ops.SumOpHardEMBackprop(), True), (sum_ops.SumOpUnweightedHardEMBackprop(), False)],
    ids=["hard_em", "unweighted_hard_em"],
)
def test_hard_em_winners_equal_brute_force_argmax(setup, float64, selection_chunks, op, weighted):
    ref, x = setup
    model = make_model(ref, op)
    dense_counts, root_counts = counts_and_child_signal(model, x)
    exp_dense, exp_root = _hard_counts_reference(ref, x, weighted)
    np.testing.assert_array_equal(root_counts[:, 0], exp_root)
    np.testing.assert_array_equal(dense_counts, exp_dense)


@pytest.mark.parametrize("op_cls", [sum_ops.SumOpHardEMBackprop, sum_ops.SumOpUnweightedHardEMBackprop])
def test_hard_em_ties_go_to_the_first_child(float64, selection_chunks, op_cls):
    # All variables unobserved: every leaf is 1, all products tie; uniform weights make weighted ties too.
    ref = make_reference(np.random.default_rng(1))
    ref.sum_weights[0][:] = 1.0 / NUM_STATES**2
    ref.root_weights[:] = 1.0 / ref.root_weights.size
    model = make_model(ref, op_cls())
    x = np.zeros((2, NUM_VARS), np.int32)
    dense_counts, root_counts = counts_and_child_signal(model, x, np.zeros((2, NUM_VARS), bool))
    assert root_counts[0, 0] == 2 and root_counts.sum() == 2
    # Root child 0 is product node 0 of decomposition 0: sum 0 of both scopes, each picking its child 0.
    assert dense_counts[0, 0, 0, 0] == 2 and dense_counts[1, 0, 0, 0] == 2
    assert dense_counts.sum() == 4


def test_hard_em_with_sampling_prob_one_samples_from_the_posterior(float64, selection_chunks):
    ref = make_reference(np.random.default_rng(2))
    model = make_model(ref, sum_ops.SumOpHardEMBackprop(sample_prob=1.0))
    x = np.tile(np.array([[1, 0, 1]]), (4000, 1))
    _, root_counts = counts_and_child_signal(model, x)
    p = ref.forward(x[:1])
    posterior = ref.values[-1].reshape(1, -1)[0] * ref.root_weights / p[0]
    freq = root_counts[:, 0] / len(x)
    np.testing.assert_allclose(freq, posterior, atol=0.03)


def test_child_signal_of_soft_em_is_the_gradient_of_the_log_likelihood(float64):
    ref = make_reference(np.random.default_rng(3))
    x = np.random.default_rng(4).integers(0, 2, size=(5, NUM_VARS)).astype("float64")
    signals = []
    for op in (sum_ops.SumOpEMBackprop(), sum_ops.SumOpGradBackprop(logspace_accumulators=False)):
        model = make_model(ref, op)
        leaf_in = model.layers[0](x)
        leaf_out = model.layers[1](leaf_in)

        def above_the_leaf(h, model=model):
            for layer in model.layers[2:]:
                h = layer(h)
            return h

        signals.append(to_numpy(grad(above_the_leaf, leaf_out)[0]))
    np.testing.assert_allclose(signals[0], signals[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "op",
    [sum_ops.SumOpEMBackprop(), sum_ops.SumOpHardEMBackprop(), sum_ops.SumOpUnweightedHardEMBackprop()],
    ids=lambda op: type(op).__name__,
)
def test_em_ops_run_under_xla_with_the_same_counts(float64, selection_chunks, op):
    ref = make_reference(np.random.default_rng(5))
    x = np.random.default_rng(6).integers(0, 2, size=(4, NUM_VARS)).astype("float64")
    model = make_model(ref, op)
    variables = [model.layers[4].accumulators, model.layers[7].accumulators]

    def counts(inputs):
        return grad(model, inputs, variables=variables)[1:]

    eager = counts(x)
    compiled = jit(counts)(tensor(x))
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-9)


def test_em_ops_reject_logspace_accumulators():
    with pytest.raises(ValueError, match="log-space accumulators"):
        layers.DenseSum(num_sums=2, sum_op=sum_ops.SumOpHardEMBackprop(), logspace_accumulators=True)


@pytest.mark.parametrize("prob", [-0.1, 1.5])
def test_sample_prob_out_of_range_raises(prob):
    with pytest.raises(ValueError, match="sample_prob in \\[0, 1\\]"):
        sum_ops.SumOpHardEMBackprop(sample_prob=prob)


@pytest.mark.parametrize("chunk", [64, 2], ids=["whole", "chunks_of_2"])
@pytest.mark.parametrize("forward_seed", [False, True], ids=["seeds_drawn_backward", "seed_from_the_forward_pass"])
@pytest.mark.parametrize("op_cls", [sum_ops.SumOpHardEMBackprop, sum_ops.SumOpUnweightedHardEMBackprop])
def test_sampled_selection_follows_each_sums_posterior(float64, monkeypatch, op_cls, forward_seed, chunk):
    # Every sum of a row draws its own child, also when its children are compared in chunks (3 children: 2 chunks
    # of 2, one padded): with the same children in every row, the edge counts over many rows estimate
    # softmax(x + log w) (weighted) or softmax(x).
    rng = np.random.default_rng(9)
    num_rows, num_in, num_out = 4000, 3, 5
    x_group = np.log(rng.dirichlet(np.ones(num_in), size=2))  # [groups, in]
    weights = rng.dirichlet(np.ones(num_in), size=(2, num_out)).transpose(0, 2, 1)  # [groups, in, out]
    x = np.repeat(x_group[:, None, :], num_rows, axis=1)
    parts = WeightedSumParts(log_sums=None, weights=tensor(weights), log_children=tensor(x))
    monkeypatch.setattr(argmax_module, "CHUNK", chunk)

    op = op_cls(sample_prob=1.0)
    # The seed drawn in the forward pass where backward rules are traced (JAX), from which the draws derive theirs.
    seed = op.backward_seed() if forward_seed else None
    child_counts, edge_counts = op.backward(parts, keras.ops.ones([2, num_rows, num_out], "float64"), seed)

    logits = x_group[:, :, None] + (np.log(weights) if op_cls is sum_ops.SumOpHardEMBackprop else 0.0)
    posterior = np.exp(logits - logits.max(axis=1, keepdims=True))
    posterior /= posterior.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(to_numpy(edge_counts) / num_rows, np.broadcast_to(posterior, weights.shape), atol=0.035)
    np.testing.assert_allclose(to_numpy(child_counts).sum(axis=-1), num_out)  # each sum sends its count to one child
    if op_cls is sum_ops.SumOpUnweightedHardEMBackprop:  # independent draws per sum, not one draw per row
        assert len({tuple(row) for row in to_numpy(edge_counts)[0].T}) > 1


@pytest.mark.parametrize("op_cls", [sum_ops.SumOpHardEMBackprop, sum_ops.SumOpUnweightedHardEMBackprop])
def test_selection_counts_of_children_and_edges_equal_brute_force(float64, selection_chunks, op_cls):
    # Random counts (some zero) per sum: each sum sends its count to its selected child, and the edge count of
    # (child, sum) adds the counts of the rows where the sum selected that child.
    rng = np.random.default_rng(10)
    num_groups, num_rows, num_in, num_out = 2 * NUM_DECOMPS, 7, NUM_STATES**2, NUM_SUMS  # LOGITS_PER_OUT's sizes
    x = np.log(rng.uniform(0.05, 1.0, size=(num_groups, num_rows, num_in)))
    weights = rng.dirichlet(np.ones(num_in), size=(num_groups, num_out)).transpose(0, 2, 1)
    dy = rng.uniform(size=(num_groups, num_rows, num_out)) * (rng.uniform(size=(num_groups, num_rows, num_out)) < 0.7)
    parts = WeightedSumParts(log_sums=None, weights=tensor(weights), log_children=tensor(x))

    child_counts, edge_counts = op_cls().backward(parts, tensor(dy))

    weighted = op_cls is sum_ops.SumOpHardEMBackprop
    expected_children, expected_edges = np.zeros_like(x), np.zeros_like(weights)
    for g, r, o in np.ndindex(num_groups, num_rows, num_out):
        winner = int(np.argmax(x[g, r] + (np.log(weights[g, :, o]) if weighted else 0.0)))
        expected_children[g, r, winner] += dy[g, r, o]
        expected_edges[g, winner, o] += dy[g, r, o]
    np.testing.assert_allclose(to_numpy(child_counts), expected_children, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_numpy(edge_counts), expected_edges, rtol=1e-12, atol=1e-15)
