"""Deep Generalized Convolutional SPNs as a whole: validity, EM signals, the README model, saving and training."""

from __future__ import annotations

import itertools
import re

import keras
import numpy as np
import pytest
from scipy.special import logsumexp

from libspn_keras import layers, losses, models, optimizers, sum_ops
from tests import backend_utils
from tests import spatial_reference as ref
from tests.backend_utils import grad, tensor, to_numpy

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")

SUM_OPS = [
    pytest.param(lambda: sum_ops.SumOpGradBackprop(), True, id="grad-logspace"),
    pytest.param(lambda: sum_ops.SumOpEMBackprop(), False, id="em"),
    pytest.param(lambda: sum_ops.SumOpHardEMBackprop(), False, id="hard_em"),
    pytest.param(lambda: sum_ops.SumOpUnweightedHardEMBackprop(), False, id="unweighted_hard_em"),
]


def dgcspn(
    size: int, op: sum_ops.SumOpBase, logspace: bool, arch: str = "strided"
) -> models.SequentialSumProductNetwork:
    """A small DGC-SPN over ``size x size`` binary images whose top cells all cover the whole image."""
    sums = {"sum_op": op, "logspace_accumulators": logspace}
    if size == 2:  # full padding (dilation 1), then 'final' padding (dilation 2)
        spatial = [
            layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full"),  # [3, 3, 16]
            layers.Local2DSum(num_sums=3, **sums),
            layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="final", num_channels=10, seed=0),
            layers.Conv2DSum(num_sums=2, **sums),  # [2, 2, 2]
        ]
    elif arch == "strided":  # non-overlapping products first, then overlapping ones
        spatial = [
            layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, padding="valid"),  # [2, 2, 16]
            layers.Local2DSum(num_sums=3, **sums),
            layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),  # [3, 3, 3]
            layers.Conv2DSum(num_sums=3, **sums),
            layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="final", num_channels=12, seed=1),
        ]
    else:  # exponentially increasing dilations 1, 2, 4 on the pixels themselves
        spatial = [
            layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),  # [5, 5, 2]
            layers.Local2DSum(num_sums=2, **sums),
            layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="full", num_channels=5, seed=2),
            layers.Conv2DSum(num_sums=2, **sums),  # [7, 7, 2]
            layers.Conv2DProduct(strides=1, dilations=4, kernel_size=2, padding="final", depthwise=True),  # [4, 4, 2]
        ]
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(size, size, 1)),
            layers.IndicatorLeaf(num_components=2, dtype=keras.config.floatx()),
            *spatial,
            layers.SpatialToRegions(),
            layers.DenseSum(num_sums=2, **sums),
            layers.RootSum(return_weighted_child_logits=False, **sums),
        ]
    )


def randomize_accumulators(model: keras.Model, rng: np.random.Generator) -> None:
    for layer in model.layers:
        if isinstance(layer, layers.BaseSum):
            shape = tuple(layer.accumulators.shape)
            if layer.logspace_accumulators:
                values = rng.normal(scale=1.5, size=shape)
            else:
                values = rng.gamma(0.5, size=shape) + 1e-3
            layer.accumulators.assign(values.astype(layer.accumulators.dtype))


def all_images(size: int, dtype: str) -> np.ndarray:
    states = np.array(list(itertools.product((0, 1), repeat=size * size)), dtype)
    return states.reshape(-1, size, size, 1)


def log_p(model: keras.Model, x: np.ndarray) -> np.ndarray:
    out = np.concatenate([np.asarray(model(x[i : i + 8192])) for i in range(0, len(x), 8192)])
    assert out.shape == (len(x), 1)
    return out[:, 0].astype("float64")


# --------------------------------------------------------------------------------------------------------------------
# Validity


@pytest.mark.parametrize(("make_op", "logspace"), SUM_OPS)
@pytest.mark.parametrize("size", [2, 4])
def test_dgcspn_sums_to_one_over_all_binary_images(size, make_op, logspace):
    model = dgcspn(size, make_op(), logspace)
    randomize_accumulators(model, np.random.default_rng(size))
    assert model.layers[-4].output_scopes.all()  # the 'final' product's cells cover the whole image

    lp = log_p(model, all_images(size, "float32"))

    assert np.all(lp <= 1e-5)
    assert np.ptp(lp) > 1.0  # not a constant distribution
    np.testing.assert_allclose(np.exp(logsumexp(lp)), 1.0, rtol=0, atol=1e-5)


def test_dgcspn_with_increasing_dilations_sums_to_one_and_marginalizes(float64):
    model = dgcspn(4, sum_ops.SumOpGradBackprop(), True, arch="dilated")
    randomize_accumulators(model, np.random.default_rng(7))
    images = all_images(4, "float64")

    lp = log_p(model, images)

    np.testing.assert_allclose(np.exp(logsumexp(lp)), 1.0, rtol=0, atol=1e-10)
    # Marginalizing pixel (1, 2) (NaN) equals summing it out; marginalizing every pixel gives log 1.
    rows = images[images[:, 1, 2, 0] == 0].copy()
    rows[:, 1, 2, 0] = np.nan
    expected = logsumexp(lp.reshape((2,) * 16), axis=1 * 4 + 2).reshape(-1)
    np.testing.assert_allclose(log_p(model, rows), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(log_p(model, np.full((2, 4, 4, 1), np.nan)), 0.0, atol=1e-10)


@pytest.mark.parametrize("size", [2, 4])
def test_marginalizing_pixels_equals_summing_them_out(size, float64):
    model = dgcspn(size, sum_ops.SumOpHardEMBackprop(), False)
    randomize_accumulators(model, np.random.default_rng(8))
    images = all_images(size, "float64")
    lp = log_p(model, images).reshape((2,) * size**2)

    pixels = [(0, 1), (size - 1, 0)]
    rows = images.copy()
    for i, j in pixels:
        rows = rows[rows[:, i, j, 0] == 0]
        rows[:, i, j, 0] = np.nan
    expected = logsumexp(lp, axis=tuple(i * size + j for i, j in pixels)).reshape(-1)

    np.testing.assert_allclose(log_p(model, rows), expected, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------------------------------------
# EM signals through convolutions against a numpy top-down pass


def numpy_forward(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    """Outputs of every layer (log-space), computed by the loops of ``tests/spatial_reference.py``."""
    values = []
    h = x
    for layer in model.layers:
        if isinstance(layer, layers.IndicatorLeaf):
            h = ref.indicator_leaf(h, layer.num_components)
        elif isinstance(layer, layers.Conv2DProduct):
            indices = None if layer.depthwise else to_numpy(layer.kernel_indices)
            h = ref.conv2d_product(h, layer.kernel_size, layer.strides, layer.dilations, layer.padding, indices)
        elif isinstance(layer, layers.BaseSpatialSum):
            h = ref.spatial_sum(h, log_weights(layer))
        elif isinstance(layer, layers.SpatialToRegions):
            h = ref.spatial_to_regions(h)
        elif isinstance(layer, layers.DenseSum):
            h = logsumexp(h[..., :, None] + log_weights(layer)[0, 0], axis=-2)
        elif isinstance(layer, layers.RootSum):
            h = logsumexp(h[:, 0, 0, :, None] + log_weights(layer)[0, 0], axis=-2)  # accumulators [1, 1, in, 1]
        values.append(h)
    return values


def log_weights(layer: layers.BaseSum) -> np.ndarray:
    return ref.normalized_log_weights(to_numpy(layer.accumulators).astype("float64"), layer.logspace_accumulators)


def select(children: np.ndarray, log_w: np.ndarray, sums: np.ndarray, rule: str) -> np.ndarray:
    """Share of each sum's count that goes to each child: ``[..., num_in, num_out]``."""
    if rule == "soft":  # posterior w_io p_i / p_o
        return np.exp(children[..., :, None] + log_w - sums[..., None, :])
    scores = children[..., :, None] + (log_w if rule == "hard" else 0.0 * log_w)
    winners = np.argmax(scores, axis=-2)  # first index on ties
    return (np.arange(scores.shape[-2])[:, None] == winners[..., None, :]).astype("float64")


def top_down_counts(model: keras.Model, x: np.ndarray, rule: str) -> dict[str, np.ndarray]:
    """Edge counts of every sum layer: each root has count 1; sums split their count (``select``), products pass
    it to each child cell (padding cells take nothing)."""
    values = numpy_forward(model, x)
    inputs = [None, *values[:-1]]
    edge_counts: dict[str, np.ndarray] = {}
    counts = np.ones_like(values[-1])
    for index in range(len(model.layers) - 1, 0, -1):
        layer, below, out = model.layers[index], inputs[index], values[index]
        if isinstance(layer, layers.RootSum):
            share = select(below[:, 0, 0], log_weights(layer)[0, 0], out, rule)  # [batch, in, 1]
            edge = share * counts[:, None, :]
            edge_counts[layer.name] = edge.sum(axis=0)[np.newaxis, np.newaxis]  # accumulators [1, 1, in, 1]
            counts = edge.sum(axis=-1)[:, None, None, :]
        elif isinstance(layer, layers.DenseSum):
            share = select(below, log_weights(layer)[0, 0], out, rule)  # [batch, 1, 1, in, out]
            edge = share * counts[..., None, :]
            edge_counts[layer.name] = edge.sum(axis=0)
            counts = edge.sum(axis=-1)
        elif isinstance(layer, layers.SpatialToRegions):
            counts = counts[:, 0, 0].reshape(below.shape)
        elif isinstance(layer, layers.BaseSpatialSum):
            lw = log_weights(layer)
            shared = isinstance(layer, layers.Conv2DSum)  # one [1, 1, in, out] kernel for every cell
            batch, height, width, _ = below.shape
            edge = np.zeros((batch, height, width, *lw.shape[-2:]))
            for i, j in itertools.product(range(height), range(width)):
                w = lw[0, 0] if shared else lw[i, j]
                edge[:, i, j] = select(below[:, i, j], w, out[:, i, j], rule) * counts[:, i, j, None, :]
            edge_counts[layer.name] = edge.sum(axis=(0, 1, 2))[np.newaxis, np.newaxis] if shared else edge.sum(axis=0)
            counts = edge.sum(axis=-1)
        elif isinstance(layer, layers.Conv2DProduct):
            counts = product_counts_down(layer, counts, below.shape)
    return edge_counts


def product_counts_down(layer: layers.Conv2DProduct, counts: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    (top, _), (left, _) = (
        ref.conv_pads(shape[1], layer.kernel_size[0], layer.dilations[0], layer.padding),
        ref.conv_pads(shape[2], layer.kernel_size[1], layer.dilations[1], layer.padding),
    )
    child_counts = np.zeros(shape)
    _, out_h, out_w, num_out = counts.shape
    for i, j, o in itertools.product(range(out_h), range(out_w), range(num_out)):
        for u, v in itertools.product(range(layer.kernel_size[0]), range(layer.kernel_size[1])):
            row = i * layer.strides[0] + u * layer.dilations[0] - top
            col = j * layer.strides[1] + v * layer.dilations[1] - left
            if 0 <= row < shape[1] and 0 <= col < shape[2]:
                channel = o if layer.depthwise else to_numpy(layer.kernel_indices)[u, v, o]
                child_counts[:, row, col, channel] += counts[:, i, j, o]
    return child_counts


def tf_edge_counts(model: keras.Model, x: np.ndarray, jit: bool = False) -> dict[str, np.ndarray]:
    sums = [layer for layer in model.layers if isinstance(layer, layers.BaseSum)]

    def counts(inputs):
        return grad(model, inputs, variables=[layer.accumulators for layer in sums])[1:]

    grads = backend_utils.jit(counts)(tensor(x)) if jit else counts(x)
    return {layer.name: to_numpy(grad) for layer, grad in zip(sums, grads, strict=True)}


def em_signal_inputs(size: int) -> np.ndarray:
    """All 2x2 images (a spread of 4x4 ones) and a few with missing pixels, which make many children tie."""
    x = all_images(size, "float64")
    x = np.concatenate([x, x[:3]]) if size == 2 else np.concatenate([x[::1499], x[:3]])
    x[-3:, 0, 1, 0] = np.nan
    x[-1, 1, 1, 0] = np.nan
    return x


@pytest.mark.parametrize(
    ("op", "rule"),
    [
        (sum_ops.SumOpHardEMBackprop(), "hard"),
        (sum_ops.SumOpUnweightedHardEMBackprop(), "unweighted"),
        (sum_ops.SumOpEMBackprop(), "soft"),
    ],
    ids=["hard_em", "unweighted_hard_em", "soft_em"],
)
@pytest.mark.parametrize("size", [2, 4])
def test_em_signals_through_convolutions_match_top_down_pass(size, op, rule, float64):
    model = dgcspn(size, op, False)
    randomize_accumulators(model, np.random.default_rng(9))
    x = em_signal_inputs(size)

    actual = tf_edge_counts(model, x)
    expected = top_down_counts(model, x, rule)

    assert set(actual) == set(expected) and len(actual) == 4
    for name, counts in expected.items():
        assert actual[name].shape == counts.shape, name
        if rule == "soft":
            np.testing.assert_allclose(actual[name], counts, rtol=1e-9, atol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(actual[name], counts, err_msg=name)
    top_sums = (layers.RootSum, layers.DenseSum, layers.Conv2DSum) if size == 2 else (layers.RootSum, layers.DenseSum)
    for layer in model.layers:  # a single node of these layers in each induced tree
        if isinstance(layer, top_sums):
            assert actual[layer.name].sum() == pytest.approx(len(x), rel=1e-9)


def test_hard_em_counts_are_the_same_under_xla(float64):
    model = dgcspn(2, sum_ops.SumOpHardEMBackprop(), False)
    randomize_accumulators(model, np.random.default_rng(10))
    x = em_signal_inputs(2)
    eager, compiled = tf_edge_counts(model, x), tf_edge_counts(model, x, jit=True)
    expected = top_down_counts(model, x, "hard")
    for name, counts in expected.items():
        np.testing.assert_array_equal(eager[name], counts)
        np.testing.assert_array_equal(compiled[name], counts)


# --------------------------------------------------------------------------------------------------------------------
# The README model (seeds/001): summary numbers


README_ROWS = [
    ("NormalLeaf", (None, 28, 28, 16), 25088),
    ("Conv2DProduct", (None, 14, 14, 16), 4),
    ("Local2DSum", (None, 14, 14, 16), 50176),
    ("Conv2DProduct", (None, 7, 7, 16), 4),
    ("Local2DSum", (None, 7, 7, 32), 25088),
    ("Conv2DProduct", (None, 8, 8, 32), 4),
    ("Local2DSum", (None, 8, 8, 32), 65536),
    ("Conv2DProduct", (None, 10, 10, 32), 4),
    ("Local2DSum", (None, 10, 10, 64), 204800),
    ("Conv2DProduct", (None, 14, 14, 64), 4),
    ("Local2DSum", (None, 14, 14, 64), 802816),
    ("Conv2DProduct", (None, 8, 8, 64), 4),
    ("SpatialToRegions", (None, 1, 1, 4096), 0),
    ("DenseSum", (None, 1, 1, 10), 40960),
    ("RootSum", (None, 10), 10),
]


def readme_model() -> keras.Sequential:
    """The README's DGC-SPN, verbatim apart from the imports."""
    sum_kwargs = dict(
        accumulator_initializer=keras.initializers.TruncatedNormal(stddev=0.5, mean=1.0), logspace_accumulators=True
    )
    return keras.Sequential(
        [
            layers.NormalLeaf(
                input_shape=(28, 28, 1),
                num_components=16,
                location_trainable=True,
                location_initializer=keras.initializers.TruncatedNormal(stddev=1.0, mean=0.0),
            ),
            # Non-overlapping products
            layers.Conv2DProduct(depthwise=True, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
            layers.Local2DSum(num_sums=16, **sum_kwargs),
            # Non-overlapping products
            layers.Conv2DProduct(depthwise=True, strides=[2, 2], dilations=[1, 1], kernel_size=[2, 2], padding="valid"),
            layers.Local2DSum(num_sums=32, **sum_kwargs),
            # Overlapping products, starting at dilations [1, 1]
            layers.Conv2DProduct(depthwise=True, strides=[1, 1], dilations=[1, 1], kernel_size=[2, 2], padding="full"),
            layers.Local2DSum(num_sums=32, **sum_kwargs),
            # Overlapping products, with dilations [2, 2] and full padding
            layers.Conv2DProduct(depthwise=True, strides=[1, 1], dilations=[2, 2], kernel_size=[2, 2], padding="full"),
            layers.Local2DSum(num_sums=64, **sum_kwargs),
            # Overlapping products, with dilations [4, 4] and full padding
            layers.Conv2DProduct(depthwise=True, strides=[1, 1], dilations=[4, 4], kernel_size=[2, 2], padding="full"),
            layers.Local2DSum(num_sums=64, **sum_kwargs),
            # Overlapping products, with dilations [8, 8] and 'final' padding to combine all scopes
            layers.Conv2DProduct(depthwise=True, strides=[1, 1], dilations=[8, 8], kernel_size=[2, 2], padding="final"),
            layers.SpatialToRegions(),
            # Class roots
            layers.DenseSum(num_sums=10, **sum_kwargs),
            layers.RootSum(
                return_weighted_child_logits=True,
                logspace_accumulators=True,
                accumulator_initializer=keras.initializers.TruncatedNormal(stddev=0.0, mean=1.0),
            ),
        ]
    )


def summary_rows(text: str) -> list[list[str]]:
    """Cells of the rows of a Keras summary table, joining the lines of wrapped rows."""
    rows, current = [], None
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            current = cells if current is None else [f"{a} {b}".strip() for a, b in zip(current, cells, strict=True)]
        elif current is not None:
            rows.append(current)
            current = None
    return rows


def literal_shape(text: str) -> tuple[int | None, ...]:
    return tuple(None if d == "None" else int(d) for d in text.strip("()").split(","))


def test_readme_model_summary_matches_the_seed():
    model = readme_model()
    lines: list[str] = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    text = "\n".join(lines)

    assert model.count_params() == 1_214_498
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert (trainable, non_trainable) == (1_201_930, 12_568)
    assert re.search(r"Total params: 1,214,498\b", text)
    assert re.search(r"Trainable params: 1,201,930\b", text)
    assert re.search(r"Non-trainable params: 12,568\b", text)

    computed = [(type(layer).__name__, tuple(layer.output.shape), layer.count_params()) for layer in model.layers]
    assert computed == README_ROWS
    # The printed table has the same rows: "name (Class) | (None, ...) | params", possibly wrapped over lines.
    parsed = [
        (re.search(r"\((\w+)\)$", name).group(1), literal_shape(shape), int(params.replace(",", "")))
        for name, shape, params in summary_rows(text)
    ]
    assert parsed == README_ROWS

    out = model(np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype("float32"))
    assert out.shape == (2, 10) and np.all(np.isfinite(out))
    assert model.layers[-4].output_scopes.all()


# --------------------------------------------------------------------------------------------------------------------
# Saving and training


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(11)
    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(4, 4, 1)),
            layers.NormalLeaf(num_components=3),
            layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, num_channels=9),  # random, unseeded
            layers.Local2DSum(num_sums=3, sum_op=sum_ops.SumOpHardEMBackprop(sample_prob=0.5)),
            layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),
            layers.Conv2DSum(num_sums=2, logspace_accumulators=True),
            layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="final", num_channels=3),
            layers.SpatialToRegions(),
            layers.DenseSum(num_sums=2, sum_op=sum_ops.SumOpEMBackprop()),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )
    randomize_accumulators(model, rng)
    x = rng.normal(size=(5, 4, 4, 1)).astype("float32")
    x[0, 1, 1, 0] = np.nan
    expected = np.asarray(model(x))

    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")

    assert type(loaded) is models.SequentialSumProductNetwork
    np.testing.assert_array_equal(np.asarray(loaded(x)), expected)
    for before, after in zip(model.layers, loaded.layers, strict=True):
        assert type(before) is type(after)
        for w_before, w_after in zip(before.weights, after.weights, strict=True):
            np.testing.assert_array_equal(to_numpy(w_before), to_numpy(w_after))
        if isinstance(before, layers.BaseSum):
            assert after.sum_op == before.sum_op
    products = [layer for layer in loaded.layers if isinstance(layer, layers.Conv2DProduct) and not layer.depthwise]
    kernel_indices = [to_numpy(layer.kernel_indices) for layer in products]
    assert len(kernel_indices) == 2 and kernel_indices[0].shape == (2, 2, 9)


@pytest.mark.parametrize(("make_op", "logspace"), SUM_OPS)
def test_training_a_few_steps_stays_finite(make_op, logspace):
    op = make_op()
    em = not isinstance(op, sum_ops.SumOpGradBackprop)
    sums = {"sum_op": op, "logspace_accumulators": logspace}
    model = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(8, 8, 1)),
            layers.NormalLeaf(num_components=4, use_accumulators=em),
            layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, depthwise=True),  # [4, 4, 4]
            layers.Local2DSum(num_sums=4, **sums),
            layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", num_channels=8, seed=0),
            layers.Conv2DSum(num_sums=4, **sums),  # [5, 5, 4]
            layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="full", depthwise=True),
            layers.Local2DSum(num_sums=4, **sums),  # [7, 7, 4]
            layers.Conv2DProduct(strides=1, dilations=4, kernel_size=2, padding="final", depthwise=True),
            layers.SpatialToRegions(),
            layers.DenseSum(num_sums=2, **sums),
            layers.RootSum(return_weighted_child_logits=False, **sums),
        ]
    )
    optimizer = optimizers.OnlineExpectationMaximization(learning_rate=0.1) if em else keras.optimizers.Adam(0.05)
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    x = np.random.default_rng(12).normal(size=(48, 8, 8, 1)).astype("float32")

    history = model.fit(x, batch_size=16, epochs=1, verbose=0)

    assert np.all(np.isfinite(history.history["loss"]))
    for weight in model.weights:
        assert np.all(np.isfinite(to_numpy(weight))), weight.path
    for layer in model.layers:
        if isinstance(layer, layers.BaseSum) and not layer.logspace_accumulators:
            assert np.all(to_numpy(layer.accumulators) > 0)
    assert np.all(np.isfinite(np.asarray(model(x[:4]))))
