"""DenseProduct -> DenseSum is contracted from the factors (no log-space products) with the same results.

The fused path (``SumOpBase.weighted_sum_of_products``) must equal the materialized path
(``weighted_sum`` of the products in log-space) in values, input gradients / child signals and accumulator gradients /
EM counts, for every sum op, in eager, graph and XLA modes, with ``-inf`` children and in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from libspn_keras import layers, sum_ops
from libspn_keras.math import factor_rows
from tests.sum_op_cases import OPS

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")


def _layers(op_name: str, num_factors: int, dtype: str, seed: int = 0):
    product = layers.DenseProduct(num_factors=num_factors, dtype=dtype)
    dense = layers.DenseSum(num_sums=3, sum_op=OPS[op_name](), dtype=dtype)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5, 2 * num_factors, 2, 3)).astype(dtype)
    x[0, 0, 0] = -np.inf  # one factor of a region entirely -inf: its products are -inf
    x[1, :num_factors, 1] = -np.inf  # every factor of a region -inf
    dense.build((None, 2, 2, 3**num_factors))
    dense.accumulators.assign(rng.gamma(1.0, size=dense.accumulators.shape).astype(dtype) + 0.05)
    return product, dense, tf.constant(x)


def _run(product, dense, x, fused: bool, mode: str):
    def fn(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            products = product(x)
            out = dense(products if fused else tf.identity(products))
            # Counts of 1 per sum (EM ops) / the gradient of the total log-probability (gradient op).
            target = tf.reduce_sum(tf.where(tf.math.is_finite(out), out, tf.zeros_like(out)))
        return out, *tape.gradient(target, [x, dense.accumulators])

    if mode != "eager":
        fn = tf.function(fn, jit_compile=mode == "jit")
    return [np.asarray(t) for t in fn(x)]


@pytest.mark.parametrize("mode", ["eager", "function", "jit"])
@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize("num_factors", [2, 3])
def test_fused_equals_materialized(op_name, num_factors, mode):
    product, dense, x = _layers(op_name, num_factors, "float32")
    fused = _run(product, dense, x, fused=True, mode=mode)
    materialized = _run(product, dense, x, fused=False, mode=mode)
    for got, want in zip(fused, materialized, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    assert np.all(np.isneginf(fused[0][1, 0, 1]))  # the all -inf region stays -inf ...
    assert not np.isnan(fused[1]).any() and not np.isnan(fused[2]).any()  # ... without NaN signals


@pytest.mark.parametrize("op_name", ["grad", "em"])
def test_fused_equals_brute_force_in_float64(op_name):
    product, dense, x = _layers(op_name, 2, "float64", seed=3)
    out = _run(product, dense, x, fused=True, mode="function")[0]
    acc = dense.accumulators.numpy()
    linear = np.exp(acc) if dense.logspace_accumulators else acc
    weights = linear / linear.sum(axis=-2, keepdims=True)
    x_np = x.numpy()
    # Product (s, d, 3 i + j) of region s multiplies node i of scope 2 s and node j of scope 2 s + 1.
    prods = np.exp(x_np[:, 0::2, :, :, None] + x_np[:, 1::2, :, None, :]).reshape(5, 2, 2, 9)
    with np.errstate(divide="ignore"):
        expected = np.log(np.einsum("bsdk,sdko->bsdo", prods, weights))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert out.dtype == np.float64


def test_fused_path_is_taken_only_where_the_op_allows(monkeypatch):
    calls = []
    original = sum_ops.SumOpBase.weighted_sum_of_products

    def spy(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sum_ops.SumOpBase, "weighted_sum_of_products", spy)
    for op_name in OPS:
        product, dense, x = _layers(op_name, 2, "float32")
        dense(product(x))
    assert calls == ["SumOpGradBackprop", "SumOpEMBackprop"]
    assert not sum_ops.SumOpHardEMBackprop.fuses_products


@pytest.mark.parametrize("op_name", sorted(OPS))
def test_weighted_sum_of_products_falls_back_for_every_op(op_name):
    # Called directly, every op gives the materialized result (selection ops form the products).
    product, dense, x = _layers(op_name, 2, "float32")
    factors = factor_rows(x, 2)
    got = dense.sum_op.weighted_sum_of_products(factors, dense.accumulators, dense.logspace_accumulators)
    want = dense(tf.identity(product(x)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-5)
