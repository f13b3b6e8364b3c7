"""Region layers pass their output's position rows on (``math.attach_rows``) with the same values.

A chain of region layers reads its inputs from the attached rows instead of transposing; it must give the same
values, input gradients and accumulator gradients / EM counts as the same layers with ``keras.ops.copy`` (which drops
the attributes) between them, for every sum op, in eager, graph and XLA modes.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import layers
from libspn_keras.math import attach_rows, attached_rows, to_rows
from tests.backend_utils import run, tensor, to_numpy, value_and_grad
from tests.sum_op_cases import OPS

# Decomposition 1 leaves scope 4 out: its signal must be zero.
PERMUTATIONS = np.array([[4, 0, -1, 2, 1, 3, -1, -1], [3, -1, 1, 0, 4, -1, 2, -1]])  # each covers all 5 scopes


def _chain(op_name: str) -> list:
    op = OPS[op_name]
    return [
        layers.IndicatorLeaf(num_components=2),
        layers.DenseSum(num_sums=3, sum_op=op()),
        layers.PermuteAndPadScopes(PERMUTATIONS),
        layers.ReduceProduct(num_factors=2),
        layers.DenseProduct(num_factors=2),
        layers.DenseSum(num_sums=3, sum_op=op()),
        layers.DenseProduct(num_factors=2),
        layers.Undecompose(),
        layers.RootSum(return_weighted_child_logits=False, sum_op=op()),
    ]


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(6, 5, 1, 1)).astype("float32")
    x[0, 1] = np.nan  # a marginalized variable
    return tensor(np.broadcast_to(x, (6, 5, 2, 1)).copy())


def _run(chain: list, x, keep_rows: bool, mode: str) -> list[np.ndarray]:
    h = x
    for layer in chain:  # build, so that the accumulators exist before they are differentiated
        h = layer(h)
    sums = [layer for layer in chain if hasattr(layer, "accumulators")]

    def fn(x):
        leaf = chain[0](x)

        def above_the_leaf(h):
            for layer in chain[1:]:
                h = layer(h if keep_rows else keras.ops.copy(h))  # the copy drops the attached rows
            return h

        out, grads = value_and_grad(above_the_leaf, leaf, variables=[layer.accumulators for layer in sums])
        return out, *grads

    return [to_numpy(t) for t in run(fn, mode, x)]


@pytest.mark.parametrize("mode", ["eager", "function", "jit"])
@pytest.mark.parametrize("op_name", sorted(OPS))
def test_chain_with_rows_equals_chain_without(op_name, mode):
    # Eagerly no rows are attached, so both runs take the same path there.
    chain = _chain(op_name)
    x = _inputs()
    with_rows = _run(chain, x, keep_rows=True, mode=mode)
    without = _run(chain, x, keep_rows=False, mode=mode)
    for got, want in zip(with_rows, without, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(with_rows[0]))


@pytest.mark.requires_tensorflow  # rows are attached in TensorFlow graphs only
def test_attached_rows_hold_the_output_values():
    import tensorflow as tf

    chain = _chain("grad")
    carriers = []

    @tf.function
    def pairs(x):
        carriers.clear()  # tracing may run more than once
        h = chain[0](x)
        out = []
        for layer in chain[1:]:
            h = layer(h)
            rows = attached_rows(h)
            if rows is not None:
                carriers.append(type(layer).__name__)
                out.append((rows, to_rows(tf.identity(h), weights_rank=4)))
        return out

    for rows, transposed in pairs(_inputs()):
        np.testing.assert_array_equal(to_numpy(rows), to_numpy(transposed))
    assert carriers == ["DenseSum", "PermuteAndPadScopes", "ReduceProduct", "DenseProduct", "DenseSum", "DenseProduct"]


def test_nothing_is_attached_eagerly():
    # Eagerly both layouts would stay alive with the output (twice the memory), so layers attach no rows.
    h = _inputs()
    for layer in _chain("grad"):
        h = layer(h)
        assert attached_rows(h) is None


@pytest.mark.requires_tensorflow  # rows are attached in TensorFlow graphs only
def test_rows_of_another_shape_or_dtype_are_ignored():
    import tensorflow as tf

    with tf.Graph().as_default():  # rows are attached in graph mode only
        x = tf.zeros([2, 3, 4, 5])
        attach_rows(x, tf.ones([6, 2, 5]))  # 6 positions, x has 12
        assert attached_rows(x) is None
        attach_rows(x, tf.ones([12, 2, 5], tf.float64))
        assert attached_rows(x) is None
        attach_rows(x, tf.ones([12, 2, 5]))
        assert attached_rows(x) is not None
        unknown = tf.compat.v1.placeholder(tf.float32, [2, None, 4, 5])  # middle axes not known
        attach_rows(unknown, tf.ones([12, 2, 5]))
        assert attached_rows(unknown) is None


@pytest.mark.requires_tensorflow  # rows are attached in TensorFlow graphs only
@pytest.mark.parametrize("api", ["sequential", "functional"])
def test_keras_models_pass_the_rows_between_layers(api, monkeypatch):
    import tensorflow as tf

    # Keras must hand each layer the tensor object the previous layer returned, attributes included; otherwise
    # every region layer silently falls back to transposing. Count the layers that found rows on their input.
    from libspn_keras import models
    from libspn_keras.layers import _products, _scopes
    from libspn_keras.math import _log_weighted_sum

    found = []

    def spy(x):
        rows = _log_weighted_sum.attached_rows.__wrapped__(x)
        found.append(rows is not None)
        return rows

    spy.__wrapped__ = _log_weighted_sum.attached_rows
    for module in (_log_weighted_sum, _scopes, _products):
        monkeypatch.setattr(module, "attached_rows", spy)
    chain = _chain("em")
    if api == "sequential":
        model = models.SequentialSumProductNetwork([keras.Input(shape=(5, 2, 1)), *chain])
    else:
        inputs = keras.Input(shape=(5, 2, 1))
        h = inputs
        for layer in chain:
            h = layer(h)
        model = models.SumProductNetwork(inputs, h)
    found.clear()
    tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec([None, 5, 2, 1], tf.float32))
    # Readers that find rows: PermuteAndPadScopes (the leaf DenseSum's, and again with the row sums attached to
    # them), ReduceProduct (the permutation's, with its row sums: it reads those) and both DenseProducts (their
    # input's, for the factor rows).
    assert sum(found) == 5, found
