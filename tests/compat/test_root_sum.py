"""``RootSum`` over several decompositions, as in the original: children are all decompositions x nodes.

The networks: leaf log-probabilities ``[batch, 2, D, K]`` -> ``DenseProduct(2)`` -> ``RootSum`` (children
``d * K**2 + i * K + j``, computed from the product's factors where the sum op fuses products, or from the formed
products), and ``DenseProduct(2) -> DenseSum(num_sums=1) -> RootSum`` (children: one sum per decomposition). Every
value, gradient and EM signal is compared with a numpy brute force written with explicit loops, for 1, 2 and 3
decompositions and every sum op.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from libspn_keras import layers, losses, sum_ops
from tests.backend_utils import function, run, tensor, to_numpy, value_and_grad
from tests.sum_op_cases import OPS

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")

NUM_STATES = 3  # nodes per leaf scope; each decomposition has NUM_STATES**2 products
MODES = ["eager", "function", "jit"]
SIGNAL_MODES = ["eager", "jit"]  # signals: eagerly and compiled (values run in all three modes)
PATHS = ["factors", "formed"]


def reference_children(leaves: np.ndarray) -> np.ndarray:
    """Linear values of the root's children ``[batch, D * K * K]``, child ``d * K * K + i * K + j``."""
    batch, _, num_decomps, k = leaves.shape
    out = np.zeros((batch, num_decomps * k * k))
    for b, d, i, j in itertools.product(range(batch), range(num_decomps), range(k), range(k)):
        out[b, d * k * k + i * k + j] = np.exp(leaves[b, 0, d, i] + leaves[b, 1, d, j])
    return out


def reference_leaf_signal(leaves: np.ndarray, child_signal: np.ndarray) -> np.ndarray:
    """The signal of each leaf node: the sum of the signals of the root's children it is a factor of."""
    batch, _, num_decomps, k = leaves.shape
    out = np.zeros(leaves.shape)
    for b, d, i, j in itertools.product(range(batch), range(num_decomps), range(k), range(k)):
        signal = child_signal[b, d * k * k + i * k + j]
        out[b, 0, d, i] += signal
        out[b, 1, d, j] += signal
    return out


def make_leaves(rng: np.random.Generator, batch: int, num_decomps: int) -> np.ndarray:
    return np.log(rng.uniform(0.05, 1.0, size=(batch, 2, num_decomps, NUM_STATES)))


def make_root(op: sum_ops.SumOpBase, num_decomps: int, rng: np.random.Generator, **kwargs) -> layers.RootSum:
    root = layers.RootSum(sum_op=op, **kwargs)
    root.build((None, 1, num_decomps, NUM_STATES**2))
    values = rng.gamma(1.0, size=root.accumulators.shape) + 0.05
    if root.logspace_accumulators:
        values = np.log(values)
    root.accumulators.assign(values.astype(root.accumulators.dtype))
    return root


def normalized_root_weights(root: layers.RootSum) -> np.ndarray:
    acc = to_numpy(root.accumulators).reshape(-1).astype(np.float64)
    weights = np.exp(acc - acc.max()) if root.logspace_accumulators else acc
    return weights / weights.sum()


def forward_and_signals(root, leaves, path, mode):
    """The root's output and the gradients of its sum w.r.t. the leaves and the root's accumulators."""
    product = layers.DenseProduct(num_factors=2)

    def fn(x):
        def forward(x):
            h = product(x)
            return root(h if path == "factors" else keras.ops.copy(h))  # the copy drops the attached rows

        out, grads = value_and_grad(forward, x, variables=[root.accumulators])
        return out, *grads

    return [to_numpy(t) for t in run(fn, mode, tensor(leaves))]


def test_children_are_decompositions_times_nodes_in_the_original_order(float64):
    # Child d * num_nodes + n of the original is node n of decomposition d (its reshape to [-1, 1, 1, D * N]).
    rng = np.random.default_rng(0)
    x = np.log(rng.uniform(0.1, 1.0, size=(4, 1, 3, 5)))
    root = layers.RootSum(return_weighted_child_logits=True)
    out = to_numpy(root(x))
    log_w = np.log(normalized_root_weights(root))
    expected = np.zeros((4, 15))
    for b, d, n in itertools.product(range(4), range(3), range(5)):
        expected[b, d * 5 + n] = x[b, 0, d, n] + log_w[d * 5 + n]
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert tuple(root.accumulators.shape) == (1, 1, 15, 1)
    assert root.compute_output_shape((None, 1, 3, 5)) == (None, 15)


@pytest.mark.pairwise  # all pairs by default, the full grid with -m slow (tests/covering.py)
@pytest.mark.parametrize("num_decomps", [1, 2, 3])
@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", MODES)
def test_values(floatx, num_decomps, op_name, path, mode):
    rng = np.random.default_rng(num_decomps)
    leaves = make_leaves(rng, 5, num_decomps)
    root = make_root(OPS[op_name](), num_decomps, rng, return_weighted_child_logits=False)
    out = forward_and_signals(root, leaves.astype(floatx), path, mode)[0]
    expected = np.log(reference_children(leaves) @ normalized_root_weights(root))
    assert out.shape == (5, 1) and out.dtype == floatx
    rtol = 1e-5 if floatx == "float32" else 1e-12
    np.testing.assert_allclose(out[:, 0], expected, rtol=rtol)


@pytest.mark.parametrize("num_decomps", [1, 2, 3])
@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", SIGNAL_MODES)
def test_gradients(float64, num_decomps, logspace, path, mode):
    """``d sum_b log p_b``: leaves get the posterior of the children they are factors of; accumulators get
    ``q_c - w_c`` per sample (log-space, ``w = softmax(a)``) or ``q_c / a_c - 1 / sum(a)`` (linear)."""
    rng = np.random.default_rng(10 + num_decomps)
    leaves = make_leaves(rng, 4, num_decomps)
    op = sum_ops.SumOpGradBackprop(logspace_accumulators=logspace)
    root = make_root(op, num_decomps, rng, return_weighted_child_logits=False)
    _, d_leaves, d_acc = forward_and_signals(root, leaves, path, mode)
    weights = normalized_root_weights(root)
    joint = reference_children(leaves) * weights
    posterior = joint / joint.sum(axis=1, keepdims=True)
    acc = to_numpy(root.accumulators).reshape(-1)
    expected_acc = (posterior - weights).sum(axis=0) if logspace else (posterior / acc - 1.0 / acc.sum()).sum(axis=0)
    np.testing.assert_allclose(d_leaves, reference_leaf_signal(leaves, posterior), rtol=1e-9, atol=1e-12)
    assert d_acc.shape == (1, 1, num_decomps * NUM_STATES**2, 1)
    np.testing.assert_allclose(d_acc.reshape(-1), expected_acc, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("num_decomps", [1, 2, 3])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", SIGNAL_MODES)
def test_soft_em_counts_are_posterior_counts(float64, num_decomps, path, mode):
    rng = np.random.default_rng(20 + num_decomps)
    leaves = make_leaves(rng, 6, num_decomps)
    root = make_root(sum_ops.SumOpEMBackprop(), num_decomps, rng, return_weighted_child_logits=False)
    _, d_leaves, counts = forward_and_signals(root, leaves, path, mode)
    joint = reference_children(leaves) * normalized_root_weights(root)
    posterior = joint / joint.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(counts.reshape(-1), posterior.sum(axis=0), rtol=1e-9)
    np.testing.assert_allclose(d_leaves, reference_leaf_signal(leaves, posterior), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("num_decomps", [1, 2, 3])
@pytest.mark.parametrize(
    ("op_name", "weighted"), [("hard_em", True), ("unweighted_hard_em", False)], ids=["hard_em", "unweighted"]
)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", SIGNAL_MODES)
def test_hard_em_counts_select_the_argmax_child(float64, num_decomps, op_name, weighted, path, mode):
    rng = np.random.default_rng(30 + num_decomps)
    leaves = make_leaves(rng, 8, num_decomps)
    root = make_root(OPS[op_name](), num_decomps, rng, return_weighted_child_logits=False)
    _, d_leaves, counts = forward_and_signals(root, leaves, path, mode)
    scores = np.log(reference_children(leaves)) + (np.log(normalized_root_weights(root)) if weighted else 0.0)
    selected = np.zeros_like(scores)
    selected[np.arange(len(scores)), np.argmax(scores, axis=1)] = 1.0
    np.testing.assert_array_equal(counts.reshape(-1), selected.sum(axis=0))
    np.testing.assert_array_equal(d_leaves, reference_leaf_signal(leaves, selected))


@pytest.mark.parametrize("num_decomps", [1, 2, 3])
@pytest.mark.parametrize("path", PATHS)
def test_sampled_children_follow_the_posterior(float64, num_decomps, path):
    rng = np.random.default_rng(40 + num_decomps)
    leaves = np.repeat(make_leaves(rng, 1, num_decomps), 4000, axis=0)
    root = make_root(sum_ops.SumOpSampleBackprop(), num_decomps, rng, return_weighted_child_logits=False)
    _, d_leaves, counts = forward_and_signals(root, leaves, path, "function")
    joint = reference_children(leaves[:1])[0] * normalized_root_weights(root)
    np.testing.assert_allclose(counts.reshape(-1) / len(leaves), joint / joint.sum(), atol=0.03)
    # Every sample selects one child: one node of each of its two factors.
    np.testing.assert_array_equal(d_leaves.sum(axis=(2, 3)), np.ones((len(leaves), 2)))


@pytest.mark.parametrize("num_decomps", [1, 2, 3])
@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize("mode", SIGNAL_MODES)
def test_weighted_child_logits(floatx, num_decomps, op_name, mode):
    """``log p(x, c) = log c + log w_c`` per child; custom ops count each child by its own signal."""
    rng = np.random.default_rng(50 + num_decomps)
    leaves = make_leaves(rng, 4, num_decomps)
    op = OPS[op_name]()
    root = make_root(op, num_decomps, rng, return_weighted_child_logits=True)
    out, d_leaves, d_acc = forward_and_signals(root, leaves.astype(floatx), "factors", mode)
    weights = normalized_root_weights(root)
    rtol = 1e-5 if floatx == "float32" else 1e-12
    np.testing.assert_allclose(out, np.log(reference_children(leaves) * weights), rtol=rtol, atol=rtol)
    ones = np.ones((4, num_decomps * NUM_STATES**2))
    np.testing.assert_allclose(d_leaves, reference_leaf_signal(leaves, ones), rtol=rtol)
    if op.has_custom_backward:
        expected_acc = ones.sum(axis=0)
    elif root.logspace_accumulators:
        expected_acc = (1.0 - len(weights) * weights) * 4
    else:
        acc = to_numpy(root.accumulators).reshape(-1)
        expected_acc = (1.0 / acc - len(weights) / acc.sum()) * 4
    np.testing.assert_allclose(d_acc.reshape(-1), expected_acc, rtol=rtol * 10, atol=rtol)


@pytest.mark.parametrize("num_decomps", [1, 2, 3])
@pytest.mark.parametrize("op_name", sorted(OPS))
def test_dense_sum_with_one_sum_then_root(float64, num_decomps, op_name):
    """``DenseProduct -> DenseSum(num_sums=1) -> RootSum``: the root mixes the decompositions' sums."""
    rng = np.random.default_rng(60 + num_decomps)
    leaves = make_leaves(rng, 5, num_decomps)
    op = OPS[op_name]()
    product = layers.DenseProduct(num_factors=2)
    dense = layers.DenseSum(num_sums=1, sum_op=op, logspace_accumulators=False)
    root = layers.RootSum(return_weighted_child_logits=False, sum_op=op, logspace_accumulators=False)
    dense_acc = rng.gamma(1.0, size=(1, num_decomps, NUM_STATES**2, 1)) + 0.05
    root_acc = rng.gamma(1.0, size=(1, 1, num_decomps, 1)) + 0.05

    def fn(x):
        out, (_, counts) = value_and_grad(lambda x: root(dense(product(x))), x, variables=[root.accumulators])
        return out, counts

    root(dense(product(tensor(leaves))))  # build
    dense.accumulators.assign(dense_acc)
    root.accumulators.assign(root_acc)
    out, root_counts = (to_numpy(t) for t in function(fn)(tensor(leaves)))
    children = reference_children(leaves).reshape(5, num_decomps, NUM_STATES**2)
    sums = np.einsum("bdn,dn->bd", children, dense_acc[0, :, :, 0] / dense_acc[0, :, :, 0].sum(axis=1, keepdims=True))
    root_weights = root_acc.reshape(-1) / root_acc.sum()
    np.testing.assert_allclose(out[:, 0], np.log(sums @ root_weights), rtol=1e-12)
    joint = sums * root_weights
    if op_name == "em":
        np.testing.assert_allclose(root_counts.reshape(-1), (joint / joint.sum(axis=1, keepdims=True)).sum(0))
    elif op_name in ("hard_em", "unweighted_hard_em"):
        scores = np.log(joint if op_name == "hard_em" else sums)
        expected = np.bincount(np.argmax(scores, axis=1), minlength=num_decomps)
        np.testing.assert_array_equal(root_counts.reshape(-1), expected)


@pytest.mark.parametrize("num_decomps", [2, 3])
@pytest.mark.parametrize("op_name", ["grad", "em"])
def test_ratspn_without_undecompose_trains_in_fit_and_predicts_under_xla(float64, num_decomps, op_name):
    """A functional model ending ``DenseProduct -> RootSum``: fit (XLA) and predict give the reference values."""
    rng = np.random.default_rng(70 + num_decomps)
    inputs = keras.Input((2, num_decomps, NUM_STATES))
    root = layers.RootSum(return_weighted_child_logits=False, sum_op=OPS[op_name]())
    model = keras.Model(inputs, root(layers.DenseProduct(num_factors=2)(inputs)))
    optimizer = keras.optimizers.Adam(0.05) if op_name == "grad" else None
    if optimizer is None:
        from libspn_keras.optimizers import OnlineExpectationMaximization

        optimizer = OnlineExpectationMaximization()
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood(), jit_compile=True)
    leaves = make_leaves(rng, 32, num_decomps)
    before = normalized_root_weights(root)
    model.fit(leaves, np.zeros(32), epochs=2, batch_size=16, verbose=0)
    after = normalized_root_weights(root)
    assert not np.allclose(before, after)
    expected = np.log(reference_children(leaves) @ after)
    np.testing.assert_allclose(model.predict(leaves, verbose=0)[:, 0], expected, rtol=1e-10)
    clone = layers.RootSum.from_config(root.get_config())
    assert clone.compute_output_shape((None, 1, num_decomps, 9)) == (None, 1)


def test_rejects_several_scopes_and_unknown_sizes():
    with pytest.raises(ValueError, match=r"Layer 'root' expects inputs of shape \[batch, 1, num_decomps, num_nodes\]"):
        layers.RootSum(name="root")(np.zeros((2, 2, 3, 4), "float32"))
    with pytest.raises(ValueError, match=r"Layer 'root' needs known num_decomps and num_nodes"):
        layers.RootSum(name="root").build((None, 1, None, 4))
