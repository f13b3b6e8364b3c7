"""DenseProduct -> DenseSum is contracted from the factors (no log-space products) with the same results.

The fused path (``SumOpBase.weighted_sum_of_products``) must equal the materialized path
(``weighted_sum`` of the products in log-space) in values, input gradients / child signals and accumulator gradients /
EM counts, for every sum op, in eager, graph and XLA modes, with ``-inf`` children and in float64.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import layers, sum_ops
from libspn_keras.math import factor_rows
from tests.backend_utils import grad, run, tensor, to_numpy
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
    return product, dense, tensor(x)


def _run(middle, top, x, fused: bool, mode: str):
    """Values, input signals and accumulator gradients / EM counts of ``top`` over the ``middle`` layers."""

    def fn(x):
        def forward(x):
            h = x
            for layer in middle:
                h = layer(h)
            return top(h if fused else keras.ops.copy(h))  # the copy drops the attached rows

        def target(x):
            # Counts of 1 per sum (EM ops) / the gradient of the total log-probability (gradient op).
            out = forward(x)
            return keras.ops.where(keras.ops.isfinite(out), out, keras.ops.zeros_like(out))

        return forward(x), *grad(target, x, variables=[top.accumulators])

    if mode == "unknown-batch":  # a TensorFlow graph with an unknown batch size (requires_tensorflow)
        import tensorflow as tf

        fn = tf.function(fn, input_signature=[tf.TensorSpec([None, *x.shape[1:]], x.dtype)])
        return [to_numpy(t) for t in fn(x)]
    return [to_numpy(t) for t in run(fn, mode, x)]


@pytest.mark.parametrize("mode", ["eager", "function", "jit"])
@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize("num_factors", [2, 3])
def test_fused_equals_materialized(op_name, num_factors, mode):
    product, dense, x = _layers(op_name, num_factors, "float32")
    fused = _run([product], dense, x, fused=True, mode=mode)
    materialized = _run([product], dense, x, fused=False, mode=mode)
    for got, want in zip(fused, materialized, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    assert np.all(np.isneginf(fused[0][1, 0, 1]))  # the all -inf region stays -inf ...
    assert not np.isnan(fused[1]).any() and not np.isnan(fused[2]).any()  # ... without NaN signals


@pytest.mark.parametrize("op_name", ["grad", "em"])
def test_fused_equals_brute_force_in_float64(op_name):
    product, dense, x = _layers(op_name, 2, "float64", seed=3)
    out = _run([product], dense, x, fused=True, mode="function")[0]
    acc = to_numpy(dense.accumulators)
    linear = np.exp(acc) if dense.logspace_accumulators else acc
    weights = linear / linear.sum(axis=-2, keepdims=True)
    x_np = to_numpy(x)
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
    want = dense(keras.ops.copy(product(x)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-5)


def _mixed_model(op_name: str, sum_layer: str, undecompose: tuple[int, ...], dtype: str = "float32", seed: int = 0):
    """DenseProduct(2) -> Undecompose(k) for k in ``undecompose`` -> a sum layer.

    Inputs ``[5, 2, 4, 3]`` (4 decompositions), or ``[5, 2, 1, 3]`` without ``Undecompose``.
    """
    rng = np.random.default_rng(seed)
    decomps_in = 4 if undecompose else 1
    x = rng.normal(size=(5, 2, decomps_in, 3)).astype(dtype)
    x[0, 0, decomps_in - 1] = -np.inf  # one factor of one decomposition -inf
    if decomps_in > 2:
        x[1, :, 2] = -np.inf  # both factors of one decomposition -inf
    else:
        x[1, :, 0, :2] = -np.inf  # two nodes of both factors -inf
    x[2] = -np.inf  # every product of sample 2 is impossible: its sums are -inf without NaN signals
    middle = [layers.DenseProduct(num_factors=2, dtype=dtype)]
    middle += [layers.Undecompose(num_decomps=k, dtype=dtype) for k in undecompose]
    num_decomps = undecompose[-1] if undecompose else 1
    num_in = decomps_in * 9 // num_decomps
    if sum_layer == "root":
        top = layers.RootSum(return_weighted_child_logits=False, sum_op=OPS[op_name](), dtype=dtype)
        top.build((None, 1, 1, num_in))
    else:
        num_sums = {"dense1": 1, "dense3": 3}[sum_layer]
        top = layers.DenseSum(num_sums=num_sums, sum_op=OPS[op_name](), dtype=dtype)
        top.build((None, 1, num_decomps, num_in))
    top.accumulators.assign(rng.gamma(1.0, size=top.accumulators.shape).astype(dtype) + 0.05)
    return middle, top, tensor(x)


@pytest.mark.pairwise  # all pairs by default, the full grid with -m slow (tests/covering.py)
@pytest.mark.parametrize(
    "mode", ["eager", "function", "jit", pytest.param("unknown-batch", marks=pytest.mark.requires_tensorflow)]
)
@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize(
    ("sum_layer", "undecompose"),
    [("root", (1,)), ("root", (2, 1)), ("root", ()), ("dense1", (2,)), ("dense3", (2,)), ("dense3", (1,))],
)
def test_sums_over_undecomposed_products_equal_materialized(op_name, sum_layer, undecompose, mode):
    # The fused path contracts per decomposition (the root: by the last factor, without products) and adds in
    # log-space; values, input signals and accumulator gradients / EM counts equal those of the formed products.
    middle, top, x = _mixed_model(op_name, sum_layer, undecompose)
    fused = _run(middle, top, x, fused=True, mode=mode)
    materialized = _run(middle, top, x, fused=False, mode=mode)
    for got, want in zip(fused, materialized, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    assert np.all(np.isneginf(fused[0][2]))
    assert not np.isnan(fused[1]).any() and not np.isnan(fused[2]).any()
    assert np.all(fused[1][2] == 0)  # an impossible sample sends no signal


def test_fused_path_is_taken_after_undecompose(monkeypatch):
    seen = []
    original = sum_ops.SumOpBase.weighted_sum_of_products

    def spy(self, factors, accumulators, logspace_accumulators, num_mixed=1):
        seen.append(num_mixed)
        return original(self, factors, accumulators, logspace_accumulators, num_mixed)

    monkeypatch.setattr(sum_ops.SumOpBase, "weighted_sum_of_products", spy)
    for undecompose in [(1,), (2, 1), (2,), ()]:
        middle, top, x = _mixed_model("em", "dense3" if undecompose[-1:] == (2,) else "root", undecompose)
        h = x
        for layer in middle:
            h = layer(h)
        top(h)
    assert seen == [4, 4, 2, 1]


@pytest.mark.parametrize("op_name", ["grad", "em"])
def test_root_over_undecomposed_products_equals_brute_force_in_float64(op_name):
    middle, top, x = _mixed_model(op_name, "root", (1,), dtype="float64", seed=5)
    out = _run(middle, top, x, fused=True, mode="function")[0]
    acc = to_numpy(top.accumulators).reshape(-1)
    linear = np.exp(acc) if top.logspace_accumulators else acc
    weights = linear / linear.sum()
    x_np = to_numpy(x)
    # Root child d * 9 + 3 i + j: node i of scope 0 times node j of scope 1, decomposition d.
    prods = np.exp(x_np[:, 0, :, :, None] + x_np[:, 1, :, None, :]).reshape(5, 36)
    with np.errstate(divide="ignore"):
        expected = np.log(prods @ weights)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-12)
    assert out.shape == (5, 1) and out.dtype == np.float64
