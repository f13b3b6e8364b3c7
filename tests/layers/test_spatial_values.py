"""Spatial (DGC-SPN) layers against the independent numpy loops of ``tests/spatial_reference.py``."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from libspn_keras import layers, sum_ops
from tests import backend_utils
from tests import spatial_reference as ref
from tests.backend_utils import run, tensor, to_numpy

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")

MODES = ["eager", "function", "jit"]
PADDINGS = ["valid", "full", "final"]
KERNELS = [(2, 2), (3, 3), (2, 3)]


def log_inputs(rng, shape, dtype="float32", impossible=0.1):
    """Random log-probabilities with a fraction of ``-inf`` (impossible) entries."""
    x = np.log(rng.uniform(0.05, 1.0, size=shape))
    x[rng.uniform(size=shape) < impossible] = -np.inf
    return x.astype(dtype)


def atol(dtype):
    return 1e-5 if dtype == "float32" else 1e-12


def assert_log_close(actual, expected, dtype):
    actual = np.asarray(actual)
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected))
    assert not np.any(np.isnan(actual))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(
        actual[finite], expected[finite], rtol=1e-5 if dtype == "float32" else 1e-12, atol=atol(dtype)
    )


def reference_product(layer, x):
    indices = None if layer.depthwise else to_numpy(layer.kernel_indices)
    return ref.conv2d_product(x, layer.kernel_size, layer.strides, layer.dilations, layer.padding, indices)


# --------------------------------------------------------------------------------------------------------------------
# Conv2DProduct


@pytest.mark.parametrize("depthwise", [True, False], ids=["depthwise", "all_combinations"])
@pytest.mark.parametrize("kernel_size", KERNELS, ids=lambda k: f"k{k[0]}x{k[1]}")
@pytest.mark.parametrize("dilation", [1, 2, 4], ids=lambda d: f"d{d}")
@pytest.mark.parametrize("stride", [1, 2], ids=lambda s: f"s{s}")
@pytest.mark.parametrize("padding", PADDINGS)
def test_conv2d_product_matches_loop(padding, stride, dilation, kernel_size, depthwise):
    rng = np.random.default_rng(0)
    channels = 3 if depthwise else 2
    x = log_inputs(rng, (2, 9, 10, channels))
    layer = layers.Conv2DProduct(
        strides=stride, dilations=dilation, kernel_size=list(kernel_size), padding=padding, depthwise=depthwise
    )

    out = np.asarray(layer(x))

    indices = None if depthwise else ref.all_combinations(channels, kernel_size)
    if not depthwise:  # the documented channel order of num_channels=None
        np.testing.assert_array_equal(to_numpy(layer.kernel_indices), indices)
    expected = ref.conv2d_product(x, kernel_size, (stride, stride), (dilation, dilation), padding, indices)
    assert out.shape == expected.shape == tuple(layer.compute_output_shape(x.shape))
    assert_log_close(out, expected, "float32")
    scopes, decomposable = ref.product_scopes(
        np.eye(90, dtype=bool).reshape(9, 10, 90), kernel_size, (stride, stride), (dilation, dilation), padding
    )
    assert decomposable
    np.testing.assert_array_equal(layer.output_scopes, scopes)


def test_documented_channel_order_of_all_combinations():
    layer = layers.Conv2DProduct(strides=1, dilations=1, kernel_size=[1, 2])
    layer.build((None, 2, 3, 2))
    # Output channel o takes (o // C**t) % C at kernel cell t: the first kernel cell varies fastest.
    np.testing.assert_array_equal(to_numpy(layer.kernel_indices)[0], [[0, 1, 0, 1], [0, 0, 1, 1]])


@pytest.mark.parametrize("kernel_size", [(2, 2), (3, 3)], ids=["k2", "k3"])
def test_conv2d_product_channel_subset(kernel_size):
    rng = np.random.default_rng(0)
    x = log_inputs(rng, (3, 6, 5, 3))
    kwargs = dict(strides=1, dilations=2, kernel_size=kernel_size, padding="full", num_channels=7)
    layer = layers.Conv2DProduct(seed=11, **kwargs)

    out = np.asarray(layer(x))

    indices = to_numpy(layer.kernel_indices)
    assert indices.shape == (*kernel_size, 7) and out.shape[-1] == 7
    assert indices.min() >= 0 and indices.max() < 3
    combos = {tuple(indices[..., o].ravel()) for o in range(7)}
    assert len(combos) == 7  # distinct products
    assert_log_close(out, reference_product(layer, x), "float32")
    same = layers.Conv2DProduct(seed=11, **kwargs)
    same.build(x.shape)
    np.testing.assert_array_equal(to_numpy(same.kernel_indices), indices)
    other = layers.Conv2DProduct(seed=12, **kwargs)
    other.build(x.shape)
    assert not np.array_equal(to_numpy(other.kernel_indices), indices)


def test_num_channels_equal_to_all_combinations_uses_the_documented_order():
    layer = layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, num_channels=16, seed=3)
    layer.build((None, 4, 4, 2))
    np.testing.assert_array_equal(to_numpy(layer.kernel_indices), ref.all_combinations(2, (2, 2)))


def test_conv2d_product_gradient_counts_children():
    # d(sum of log-products)/dx counts how often each input node is a factor (padding cells count nothing).
    x = log_inputs(np.random.default_rng(2), (1, 4, 5, 2), "float64", impossible=0.0)
    layer = layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", num_channels=5, seed=1)
    (grad,) = to_numpy(backend_utils.grad(layer, tensor(x)))
    indices = to_numpy(layer.kernel_indices)
    expected = np.zeros_like(x)
    out_h, out_w = 5, 6
    for i, j, o, u, v in itertools.product(range(out_h), range(out_w), range(5), range(2), range(2)):
        row, col = i + u - 1, j + v - 1
        if 0 <= row < 4 and 0 <= col < 5:
            expected[0, row, col, indices[u, v, o]] += 1
    np.testing.assert_array_equal(grad, expected)


def value_and_input_gradient(layer, mode, x, dy):
    """``layer(x)`` and the gradient of ``sum(dy * layer(x))`` with respect to ``x``, in ``mode``."""

    def value_and_grad(x, dy):
        out, (d_x,) = backend_utils.value_and_grad(layer, x, cotangent=dy)
        return out, d_x

    return run(value_and_grad, mode, tensor(x), tensor(dy))


@pytest.mark.pairwise  # all pairs by default, the full grid with -m slow (tests/covering.py)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("depthwise", [True, False], ids=["depthwise", "channel_subset"])
@pytest.mark.parametrize(
    "stride, dilation, kernel_size",
    [(1, 1, (2, 2)), (2, 1, (2, 2)), (1, 2, (2, 3)), (2, 2, (2, 2)), (3, 2, (3, 2)), (2, (1, 3), (2, 2))],
    ids=lambda v: str(v),
)
@pytest.mark.parametrize("padding", PADDINGS)
def test_conv2d_product_input_gradient_matches_loop(padding, stride, dilation, kernel_size, depthwise, mode):
    # Random signals, -inf inputs and odd sizes: the strided view's slices (and their Pad gradients) and the
    # one-hot matmul gradient of the channel gather against the loop, in every execution mode.
    rng = np.random.default_rng(7)
    x = log_inputs(rng, (2, 9, 11, 3), "float64")
    kwargs = dict(strides=stride, dilations=dilation, kernel_size=list(kernel_size), padding=padding)
    layer = layers.Conv2DProduct(
        depthwise=depthwise, num_channels=None if depthwise else 7, seed=3, dtype="float64", **kwargs
    )
    layer.build(x.shape)
    dy = rng.normal(size=layer.compute_output_shape(x.shape)).astype("float64")

    out, grad = value_and_input_gradient(layer, mode, x, dy)

    indices = None if depthwise else to_numpy(layer.kernel_indices)
    strides, dilations = layer.strides, layer.dilations
    assert_log_close(out, ref.conv2d_product(x, kernel_size, strides, dilations, padding, indices), "float64")
    expected = ref.conv2d_product_input_gradient(dy, x.shape, kernel_size, strides, dilations, padding, indices)
    np.testing.assert_allclose(to_numpy(grad), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_depthwise_product_multiplies_by_its_kernel(mode):
    # The non-trainable kernel (all ones unless assigned) scales each kernel cell's child, as the depthwise
    # convolution of the original library does.
    rng = np.random.default_rng(8)
    x = log_inputs(rng, (2, 6, 7, 2), "float64", impossible=0.0)
    layer = layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="full", depthwise=True, dtype="float64")
    layer.build(x.shape)
    weights = np.array([[1.0, 0.5], [2.0, 0.25]])
    layer.onehot_kernel.assign(weights[:, :, np.newaxis, np.newaxis])  # the original's [kh, kw, 1, 1]
    dy = rng.normal(size=layer.compute_output_shape(x.shape))

    out, grad = value_and_input_gradient(layer, mode, x, dy)

    geometry = ((2, 2), (1, 1), (2, 2), "full", None)
    np.testing.assert_allclose(to_numpy(out), ref.conv2d_product(x, *geometry, kernel_weights=weights), rtol=1e-12)
    expected = ref.conv2d_product_input_gradient(dy, x.shape, *geometry, kernel_weights=weights)
    np.testing.assert_allclose(to_numpy(grad), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# Spatial sums

SUM_OPS = [
    pytest.param(sum_ops.SumOpGradBackprop(), True, id="grad-logspace"),
    pytest.param(sum_ops.SumOpGradBackprop(), False, id="grad-linear"),
    pytest.param(sum_ops.SumOpEMBackprop(), False, id="em"),
    pytest.param(sum_ops.SumOpHardEMBackprop(), False, id="hard_em"),
    pytest.param(sum_ops.SumOpUnweightedHardEMBackprop(), False, id="unweighted_hard_em"),
]


def random_accumulators(layer, rng):
    shape = tuple(layer.accumulators.shape)
    values = rng.normal(scale=1.5, size=shape) if layer.logspace_accumulators else rng.gamma(0.7, size=shape) + 1e-3
    layer.accumulators.assign(values.astype(layer.accumulators.dtype))
    return values


@pytest.mark.parametrize("layer_cls", [layers.Local2DSum, layers.Conv2DSum])
@pytest.mark.parametrize(("op", "logspace"), SUM_OPS)
def test_spatial_sums_match_logsumexp(layer_cls, op, logspace):
    rng = np.random.default_rng(3)
    x = log_inputs(rng, (3, 4, 5, 6))
    x[1, 2, 3, :] = -np.inf  # a cell where every child is impossible
    layer = layer_cls(num_sums=4, sum_op=op, logspace_accumulators=logspace)
    layer.build(x.shape)
    expected_shape = (4, 5, 6, 4) if layer_cls is layers.Local2DSum else (1, 1, 6, 4)
    assert tuple(layer.accumulators.shape) == expected_shape
    accumulators = random_accumulators(layer, rng)

    out = layer(x)

    expected = ref.spatial_sum(x.astype("float64"), ref.normalized_log_weights(accumulators, logspace))
    assert out.shape == expected.shape == tuple(layer.compute_output_shape(x.shape))
    assert_log_close(out, expected, "float32")


@pytest.mark.parametrize("mode", MODES)
def test_spatial_layers_in_every_mode_and_dtype(mode, floatx):
    """Key parameterizations of every spatial layer, traced together (one compilation per mode and dtype)."""
    rng = np.random.default_rng(4)
    x2, x3 = log_inputs(rng, (2, 7, 8, 2), floatx), log_inputs(rng, (2, 7, 8, 3), floatx)
    products = [
        (layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="full"), x2),
        (layers.Conv2DProduct(strides=1, dilations=[1, 2], kernel_size=3, padding="final", depthwise=True), x3),
        (layers.Conv2DProduct(strides=2, dilations=1, kernel_size=[2, 3], num_channels=6, seed=0), x2),
    ]
    sums = []
    for layer_cls, op, logspace in [
        (layers.Local2DSum, sum_ops.SumOpGradBackprop(), True),
        (layers.Local2DSum, sum_ops.SumOpHardEMBackprop(), False),
        (layers.Conv2DSum, sum_ops.SumOpGradBackprop(), True),
        (layers.Conv2DSum, sum_ops.SumOpEMBackprop(), False),
    ]:
        layer = layer_cls(num_sums=3, sum_op=op, logspace_accumulators=logspace)
        layer.build(x3.shape)
        sums.append((layer, random_accumulators(layer, rng), logspace))
    to_regions = layers.SpatialToRegions()
    if mode != "eager" and backend_utils.backend() == "jax":
        # A variable created inside jax.jit holds a tracer (keras.layers.Dense too): on JAX, layers with variables
        # are built before they are traced, as Keras' fit does. TensorFlow builds them inside the tf.function.
        for layer, x in products:
            layer.build(x.shape)

    def forward(x2, x3):
        inputs = {2: x2, 3: x3}
        outs = [layer(inputs[x.shape[-1]]) for layer, x in products]
        return outs + [layer(x3) for layer, _, _ in sums] + [to_regions(x3)]

    outs = run(forward, mode, tensor(x2), tensor(x3))

    expected = [reference_product(layer, x.astype("float64")) for layer, x in products]
    expected += [ref.spatial_sum(x3.astype("float64"), ref.normalized_log_weights(a, ls)) for _, a, ls in sums]
    expected += [ref.spatial_to_regions(x3)]
    assert len(outs) == len(expected)
    for out, exp in zip(outs, expected, strict=True):
        assert out.dtype == floatx
        assert_log_close(out, exp, floatx)


# --------------------------------------------------------------------------------------------------------------------
# SpatialToRegions and whole stacks


def test_spatial_to_regions_flattens_cells_then_channels():
    x = log_inputs(np.random.default_rng(5), (2, 3, 2, 4))
    layer = layers.SpatialToRegions()
    out = np.asarray(layer(x))
    np.testing.assert_array_equal(out, ref.spatial_to_regions(x))
    assert tuple(layer.compute_output_shape((None, 3, 2, 4))) == (None, 1, 1, 24)


def test_functional_stack_with_unknown_batch_size():
    rng = np.random.default_rng(6)
    inputs = keras.Input(shape=(4, 4, 2))
    product1 = layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", num_channels=5, seed=2)
    local = layers.Local2DSum(num_sums=3)
    product2 = layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="full", depthwise=True)
    conv = layers.Conv2DSum(num_sums=2, sum_op=sum_ops.SumOpEMBackprop())
    product3 = layers.Conv2DProduct(strides=1, dilations=4, kernel_size=2, padding="final", depthwise=True)
    to_regions = layers.SpatialToRegions()
    outputs = to_regions(product3(conv(product2(local(product1(inputs))))))
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, 1, 1, 4 * 4 * 2)
    local_acc, conv_acc = random_accumulators(local, rng), random_accumulators(conv, rng)
    x = log_inputs(rng, (3, 4, 4, 2))

    out = model(x)
    predicted = model.predict(x, batch_size=2, verbose=0)

    h = reference_product(product1, x.astype("float64"))
    h = ref.spatial_sum(h, ref.normalized_log_weights(local_acc, True))
    h = reference_product(product2, h)
    h = ref.spatial_sum(h, ref.normalized_log_weights(conv_acc, False))
    h = reference_product(product3, h)
    expected = ref.spatial_to_regions(h)
    assert_log_close(out, expected, "float32")
    assert_log_close(predicted, expected, "float32")


# --------------------------------------------------------------------------------------------------------------------
# Illegal parameterizations


def leaf_input(height=4, width=4):
    return [keras.Input(shape=(height, width, 1)), layers.IndicatorLeaf(num_components=2, dtype="float32")]


def test_consecutive_full_products_with_dilation_one_overlap():
    with pytest.raises(ValueError, match=r"output cell \(0, 1\) has children with overlapping scopes"):
        keras.Sequential(
            [
                *leaf_input(),
                layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),
                layers.Local2DSum(num_sums=2),  # sums keep the scopes of their cells
                layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),
            ]
        )


def test_overlap_is_detected_through_dropout():
    with pytest.raises(ValueError, match="overlapping scopes"):
        keras.Sequential(
            [
                *leaf_input(),
                layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="valid", depthwise=True),
                layers.LogDropout(rate=0.1),
                layers.Conv2DSum(num_sums=2),
                layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="valid", depthwise=True),
            ]
        )


def test_exponentially_increasing_dilations_are_accepted():
    model = keras.Sequential(
        [
            *leaf_input(4, 4),
            layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),
            layers.Local2DSum(num_sums=2),
            layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="full", depthwise=True),
            layers.Local2DSum(num_sums=2),
            layers.Conv2DProduct(strides=1, dilations=4, kernel_size=2, padding="final", depthwise=True),
            layers.SpatialToRegions(),
        ]
    )
    top = model.layers[-2].output_scopes
    assert top.shape == (4, 4, 16) and top.all()


def test_spatial_to_regions_rejects_cells_with_different_scopes():
    match = r"cell \(0, 1\) covers a different scope \(2 input cells\) than cell \(0, 0\) \(1 input cells\)"
    with pytest.raises(ValueError, match=match):
        keras.Sequential(
            [
                *leaf_input(),
                layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),
                layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="full", depthwise=True),
                layers.SpatialToRegions(),
            ]
        )


@pytest.mark.parametrize("with_sum", [False, True], ids=["leaf", "leaf-sum"])
def test_spatial_to_regions_rejects_a_leaf_grid(with_sum):
    with pytest.raises(ValueError, match=r"cell \(0, 1\) covers a different scope \(1 input cells\)"):
        keras.Sequential(
            [*leaf_input(2, 2), *([layers.Local2DSum(num_sums=2)] if with_sum else []), layers.SpatialToRegions()]
        )


def test_spatial_to_regions_accepts_a_single_cell_leaf():
    model = keras.Sequential([*leaf_input(1, 1), layers.SpatialToRegions()])
    assert model.output_shape == (None, 1, 1, 2)


def test_spatial_to_regions_rejects_disjoint_cells():
    with pytest.raises(ValueError, match="all cells must cover the same scope"):
        keras.Sequential(
            [
                *leaf_input(),
                layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, padding="valid", depthwise=True),
                layers.SpatialToRegions(),
            ]
        )


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        (dict(kernel_size=3, dilations=1), (None, 2, 4, 1)),
        (dict(kernel_size=2, dilations=4), (None, 4, 4, 1)),
        (dict(kernel_size=[1, 5], dilations=1), (None, 4, 4, 1)),
    ],
)
def test_kernel_larger_than_input(kwargs, shape):
    layer = layers.Conv2DProduct(strides=1, padding="valid", depthwise=True, **kwargs)
    with pytest.raises(ValueError, match="does not fit an input of"):
        layer.build(shape)


def test_num_channels_larger_than_all_combinations():
    layer = layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, num_channels=17)
    with pytest.raises(ValueError, match=r"at most 16 distinct channel combinations.*num_channels=17"):
        layer.build((None, 4, 4, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(padding="same"), r"padding in \('valid', 'full', 'final'\). Received: padding='same'"),
        (dict(padding="FULL"), "Received: padding='FULL'"),
        (dict(strides=0), r"strides to be two positive integers. Received: strides=0"),
        (dict(dilations=[1, 2, 3]), r"dilations to be two positive integers"),
        (dict(kernel_size=[2, 1.5]), r"kernel_size to be two positive integers"),
        (dict(num_channels=0), r"num_channels >= 1 or None. Received: num_channels=0"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    arguments = dict(strides=1, dilations=1, kernel_size=2) | kwargs
    with pytest.raises(ValueError, match=match):
        layers.Conv2DProduct(**arguments)


@pytest.mark.parametrize(
    "layer",
    [
        layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2),
        layers.Local2DSum(2),
        layers.Conv2DSum(2),
        layers.SpatialToRegions(),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_spatial_layers_reject_non_spatial_inputs(layer):
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
        layer.build((None, 4, 4))


@pytest.mark.parametrize("layer_cls", [layers.Local2DSum, layers.Conv2DSum])
def test_spatial_sums_reject_bad_num_sums(layer_cls):
    with pytest.raises(ValueError, match="num_sums"):
        layer_cls(num_sums=0)
