"""Adversarial cases of issue 18 (items 4, 5 and 7): each passed silently, gave a wrong value or an unclear crash.

Every test first reproduces the case as it was reported, then checks what must happen instead: a clear error that
names the layer or model, the expected and the received value, or the correct number (against scipy / numpy).
"""

import re

import keras
import numpy as np
import pytest
from scipy import stats

from libspn_keras import constraints, layers, losses, metrics, models
from tests.backend_utils import backend, eager_check_errors, function, graph_check_error, jit, tensor

# In graph mode TensorFlow quotes assertion messages, escaping the quotes around names.
Q = r"\\?'"


def indicator_spn(
    dtype: str = "int32", num_components: int = 2, class_logits: bool = False, **kwargs
) -> models.SequentialSumProductNetwork:
    """The DEBD example's layout: ``keras.Input(dtype=...)`` -> FlatToRegions -> IndicatorLeaf -> ... -> RootSum."""
    spn = models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(4,), dtype=dtype),
            layers.FlatToRegions(num_decomps=1),
            layers.IndicatorLeaf(num_components=num_components, dtype=dtype, name="ind"),
            layers.DenseSum(num_sums=2),
            layers.ReduceProduct(num_factors=4),
            layers.RootSum(return_weighted_child_logits=class_logits),
        ],
        name="spn",
        **kwargs,
    )
    spn.compile(optimizer="adam", loss=losses.NegativeLogJoint() if class_logits else losses.NegativeLogLikelihood())
    return spn


def first_line(error: pytest.ExceptionInfo) -> str:
    return str(error.value).splitlines()[0]


# --- Item 4: bad inputs that passed --------------------------------------------------------------------------------

DECLARED = rf"Model {Q}spn{Q} .*declares int32 inputs \(keras.Input\(dtype={Q}int32{Q}\)\).*the data holds"


@pytest.mark.parametrize(
    ("x", "match"),
    [
        # 0.5 was truncated to state 0, NaN became an arbitrary integer ("received a negative value"), and int64
        # 2**32 wrapped around to state 0.
        (np.array([[0.5, 0, 1, 0]], "float32"), rf"{DECLARED} fractions, which the cast would truncate"),
        (np.array([[np.nan, 0, 1, 0]], "float32"), rf"{DECLARED} NaN values \(missing values\).*dtype={Q}float32{Q}"),
        (np.array([[2**32, 0, 1, 0]], "int64"), rf"{DECLARED} values outside \[-2147483648, 2147483647\]"),
    ],
    ids=["fraction", "nan", "int64-wraps"],
)
@pytest.mark.parametrize(
    "entry", ["call", "predict", "fit", "evaluate", pytest.param("tf_function", marks=pytest.mark.requires_tensorflow)]
)
def test_int_declared_model_rejects_data_the_cast_would_change(x, match, entry):
    spn = indicator_spn()
    if entry == "call":
        with pytest.raises(ValueError, match=match):
            spn(x)
    elif entry == "tf_function":
        with pytest.raises(graph_check_error(), match=match):
            function(spn)(tensor(x))
    else:
        with pytest.raises(ValueError, match=match):
            getattr(spn, entry)(x, verbose=0)


@pytest.mark.parametrize(
    "graph", [False, pytest.param(True, marks=pytest.mark.requires_tensorflow)], ids=["eager", "tf_function"]
)
def test_int_declared_functional_model_rejects_data_the_cast_would_change(graph):
    x_in = keras.Input(shape=(4,), dtype="int32")
    h = layers.FlatToRegions(num_decomps=1)(x_in)
    h = layers.IndicatorLeaf(num_components=2)(h)
    h = layers.ReduceProduct(num_factors=4)(h)
    spn = models.SumProductNetwork(x_in, layers.RootSum(return_weighted_child_logits=False)(h), name="spn")
    x = np.array([[0.5, 0, 1, 0]], "float32")
    with pytest.raises(graph_check_error() if graph else ValueError, match=f"{DECLARED} fractions"):
        (function(spn) if graph else spn)(tensor(x))
    np.testing.assert_allclose(np.asarray(spn(x.round())), np.asarray(spn(x.round().astype("int32"))))


def test_int_declared_model_accepts_integral_floats_and_float_declared_model_marginalizes_nan():
    states = np.array([[0, 1, 1, 0], [1, 1, 0, 0]])
    spn = indicator_spn()
    expected = np.asarray(spn(states.astype("int32")))
    np.testing.assert_allclose(np.asarray(spn(states.astype("float32"))), expected)
    np.testing.assert_allclose(spn.predict(states.astype("int64"), verbose=0), expected)
    # Declared float: NaN is a missing value, marginalized; all missing gives log 1 = 0.
    spn_float = indicator_spn("float32")
    out = np.asarray(spn_float(np.array([[np.nan] * 4, [0, 1, np.nan, 0]], "float32")))
    np.testing.assert_allclose(out[0], 0.0, atol=1e-6)
    assert np.all(out[1] < 0)


JOINT = rf"Loss {Q}negative_log_joint{Q} \(NegativeLogJoint\) expects integer class labels in \[0, 3\); received"


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([-1, 0]), f"{JOINT} a negative value"),  # was read as the last class
        (np.array([1.7, 0.0]), f"{JOINT} a fraction"),  # was read as class 1
        (np.array([5, 0]), f"{JOINT} a larger value"),  # was a bare "segment_ids out of range"
        (np.array([np.nan, 0.0]), f"{JOINT} NaN"),
    ],
    ids=["negative", "fraction", "too-large", "nan"],
)
@pytest.mark.parametrize(
    "graph", [False, pytest.param(True, marks=pytest.mark.requires_tensorflow)], ids=["eager", "tf_function"]
)
def test_negative_log_joint_rejects_invalid_labels(labels, match, graph):
    loss = losses.NegativeLogJoint()
    call = function(loss) if graph else loss
    with pytest.raises(graph_check_error() if graph else eager_check_errors(), match=match):
        call(tensor(labels), keras.ops.log(keras.ops.full([2, 3], 1 / 3)))


def test_negative_log_joint_explains_one_hot_labels():
    # Was a broadcast error.
    with pytest.raises(ValueError, match=r"expects integer class labels of shape \[batch\].*One-hot labels\?"):
        losses.NegativeLogJoint()(np.eye(3)[:2], np.log(np.full((2, 3), 1 / 3, "float32")))


def test_negative_log_joint_and_log_joint_pick_the_labelled_class():
    log_joint = np.log(np.array([[0.1, 0.2, 0.3], [0.05, 0.15, 0.2]], "float32"))
    for labels in (np.array([2, 0]), np.array([[2.0], [0.0]]), np.array([2, 0], "uint8")):
        np.testing.assert_allclose(
            float(losses.NegativeLogJoint()(labels, log_joint)), -(np.log(0.3) + np.log(0.05)) / 2, rtol=1e-6
        )
    metric = metrics.LogJoint()
    metric.update_state(np.array([1, 2]), log_joint)
    np.testing.assert_allclose(float(metric.result()), (np.log(0.2) + np.log(0.2)) / 2, rtol=1e-6)
    with pytest.raises(eager_check_errors(), match=r"Metric 'log_joint' \(LogJoint\) expects .*larger"):
        metric.update_state(np.array([3, 0]), log_joint)


@pytest.mark.requires_tensorflow  # a graph assertion in the traced train step (a traced JAX step skips checks)
@pytest.mark.parametrize("entry", ["fit", "evaluate"])
def test_a_bad_label_in_fit_is_reported_first(entry):
    spn = indicator_spn(class_logits=True, unsupervised=False)
    with pytest.raises(graph_check_error()) as error:
        getattr(spn, entry)(np.zeros((4, 4), "int32"), np.array([5, 0, 1, 0]), verbose=0)
    assert first_line(error) == (
        "Loss 'negative_log_joint' (NegativeLogJoint) expects integer class labels in [0, 2); received a larger value"
    )


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda value: layers.RootSum(return_weighted_child_logits=value), "return_weighted_child_logits"),
        (lambda value: layers.NormalLeaf(2, location_trainable=value), "location_trainable"),
        (lambda value: layers.CauchyLeaf(2, scale_trainable=value), "scale_trainable"),
        (lambda value: layers.LaplaceLeaf(2, use_accumulators=value), "use_accumulators"),
    ],
)
@pytest.mark.parametrize("value", ["no", "False", 0, 1.0, None])
def test_boolean_arguments_must_be_booleans(make, argument, value):
    # RootSum(return_weighted_child_logits="no") was read as True.
    with pytest.raises(TypeError, match=rf"expects {argument} to be True or False. Received: {argument}={value!r}"):
        make(value)


def test_numpy_booleans_are_booleans_and_round_trip():
    root = layers.RootSum(return_weighted_child_logits=np.bool_(False))
    assert root.return_weighted_child_logits is False
    assert layers.RootSum.from_config(root.get_config()).return_weighted_child_logits is False


# --- Item 5: numerics --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("x", "scale"), [(1.0, 1e-30), (1e30, 1.0), (-1e30, 1.0), (3e38, 1e-4)])
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_cauchy_leaf_is_finite_far_in_the_tails(x, scale, mode):
    # Returned -inf (log1p(z**2) overflowed); the true log-density at x=1e30, scale 1 is about -139.
    leaf = layers.CauchyLeaf(
        1, location_initializer="zeros", scale_initializer=keras.initializers.Constant(scale), scale_constraint=None
    )
    leaf.build((1, 3, 1, 1))
    leaf.scale.assign(np.full((1, 3, 1, 1, 1), scale, "float32"))  # below the default constraint's floor
    call = leaf if mode == "eager" else jit(leaf)

    out = np.asarray(call(tensor(np.full((1, 3, 1, 1), x, "float32"))))

    np.testing.assert_allclose(out, stats.cauchy.logpdf(x, scale=np.float64(np.float32(scale))), rtol=1e-6)


@pytest.mark.parametrize("initializer", [np.nan, np.inf])
def test_non_finite_location_initializer_is_rejected(initializer):
    # Gave NaN outputs silently.
    leaf = layers.NormalLeaf(2, location_initializer=keras.initializers.Constant(initializer), name="leaf")
    with pytest.raises(ValueError, match=r"Layer 'leaf' expects location_initializer to give finite locations"):
        leaf(np.zeros((2, 4, 1, 1), "float32"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"location_initializer": keras.initializers.Constant(np.nan)}, "location_initializer to give finite"),
        ({"scale_initializer": "zeros"}, "scale_initializer to give finite, positive scales"),
    ],
)
def test_initial_values_are_checked_when_the_model_is_built_inside_fit(kwargs, match):
    # Without keras.Input the model is built in the first (traced) train step, where the checks were skipped and
    # the loss was NaN. Now the check runs with the initialization (a graph assertion on TensorFlow; on JAX the
    # layer's first call after the deferred initialization raises) and its message comes first.
    spn = models.SequentialSumProductNetwork(
        [
            layers.FlatToRegions(num_decomps=1),
            layers.NormalLeaf(num_components=2, name="leaf", **kwargs),
            layers.ReduceProduct(num_factors=4),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )
    spn.compile(optimizer="adam", loss=losses.NegativeLogLikelihood())
    with pytest.raises(graph_check_error() if backend() == "tensorflow" else ValueError) as error:
        spn.fit(np.zeros((8, 4), "float32"), epochs=1, verbose=0)
    assert first_line(error).startswith(f"Layer 'leaf' expects {match}")


LINEAR_SUM_CASES = [
    pytest.param(
        {"accumulator_initializer": keras.initializers.Constant(-1.0), "logspace_accumulators": False},
        {"linear_accumulator_constraint": constraints.Clip(-2.0)},
        r"Received: min=-1\.0",
        id="negative",
    ),
    pytest.param(
        {"accumulator_initializer": "zeros", "logspace_accumulators": False},
        {"linear_accumulator_constraint": keras.constraints.NonNeg()},
        r"smallest total=0\.0",
        id="zero_total",
    ),
]


def fit_unbuilt(spn_layers: list[keras.layers.Layer], model_cls: type = models.SequentialSumProductNetwork) -> None:
    """Fit a model without ``keras.Input`` (built inside the first train step) on 8 zero samples of 4 variables."""
    model = model_cls(spn_layers)
    model.compile(optimizer="adam", loss=losses.NegativeLogLikelihood())
    model.fit(np.zeros((8, 4), "float32"), epochs=1, verbose=0)


def region_spn(sum_kwargs: dict | None = None, leaf_kwargs: dict | None = None) -> list[keras.layers.Layer]:
    return [
        layers.FlatToRegions(num_decomps=1),
        layers.NormalLeaf(num_components=2, name="leaf", **(leaf_kwargs or {})),
        layers.DenseSum(num_sums=2, name="sum", **(sum_kwargs or {})),
        layers.ReduceProduct(num_factors=4),
        layers.RootSum(return_weighted_child_logits=False),
    ]


@pytest.mark.parametrize("model_cls", [models.SequentialSumProductNetwork, keras.Sequential], ids=["spn", "keras"])
@pytest.mark.parametrize(("kwargs", "constraint", "received"), LINEAR_SUM_CASES)
def test_linear_accumulators_are_checked_when_the_model_is_built_inside_fit(kwargs, constraint, received, model_cls):
    # Without keras.Input the sum is built in the first (traced) train step, where the check was skipped: fit ran
    # on negative or 0 / 0 weights. Now the check runs where the values are made: a graph assertion on TensorFlow
    # (an SPN model puts its message first), the layer's first call after the deferred initialization on JAX.
    expected = graph_check_error() if backend() == "tensorflow" else ValueError
    with pytest.raises(expected) as error:
        fit_unbuilt(region_spn({**kwargs, **constraint}), model_cls)
    message = (
        r"Layer 'sum' expects accumulator_initializer to give finite, non-negative linear accumulators with a "
        r"positive total over the inputs of every sum after linear_accumulator_constraint=\w+ \(the weights are"
    )
    if backend() != "tensorflow":  # the values are known at JAX's deferred initialization, not in a graph
        message += rf".*{received}"
    assert re.search(message, str(error.value)), str(error.value)
    if model_cls is models.SequentialSumProductNetwork or backend() != "tensorflow":
        assert re.match(message, first_line(error)), first_line(error)


@pytest.mark.parametrize(
    "invalid",
    [
        pytest.param({"leaf_kwargs": {"scale_initializer": "zeros"}}, id="leaf"),
        pytest.param({"sum_kwargs": {**LINEAR_SUM_CASES[0].values[0], **LINEAR_SUM_CASES[0].values[1]}}, id="sum"),
    ],
)
def test_a_failed_initial_value_check_inside_fit_leaves_later_models_working(invalid):
    # On JAX, Keras initializes the weights of a model built inside fit after building it, one queue for all; an
    # error raised there left the queue half done, and every later model in the process failed ("Variable ... is
    # already initialized").
    with pytest.raises(Exception, match=r"Layer '(leaf|sum)' expects"):
        fit_unbuilt(region_spn(**invalid))
    fit_unbuilt(region_spn())


# --- Item 7: unclear crashes ---------------------------------------------------------------------------------------


def test_conv2d_product_with_all_combinations_of_many_channels_says_what_to_pass():
    # num_channels=None over 64 channels and a 3x3 kernel asked numpy for 64**9 combinations (512 GiB).
    layer = layers.Conv2DProduct(strides=3, dilations=1, kernel_size=3, padding="valid", name="prod")
    with pytest.raises(
        ValueError, match=r"Layer 'prod' with num_channels=None .* 18014398509481984 output .*num_channels=N"
    ):
        layer(np.zeros((1, 6, 6, 64), "float32"))
    sampled = layers.Conv2DProduct(strides=3, dilations=1, kernel_size=3, padding="valid", num_channels=16, seed=0)
    assert sampled(np.zeros((1, 6, 6, 64), "float32")).shape == (1, 2, 2, 16)


@pytest.mark.parametrize("data", ["arrays", pytest.param("dataset", marks=pytest.mark.requires_tensorflow)])
@pytest.mark.parametrize("entry", ["fit", "evaluate"])
def test_supervised_model_without_labels_raises_a_clear_error(data, entry):
    # Was "None values not supported" from deep inside the loss.
    spn = indicator_spn(unsupervised=False)
    x = np.zeros((4, 4), "int32")
    if data == "arrays":
        given = x
    else:  # a tf.data pipeline (requires_tensorflow)
        import tensorflow as tf

        given = tf.data.Dataset.from_tensor_slices(x).batch(2)
    with pytest.raises(ValueError, match=r"Model 'spn' was created with unsupervised=False, so fit and evaluate need"):
        getattr(spn, entry)(given, verbose=0)


@pytest.mark.parametrize("entry", ["fit", "predict", "evaluate"])
def test_out_of_range_states_in_arrays_are_reported_before_the_graph_runs(entry):
    # Showed "Graph execution error" and 66 lines before the leaf's message.
    spn = indicator_spn()
    x = np.zeros((8, 4), "int32")
    x[5, 2] = 3
    with pytest.raises(ValueError) as error:
        getattr(spn, entry)(x, verbose=0)
    assert first_line(error) == (
        "Layer 'ind' expects integer states in [0, 2) (num_components=2; NaN marks a missing value). "
        "Received: x[5, 2]=np.int32(3) (1 invalid values in the data of model 'spn')"
    )


@pytest.mark.requires_tensorflow  # a tf.data pipeline, checked by a graph assertion in the traced step
@pytest.mark.parametrize("entry", ["fit", "predict"])
def test_out_of_range_states_in_a_dataset_are_reported_first(entry):
    import tensorflow as tf

    spn = indicator_spn()
    x = np.zeros((8, 4), "int32")
    x[5, 2] = 3
    with pytest.raises(graph_check_error()) as error:
        getattr(spn, entry)(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)
    assert first_line(error) == (
        "Layer 'ind' expects integer states in [0, 2) (num_components=2); received a larger value"
    )
