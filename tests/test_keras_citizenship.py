"""Keras citizenship: functional and sequential use, shapes, dtypes, tf.function / XLA and the training loop."""

import re

import keras
import numpy as np
import pytest

from libspn_keras import initializers, layers, losses, metrics, models
from tests.backend_utils import function, jit

RNG = np.random.default_rng(0)


def _region(shape=(3, 4, 2, 3)):
    return RNG.normal(size=shape).astype("float32")


def _adapted_standard_score():
    layer = layers.NormalizeStandardScore(sample_wise=False)
    layer.adapt(RNG.normal(2.0, 3.0, size=(20, 5)))
    return layer


# Every public layer: (factory, input with batch size 3, or a list of inputs).
LAYER_CASES = {
    "FlatToRegions": (lambda: layers.FlatToRegions(num_decomps=3), RNG.normal(size=(3, 5)).astype("float32")),
    "FlatToRegions-multivariate": (lambda: layers.FlatToRegions(num_decomps=2), _region((3, 5, 2))),
    "NormalLeaf": (lambda: layers.NormalLeaf(num_components=3), _region((3, 4, 2, 2))),
    "CauchyLeaf": (lambda: layers.CauchyLeaf(num_components=2), _region((3, 4, 2, 1))),
    "LaplaceLeaf": (lambda: layers.LaplaceLeaf(num_components=2), _region((3, 2, 2, 2, 1))),
    "IndicatorLeaf": (lambda: layers.IndicatorLeaf(num_components=3), RNG.integers(0, 3, (3, 4, 2, 1), "int32")),
    "IndicatorLeaf-float": (
        lambda: layers.IndicatorLeaf(num_components=2, dtype="float32"),
        np.array([[[[0.0]], [[np.nan]]], [[[1.0]], [[1.0]]], [[[0.0]], [[0.0]]]], "float32"),
    ),
    "PermuteAndPadScopes": (
        lambda: layers.PermuteAndPadScopes([[2, -1, 0, 1, 3, -1], [0, 1, -1, 2, -1, 3]]),
        _region(),
    ),
    "PermuteAndPadScopesRandom": (lambda: layers.PermuteAndPadScopesRandom(factors=[2, 4], seed=1), _region()),
    "DenseProduct": (lambda: layers.DenseProduct(num_factors=2), _region()),
    "DenseProduct-3": (lambda: layers.DenseProduct(num_factors=3), _region((3, 6, 1, 2))),
    "ReduceProduct": (lambda: layers.ReduceProduct(num_factors=4), _region()),
    "DenseSum": (lambda: layers.DenseSum(num_sums=2), _region()),
    "DenseSum-linear": (
        lambda: layers.DenseSum(
            num_sums=2, logspace_accumulators=False, accumulator_initializer=initializers.Dirichlet(seed=1)
        ),
        _region(),
    ),
    "RootSum": (lambda: layers.RootSum(), _region((3, 1, 1, 4))),
    "LatentTreeSum": (lambda: layers.LatentTreeSum(parents=[-1, 0, 1, 1, 0]), _region((3, 5, 1, 2))),
    "SumProductTree": (
        lambda: layers.SumProductTree(
            num_leaves=4, nodes=[("product", [0, 1]), ("product", [2, 3]), ("sum", [4, 5]), ("product", [1, 3])]
        ),
        _region((3, 4, 1, 1)),
    ),
    "SumProductTree-outputs": (
        lambda: layers.SumProductTree(
            num_leaves=4, nodes=[("product", [0, 1]), ("product", [2, 3])], outputs=[4, 5], sum_op=None
        ),
        _region((3, 4, 1, 1)),
    ),
    "GatherScopes": (lambda: layers.GatherScopes([2, 0, 2]), _region()),
    "RootSum-root": (lambda: layers.RootSum(return_weighted_child_logits=False), _region((3, 1, 1, 4))),
    "RootSum-flat": (lambda: layers.RootSum(return_weighted_child_logits=False), _region((3, 4))),
    "Conv2DProduct": (
        lambda: layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, depthwise=True),
        _region((3, 4, 4, 3)),
    ),
    "Conv2DProduct-full": (
        lambda: layers.Conv2DProduct(
            strides=1, dilations=[2, 1], kernel_size=2, num_channels=5, padding="full", seed=3
        ),
        _region((3, 4, 4, 2)),
    ),
    "Local2DSum": (lambda: layers.Local2DSum(num_sums=2), _region((3, 3, 3, 4))),
    "Conv2DSum": (lambda: layers.Conv2DSum(num_sums=3, logspace_accumulators=False), _region((3, 3, 3, 4))),
    "SpatialToRegions": (lambda: layers.SpatialToRegions(), _region((3, 2, 2, 3))),
    "TemporalDenseProduct": (lambda: layers.TemporalDenseProduct(), [_region((3, 4, 2, 2)), _region((3, 4, 2, 3))]),
    "Undecompose": (lambda: layers.Undecompose(), _region((3, 2, 4, 2))),
    "Undecompose-2": (lambda: layers.Undecompose(num_decomps=2), _region((3, 2, 4, 2))),
    "LogDropout": (lambda: layers.LogDropout(rate=0.3, seed=5, axis_at_least_one=-1), _region()),
    "NormalizeStandardScore": (lambda: layers.NormalizeStandardScore(), _region((3, 5))),
    "NormalizeStandardScore-adapted": (_adapted_standard_score, RNG.normal(size=(3, 5)).astype("float32")),
}
CASES = list(LAYER_CASES)


def _assert_close(actual, expected, rtol=1e-6):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=1e-6, equal_nan=True)


def _each(fn, x):
    """Apply ``fn`` to a layer input, or to each input of a multi-input layer."""
    return [fn(a) for a in x] if isinstance(x, list) else fn(x)


def _input_like(a):
    return keras.Input(shape=a.shape[1:], dtype=a.dtype.name)


@pytest.mark.parametrize("case", CASES)
def test_compute_output_shape_matches_call(case):
    make, x = LAYER_CASES[case]
    layer = make()
    out = layer(x)
    assert tuple(layer.compute_output_shape(_each(lambda a: a.shape, x))) == tuple(out.shape)
    unknown_batch = _each(lambda a: (None, *a.shape[1:]), x)
    assert tuple(layer.compute_output_shape(unknown_batch)) == (None, *out.shape[1:])


@pytest.mark.parametrize("case", CASES)
def test_layer_in_functional_and_sequential_models_with_unknown_batch(case):
    make, x = LAYER_CASES[case]
    x = _each(lambda a: np.concatenate([a, a, a]), x)  # predicted in batches of 4, 4 and 1
    inputs = _each(_input_like, x)
    layer = make()
    symbolic = layer(inputs)
    expected = np.asarray(layer(x))
    assert tuple(symbolic.shape) == (None, *expected.shape[1:])
    _assert_close(keras.Model(inputs, symbolic).predict(x, batch_size=4, verbose=0), expected)

    if isinstance(x, list):  # keras.Sequential takes single-input layers only
        return
    sequential = keras.Sequential([_input_like(x), make()])
    assert sequential.output_shape == (None, *expected.shape[1:])
    assert tuple(sequential(x).shape) == expected.shape


@pytest.mark.parametrize("case", CASES)
def test_layer_follows_floatx(case, floatx):
    make, x = LAYER_CASES[case]
    x = _each(lambda a: a.astype(floatx) if a.dtype.kind == "f" else a, x)
    layer = make()
    out = layer(x)
    assert out.dtype == floatx
    assert all(weight.dtype == floatx for weight in layer.weights if "float" in weight.dtype)  # no index weights
    assert np.isfinite(np.asarray(out)).any()


@pytest.mark.parametrize("case", CASES)
def test_layer_in_tf_function_and_under_xla(case):
    make, x = LAYER_CASES[case]
    layer = make()
    expected = layer(x)
    _assert_close(function(layer)(x), expected)
    _assert_close(jit(layer)(x), expected, rtol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_log_dropout_when_training_in_tf_function(jit_compile):
    layer = layers.LogDropout(rate=0.5, seed=3, axis_at_least_one=-1)
    x = _region((64, 2, 1, 3))
    out = np.asarray(function(lambda t: layer(t, training=True), jit_compile=jit_compile)(x))
    dropped = np.isneginf(out)
    np.testing.assert_array_equal(out[~dropped], x[~dropped])
    assert 0.2 < dropped.mean() < 0.5  # at least one of three survives per node group
    assert np.all((~dropped).any(axis=-1))


# --- Models --------------------------------------------------------------------------------------------------


def _rat_spn(num_vars=4, factors=(2, 2), num_sums=4, logits=False, unsupervised=None, dropout=False):
    """A RAT-SPN ``num_vars -> Normal(3) -> DenseProduct(f0) -> DenseSum -> ReduceProduct(f1) -> RootSum``."""
    spn_layers = [
        keras.Input(shape=(num_vars,)),
        layers.FlatToRegions(num_decomps=2),
        layers.NormalLeaf(num_components=3),
        layers.PermuteAndPadScopesRandom(seed=1),
        layers.DenseProduct(num_factors=factors[0]),
        layers.DenseSum(num_sums=num_sums),
        layers.ReduceProduct(num_factors=factors[1]),
        layers.Undecompose(),
        layers.RootSum(return_weighted_child_logits=logits),
    ]
    if dropout:
        spn_layers.insert(5, layers.LogDropout(rate=0.2, axis_at_least_one=-1))
    return models.SequentialSumProductNetwork(spn_layers, unsupervised=unsupervised)


def _functional_spn(num_vars=4):
    x_in = keras.Input(shape=(num_vars,))
    h = layers.FlatToRegions(num_decomps=2)(x_in)
    h = layers.NormalLeaf(num_components=3)(h)
    h = layers.PermuteAndPadScopesRandom(factors=[2, 2], seed=1)(h)
    h = layers.DenseProduct(num_factors=2)(h)
    h = layers.DenseSum(num_sums=4)(h)
    h = layers.ReduceProduct(num_factors=2)(h)
    h = layers.Undecompose()(h)
    return models.SumProductNetwork(x_in, layers.RootSum(return_weighted_child_logits=False)(h))


def _blobs(num=64, num_vars=4):
    """Two well separated Gaussian blobs and their labels."""
    y = np.arange(num) % 2
    x = RNG.normal(size=(num, num_vars)) + 3.0 * (2 * y[:, None] - 1)
    return x.astype("float32"), y.astype("int32")


def test_summary_shapes_and_parameter_counts_of_a_small_rat_spn():
    keras.backend.clear_session()  # unnumbered layer names keep the summary's name column narrow
    model = _rat_spn(num_vars=4, factors=(2, 2), num_sums=4)
    lines = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    summary = "\n".join(lines)
    # name: (output shape, parameters). 4 variables, 2 decompositions, 3 components, 4 sums.
    expected = {
        "flat_to_regions": ((None, 4, 2, 1), 0),
        "normal_leaf": ((None, 4, 2, 3), 2 * 4 * 2 * 3 * 1),  # location and scale [1, 4, 2, 3, 1]
        "permute_and_pad_scopes_random": ((None, 4, 2, 3), 2 * 4),  # int32 permutations [decomps, scopes]
        "dense_product": ((None, 2, 2, 9), 0),  # 3 ** 2 products of two scopes
        "dense_sum": ((None, 2, 2, 4), 2 * 2 * 9 * 4),  # accumulators [scopes, decomps, in, sums]
        "reduce_product": ((None, 1, 2, 4), 0),
        "undecompose": ((None, 1, 1, 8), 0),
        "root_sum": ((None, 1), 8),
    }
    for layer in model.layers:
        name = re.sub(r"_\d+$", "", layer.name)
        shape, params = expected[name]
        row = next(line for line in summary.splitlines() if re.match(rf"│ {layer.name}\b", line))
        assert str(shape) in row, row
        assert re.search(rf"\b{params}\b", row.split(str(shape))[1]), row
        assert tuple(layer.output.shape) == shape
        assert layer.count_params() == params
    assert model.count_params() == 24 + 24 + 8 + 144 + 8
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 24 + 144 + 8  # the scale is fixed
    assert re.search(r"Total params: 208\b", summary)
    assert re.search(r"Trainable params: 176\b", summary)
    assert re.search(r"Non-trainable params: 32\b", summary)  # the scale and the permutations
    assert model.output_shape == (None, 1)


def test_model_in_tf_function_and_with_evidence():
    model = _rat_spn()
    x = RNG.normal(size=(8, 4)).astype("float32")
    mask = RNG.uniform(size=(8, 4)) > 0.3
    _assert_close(function(model)(x), model(x))
    _assert_close(function(lambda a, m: model((a, m)))(x, mask), model((x, mask)))
    _assert_close(jit(model)(x), model(x), rtol=1e-5)


def test_jit_compiled_fit_and_predict_match_the_graph_path():
    x, _ = _blobs(32)
    reference, compiled = _rat_spn(), _rat_spn()
    compiled.set_weights(reference.get_weights())
    histories = []
    for model, jit_compile in ((reference, False), (compiled, True)):
        model.compile(
            optimizer=keras.optimizers.SGD(0.05), loss=losses.NegativeLogLikelihood(), jit_compile=jit_compile
        )
        histories.append(model.fit(x, epochs=2, batch_size=16, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    for w_ref, w_jit in zip(reference.get_weights(), compiled.get_weights(), strict=True):
        np.testing.assert_allclose(w_jit, w_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(compiled.predict(x, verbose=0), reference.predict(x, verbose=0), rtol=1e-5)


class _BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.train_batches = self.test_batches = self.predict_batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.train_batches += 1

    def on_test_batch_end(self, batch, logs=None):
        self.test_batches += 1

    def on_predict_batch_end(self, batch, logs=None):
        self.predict_batches += 1


@pytest.mark.requires_tensorflow  # tf.data pipelines
def test_fit_evaluate_predict_with_datasets_and_callbacks(tmp_path):
    import tensorflow as tf

    model = _rat_spn(dropout=True)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05), loss=losses.NegativeLogLikelihood(), metrics=[metrics.LogLikelihood()]
    )
    x, _ = _blobs(48)
    train = tf.data.Dataset.from_tensor_slices(x[:32]).batch(8)
    val = tf.data.Dataset.from_tensor_slices(x[32:]).batch(8)
    counter = _BatchCounter()
    callbacks = [
        counter,
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=5),
        keras.callbacks.ModelCheckpoint(tmp_path / "best.weights.h5", save_weights_only=True, monitor="loss"),
        keras.callbacks.TerminateOnNaN(),
    ]
    history = model.fit(train, validation_data=val, epochs=2, callbacks=callbacks, shuffle=False, verbose=0)
    assert set(history.history) == {"loss", "llh", "val_loss", "val_llh"}
    assert len(history.history["loss"]) == 2
    np.testing.assert_allclose(history.history["val_loss"], -np.array(history.history["val_llh"]), rtol=1e-6)
    assert counter.train_batches == 2 * 4 and counter.test_batches == 2 * 2
    assert (tmp_path / "best.weights.h5").exists()

    result = model.evaluate(val, return_dict=True, callbacks=[counter], verbose=0)
    predictions = model.predict(val, callbacks=[counter], verbose=0)
    assert counter.predict_batches == 2
    np.testing.assert_allclose(predictions, model.predict(x[32:], verbose=0), rtol=1e-6)
    np.testing.assert_allclose(result["loss"], -predictions.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["llh"], predictions.mean(), rtol=1e-5)


@pytest.mark.parametrize("make", [_rat_spn, _functional_spn], ids=["sequential", "functional"])
def test_unsupervised_fit_without_labels(make):
    model = make()
    model.compile(
        optimizer=keras.optimizers.Adam(0.05), loss=losses.NegativeLogLikelihood(), metrics=[metrics.LogLikelihood()]
    )
    x, _ = _blobs(64)
    history = model.fit(x, epochs=3, batch_size=32, verbose=0).history
    np.testing.assert_allclose(history["loss"], -np.array(history["llh"]), rtol=1e-6)
    assert history["loss"][-1] < history["loss"][0]
    result = model.evaluate(x, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], -model.predict(x, verbose=0).mean(), rtol=1e-5)


def test_supervised_discriminative_fit():
    model = _rat_spn(num_sums=1, logits=True, unsupervised=False)  # two decompositions: two class sub-SPNs
    assert model.output_shape == (None, 2)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = _blobs(64)
    order = np.random.default_rng(0).permutation(len(x))  # shuffled (once) in place of a shuffling pipeline
    history = model.fit(x[order], y[order], batch_size=16, epochs=3, shuffle=False, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert result["accuracy"] >= 0.9
    logits = model.predict(x, verbose=0)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    np.testing.assert_allclose(result["loss"], float(expected), rtol=1e-5)


def test_negative_log_joint_with_log_joint_metric():
    model = _rat_spn(num_sums=1, logits=True, unsupervised=False)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.NegativeLogJoint(), metrics=[metrics.LogJoint()])
    x, y = _blobs(64)
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    np.testing.assert_allclose(history["loss"], -np.array(history["log_joint"]), rtol=1e-6)
    assert history["loss"][-1] < history["loss"][0]
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    joint = model.predict(x, verbose=0)[np.arange(len(y)), y]
    np.testing.assert_allclose(result["log_joint"], joint.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["loss"], -joint.mean(), rtol=1e-5)


def test_fit_in_float64(float64):
    model = _rat_spn(dropout=True)
    model.compile(optimizer="adam", loss=losses.NegativeLogLikelihood())
    x, _ = _blobs(16)
    history = model.fit(x.astype("float64"), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    # Every weight but the scope permutations (int32, as in the original) follows floatx.
    assert [weight.dtype for weight in model.weights if weight.name == "permutations"] == ["int32"]
    assert all(weight.dtype == "float64" for weight in model.weights if weight.name != "permutations")
    assert model.predict(x, verbose=0).dtype == np.float64
