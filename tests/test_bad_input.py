"""Bad inputs and arguments: every one raises a clear error that names the layer and what it expects."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import libspn_keras as spnk
from libspn_keras import constraints, initializers, layers, losses, models

REGION = np.zeros((2, 4, 1, 3), "float32")  # [batch, num_scopes, num_decomps, num_nodes]
OBSERVATIONS = np.zeros((2, 4, 1, 1), "float32")  # [batch, num_vars, num_decomps, var_dim]


# --- Constructor arguments -------------------------------------------------------------------------------------

INVALID_CONSTRUCTOR_ARGS = [
    (
        lambda: layers.DenseSum(num_sums=0),
        ValueError,
        r"DenseSum expects num_sums to be a positive integer.*num_sums=0",
    ),
    (lambda: layers.DenseSum(num_sums=-2), ValueError, r"DenseSum expects num_sums .*positive.*num_sums=-2"),
    (lambda: layers.DenseSum(num_sums=2.5), ValueError, r"DenseSum expects num_sums .*positive integer.*2\.5"),
    (lambda: layers.DenseSum(num_sums="2"), ValueError, r"DenseSum expects num_sums .*num_sums='2'"),
    (lambda: layers.DenseProduct(num_factors=-1), ValueError, r"DenseProduct expects num_factors .*num_factors=-1"),
    (lambda: layers.DenseProduct(num_factors=0), ValueError, r"DenseProduct expects num_factors .*num_factors=0"),
    (lambda: layers.ReduceProduct(num_factors=-3), ValueError, r"ReduceProduct expects num_factors .*=-3"),
    (lambda: layers.NormalLeaf(num_components=0), ValueError, r"NormalLeaf expects num_components .*=0"),
    (lambda: layers.CauchyLeaf(num_components=-1), ValueError, r"CauchyLeaf expects num_components .*=-1"),
    (lambda: layers.LaplaceLeaf(num_components=1.5), ValueError, r"LaplaceLeaf expects num_components .*=1\.5"),
    (lambda: layers.IndicatorLeaf(num_components=0), ValueError, r"IndicatorLeaf expects num_components .*=0"),
    (lambda: layers.FlatToRegions(num_decomps=0), ValueError, r"FlatToRegions expects num_decomps .*=0"),
    (lambda: layers.Undecompose(num_decomps=-1), ValueError, r"Undecompose expects num_decomps .*=-1"),
    (
        lambda: layers.PermuteAndPadScopesRandom(factors=[2, 0]),
        ValueError,
        r"PermuteAndPadScopesRandom expects factors to be a positive integer.*factors=0",
    ),
    (lambda: layers.LogDropout(rate=1.0), ValueError, r"LogDropout expects a number 0 <= rate < 1.*rate=1\.0"),
    (lambda: layers.LogDropout(rate=-0.1), ValueError, r"LogDropout expects .*0 <= rate < 1.*rate=-0\.1"),
    (lambda: layers.LogDropout(rate="0.5"), ValueError, r"LogDropout expects a number .*rate='0\.5'"),
    (lambda: layers.NormalizeStandardScore(-1.0), ValueError, r"NormalizeStandardScore expects normalization_eps"),
    (lambda: layers.DenseSum(2, sum_op="grad"), TypeError, r"expects sum_op to be a SumOpBase instance.*'grad'"),
    (lambda: layers.RootSum(sum_op=object()), TypeError, r"expects sum_op to be a SumOpBase instance"),
    (lambda: constraints.Clip(min=2.0, max=1.0), ValueError, r"Clip expects max >= min.*min=2\.0, max=1\.0"),
    (lambda: constraints.GreaterEqualEpsilon(0.0), ValueError, r"GreaterEqualEpsilon expects epsilon > 0"),
    (lambda: constraints.GreaterEqualEpsilonNormalized(-1.0), ValueError, r"GreaterEqualEpsilonNormalized expects"),
    (lambda: initializers.Dirichlet(alpha=0.0), ValueError, r"Dirichlet expects alpha > 0.*alpha=0\.0"),
    (lambda: initializers.Dirichlet(alpha=-1.0), ValueError, r"Dirichlet expects alpha > 0.*alpha=-1\.0"),
    (lambda: initializers.EpsilonInverseFanIn(epsilon=0.0), ValueError, r"EpsilonInverseFanIn expects epsilon > 0"),
    (lambda: initializers.Equidistant(1.0, 0.0), ValueError, r"Equidistant expects maxval >= minval"),
    (lambda: losses.NegativeLogLikelihood(reduction="bogus"), ValueError, r"reduction.*bogus"),
    (
        lambda: layers.PermuteAndPadScopes([[0, 1.5, 2, 3]]),
        ValueError,
        r"PermuteAndPadScopes expects permutations to be a .*integer array",
    ),
    (
        lambda: layers.PermuteAndPadScopes([[0, 1], [0]]),
        ValueError,
        r"PermuteAndPadScopes expects permutations to be a \(rectangular\) integer array",
    ),
    (
        lambda: layers.PermuteAndPadScopesRandom(permutations=[[0.5, 1.0]]),
        ValueError,
        r"PermuteAndPadScopesRandom expects permutations to be a .*integer array",
    ),
    (lambda: spnk.set_default_sum_op("grad"), TypeError, r"set_default_sum_op expects a SumOpBase instance"),
    (
        lambda: spnk.set_default_accumulator_initializer("ones"),
        TypeError,
        r"set_default_accumulator_initializer expects a keras.initializers.Initializer",
    ),
    (
        lambda: spnk.set_default_linear_accumulator_constraint("non_neg"),
        TypeError,
        r"set_default_linear_accumulator_constraint expects a keras.constraints.Constraint",
    ),
]


@pytest.mark.parametrize(("make", "error", "match"), INVALID_CONSTRUCTOR_ARGS)
def test_invalid_constructor_arguments_raise_at_once(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_numpy_integers_are_valid_sizes():
    layer = layers.DenseSum(num_sums=np.int64(3))
    assert layer.num_sums == 3 and isinstance(layer.num_sums, int)
    assert layers.PermuteAndPadScopesRandom(factors=np.array([2, 2])).factors == [2, 2]
    assert layers.LogDropout(rate=np.float32(0.25)).rate == 0.25


# --- Shapes ------------------------------------------------------------------------------------------------------

WRONG_SHAPES = [
    (
        lambda: layers.DenseSum(2, name="s"),
        np.zeros((2, 4, 3), "float32"),
        r"Layer 's' expects inputs of rank 4 with layout \[batch, num_scopes, num_decomps, num_nodes\]",
    ),
    (
        lambda: layers.DenseProduct(2, name="p"),
        np.zeros((2, 4, 1, 1, 3), "float32"),
        r"Layer 'p' expects inputs of rank 4.*input_shape=\(2, 4, 1, 1, 3\)",
    ),
    (
        lambda: layers.DenseProduct(3, name="p"),
        REGION,
        r"Layer 'p' merges groups of num_factors=3 .*multiple of 3.*input_shape=\(2, 4, 1, 3\)",
    ),
    (lambda: layers.ReduceProduct(3, name="r"), REGION, r"Layer 'r' merges groups of num_factors=3 .*multiple of 3"),
    (lambda: layers.Undecompose(2, name="u"), np.zeros((2, 1, 3, 2), "float32"), r"Layer 'u' .*multiple of num_dec"),
    (lambda: layers.Undecompose(name="u"), np.zeros((2, 1, 3), "float32"), r"Layer 'u' expects inputs of rank 4"),
    (
        lambda: layers.RootSum(name="root"),
        np.zeros((2, 2, 1, 3), "float32"),
        r"Layer 'root' expects inputs of shape \[batch, 1, 1, num_in\] or \[batch, num_in\].*\(2, 2, 1, 3\)",
    ),
    (
        lambda: layers.RootSum(return_weighted_child_logits=False, name="root"),
        np.zeros((2, 1, 2, 3), "float32"),
        r"Layer 'root' expects inputs of shape \[batch, 1, 1, num_in\].*Undecompose",
    ),
    (
        lambda: layers.RootSum(name="root"),
        np.zeros((2, 1, 3), "float32"),
        r"Layer 'root' expects inputs of shape \[batch, 1, 1, num_in\] or \[batch, num_in\]",
    ),
    (
        lambda: layers.FlatToRegions(name="f"),
        np.zeros((2, 4, 1, 1), "float32"),
        r"Layer 'f' expects inputs of shape \[batch, num_vars\] or \[batch, num_vars, var_dimensionality\]",
    ),
    (
        lambda: layers.NormalLeaf(2, name="leaf"),
        np.zeros((2, 4), "float32"),
        r"Layer 'leaf' expects inputs of shape \[batch, \*variables, var_dimensionality\].*FlatToRegions",
    ),
    (
        lambda: layers.IndicatorLeaf(2, name="leaf"),
        np.zeros((2, 4, 1, 2), "int32"),
        r"Layer 'leaf' expects univariate discrete variables \(last axis of size 1\)",
    ),
    (
        lambda: layers.PermuteAndPadScopes([[0, 1, 2, 3], [0, 1, 2, 3]], name="perm"),
        REGION,
        r"Layer 'perm' expects permutations of shape \[num_decomps=1, num_scopes_out\].*\(2, 4\)",
    ),
    (
        lambda: layers.PermuteAndPadScopes([0, 1, 2, 3], name="perm"),
        REGION,
        r"Layer 'perm' expects permutations of shape \[num_decomps=1, num_scopes_out\].*\(4,\)",
    ),
    (
        lambda: layers.PermuteAndPadScopes([[0, 2, 2, 3]], name="perm"),
        REGION,
        r"Layer 'perm': decomposition 0 uses a scope more than once.*\[0, 2, 2, 3\]",
    ),
    (
        lambda: layers.PermuteAndPadScopes([[0, 1, 2, 4]], name="perm"),
        REGION,
        r"Layer 'perm' expects permutation entries in \[-1, 4\).*max=4",
    ),
    (
        lambda: layers.PermuteAndPadScopes([[0, 1, 2, -2]], name="perm"),
        REGION,
        r"Layer 'perm' expects permutation entries in \[-1, 4\).*min=-2",
    ),
    (
        lambda: layers.PermuteAndPadScopes(name="perm"),
        REGION,
        r"Layer 'perm' was built before its permutations were set",
    ),
    (
        lambda: layers.PermuteAndPadScopesRandom(name="perm"),
        REGION,
        r"Layer 'perm' needs factors: pass factors=\[\.\.\.\]",
    ),
    (
        lambda: layers.PermuteAndPadScopesRandom(factors=[3], name="perm"),
        REGION,
        r"Layer 'perm': prod\(factors\)=3 must be at least num_scopes",
    ),
    (
        lambda: layers.PermuteAndPadScopesRandom(permutations=[[0, 1, 1, -1]], name="perm"),
        REGION,
        r"Layer 'perm': decomposition 0 uses a scope more than once",
    ),
]


@pytest.mark.parametrize(("make", "x", "match"), WRONG_SHAPES)
def test_wrong_input_shape_raises(make, x, match):
    with pytest.raises(ValueError, match=match):
        make()(x)


def test_permutations_set_after_construction_are_validated():
    layer = layers.PermuteAndPadScopes(name="perm")
    layer.permutations = [[0, 1, 2, 3.5]]
    with pytest.raises(ValueError, match=r"Layer 'perm' expects permutations to be a .*integer array"):
        layer(REGION)


@pytest.mark.parametrize(
    ("make", "input_shape", "match"),
    [
        (lambda: layers.DenseSum(2, name="s"), (None, 1, 3), r"Layer 's' needs known num_scopes, num_decomps"),
        (lambda: layers.RootSum(name="root"), (1, 1, None), r"Layer 'root' needs a known num_in"),
        (lambda: layers.ReduceProduct(2, name="r"), (None, 1, 3), r"Layer 'r' .*known multiple of 2"),
        (lambda: layers.NormalLeaf(2, name="leaf"), (None, 1, 1), r"Layer 'leaf' .*known non-batch sizes"),
    ],
)
def test_unknown_sizes_in_functional_models_raise(make, input_shape, match):
    with pytest.raises(ValueError, match=match):
        make()(keras.Input(shape=input_shape))


def test_sequential_spn_with_scopes_not_divisible_by_factors_raises():
    with pytest.raises(ValueError, match=r"Layer 'p' merges groups of num_factors=4 .*input_shape=\(None, 6, 1, 2\)"):
        models.SequentialSumProductNetwork(
            [
                keras.Input(shape=(6,)),
                layers.FlatToRegions(),
                layers.NormalLeaf(num_components=2),
                layers.ReduceProduct(num_factors=4, name="p"),
            ]
        )


# --- Dtypes ------------------------------------------------------------------------------------------------------

WRONG_DTYPES = [
    (
        lambda: layers.DenseSum(2, name="s"),
        np.zeros((2, 4, 1, 3), "int32"),
        "floating-point log-probabilities.*dtype=int32",
    ),
    (
        lambda: layers.DenseProduct(2, name="s"),
        np.zeros((2, 4, 1, 3), "int32"),
        "floating-point log-probabilities.*dtype=int32",
    ),
    (
        lambda: layers.ReduceProduct(2, name="s"),
        np.zeros((2, 4, 1, 3), "int64"),
        "floating-point log-probabilities.*dtype=int64",
    ),
    (lambda: layers.RootSum(name="s"), np.zeros((2, 3), "int32"), "floating-point log-probabilities.*dtype=int32"),
    (
        lambda: layers.LogDropout(0.5, name="s"),
        np.zeros((2, 3), "int32"),
        "floating-point log-probabilities.*dtype=int32",
    ),
    (
        lambda: layers.NormalLeaf(2, name="s"),
        np.zeros((2, 4, 1, 1), "int32"),
        r"floating-point observations \(NaN marks a missing value\); cast integer data first.*dtype=int32",
    ),
    (lambda: layers.LaplaceLeaf(2, name="s"), tf.constant([[[["a"]]]]), r"floating-point observations.*dtype=string"),
    (
        lambda: layers.IndicatorLeaf(2, name="s"),
        tf.constant([[[["a"]]]]),
        r"integer states \(or floats, where NaN marks a missing value\).*dtype=string",
    ),
    (lambda: layers.NormalizeStandardScore(name="s"), tf.constant([["a"]]), r"floating-point or integer.*string"),
]


@pytest.mark.parametrize(("make", "x", "match"), WRONG_DTYPES)
def test_wrong_input_dtype_raises_type_error(make, x, match):
    with pytest.raises(TypeError, match=rf"Layer 's' expects {match}"):
        make()(x)


def test_integer_inputs_are_cast_by_normalize_standard_score():
    out = layers.NormalizeStandardScore()(np.array([[1, 3]], "uint8"))
    assert out.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(out), [[-1.0, 1.0]], atol=1e-6)


# --- Indicator states ------------------------------------------------------------------------------------------


# In graph mode TensorFlow quotes the assertion message, escaping the quotes around the layer name.
IND = r"Layer \\?'ind\\?'"


@pytest.mark.parametrize(
    ("states", "match"),
    [
        (np.full((2, 3, 1, 1), 3, "int32"), rf"{IND} expects integer states in \[0, 3\).*larger value"),
        (np.full((2, 3, 1, 1), -1, "int32"), rf"{IND} expects integer states in \[0, 3\).*negative value"),
        (np.full((2, 3, 1, 1), 7.0, "float32"), rf"{IND} expects integer states in \[0, 3\).*larger value"),
        (np.full((2, 3, 1, 1), 0.5, "float32"), rf"{IND} expects integral values; received a fraction"),
    ],
)
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf_function"])
def test_indicator_leaf_rejects_states_out_of_range(states, match, graph):
    layer = layers.IndicatorLeaf(num_components=3, dtype=states.dtype, name="ind")
    call = tf.function(layer) if graph else layer
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        call(tf.constant(states))


# --- Evidence masks --------------------------------------------------------------------------------------------


LEAF_MASK = r"Layer 'leaf' expects an evidence_mask shaped like its input \(2, 4, 1, 1\) or like its input without"


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (np.ones((2, 3, 1, 1), bool), ValueError, rf"{LEAF_MASK}.*evidence_mask.shape=\(2, 3, 1, 1\)"),
        (np.ones((2,), bool), ValueError, rf"{LEAF_MASK}.*evidence_mask.shape=\(2,\)"),
        (np.ones((2, 4, 1, 1, 1), bool), ValueError, rf"{LEAF_MASK}.*evidence_mask.shape=\(2, 4, 1, 1, 1\)"),
        (np.ones((2, 4, 1, 1), "float32"), TypeError, r"Layer 'leaf' expects a boolean evidence_mask.*float32"),
    ],
)
def test_leaf_rejects_bad_evidence_mask(mask, error, match):
    with pytest.raises(error, match=match):
        layers.NormalLeaf(num_components=2, name="leaf")(OBSERVATIONS, evidence_mask=mask)


def _small_spn() -> models.SequentialSumProductNetwork:
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(4,)),
            layers.FlatToRegions(num_decomps=2),
            layers.NormalLeaf(num_components=2),
            layers.PermuteAndPadScopesRandom(seed=0),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2),
            layers.ReduceProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False),
        ],
        name="spn",
    )


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (np.ones((3, 4), "float32"), TypeError, r"(?s)SequentialSumProductNetwork.*boolean.*dtype=float32"),
        (np.ones((3, 4, 1), bool), ValueError, r"(?s)SequentialSumProductNetwork.*evidence_mask.*shaped like"),
        (np.ones((3, 2), bool), ValueError, r"(?s)SequentialSumProductNetwork.*evidence_mask.*shaped like"),
    ],
)
def test_model_rejects_bad_evidence_mask(mask, error, match):
    spn = _small_spn()
    with pytest.raises(error, match=match):
        spn((np.zeros((3, 4), "float32"), mask))


# --- Missing values --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("leaf_cls", [layers.NormalLeaf, layers.CauchyLeaf, layers.LaplaceLeaf])
def test_nan_inputs_are_marginalized_by_continuous_leaves(leaf_cls):
    x = np.random.randn(3, 4, 2, 2).astype("float32")
    x[0, 1, 0, 0] = np.nan  # one dimension of a bivariate variable
    x[1] = np.nan  # a whole sample
    leaf = leaf_cls(num_components=3)
    out = np.asarray(leaf(x))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[1], 0.0)
    mask = np.isfinite(x)
    np.testing.assert_allclose(out, np.asarray(leaf(np.nan_to_num(x, nan=5.0), evidence_mask=mask)), rtol=1e-6)


def test_nan_inputs_are_marginalized_by_indicator_leaf():
    x = np.array([[[[np.nan]], [[1.0]]]], "float32")
    out = np.exp(np.asarray(layers.IndicatorLeaf(num_components=2)(x)))
    np.testing.assert_array_equal(out[0, :, 0], [[1.0, 1.0], [0.0, 1.0]])


def test_nan_inputs_are_marginalized_by_a_model_and_training_stays_finite():
    spn = _small_spn()
    x = np.random.randn(8, 4).astype("float32")
    x[0] = np.nan
    x[1, 2] = np.nan
    out = np.asarray(spn(x))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], 0.0, atol=1e-5)  # a fully marginalized normalized SPN has probability 1
    np.testing.assert_allclose(out, np.asarray(spn((np.nan_to_num(x), np.isfinite(x)))), rtol=1e-6)
    spn.compile(optimizer=keras.optimizers.Adam(0.01), loss=losses.NegativeLogLikelihood())
    history = spn.fit(x, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in spn.get_weights())
