"""Sums over an ``IndicatorLeaf`` are looked up from their log-weights (``math.log_weighted_sum_of_indicators_rows``).

The lookup must give the same values, leaf signals and accumulator gradients / EM counts as the matmul over the
same log-indicators with ``keras.ops.copy`` in between (which drops the attached ``indicator_index``), for every sum
op and sum layer, with marginalized variables, an evidence mask and zero weights, eagerly, in graph and XLA modes,
in float32 and float64; and it must really replace the matmul.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import layers, sum_ops
from libspn_keras.math import attached_indicator_index, log_weighted_sum_of_indicators_rows
from tests.backend_utils import function, grad, run, tensor, to_numpy
from tests.sum_op_cases import OPS

NUM_STATES = 3

SUM_LAYERS = {
    "dense": (lambda op: layers.DenseSum(num_sums=2, sum_op=op), (4, 2)),
    "local": (lambda op: layers.Local2DSum(num_sums=2, sum_op=op), (3, 2)),
    "conv": (lambda op: layers.Conv2DSum(num_sums=2, sum_op=op), (3, 2)),
}


def _states(middle: tuple[int, ...], dtype: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.integers(0, NUM_STATES, size=(5, *middle, 1)).astype(dtype)
    x[0, 0, 0] = np.nan  # a marginalized variable
    x[3] = np.nan  # a sample with no evidence at all
    return x


def _network(kind: str, op_name: str, dtype: str) -> tuple[layers.IndicatorLeaf, keras.layers.Layer]:
    make_sum, middle = SUM_LAYERS[kind]
    leaf = layers.IndicatorLeaf(num_components=NUM_STATES, dtype=dtype)
    sum_layer = make_sum(OPS[op_name]())
    leaf_out = leaf(_states(middle, dtype))
    sum_layer(leaf_out)
    accumulators = np.asarray(sum_layer.accumulators).copy()
    # A zero weight: the sums it leads to are impossible for samples in that state.
    accumulators.reshape(-1, NUM_STATES, 2)[:, 1, 0] = -np.inf if sum_layer.logspace_accumulators else 0.0
    sum_layer.accumulators.assign(accumulators)
    return leaf, sum_layer


def _run(leaf, sum_layer, x, mask, lookup: bool, mode: str) -> list[np.ndarray]:
    def fn(x, mask):
        h = leaf(x, evidence_mask=mask)

        def target(h):
            out = sum_layer(h if lookup else keras.ops.copy(h))  # the copy drops the attached indicator_index
            # Distinct signals per sum, so that the backward pass cannot hide a swapped child or sum.
            signal = keras.ops.reshape(
                keras.ops.cast(keras.ops.arange(keras.ops.size(out)) % 7 + 1, out.dtype), keras.ops.shape(out)
            )
            return keras.ops.where(keras.ops.isfinite(out), out, keras.ops.zeros_like(out)) * signal

        out = sum_layer(h if lookup else keras.ops.copy(h))
        return out, *grad(target, h, variables=[sum_layer.accumulators])

    return [to_numpy(t) for t in run(fn, mode, x, mask)]


@pytest.mark.pairwise  # all pairs by default, the full grid with -m slow (tests/covering.py)
@pytest.mark.parametrize("mode", ["eager", "function", "jit"])
@pytest.mark.parametrize("kind", sorted(SUM_LAYERS))
@pytest.mark.parametrize("op_name", sorted(OPS))
def test_lookup_equals_matmul(op_name, kind, mode, floatx):
    leaf, sum_layer = _network(kind, op_name, floatx)
    x = _states(SUM_LAYERS[kind][1], floatx)
    mask = np.ones(x.shape[:-1], bool)
    mask[1, -1] = False  # marginalized by the evidence mask
    looked_up = _run(leaf, sum_layer, x, mask, lookup=True, mode=mode)
    contracted = _run(leaf, sum_layer, x, mask, lookup=False, mode=mode)
    tolerance = 1e-5 if floatx == "float32" else 1e-12
    for got, want in zip(looked_up, contracted, strict=True):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
    values = looked_up[0]
    assert np.isneginf(values).any() and np.isfinite(values).any()  # the zero weight and the rest
    assert all(np.all(np.isfinite(t)) for t in looked_up[1:])
    np.testing.assert_allclose(values[3], 0.0, atol=tolerance)  # no evidence: every normalized sum is 1


def _op_types(lookup: bool) -> set[str]:
    import tensorflow as tf

    leaf, sum_layer = _network("dense", "em", "float32")
    fn = tf.function(lambda x: sum_layer(leaf(x) if lookup else tf.identity(leaf(x))))
    graph = fn.get_concrete_function(tf.TensorSpec([None, 4, 2, 1], tf.float32)).graph.as_graph_def()
    # Custom gradients trace their forward passes into functions of their own (libspn_keras.math.custom_gradient).
    nested = [node for function in graph.library.function for node in function.node_def]
    return {node.op for node in [*graph.node, *nested]}


@pytest.mark.requires_tensorflow  # reads the ops of a TensorFlow graph
def test_lookup_replaces_the_matmul():
    assert "BatchMatMulV2" not in _op_types(lookup=True)
    assert "BatchMatMulV2" in _op_types(lookup=False)


def test_second_order_gradients_through_the_lookup(float64):
    leaf, sum_layer = _network("dense", "grad", "float64")
    x = _states((4, 2), "float64")

    def hessian_vector(lookup: bool) -> np.ndarray:
        def target():
            h = leaf(x)
            out = sum_layer(h if lookup else keras.ops.copy(h))
            return keras.ops.where(keras.ops.isfinite(out), out, keras.ops.zeros_like(out)) ** 2

        def projected():
            (g,) = grad(target, variables=[sum_layer.accumulators])
            g = keras.ops.where(keras.ops.isfinite(g), g, keras.ops.zeros_like(g))
            direction = keras.ops.reshape(
                keras.ops.cast(keras.ops.arange(keras.ops.size(g)) % 3, g.dtype), keras.ops.shape(g)
            )
            return keras.ops.sum(g * direction)

        return to_numpy(grad(projected, variables=[sum_layer.accumulators])[0])

    np.testing.assert_allclose(hessian_vector(True), hessian_vector(False), rtol=1e-10, atol=1e-12)


def test_lookup_kernel_against_numpy():
    rng = np.random.default_rng(3)
    weights = rng.dirichlet(np.ones(NUM_STATES), size=(2, 4)).transpose(0, 2, 1)  # [groups, states, out]
    index = rng.integers(0, NUM_STATES + 2, size=(2, 6))  # states, then "missing", then "impossible"
    got = np.asarray(log_weighted_sum_of_indicators_rows(tensor(index, "int32"), keras.ops.log(weights)))
    indicators = np.concatenate([np.eye(NUM_STATES), np.ones((1, NUM_STATES)), np.zeros((1, NUM_STATES))])
    with np.errstate(divide="ignore"):
        want = np.log(np.einsum("grk,gko->gro", indicators[index], weights))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_the_index_follows_only_the_leaf_output():
    leaf = layers.IndicatorLeaf(num_components=2)
    out = leaf(np.array([[[[0.0]], [[np.nan]]]], "float32"))
    np.testing.assert_array_equal(np.asarray(attached_indicator_index(out)), [[[0], [2]]])
    assert attached_indicator_index(keras.ops.copy(out)) is None
    assert attached_indicator_index(out[..., :1]) is None


@pytest.mark.parametrize(
    ("op", "merges"),
    [
        (sum_ops.SumOpEMBackprop(), True),
        (sum_ops.SumOpHardEMBackprop(), True),
        (sum_ops.SumOpHardEMBackprop(sample_prob=1.0), False),
        (sum_ops.SumOpSampleBackprop(), False),
    ],
    ids=["em", "hard_em", "hard_em_sampling", "sample"],
)
def test_edge_counts_of_samples_that_share_an_indicator_row(op, merges, float64):
    """Counts are computed once per indicator row, except for sampling ops, which draw a child per sample."""
    assert op.merges_equal_rows is merges
    num = 4000
    weights = np.array([0.2, 0.3, 0.5], "float64")
    leaf = layers.IndicatorLeaf(num_components=3, dtype="float64")
    sum_layer = layers.DenseSum(num_sums=1, sum_op=op)
    x = np.full((num, 1, 1, 1), np.nan)  # every sample marginalized: all share the "missing" row
    x[:10] = 0.0  # and ten observed in state 0
    sum_layer(leaf(x))
    sum_layer.accumulators.assign(weights.reshape(1, 1, 3, 1))

    @function
    def counts():
        return grad(lambda: sum_layer(leaf(x)), variables=[sum_layer.accumulators])[0]

    got = to_numpy(counts()).ravel()
    missing = num - 10
    if isinstance(op, sum_ops.SumOpEMBackprop):
        np.testing.assert_allclose(got, missing * weights + [10, 0, 0], rtol=1e-12)
    elif merges:  # the most probable child of the missing row, every time
        np.testing.assert_array_equal(got, [10, 0, missing])
    else:  # one draw per sample, in proportion to the weights (7 standard deviations)
        frequencies = (got - [10, 0, 0]) / missing
        np.testing.assert_allclose(frequencies, weights, atol=7 * np.sqrt(0.25 / missing))
        assert got.sum() == num
