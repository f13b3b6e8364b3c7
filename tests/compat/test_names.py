"""The original's names and signatures (issue 17, item 4) work as LibSPN Keras 0.6.0 documents them.

Each alias is checked to mean what the original's name meant, against NumPy computations written here.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import libspn_keras as spnk
from libspn_keras import initializers, layers, region
from libspn_keras.layers import NormalizeAxes
from tests.backend_utils import grad, tensor, to_numpy
from tests.layers.test_region_layers_values import MODES, SUM_OPS, run, tolerance

# ------------------------------------------------------------------------------------------------ config, top level


@pytest.mark.parametrize("space", ["linear", "logspace"])
def test_plural_config_functions_set_the_defaults_layers_read(space):
    singular_get = getattr(spnk, f"get_default_{space}_accumulator_constraint")
    plural_set = getattr(spnk, f"set_default_{space}_accumulators_constraint")
    plural_get = getattr(spnk, f"get_default_{space}_accumulators_constraint")
    before = singular_get()
    constraint = spnk.constraints.Clip(0.5, 2.0)
    try:
        plural_set(op=constraint)
        assert singular_get() is constraint and plural_get() is constraint
        layer = layers.DenseSum(num_sums=2, logspace_accumulators=space == "logspace")
        assert getattr(layer, f"{space}_accumulator_constraint") is constraint
        with pytest.raises(TypeError, match=f"set_default_{space}_accumulator_constraint expects .* Received: 3"):
            plural_set(3)
    finally:
        plural_set(before)
    assert plural_get() is before
    assert getattr(spnk.config, f"set_default_{space}_accumulators_constraint") is plural_set


def test_visualize_dense_spn_at_top_level():
    assert spnk.visualize_dense_spn is spnk.visualize.visualize_dense_spn
    x = [spnk.RegionVariable(i) for i in range(2)]
    spn = spnk.region_graph_to_dense_spn(spnk.RegionNode(x), layers.NormalLeaf(2), [], False)
    figure = spnk.visualize_dense_spn(spn, show_legend=True, show_padding=False, transparent=True, node_size=10)
    assert {trace.name for trace in figure.data} >= {"{X0, X1}", "{X0}", "{X1}"}


def test_logspace_wrapper_initializer_takes_initializer_by_keyword():
    init = spnk.logspace_wrapper_initializer(initializer=keras.initializers.Constant(np.exp(0.5)))
    np.testing.assert_allclose(np.asarray(init((2, 3))), np.full((2, 3), 0.5), rtol=1e-6)


# ----------------------------------------------------------------------------------------------------- region graphs


def test_regions_print_as_the_original():
    x0, x1, x2 = (spnk.RegionVariable(i) for i in range(3))
    assert [str(x) for x in (x0, x1, x2)] == ["x0", "x1", "x2"]
    assert str(spnk.RegionNode([spnk.RegionNode([x0, x1]), x2])) == "{{x0, x1}, x2}"
    assert str(spnk.RegionNode([x0, x1, x2])) == "{x0, x1, x2}"
    assert isinstance(x0, region.Region) and isinstance(spnk.RegionNode([x0]), region.Region)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: [x[0], x[0]], "Children x0 and x0 have overlapping scopes"),
        (lambda x: [x[0], spnk.RegionNode([x[0], x[1]])], "Children x0 and {x0, x1} have overlapping scopes"),
        (
            lambda x: [spnk.RegionNode([x[0], x[1]]), spnk.RegionNode([x[1], x[2]])],
            r"Children \{x0, x1\} and \{x1, x2\} have overlapping scopes",
        ),
    ],
)
def test_overlapping_scopes_exception(make, message):
    x = [spnk.RegionVariable(i) for i in range(3)]
    with pytest.raises(region.OverlappingScopesException, match=message):
        spnk.RegionNode(make(x))
    with pytest.raises(ValueError, match="pairwise disjoint"):  # still a ValueError
        spnk.RegionNode(make(x))


@pytest.mark.parametrize("positional", [False, True])
def test_region_graph_to_dense_spn_sum_op(positional):
    x = [spnk.RegionVariable(i) for i in range(4)]
    graph = spnk.RegionNode([spnk.RegionNode(x[:2]), spnk.RegionNode(x[2:])])
    op = spnk.SumOpHardEMBackprop()
    args = (graph, layers.IndicatorLeaf(2), [3], False, False, None, None, True, 2, True)
    spn = spnk.region_graph_to_dense_spn(*args, op) if positional else spnk.region_graph_to_dense_spn(*args, sum_op=op)
    sums = [layer for layer in spn.layers if isinstance(layer, layers.BaseSum)]
    assert [type(layer).__name__ for layer in sums] == ["DenseSum", "DenseSum", "RootSum"]
    assert all(layer.sum_op is op and not layer.logspace_accumulators for layer in sums)
    states = np.array(list(np.ndindex(2, 2, 2, 2)), "int32")
    np.testing.assert_allclose(np.exp(np.asarray(spn(states))).sum(), 1.0, rtol=1e-5)
    default = spnk.region_graph_to_dense_spn(*args)
    default_sums = [layer for layer in default.layers if isinstance(layer, layers.BaseSum)]
    assert all(type(layer.sum_op) is type(spnk.get_default_sum_op()) for layer in default_sums)


# -------------------------------------------------------------------------------------------------------- layers


def test_set_factors_is_generate_factors():
    layer = layers.PermuteAndPadScopesRandom(seed=3)
    layer.set_factors([2, 3])
    assert layer.factors == [2, 3]
    out = layer(np.zeros((1, 5, 2, 1), "float32"))
    assert out.shape == (1, 6, 2, 1)
    with pytest.raises(ValueError, match="factors to be a positive integer"):
        layer.set_factors([2, 0])


def test_location_scale_leaf_base_is_the_base_class():
    assert layers.LocationScaleLeafBase is layers.BaseLocationScaleLeaf
    assert all(issubclass(leaf, layers.LocationScaleLeafBase) for leaf in (layers.NormalLeaf, layers.CauchyLeaf))


def _log_weighted_conv(x, accumulators, logspace, normalize):
    """NumPy: log sum_c exp(x[..., c]) w[c, k], w the (normalized) accumulators."""
    weights = np.exp(accumulators) if logspace else accumulators
    if normalize:
        weights = weights / weights.sum(axis=0, keepdims=True)
    return np.log(np.einsum("bhwc,ck->bhwk", np.exp(x), weights))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("op", SUM_OPS, ids=lambda op: op.__name__)
def test_weighted_conv_values(op, normalize, mode, floatx):
    rng = np.random.default_rng(5)
    x = np.log(rng.uniform(0.05, 1.0, size=(2, 3, 4, 5))).astype(floatx)
    accumulators = rng.uniform(0.2, 2.0, size=(1, 1, 5, 3)).astype(floatx)
    for logspace in (True, False) if op.supports_logspace_accumulators else (False,):
        values = np.log(accumulators) if logspace else accumulators
        out = run(lambda x, a, lg=logspace: op().weighted_conv(x, a, lg, normalize), mode, x, values)
        expected = _log_weighted_conv(x.astype(np.float64), values[0, 0].astype(np.float64), logspace, normalize)
        assert out.dtype == floatx
        np.testing.assert_allclose(np.asarray(out), expected, **tolerance(floatx))


def test_weighted_conv_matches_conv2d_sum_and_gradient():
    rng = np.random.default_rng(6)
    x = np.log(rng.uniform(0.05, 1.0, size=(2, 3, 3, 4))).astype("float64")
    layer = layers.Conv2DSum(num_sums=2, logspace_accumulators=False, sum_op=spnk.SumOpGradBackprop(), dtype="float64")
    expected = layer(x)
    np.testing.assert_allclose(layer.sum_op.weighted_conv(x, layer.accumulators, False), expected, rtol=1e-12)
    # Unnormalized linear weights: d/dw[c, k] of sum over cells of log sum_c exp(x_c) w[c, k].
    accumulators = keras.Variable(rng.uniform(0.2, 2.0, size=(1, 1, 4, 2)), dtype="float64")
    (gradient,) = grad(
        lambda: spnk.SumOpGradBackprop().weighted_conv(x, accumulators, False, False), variables=[accumulators]
    )
    sums = np.einsum("bhwc,ck->bhwk", np.exp(x), to_numpy(accumulators)[0, 0])
    reference = np.einsum("bhwc,bhwk->ck", np.exp(x), 1.0 / sums)
    np.testing.assert_allclose(to_numpy(gradient)[0, 0], reference, rtol=1e-10)


# ---------------------------------------------------------------------------------------------- NormalizeStandardScore


def _dataset(data, batch_size=7):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size)


@pytest.mark.requires_tensorflow  # a tf.data pipeline
def test_normalize_axes_variable_wise_adapts_to_a_dataset(floatx):
    rng = np.random.default_rng(7)
    data = rng.normal(loc=np.arange(6).reshape(2, 3), scale=np.arange(1, 7).reshape(2, 3), size=(40, 2, 3))
    data[5, 1, 2] = np.nan
    eps = 1e-4
    layer = layers.NormalizeStandardScore(normalization_epsilon=eps, axes=NormalizeAxes.VARIABLE_WISE)
    layer.adapt(_dataset(data.astype("float32")))
    mean, std = np.nanmean(data.astype("float32"), axis=0), np.nanstd(data.astype("float32"), axis=0)
    np.testing.assert_allclose(to_numpy(layer.mean), mean, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.stddev), std, rtol=1e-5)
    x = rng.normal(size=(4, 2, 3)).astype(floatx)
    for mode in MODES:
        out = run(layer, mode, tensor(x))
        assert out.dtype == floatx
        np.testing.assert_allclose(np.asarray(out), (x - mean) / (std + eps), rtol=1e-5, atol=1e-5)


@pytest.mark.requires_tensorflow  # a tf.data pipeline
def test_normalize_axes_global_and_sample_wise_are_the_sample_wise_argument():
    rng = np.random.default_rng(8)
    data = rng.normal(2.0, 3.0, size=(30, 4)).astype("float32")
    x = rng.normal(size=(5, 4)).astype("float32")
    by_axes = layers.NormalizeStandardScore(axes=NormalizeAxes.GLOBAL)
    by_flag = layers.NormalizeStandardScore(sample_wise=False)
    by_axes.adapt(_dataset(data))
    by_flag.adapt(data)
    np.testing.assert_allclose(by_axes(x), by_flag(x), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(by_axes.mean), data.astype(np.float64).mean(), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(by_axes.stddev), data.astype(np.float64).std(), rtol=1e-5)
    sample_wise = layers.NormalizeStandardScore(axes="sample-wise")
    assert sample_wise.sample_wise and layers.NormalizeStandardScore().axes is NormalizeAxes.SAMPLE_WISE
    np.testing.assert_allclose(sample_wise(x), layers.NormalizeStandardScore()(x), rtol=1e-6)
    assert not by_axes.sample_wise and by_flag.axes is NormalizeAxes.GLOBAL


def test_normalize_axes_config_round_trip_and_save(tmp_path):
    rng = np.random.default_rng(9)
    data = rng.normal(size=(20, 3)).astype("float32")
    layer = layers.NormalizeStandardScore(normalization_epsilon=1e-3, axes=NormalizeAxes.VARIABLE_WISE)
    layer.adapt(data)
    config = layer.get_config()
    assert config["axes"] == "variable-wise" and config["sample_wise"] is False
    clone = layers.NormalizeStandardScore.from_config(config)
    assert clone.axes is NormalizeAxes.VARIABLE_WISE and clone.normalization_epsilon == 1e-3
    model = keras.Sequential([keras.Input((3,)), layer])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = rng.normal(size=(2, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert loaded.layers[0].mean.shape == (3,)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: layers.NormalizeStandardScore(axes="columns", name="n"), ValueError, "Layer 'n' expects axes .*'col"),
        (
            lambda: layers.NormalizeStandardScore(sample_wise=False, axes=NormalizeAxes.SAMPLE_WISE, name="n"),
            ValueError,
            "Layer 'n': axes=NormalizeAxes.SAMPLE_WISE contradicts sample_wise=False",
        ),
        (lambda: layers.NormalizeStandardScore(name="n").adapt(np.zeros((2, 2))), ValueError, "nothing to adapt"),
        (
            lambda: layers.NormalizeStandardScore(axes=NormalizeAxes.VARIABLE_WISE, name="n").adapt(
                np.array([[1.0, np.nan]])
            ),
            ValueError,
            "Layer 'n' cannot adapt to data without finite values",
        ),
    ],
)
def test_normalize_axes_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_variable_wise_statistics_must_match_the_input():
    layer = layers.NormalizeStandardScore(axes=NormalizeAxes.VARIABLE_WISE, name="n")
    layer.adapt(np.zeros((3, 4)) + np.arange(3)[:, None])
    with pytest.raises(ValueError, match=r"Layer 'n' has statistics of shape \(4,\); the data gives \(5,\)"):
        layer.adapt(np.ones((3, 5)))


# ------------------------------------------------------------------------------------------------- Poon & Domingos


def _quantiles(column, k, reduce):
    return np.array([reduce(chunk) for chunk in np.array_split(np.sort(column), k)])


@pytest.mark.requires_tensorflow  # a tf.data pipeline
@pytest.mark.parametrize("with_labels", [False, True])
def test_poon_domingos_accept_a_dataset(with_labels):
    import tensorflow as tf

    rng = np.random.default_rng(10)
    data = (rng.normal(size=(48, 3)) * [1.0, 2.0, 5.0]).astype("float32")  # 4 quantiles of 12 samples
    items = (data, np.zeros(48, "int32")) if with_labels else data
    dataset = tf.data.Dataset.from_tensor_slices(items).batch(10)  # batches of 10, 10, 10, 10, 8
    for cls, reduce in (
        (initializers.PoonDomingosMeanOfQuantileSplit, np.mean),
        (initializers.PoonDomingosStddevOfQuantileSplit, np.std),
    ):
        init = cls(dataset, samplewise_normalization=False)
        values = np.asarray(init((3, 2, 4, 1)))
        for var in range(3):
            expected = _quantiles(data[:, var].astype(np.float64), 4, reduce)
            for decomp in range(2):
                np.testing.assert_allclose(values[var, decomp, :, 0], expected, rtol=1e-5)
        from_array = cls(samplewise_normalization=False)
        from_array.adapt(data)
        np.testing.assert_allclose(np.asarray(from_array((3, 2, 4, 1))), values, rtol=1e-6)


@pytest.mark.requires_tensorflow  # a tf.data pipeline
def test_poon_domingos_initialize_a_leaf_and_round_trip():
    import tensorflow as tf

    rng = np.random.default_rng(11)
    data = rng.normal(3.0, 2.0, size=(60, 4))
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(16)
    location = initializers.PoonDomingosMeanOfQuantileSplit(dataset)
    scale = initializers.PoonDomingosStddevOfQuantileSplit(dataset)
    leaf = layers.NormalLeaf(num_components=3, location_initializer=location, scale_initializer=scale)
    leaf.build((None, 4, 1, 1))
    z = (data - data.mean(1, keepdims=True)) / (data.std(1, keepdims=True) + 1e-2)  # sample-wise, the default
    for var in range(4):
        np.testing.assert_allclose(
            to_numpy(leaf.location)[0, var, 0, :, 0], _quantiles(z[:, var], 3, np.mean), rtol=1e-5
        )
        np.testing.assert_allclose(to_numpy(leaf.scale)[0, var, 0, :, 0], _quantiles(z[:, var], 3, np.std), rtol=1e-5)
    config = keras.saving.serialize_keras_object(scale)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is initializers.PoonDomingosStddevOfQuantileSplit and clone.samplewise_normalization
    with pytest.raises(ValueError, match="PoonDomingosStddevOfQuantileSplit needs data"):
        clone((1, 4, 1, 3, 1))


# ------------------------------------------------------------------------ Keras 3: initializers of the wrong shape


@pytest.mark.parametrize("logspace", [False, True])
def test_wrong_shaped_constant_names_the_layer_and_both_shapes(logspace):
    children = np.zeros((2, 1, 1, 4), "float32")
    weights = np.array([0.25, 0.15, 0.35, 0.25])
    root = layers.RootSum(
        return_weighted_child_logits=False,
        logspace_accumulators=logspace,
        accumulator_initializer=keras.initializers.Constant(weights),  # broadcast to (1, 1, 4, 4) by Keras 3
        name="root",
    )
    with pytest.raises(
        ValueError, match=r"Layer 'root' expects accumulator_initializer .* shape \(1, 1, 4, 1\).*\(1, 1, 4, 4\)"
    ):
        root(children)
    dense = layers.DenseSum(
        num_sums=2, logspace_accumulators=logspace, accumulator_initializer=keras.initializers.Constant(weights)
    )
    with pytest.raises(ValueError, match=r"shape \(1, 1, 4, 2\).* Received: a value of shape \(4,\)"):
        dense(children)


def test_wrong_shaped_initializer_is_caught_when_fit_builds_the_model():
    spn = spnk.models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1),
            layers.IndicatorLeaf(num_components=2),
            layers.DenseProduct(num_factors=2),
            layers.RootSum(
                return_weighted_child_logits=False,
                accumulator_initializer=keras.initializers.Constant(np.ones(4)),
                name="root",
            ),
        ]
    )
    spn.compile(optimizer="adam", loss=spnk.losses.NegativeLogLikelihood())
    with pytest.raises(ValueError, match=r"Layer 'root' expects .* shape \(1, 1, 4, 1\)"):
        spn.fit(np.zeros((4, 2), "int32"), epochs=1, verbose=0)
    # The error comes before the weight exists: a weight whose (deferred) initialization failed would stay queued in
    # Keras and fail the next model's initialization in this process.
    fresh = layers.RootSum(return_weighted_child_logits=False, name="fresh")
    fresh.build((None, 1, 1, 4))
    with keras.StatelessScope():
        pass  # its exit initializes every deferred weight in the process
    assert to_numpy(fresh.accumulators).shape == (1, 1, 4, 1)


def test_exactly_shaped_constant_is_the_port(floatx):
    rng = np.random.default_rng(12)
    weights = np.array([0.25, 0.15, 0.35, 0.25])
    root = layers.RootSum(
        return_weighted_child_logits=False,
        logspace_accumulators=False,
        accumulator_initializer=keras.initializers.Constant(weights.reshape(1, 1, 4, 1)),
    )
    children = np.log(rng.uniform(0.1, 1.0, size=(3, 1, 1, 4))).astype(floatx)
    expected = np.log(np.exp(children.astype(np.float64)).reshape(3, 4) @ weights)[:, None]
    np.testing.assert_allclose(np.asarray(root(children)), expected, **tolerance(floatx))
