"""Serialization: ``from_config(get_config())``, Keras object serialization and ``.keras`` save/load."""

import enum
import inspect
import json

import keras
import numpy as np
import pytest

import libspn_keras as spnk
from libspn_keras import constraints, initializers, layers, losses, metrics, models, sum_ops

RNG = np.random.default_rng(0)


def _json(config):
    """Normalize a config the way a ``.keras`` file stores it (tuples become lists)."""
    return json.loads(json.dumps(config))


def _region(shape=(3, 4, 2, 3)):
    return RNG.normal(size=shape).astype("float32")


def _adapted_standard_score():
    layer = layers.NormalizeStandardScore(normalization_epsilon=1e-3, sample_wise=False)
    layer.adapt(RNG.normal(2.0, 3.0, size=(20, 5)))
    return layer


# Every public layer, with non-default arguments where the layer has any: (factory, input).
LAYER_CASES = {
    "FlatToRegions": (lambda: layers.FlatToRegions(num_decomps=3), RNG.normal(size=(3, 5)).astype("float32")),
    "NormalLeaf": (
        lambda: layers.NormalLeaf(
            num_components=3,
            location_initializer=initializers.Equidistant(-1.0, 1.0),
            location_trainable=False,
            scale_initializer=keras.initializers.Constant(0.7),
            scale_trainable=True,
            scale_constraint=constraints.Clip(0.1, 5.0),
        ),
        _region((3, 4, 2, 2)),
    ),
    "CauchyLeaf": (lambda: layers.CauchyLeaf(num_components=2), _region((3, 4, 2, 1))),
    "LaplaceLeaf": (lambda: layers.LaplaceLeaf(num_components=2), _region((3, 4, 1, 2))),
    "IndicatorLeaf": (lambda: layers.IndicatorLeaf(num_components=3), RNG.integers(0, 3, (3, 4, 2, 1), "int32")),
    "IndicatorLeaf-float": (
        lambda: layers.IndicatorLeaf(num_components=2, dtype="float32"),
        np.array([[[[0.0]], [[np.nan]], [[1.0]]]], "float32"),
    ),
    "PermuteAndPadScopes": (
        lambda: layers.PermuteAndPadScopes([[2, -1, 0, 1, 3, -1], [0, 1, -1, 2, -1, 3]]),
        _region(),
    ),
    "PermuteAndPadScopesRandom": (lambda: layers.PermuteAndPadScopesRandom(factors=[2, 4]), _region()),
    "DenseProduct": (lambda: layers.DenseProduct(num_factors=2), _region()),
    "ReduceProduct": (lambda: layers.ReduceProduct(num_factors=4), _region()),
    "DenseSum": (lambda: layers.DenseSum(num_sums=2), _region()),
    "DenseSum-linear": (
        lambda: layers.DenseSum(
            num_sums=2,
            logspace_accumulators=False,
            accumulator_initializer=initializers.Dirichlet(alpha=0.5, seed=3),
            sum_op=sum_ops.SumOpGradBackprop(logspace_accumulators=False),
            accumulator_regularizer=keras.regularizers.L2(1e-3),
            logspace_accumulator_constraint=constraints.LogNormalized(),
            linear_accumulator_constraint=constraints.GreaterEqualEpsilon(1e-6),
        ),
        _region(),
    ),
    "RootSum": (lambda: layers.RootSum(), _region((3, 1, 1, 4))),
    "LatentTreeSum": (
        lambda: layers.LatentTreeSum(parents=[2, 2, -1, 1], sum_op=sum_ops.SumOpEMBackprop()),
        _region((3, 4, 1, 3)),
    ),
    "SumProductTree": (
        lambda: layers.SumProductTree(
            num_leaves=4,
            nodes=[("product", [0, 1]), ("product", [2, 3]), ("sum", [4, 5])],
            outputs=[6],
            sum_op=sum_ops.SumOpEMBackprop(),
        ),
        _region((3, 4, 1, 1)),
    ),
    "GatherScopes": (lambda: layers.GatherScopes([2, 0, 2]), _region()),
    "RootSum-root": (
        lambda: layers.RootSum(
            return_weighted_child_logits=False,
            logspace_accumulators=False,
            accumulator_initializer=initializers.EpsilonInverseFanIn(epsilon=1e-2),
        ),
        _region((3, 4)),
    ),
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
    "Conv2DSum": (
        lambda: layers.Conv2DSum(
            num_sums=3, logspace_accumulators=False, accumulator_initializer=initializers.Dirichlet(seed=1)
        ),
        _region((3, 3, 3, 4)),
    ),
    "SpatialToRegions": (lambda: layers.SpatialToRegions(), _region((3, 2, 2, 3))),
    "TemporalDenseProduct": (lambda: layers.TemporalDenseProduct(), [_region((3, 4, 2, 2)), _region((3, 4, 2, 3))]),
    "Undecompose": (lambda: layers.Undecompose(), _region((3, 2, 4, 2))),
    "Undecompose-2": (lambda: layers.Undecompose(num_decomps=2), _region((3, 2, 4, 2))),
    "LogDropout": (
        lambda: layers.LogDropout(rate=0.3, noise_shape=(None, 1, 1, 3), seed=5, axis_at_least_one=-1),
        _region(),
    ),
    "NormalizeStandardScore": (lambda: layers.NormalizeStandardScore(normalization_epsilon=1e-3), _region((3, 5))),
    "NormalizeStandardScore-adapted": (_adapted_standard_score, RNG.normal(size=(3, 5)).astype("float32")),
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_from_config_round_trips(case):
    make, x = LAYER_CASES[case]
    layer = make()
    expected = np.asarray(layer(x))
    config = layer.get_config()
    json.dumps(config)  # a .keras file stores the config as JSON

    clone = type(layer).from_config(config)
    assert _json(clone.get_config()) == _json(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(np.asarray(clone(x)), expected)
    assert _json(clone.get_config()) == _json(config)


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_keras_serialization_round_trips(case):
    make, x = LAYER_CASES[case]
    layer = make()
    layer(x)
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"libspn_keras>{type(layer).__name__}"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is type(layer)
    assert _json(restored.get_config()) == _json(layer.get_config())


W = RNG.normal(size=(3, 4, 2)).astype("float32")
LOGITS = np.log(RNG.uniform(0.1, 1.0, size=(5, 3))).astype("float32")
LABELS = np.array([0, 2, 1, 1, 0])

# Every public non-layer class, with a function that evaluates it (to compare the clone's behaviour) or None.
OBJECT_CASES = {
    "Clip": (constraints.Clip(0.1, 2.0), lambda c: c(W)),
    "Clip-no-max": (constraints.Clip(-0.5), lambda c: c(W)),
    "GreaterEqualEpsilon": (constraints.GreaterEqualEpsilon(1e-3), lambda c: c(W)),
    "GreaterEqualEpsilonNormalized": (constraints.GreaterEqualEpsilonNormalized(1e-3, axis=-1), lambda c: c(W)),
    "LogNormalized": (constraints.LogNormalized(axis=-1), lambda c: c(W)),
    "Dirichlet": (initializers.Dirichlet(axis=-1, alpha=0.5, seed=3), lambda i: i((3, 4, 2))),
    "EpsilonInverseFanIn": (initializers.EpsilonInverseFanIn(axis=-1, epsilon=1e-3), lambda i: i((3, 4))),
    "Equidistant": (initializers.Equidistant(-2.0, 3.0), lambda i: i((2, 5))),
    "LogspaceWrapperInitializer": (
        spnk.logspace_wrapper_initializer(initializers.Equidistant(1.0, 2.0)),
        lambda i: i((2, 3)),
    ),
    # The data is deliberately not serialized (the initial locations live in the leaf's weights).
    "PoonDomingosMeanOfQuantileSplit": (
        initializers.PoonDomingosMeanOfQuantileSplit(W[0], samplewise_normalization=False, normalization_epsilon=0.1),
        None,
    ),
    "PoonDomingosStddevOfQuantileSplit": (
        initializers.PoonDomingosStddevOfQuantileSplit(W[0], samplewise_normalization=False, normalization_epsilon=0.1),
        None,
    ),
    "KMeans": (
        initializers.KMeans(
            np.random.default_rng(4).normal(size=(20, 2, 3, 2)),
            data_fraction=0.5,
            max_num_clusters=2,
            downsample=2,
            use_groups=True,
            seed=4,
        ),
        None,
    ),
    "NegativeLogLikelihood": (losses.NegativeLogLikelihood(reduction="sum"), lambda f: f(None, LOGITS)),
    "NegativeLogJoint": (losses.NegativeLogJoint(name="nlj"), lambda f: f(LABELS, LOGITS)),
    "LogLikelihood": (metrics.LogLikelihood(name="ll"), lambda m: (m.update_state(None, LOGITS), m.result())[1]),
    "LogJoint": (metrics.LogJoint(dtype="float64"), lambda m: (m.update_state(LABELS, LOGITS), m.result())[1]),
    "SumOpGradBackprop": (
        sum_ops.SumOpGradBackprop(logspace_accumulators=False),
        lambda op: op.weighted_sum(LOGITS, np.abs(W[0, :3]), logspace_accumulators=False),
    ),
}


@pytest.mark.parametrize("case", list(OBJECT_CASES))
def test_object_from_config_round_trips(case):
    obj, evaluate = OBJECT_CASES[case]
    config = obj.get_config()
    json.dumps(config)
    clone = type(obj).from_config(config)
    assert clone.get_config() == config
    if evaluate is not None:
        np.testing.assert_allclose(np.asarray(evaluate(clone)), np.asarray(evaluate(obj)), rtol=1e-6)


@pytest.mark.parametrize("case", list(OBJECT_CASES))
def test_object_keras_serialization_round_trips(case):
    obj, _ = OBJECT_CASES[case]
    serialized = keras.saving.serialize_keras_object(obj)
    assert serialized["registered_name"] == f"libspn_keras>{type(obj).__name__}"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config()


def _public_classes(module):
    """Public Keras classes by name; aliases (e.g. ``LocationScaleLeafBase``) and enums are not serialized."""
    classes = {name: getattr(module, name) for name in module.__all__ if inspect.isclass(getattr(module, name))}
    return {name: cls for name, cls in classes.items() if cls.__name__ == name and not issubclass(cls, enum.Enum)}


@pytest.mark.parametrize("module", [layers, constraints, initializers, losses, metrics, models, sum_ops])
def test_every_public_class_is_registered(module):
    for name, cls in _public_classes(module).items():
        if name.startswith("Base") or inspect.isabstract(cls):  # abstract bases are not serialized alone
            continue
        assert keras.saving.get_registered_object(f"libspn_keras>{name}") is cls, name


@pytest.mark.parametrize("module", [layers, constraints, initializers, losses, metrics])
def test_every_public_class_has_a_round_trip_case(module):
    covered = {case.split("-")[0] for case in (*LAYER_CASES, *OBJECT_CASES)}
    missing = {name for name in _public_classes(module) if not name.startswith("Base")} - covered
    assert not missing, f"add serialization cases for {sorted(missing)}"


# --- Models --------------------------------------------------------------------------------------------------


def _perturb_weights(model):
    """Move every float weight away from its initial value (multiplicatively, so positive weights stay positive).

    Integer weights (the scope permutations of ``PermuteAndPadScopesRandom``) are structure and stay as they are.
    """
    model.set_weights(
        [
            w * RNG.uniform(0.5, 1.5, size=w.shape).astype(w.dtype) if w.dtype.kind == "f" else w
            for w in model.get_weights()
        ]
    )


def _normal_rat_spn(unsupervised=None):
    return models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=2, input_shape=(6,)),
            layers.NormalLeaf(
                num_components=3, location_initializer=initializers.Equidistant(-2.0, 2.0), scale_trainable=True
            ),
            layers.PermuteAndPadScopesRandom(),  # unseeded: the permutations must be saved
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(
                num_sums=2,
                sum_op=sum_ops.SumOpGradBackprop(logspace_accumulators=False),
                accumulator_initializer=initializers.Dirichlet(alpha=1.0, seed=2),
                linear_accumulator_constraint=constraints.GreaterEqualEpsilon(1e-5),
            ),
            layers.LogDropout(rate=0.1, axis_at_least_one=-1),
            layers.ReduceProduct(num_factors=4),
            layers.Undecompose(),
            layers.RootSum(
                return_weighted_child_logits=False,
                accumulator_initializer=keras.initializers.RandomUniform(0.5, 1.5, seed=1),
            ),
        ],
        unsupervised=unsupervised,
    )


def _indicator_rat_spn():
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(6,), dtype="int32"),
            layers.FlatToRegions(num_decomps=2),
            layers.IndicatorLeaf(num_components=3),
            layers.PermuteAndPadScopesRandom(seed=7),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3, logspace_accumulators=False),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2),
            layers.ReduceProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=True),
        ],
        unsupervised=False,
    )


def _functional_spn(unsupervised):
    x_in = keras.Input(shape=(4, 2))
    h = layers.FlatToRegions(num_decomps=2)(x_in)
    h = layers.CauchyLeaf(num_components=2)(h)
    h = layers.PermuteAndPadScopes([[3, 1, 0, 2], [2, 0, 3, 1]])(h)
    h = layers.DenseProduct(num_factors=2)(h)
    h = layers.DenseSum(num_sums=3, accumulator_initializer=keras.initializers.RandomUniform(0.5, 2.0))(h)
    h = layers.ReduceProduct(num_factors=2)(h)
    h = layers.Undecompose()(h)
    out = layers.RootSum(return_weighted_child_logits=not unsupervised)(h)
    return models.SumProductNetwork(x_in, out, unsupervised=unsupervised)


def _save_and_load(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    return keras.models.load_model(path)


def _assert_same_model(model, loaded, x):
    assert type(loaded) is type(model)
    assert loaded.unsupervised == model.unsupervised
    assert _json(loaded.get_config()) == _json(model.get_config())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for original, restored in zip(model.layers, loaded.layers, strict=True):
        assert type(restored) is type(original)
        if isinstance(original, layers.BasePermuteAndPadScopes):
            np.testing.assert_array_equal(restored.permutations, original.permutations)
        if isinstance(original, layers.BaseSum):
            assert restored.sum_op == original.sum_op
            assert restored.logspace_accumulators == original.logspace_accumulators


@pytest.mark.parametrize("unsupervised", [None, False])
def test_sequential_rat_spn_save_and_load(tmp_path, unsupervised):
    model = _normal_rat_spn(unsupervised)
    _perturb_weights(model)
    x = RNG.normal(size=(16, 6)).astype("float32")
    y = None if model.unsupervised else np.zeros((16, 1), "float32")
    model.compile(optimizer="adam", loss=losses.NegativeLogLikelihood(), metrics=[metrics.LogLikelihood()])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)

    loaded = _save_and_load(model, tmp_path)
    _assert_same_model(model, loaded, x)
    assert int(loaded.optimizer.iterations) == 1
    assert loaded.unsupervised is (unsupervised is None)
    dense_sum = loaded.layers[4]
    assert dense_sum.logspace_accumulators is False
    assert dense_sum.linear_accumulator_constraint.epsilon == 1e-5
    assert isinstance(dense_sum.accumulator_initializer, initializers.Dirichlet)
    # The compiled loss and metric are restored too.
    np.testing.assert_allclose(
        loaded.evaluate(x, y, verbose=0, return_dict=True)["llh"],
        model.evaluate(x, y, verbose=0, return_dict=True)["llh"],
        rtol=1e-6,
    )


def test_indicator_rat_spn_save_and_load(tmp_path):
    model = _indicator_rat_spn()
    _perturb_weights(model)
    loaded = _save_and_load(model, tmp_path)
    _assert_same_model(model, loaded, RNG.integers(0, 3, size=(8, 6)).astype("int32"))
    assert loaded.layers[1].indicator_input_dtype == "int32"


@pytest.mark.parametrize("unsupervised", [True, False])
def test_functional_spn_save_and_load(tmp_path, unsupervised):
    model = _functional_spn(unsupervised)
    _perturb_weights(model)
    loaded = _save_and_load(model, tmp_path)
    _assert_same_model(model, loaded, RNG.normal(size=(8, 4, 2)).astype("float32"))


@pytest.fixture
def restore_defaults():
    """Yield a function that restores the global defaults; it also runs after the test."""
    saved = (
        spnk.get_default_sum_op(),
        spnk.get_default_accumulator_initializer(),
        spnk.get_default_linear_accumulator_constraint(),
        spnk.get_default_logspace_accumulator_constraint(),
    )

    def restore():
        spnk.set_default_sum_op(saved[0])
        spnk.set_default_accumulator_initializer(saved[1])
        spnk.set_default_linear_accumulator_constraint(saved[2])
        spnk.set_default_logspace_accumulator_constraint(saved[3])

    yield restore
    restore()


def _change_defaults():
    spnk.set_default_sum_op(sum_ops.SumOpGradBackprop(logspace_accumulators=False))
    spnk.set_default_accumulator_initializer(keras.initializers.Constant(3.0))
    spnk.set_default_linear_accumulator_constraint(constraints.GreaterEqualEpsilon(0.5))


def _default_spn():
    """A small SPN whose sum layers take every global default."""
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(4,)),
            layers.FlatToRegions(num_decomps=2),
            layers.NormalLeaf(num_components=2),
            layers.PermuteAndPadScopesRandom(seed=3),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2),
            layers.ReduceProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )


@pytest.mark.parametrize("change_before", ["load", "save"])
def test_saved_model_does_not_depend_on_global_defaults(tmp_path, restore_defaults, change_before):
    if change_before == "save":
        _change_defaults()
    model = _default_spn()
    _perturb_weights(model)
    sums = [layer for layer in model.layers if isinstance(layer, layers.BaseSum)]
    assert all(layer.logspace_accumulators is (change_before == "load") for layer in sums)
    model.save(tmp_path / "m.keras")
    if change_before == "load":
        _change_defaults()
    else:
        restore_defaults()

    loaded = keras.models.load_model(tmp_path / "m.keras")
    _assert_same_model(model, loaded, RNG.normal(size=(8, 4)).astype("float32"))
    loaded_sums = [layer for layer in loaded.layers if isinstance(layer, layers.BaseSum)]
    for original, restored in zip(sums, loaded_sums, strict=True):
        assert _json(restored.get_config()) == _json(original.get_config())
        assert type(restored.accumulator_initializer) is type(original.accumulator_initializer)
        assert _json(keras.saving.serialize_keras_object(restored.linear_accumulator_constraint)) == _json(
            keras.saving.serialize_keras_object(original.linear_accumulator_constraint)
        )


def test_from_config_does_not_pick_up_a_new_default_logspace_constraint(restore_defaults):
    spnk.set_default_logspace_accumulator_constraint(None)  # the factory default is LogNormalized()
    layer = layers.DenseSum(num_sums=2)
    assert layer.logspace_accumulator_constraint is None
    config = layer.get_config()
    spnk.set_default_logspace_accumulator_constraint(constraints.LogNormalized())
    clone = layers.DenseSum.from_config(config)
    assert clone.logspace_accumulator_constraint is None
