"""Bad inputs and arguments: every one raises a clear error that names the layer and what it expects."""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf  # string tensors for the TensorFlow-only dtype cases (a default dependency)

import libspn_keras as spnk
from libspn_keras import constraints, initializers, layers, losses, models, optimizers, region, sum_ops
from tests.backend_utils import dtype_name, eager_check_errors, function, grad, graph_check_error, tensor

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
    # Every size argument of every layer: zero, negative, fractional, None or a bool.
    (lambda: layers.DenseSum(num_sums=None), ValueError, r"DenseSum expects num_sums .*positive integer.*=None"),
    (lambda: layers.DenseSum(num_sums=True), ValueError, r"DenseSum expects num_sums .*positive integer.*=True"),
    (lambda: layers.Local2DSum(num_sums=0), ValueError, r"Local2DSum expects num_sums .*positive integer.*=0"),
    (lambda: layers.Conv2DSum(num_sums=-1), ValueError, r"Conv2DSum expects num_sums .*positive integer.*=-1"),
    (lambda: layers.Conv2DSum(num_sums=None), ValueError, r"Conv2DSum expects num_sums .*=None"),
    (lambda: layers.ReduceProduct(num_factors=0), ValueError, r"ReduceProduct expects num_factors .*=0"),
    (lambda: layers.DenseProduct(num_factors=1.5), ValueError, r"DenseProduct expects num_factors .*=1\.5"),
    (lambda: layers.IndicatorLeaf(num_components=-2), ValueError, r"IndicatorLeaf expects num_components .*=-2"),
    (lambda: layers.NormalLeaf(num_components=None), ValueError, r"NormalLeaf expects num_components .*=None"),
    (lambda: layers.Undecompose(num_decomps=0), ValueError, r"Undecompose expects num_decomps .*=0"),
    (lambda: layers.FlatToRegions(num_decomps=2.5), ValueError, r"FlatToRegions expects num_decomps .*=2\.5"),
    (
        lambda: layers.PermuteAndPadScopesRandom(factors=2),
        ValueError,
        r"PermuteAndPadScopesRandom expects factors to be a sequence of positive integers.*factors=2",
    ),
    (
        lambda: layers.PermuteAndPadScopesRandom(factors=[2, True]),
        ValueError,
        r"PermuteAndPadScopesRandom expects factors to be a positive integer.*factors=True",
    ),
    # Conv2DProduct: strides, dilations and kernel sizes are one or two positive integers; padding is one of three.
    (lambda: _conv(strides=None), ValueError, r"Conv2DProduct expects strides to be two positive integers.*=None"),
    (lambda: _conv(strides="2"), ValueError, r"Conv2DProduct expects strides to be two positive .*strides='2'"),
    (lambda: _conv(strides=(1, 2, 3)), ValueError, r"Conv2DProduct expects strides .*strides=\(1, 2, 3\)"),
    (lambda: _conv(strides=[1, -1]), ValueError, r"Conv2DProduct expects strides .*strides=\[1, -1\]"),
    (lambda: _conv(dilations=1.5), ValueError, r"Conv2DProduct expects dilations .*dilations=1\.5"),
    (lambda: _conv(dilations=-1), ValueError, r"Conv2DProduct expects dilations .*dilations=-1"),
    (lambda: _conv(dilations=0), ValueError, r"Conv2DProduct expects dilations .*dilations=0"),
    (lambda: _conv(kernel_size=0), ValueError, r"Conv2DProduct expects kernel_size .*kernel_size=0"),
    (lambda: _conv(kernel_size=[2, 0]), ValueError, r"Conv2DProduct expects kernel_size .*kernel_size=\[2, 0\]"),
    (lambda: _conv(kernel_size=True), ValueError, r"Conv2DProduct expects kernel_size .*kernel_size=True"),
    (lambda: _conv(kernel_size=(2, None)), ValueError, r"Conv2DProduct expects kernel_size .*=\(2, None\)"),
    (lambda: _conv(padding=None), ValueError, r"Conv2DProduct expects padding in \('valid', 'full', 'final'\).*None"),
    (lambda: _conv(padding="VALID"), ValueError, r"Conv2DProduct expects padding in .*padding='VALID'"),
    (lambda: _conv(padding="same"), ValueError, r"Conv2DProduct expects padding in .*padding='same'"),
    (lambda: _conv(num_channels=-3), ValueError, r"Conv2DProduct expects num_channels >= 1 or None.*=-3"),
    (lambda: _conv(num_channels=2.5), ValueError, r"Conv2DProduct expects num_channels >= 1 or None.*=2\.5"),
    (lambda: _conv(num_channels="x"), ValueError, r"Conv2DProduct expects num_channels >= 1 or None.*='x'"),
    # LogDropout: rate, noise shape and axis.
    (lambda: layers.LogDropout(rate=float("nan")), ValueError, r"LogDropout expects a number 0 <= rate < 1.*nan"),
    (lambda: layers.LogDropout(rate=None), ValueError, r"LogDropout expects a number 0 <= rate < 1.*rate=None"),
    (lambda: layers.LogDropout(rate=True), ValueError, r"LogDropout expects a number 0 <= rate < 1.*rate=True"),
    (
        lambda: layers.LogDropout(rate=0.5, noise_shape=(None, 0, 1, 3)),
        ValueError,
        r"LogDropout expects noise_shape to be None or a sequence of positive integers.*\(None, 0, 1, 3\)",
    ),
    (lambda: layers.LogDropout(rate=0.5, noise_shape="abc"), ValueError, r"LogDropout expects noise_shape .*'abc'"),
    (
        lambda: layers.LogDropout(rate=0.5, axis_at_least_one="last"),
        ValueError,
        r"LogDropout expects axis_at_least_one to be None or an integer axis.*'last'",
    ),
    (lambda: layers.LogDropout(rate=0.5, axis_at_least_one=1.5), ValueError, r"axis_at_least_one .*=1\.5"),
    (lambda: layers.NormalizeStandardScore("a"), ValueError, r"NormalizeStandardScore expects normalization_eps.*'a'"),
    (lambda: layers.NormalizeStandardScore(float("nan")), ValueError, r"NormalizeStandardScore expects .*nan"),
    (
        lambda: layers.IndicatorLeaf(num_components=2, dtype="string"),
        TypeError,
        r"IndicatorLeaf expects dtype to be an integer, boolean or floating-point input dtype.*'string'",
    ),
    (lambda: layers.IndicatorLeaf(num_components=2, dtype="bogus"), TypeError, r"IndicatorLeaf expects dtype.*bogus"),
    (
        lambda: layers.CauchyLeaf(2, use_accumulators=True, scale_trainable=True, name="leaf"),
        ValueError,
        r"Layer 'leaf': CauchyLeaf has no closed-form EM update of its scale.*scale_trainable=True",
    ),
    # Sum ops and their combination with accumulators.
    (
        lambda: sum_ops.SumOpHardEMBackprop(sample_prob=1.5),
        ValueError,
        r"SumOpHardEMBackprop expects sample_prob in \[0, 1\] or None. Received: sample_prob=1\.5",
    ),
    (lambda: sum_ops.SumOpHardEMBackprop(sample_prob=-0.1), ValueError, r"SumOpHardEMBackprop expects .*=-0\.1"),
    (lambda: sum_ops.SumOpHardEMBackprop(sample_prob=float("nan")), ValueError, r"sample_prob in \[0, 1\].*=nan"),
    (
        lambda: sum_ops.SumOpUnweightedHardEMBackprop(sample_prob=2),
        ValueError,
        r"SumOpUnweightedHardEMBackprop expects sample_prob in \[0, 1\] or None. Received: sample_prob=2",
    ),
    pytest.param(
        lambda: sum_ops.SumOpHardEMBackprop(sample_prob="high"),
        ValueError,
        r"SumOpHardEMBackprop expects sample_prob in \[0, 1\] or None. Received: sample_prob='high'",
        id="sample_prob-string",
    ),
    (
        lambda: sum_ops.SumOpSampleBackprop(sample_prob=0.5),
        TypeError,
        r"SumOpSampleBackprop.__init__\(\) got an unexpected keyword argument 'sample_prob'",
    ),
    (
        lambda: layers.DenseSum(2, sum_op=sum_ops.SumOpEMBackprop(), logspace_accumulators=True, name="s"),
        ValueError,
        r"Layer 's': SumOpEMBackprop updates linear accumulators .*Received: logspace_accumulators=True",
    ),
    # Initializers, constraints and regularizers given by a wrong identifier or value.
    (lambda: layers.DenseSum(2, accumulator_initializer="bogus"), ValueError, r"initializer identifier: bogus"),
    (lambda: layers.DenseSum(2, accumulator_regularizer="bogus"), ValueError, r"regularizer identifier: bogus"),
    (lambda: layers.NormalLeaf(2, location_initializer="bogus"), ValueError, r"initializer identifier: bogus"),
    (lambda: layers.NormalLeaf(2, scale_constraint="bogus"), ValueError, r"constraint identifier: bogus"),
    (lambda: initializers.Dirichlet(alpha="x"), ValueError, r"Dirichlet expects alpha > 0.*alpha='x'"),
    (lambda: initializers.Dirichlet(axis=1.5), ValueError, r"Dirichlet expects axis to be an integer.*axis=1\.5"),
    (lambda: initializers.EpsilonInverseFanIn(epsilon=-1.0), ValueError, r"EpsilonInverseFanIn expects epsilon > 0"),
    (lambda: initializers.EpsilonInverseFanIn(axis="a"), ValueError, r"EpsilonInverseFanIn expects axis .*'a'"),
    (lambda: initializers.Equidistant(axis=None), ValueError, r"Equidistant expects axis to be an integer.*None"),
    (lambda: initializers.KMeans(data_fraction=0.0), ValueError, r"KMeans expects 0 < data_fraction <= 1.*=0\.0"),
    (lambda: initializers.KMeans(data_fraction=2.0), ValueError, r"KMeans expects 0 < data_fraction <= 1.*=2\.0"),
    (lambda: constraints.Clip("a"), ValueError, r"Clip expects min to be a number.*min='a'"),
    (lambda: constraints.Clip(0.0, float("nan")), ValueError, r"Clip expects max to be a number.*max=nan"),
    (
        lambda: optimizers.OnlineExpectationMaximization(learning_rate=0.0),
        ValueError,
        r"OnlineExpectationMaximization expects learning_rate > 0",
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


def _conv(**kwargs):
    return layers.Conv2DProduct(**({"strides": 1, "dilations": 1, "kernel_size": 2} | kwargs))


@pytest.mark.parametrize(("make", "error", "match"), INVALID_CONSTRUCTOR_ARGS)
def test_invalid_constructor_arguments_raise_at_once(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("initializer", "shape", "match"),
    [
        (initializers.Dirichlet(axis=5), (2, 3), r"Dirichlet works along axis 5, which a tensor of shape \(2, 3\)"),
        (initializers.EpsilonInverseFanIn(axis=-3), (4, 1), r"EpsilonInverseFanIn works along axis -3.*\(4, 1\)"),
        (initializers.Equidistant(axis=2), (2, 3), r"Equidistant works along axis 2, which a tensor of shape \(2, 3\)"),
    ],
)
def test_initializers_reject_an_axis_the_shape_lacks(initializer, shape, match):
    with pytest.raises(ValueError, match=match):
        initializer(shape)


LINEAR_ACCUMULATORS = r"Layer 's' expects accumulator_initializer to give finite, non-negative linear accumulators"


@pytest.mark.parametrize(
    ("make", "x", "match"),
    [
        (
            lambda: layers.DenseSum(
                2,
                accumulator_initializer="zeros",
                logspace_accumulators=False,
                name="s",
                linear_accumulator_constraint=keras.constraints.NonNeg(),
            ),
            REGION,
            rf"{LINEAR_ACCUMULATORS} with a positive total over the inputs of every sum.*smallest total=0\.0",
        ),
        (
            lambda: layers.DenseSum(
                2,
                accumulator_initializer=keras.initializers.Constant(-1.0),
                name="s",
                sum_op=sum_ops.SumOpEMBackprop(),
                linear_accumulator_constraint=constraints.Clip(-2.0),
            ),
            REGION,
            rf"{LINEAR_ACCUMULATORS}.*Received: min=-1\.0",
        ),
        (
            lambda: layers.Local2DSum(
                2, accumulator_initializer=keras.initializers.Constant(np.nan), logspace_accumulators=False, name="s"
            ),
            np.zeros((2, 2, 2, 3), "float32"),
            rf"{LINEAR_ACCUMULATORS}.*min=nan",
        ),
        (
            lambda: layers.RootSum(
                accumulator_initializer="zeros",
                logspace_accumulators=False,
                name="s",
                linear_accumulator_constraint=keras.constraints.NonNeg(),
            ),
            np.zeros((2, 3), "float32"),
            LINEAR_ACCUMULATORS,
        ),
        (
            lambda: layers.NormalLeaf(2, scale_initializer="zeros", name="s"),
            OBSERVATIONS,
            r"Layer 's' expects scale_initializer to give finite, positive scales. Received: min\(scale\)=0\.0",
        ),
        (
            lambda: layers.LaplaceLeaf(2, scale_initializer=keras.initializers.Constant(-1.0), name="s"),
            OBSERVATIONS,
            r"Layer 's' expects scale_initializer to give finite, positive scales. Received: min\(scale\)=-1\.0",
        ),
    ],
)
def test_initializers_giving_invalid_parameters_fail_when_built(make, x, match):
    # Otherwise the weights would be 0/0 or negative, or the densities NaN, from the first call on.
    with pytest.raises(ValueError, match=match):
        make()(x)


def test_logspace_accumulators_clip_non_positive_initial_values():
    # Documented by LogspaceWrapperInitializer: log(max(value, tiny)), so the weights stay a distribution.
    for value in (0.0, -1.0):
        layer = layers.DenseSum(
            2, accumulator_initializer=keras.initializers.Constant(value), logspace_accumulators=True
        )
        out = np.asarray(layer(np.log(np.full((2, 4, 1, 3), 0.5, "float32"))))
        np.testing.assert_allclose(out, np.log(0.5), rtol=1e-5)


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
        r"Layer 'root' expects inputs of shape \[batch, 1, num_decomps, num_nodes\] or \[batch, num_in\].*\(2, 2, 1, 3",
    ),
    (
        lambda: layers.RootSum(name="root"),
        np.zeros((2, 1, 3), "float32"),
        r"Layer 'root' expects inputs of shape \[batch, 1, num_decomps, num_nodes\] or \[batch, num_in\]",
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
    (
        lambda: layers.PermuteAndPadScopes([[]], name="perm"),
        REGION,
        r"Layer 'perm' expects permutations of shape \[num_decomps=1, num_scopes_out\] with num_scopes_out >= 1.*"
        r"\(1, 0\)",
    ),
    (
        lambda: layers.FlatToRegions(name="f"),
        np.zeros((3,), "float32"),
        r"Layer 'f' expects inputs of shape \[batch, num_vars\] or .*input_shape=\(3,\)",
    ),
    (
        lambda: layers.LaplaceLeaf(2, name="leaf"),
        np.zeros((2, 4), "float32"),
        r"Layer 'leaf' expects inputs of shape \[batch, \*variables, var_dimensionality\]",
    ),
    (
        lambda: layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, name="c"),
        np.zeros((2, 4, 4), "float32"),
        r"Layer 'c' expects inputs of rank 4 with layout \[batch, height, width, channels\].*\(2, 4, 4\)",
    ),
    (
        lambda: layers.Conv2DProduct(strides=1, dilations=1, kernel_size=3, name="c"),
        np.zeros((2, 2, 2, 1), "float32"),
        r"Layer 'c': a \(3, 3\) kernel with dilations \(1, 1\) and padding 'valid' does not fit an input of 2x2",
    ),
    (
        lambda: layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, num_channels=17, name="c"),
        np.zeros((2, 3, 3, 2), "float32"),
        r"Layer 'c' can form at most 16 distinct channel combinations from 2 input channels.*num_channels=17",
    ),
    (
        lambda: layers.Local2DSum(2, name="s"),
        np.zeros((2, 4, 4, 1, 1), "float32"),
        r"Layer 's' expects inputs of rank 4 with layout \[batch, height, width, channels\]",
    ),
    (
        lambda: layers.Conv2DSum(2, name="s"),
        np.zeros((2, 4, 4), "float32"),
        r"Layer 's' expects inputs of rank 4 with layout \[batch, height, width, channels\]",
    ),
    (
        lambda: layers.SpatialToRegions(name="s"),
        np.zeros((2, 1, 3), "float32"),
        r"Layer 's' expects inputs of rank 4 with layout \[batch, height, width, channels\]",
    ),
    (
        lambda: layers.TemporalDenseProduct(name="t"),
        np.zeros((2, 2, 1, 3), "float32"),
        r"Layer 't' expects a list of two inputs \[interface_t_minus_1, template_t\]",
    ),
    (
        lambda: layers.TemporalDenseProduct(name="t"),
        [np.zeros((2, 2, 1, 3), "float32"), np.zeros((2, 3, 1, 3), "float32")],
        r"Layer 't' multiplies nodes per scope and decomposition, so both inputs need the same num_scopes",
    ),
    (
        lambda: layers.TemporalDenseProduct(name="t"),
        [np.zeros((2, 2, 3), "float32")] * 2,
        r"Layer 't' expects inputs of rank 4 with layout \[batch, num_scopes, num_decomps, num_nodes\]",
    ),
    (
        lambda: layers.LogDropout(0.5, noise_shape=(None, 2), name="d"),
        REGION,
        r"Layer 'd' expects a noise_shape of the input's rank .*noise_shape=\(None, 2\), input_shape=\(2, 4, 1, 3\)",
    ),
    (
        lambda: layers.LogDropout(0.5, noise_shape=(None, 4, 1, 2), name="d"),
        REGION,
        r"Layer 'd' expects a noise_shape of the input's rank whose sizes are None, 1 or the input's size",
    ),
    (
        lambda: layers.LogDropout(0.5, axis_at_least_one=4, name="d"),
        REGION,
        r"Layer 'd' expects axis_at_least_one to be an axis of its rank-4 input. Received: axis_at_least_one=4",
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
        (lambda: layers.RootSum(name="root"), (1, 1, None), r"Layer 'root' needs known num_decomps and num_nodes"),
        (lambda: layers.ReduceProduct(2, name="r"), (None, 1, 3), r"Layer 'r' .*known multiple of 2"),
        (lambda: layers.NormalLeaf(2, name="leaf"), (None, 1, 1), r"Layer 'leaf' .*known non-batch sizes"),
        (
            lambda: layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, name="c"),
            (None, 4, 1),
            r"Layer 'c' needs known height, width and channels",
        ),
        (lambda: layers.Local2DSum(2, name="s"), (4, 4, None), r"Layer 's' needs known height, width and channels"),
        (lambda: layers.SpatialToRegions(name="s"), (None, 2, 3), r"Layer 's' needs known height, width and channels"),
        (lambda: layers.Undecompose(name="u"), (1, None, 3), r"Layer 'u' expects num_decomps_in to be a multiple"),
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


# A layer is built for the shape of its first input; a later input must fit its weights (or, for layers without
# weights, their build-time checks), else the layer names itself and the expected shape instead of a TF error.
@pytest.mark.parametrize(
    ("make", "built_for", "x", "match"),
    [
        (
            lambda: layers.NormalLeaf(2, name="l"),
            OBSERVATIONS,
            np.zeros((4, 5, 1, 1), "float32"),
            r"expected shape=\(None, 4, 1, 1\)",
        ),
        (
            lambda: layers.IndicatorLeaf(2, name="l"),
            np.zeros((2, 4, 1, 1), "int32"),
            np.zeros((2, 4, 2, 1), "int32"),
            r"expected shape=\(None, 4, 1, 1\), found shape=\(2, 4, 2, 1\)",
        ),
        (lambda: layers.DenseSum(2, name="l"), REGION, np.zeros((4, 5, 1, 3), "float32"), r"expected axis 1 .*value 4"),
        (
            lambda: layers.DenseSum(2, name="l"),
            REGION,
            np.zeros((2, 4, 1, 2), "float32"),
            r"expected axis -1 .*value 3",
        ),
        (
            lambda: layers.RootSum(name="l"),
            np.zeros((2, 3), "float32"),
            np.zeros((2, 4), "float32"),
            r"axis -1 .*value 3",
        ),
        (
            lambda: layers.Local2DSum(2, name="l"),
            np.zeros((2, 3, 3, 2), "float32"),
            np.zeros((2, 3, 4, 2), "float32"),
            r"expected axis 2 of input shape to have value 3",
        ),
        (
            lambda: layers.Conv2DSum(2, name="l"),
            np.zeros((2, 3, 3, 2), "float32"),
            np.zeros((2, 3, 3, 4), "float32"),
            r"expected axis -1 of input shape to have value 2",
        ),
        (
            lambda: layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2, num_channels=3, seed=0, name="l"),
            np.zeros((2, 4, 4, 2), "float32"),
            np.zeros((2, 4, 4, 1), "float32"),
            r"expected shape=\(None, 4, 4, 2\), found shape=\(2, 4, 4, 1\)",
        ),
        (
            lambda: layers.SpatialToRegions(name="l"),
            np.zeros((2, 1, 1, 3), "float32"),
            np.zeros((2, 2, 1, 3), "float32"),
            r"expected shape=\(None, 1, 1, 3\)",
        ),
        (
            lambda: layers.PermuteAndPadScopes([[0, 1, 2, 3]], name="l"),
            REGION,
            np.zeros((2, 6, 1, 3), "float32"),
            r"expected axis 1 of input shape to have value 4",
        ),
        (
            lambda: layers.PermuteAndPadScopesRandom(factors=[2, 2], seed=0, name="l"),
            REGION,
            np.zeros((2, 4, 2, 3), "float32"),
            r"expected axis 2 of input shape to have value 1",
        ),
        (
            lambda: layers.Undecompose(2, name="l"),
            np.zeros((2, 1, 4, 3), "float32"),
            np.zeros((2, 1, 3, 3), "float32"),
            r"expects num_decomps_in to be a multiple of num_decomps=2.*\(2, 1, 3, 3\)",
        ),
        pytest.param(
            lambda: layers.DenseProduct(2, name="l"),
            REGION,
            np.zeros((4, 5, 1, 3), "float32"),
            r"merges groups of num_factors=2",
            id="DenseProduct",
        ),
        pytest.param(
            lambda: layers.ReduceProduct(2, name="l"),
            REGION,
            np.zeros((4, 5, 1, 3), "float32"),
            r"merges groups of num_factors=2",
            id="ReduceProduct",
        ),
    ],
)
def test_built_layer_rejects_an_input_that_does_not_fit(make, built_for, x, match):
    layer = make()
    layer(built_for)
    with pytest.raises(ValueError, match=rf"(?s)[Ll]ayer 'l'.*{match}"):
        layer(x)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((2, 5), "float32"), r"layer 'normal_leaf\w*' is incompatible.*expected shape=\(None, 4, 2, 1\)"),
        # (log_marginal hands the data to the leaf, which names itself)
        pytest.param(  # string tensors: TensorFlow only
            tf.constant([["a"] * 4]),
            r"(expects numeric data|expects floating-point observations).*dtype=string",
            marks=pytest.mark.requires_tensorflow,
        ),
    ],
)
def test_model_rejects_data_of_the_wrong_width_or_dtype(x, match):
    spn = _small_spn()
    for call in (spn, spn.log_marginal, lambda data: spn.predict(data, verbose=0)):
        with pytest.raises((ValueError, TypeError), match=rf"(?s){match}"):
            call(x)


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
    pytest.param(
        lambda: layers.LaplaceLeaf(2, name="s"),
        tf.constant([[[["a"]]]]),
        r"floating-point observations.*dtype=string",
        marks=pytest.mark.requires_tensorflow,  # string tensors: TensorFlow only
    ),
    pytest.param(
        lambda: layers.IndicatorLeaf(2, name="s"),
        tf.constant([[[["a"]]]]),
        r"integer states \(or floats, where NaN marks a missing value\).*dtype=string",
        marks=pytest.mark.requires_tensorflow,
    ),
    pytest.param(
        lambda: layers.NormalizeStandardScore(name="s"),
        tf.constant([["a"]]),
        r"floating-point or integer.*string",
        marks=pytest.mark.requires_tensorflow,
    ),
    (
        lambda: layers.NormalLeaf(2, name="s"),
        np.zeros((2, 4, 1, 1), bool),
        r"floating-point observations \(NaN marks a missing value\); cast integer data first.*dtype=bool",
    ),
    (lambda: layers.CauchyLeaf(2, name="s"), np.zeros((2, 4, 1, 1), "int64"), r"floating-point observations.*int64"),
    (
        lambda: layers.IndicatorLeaf(2, name="s"),
        np.zeros((2, 4, 1, 1), "complex64"),
        r"integer states \(or floats, where NaN marks a missing value\).*dtype=complex64",
    ),
    (lambda: layers.DenseSum(2, name="s"), np.zeros((2, 4, 1, 3), bool), r"floating-point log-probabilities.*bool"),
    pytest.param(
        lambda: layers.DenseSum(2, name="s"),
        tf.constant([[[["a"]]]]),
        r"floating-point log-probabilities.*string",
        marks=pytest.mark.requires_tensorflow,
    ),
    (
        lambda: layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, depthwise=True, name="s"),
        np.zeros((2, 4, 4, 3), "int32"),
        r"floating-point log-probabilities.*dtype=int32",
    ),
    (lambda: layers.Local2DSum(2, name="s"), np.zeros((2, 2, 2, 3), "int32"), r"floating-point log-prob.*int32"),
    (lambda: layers.Conv2DSum(2, name="s"), np.zeros((2, 2, 2, 3), bool), r"floating-point log-prob.*dtype=bool"),
    (
        lambda: layers.TemporalDenseProduct(name="s"),
        [np.zeros((2, 2, 1, 3), "int32")] * 2,
        r"floating-point log-probabilities.*dtype=int32",
    ),
]


@pytest.mark.parametrize(("make", "x", "match"), WRONG_DTYPES)
def test_wrong_input_dtype_raises_type_error(make, x, match):
    with pytest.raises(TypeError, match=rf"Layer 's' expects {match}"):
        make()(x)


def test_other_float_and_integer_dtypes_reach_the_leaves_as_documented():
    # Float inputs of another precision are cast to the layer's compute dtype (Keras autocasting).
    leaf = layers.NormalLeaf(2)
    x = np.random.default_rng(0).normal(size=(2, 4, 1, 1))
    expected = np.asarray(leaf(x.astype("float32")))
    for dtype in ("float16", "float64"):
        out = leaf(x.astype(dtype))
        assert dtype_name(out) == "float32"
        np.testing.assert_allclose(np.asarray(out), expected, atol=5e-3 if dtype == "float16" else 1e-6)
    # Indicator states may be bool (False/True = states 0/1), any integer type, or floats (NaN = missing).
    states = np.array([[[[0]], [[1]]]])
    indicator = layers.IndicatorLeaf(num_components=2)
    expected = np.asarray(indicator(states.astype("int32")))
    for dtype in (bool, "uint8", "int64", "float16", "float64"):
        np.testing.assert_array_equal(np.asarray(indicator(states.astype(dtype))), expected, err_msg=str(dtype))


def test_float16_spn_runs_and_marginalizes():
    keras.config.set_floatx("float16")
    keras.config.set_dtype_policy("float16")  # restored by the conftest fixture
    spn = _small_spn()
    out = spn(np.array([[np.nan, np.nan, np.nan, np.nan], [0.1, -0.2, 0.3, 0.0]], "float16"))
    assert dtype_name(out) == "float16"
    np.testing.assert_allclose(np.asarray(out, np.float32)[0], 0.0, atol=1e-2)
    assert np.all(np.isfinite(np.asarray(out)))


def test_integer_inputs_are_cast_by_normalize_standard_score():
    out = layers.NormalizeStandardScore()(np.array([[1, 3]], "uint8"))
    assert dtype_name(out) == "float32"
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
        (np.full((2, 3, 1, 1), -2.5, "float32"), rf"{IND} expects integer states in \[0, 3\).*negative value"),
        # +-inf and huge values used to wrap around in the cast to int32 (+inf was reported as negative).
        (np.full((2, 3, 1, 1), np.inf, "float32"), rf"{IND} expects integer states in \[0, 3\).*larger value"),
        (np.full((2, 3, 1, 1), -np.inf, "float32"), rf"{IND} expects integer states in \[0, 3\).*negative value"),
        (np.full((2, 3, 1, 1), 3e9, "float64"), rf"{IND} expects integer states in \[0, 3\).*larger value"),
        (np.full((2, 3, 1, 1), 2**32 + 1, "int64"), rf"{IND} expects integer states in \[0, 3\).*larger value"),
        (np.full((2, 3, 1, 1), 255, "uint8"), rf"{IND} expects integer states in \[0, 3\).*larger value"),
    ],
)
@pytest.mark.parametrize(
    "graph", [False, pytest.param(True, marks=pytest.mark.requires_tensorflow)], ids=["eager", "tf_function"]
)
def test_indicator_leaf_rejects_states_out_of_range(states, match, graph):
    layer = layers.IndicatorLeaf(num_components=3, dtype=states.dtype, name="ind")
    call = function(layer) if graph else layer
    with pytest.raises(graph_check_error() if graph else eager_check_errors(), match=match):
        call(tensor(states))


# --- Evidence masks --------------------------------------------------------------------------------------------


LEAF_MASK = r"Layer 'leaf' expects an evidence_mask shaped like its input \(2, 4, 1, 1\) or like its input without"


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (np.ones((2, 3, 1, 1), bool), ValueError, rf"{LEAF_MASK}.*evidence_mask.shape=\(2, 3, 1, 1\)"),
        (np.ones((2,), bool), ValueError, rf"{LEAF_MASK}.*evidence_mask.shape=\(2,\)"),
        (np.ones((2, 4, 1, 1, 1), bool), ValueError, rf"{LEAF_MASK}.*evidence_mask.shape=\(2, 4, 1, 1, 1\)"),
        (np.ones((2, 4, 1, 1), "float32"), TypeError, r"Layer 'leaf' expects a boolean evidence_mask.*float32"),
        (np.full((2, 4, 1, 1), "a"), TypeError, r"Layer 'leaf' expects a boolean evidence_mask.*dtype=string"),
        (np.ones((3, 4, 1, 1), bool), ValueError, rf"{LEAF_MASK}.*evidence_mask.shape=\(3, 4, 1, 1\)"),
    ],
)
def test_leaf_rejects_bad_evidence_mask(mask, error, match):
    with pytest.raises(error, match=match):
        layers.NormalLeaf(num_components=2, name="leaf")(OBSERVATIONS, evidence_mask=mask)


def test_leaf_accepts_integer_and_broadcast_evidence_masks():
    leaf = layers.NormalLeaf(num_components=2)
    mask = np.array([1, 0, 1, 1]).reshape(1, 4, 1)  # per variable (no last axis), broadcast over the batch
    expected = np.asarray(leaf(OBSERVATIONS, evidence_mask=np.broadcast_to(mask[..., None], (2, 4, 1, 1)) > 0))
    np.testing.assert_array_equal(np.asarray(leaf(OBSERVATIONS, evidence_mask=mask.astype("int32"))), expected)
    np.testing.assert_array_equal(expected[:, 1], 0.0)


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
        (np.ones((2, 4), bool), ValueError, r"(?s)SequentialSumProductNetwork.*evidence_mask.shape=\(2, 4\)"),
    ],
)
@pytest.mark.parametrize("query", ["call", "log_marginal", "mpe", "complete", "sample", "log_conditional"])
def test_model_rejects_bad_evidence_mask(mask, error, match, query):
    spn = _small_spn()
    x = np.zeros((3, 4), "float32")
    run = {
        "call": lambda: spn((x, mask)),
        "log_marginal": lambda: spn.log_marginal(x, mask),
        "mpe": lambda: spn.mpe(x, mask),
        "complete": lambda: spn.complete(x, mask, method="posterior"),
        "sample": lambda: spn.sample(evidence=x, evidence_mask=mask, seed=0),
        "log_conditional": lambda: spn.log_conditional(x, np.zeros((3, 4), bool), mask),
    }[query]
    with pytest.raises(error, match=match):
        run()


@pytest.mark.parametrize("query", ["call", "log_marginal", "mpe", "complete", "log_conditional"])
def test_integer_evidence_masks_act_like_boolean_ones(query):
    # Chosen behaviour, as in the leaves: an integer mask is cast to bool (nonzero = observed).
    spn = _small_spn()
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    as_bool = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], bool)
    run = {
        "call": lambda m: spn((x, m)),
        "log_marginal": lambda m: spn.log_marginal(x, m),
        "mpe": lambda m: spn.mpe(x, m),
        "complete": lambda m: spn.complete(x, m, method="posterior"),
        "log_conditional": lambda m: spn.log_conditional(x, ~as_bool & (np.arange(4) == 1), m),
    }[query]
    want = np.asarray(run(as_bool))
    np.testing.assert_allclose(np.asarray(run(as_bool.astype("int32") * 3)), want, rtol=1e-6)
    assert not np.allclose(np.asarray(run(np.zeros_like(as_bool))), want)  # the mask matters


@pytest.mark.parametrize(
    ("query_mask", "error", "match"),
    [
        (np.ones((3, 4), "float32"), TypeError, r"SequentialSumProductNetwork\) expects a boolean query_mask.*float32"),
        (np.full((3, 4), "a"), TypeError, r"expects a boolean query_mask.*dtype=string"),
        (np.ones((3, 5), bool), ValueError, r"expects a query_mask shaped like its input.*query_mask.shape=\(3, 5\)"),
    ],
)
def test_log_conditional_rejects_bad_query_masks(query_mask, error, match):
    spn = _small_spn()
    with pytest.raises(error, match=rf"Model 'spn' .*{match}"):
        spn.log_conditional(np.zeros((3, 4), "float32"), query_mask)
    with pytest.raises(ValueError, match=r"Model 'spn': query_mask and evidence_mask must not overlap"):
        spn.log_conditional(np.zeros((3, 4), "float32"), np.ones((3, 4), bool), np.ones((3, 4), bool))


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


# --- Infinite values, and NaN past the leaves --------------------------------------------------------------------


@pytest.mark.parametrize("use_accumulators", [False, True], ids=["gradient", "em"])
@pytest.mark.parametrize("leaf_cls", [layers.NormalLeaf, layers.CauchyLeaf, layers.LaplaceLeaf])
def test_infinite_observations_have_probability_zero_and_no_gradient(leaf_cls, use_accumulators):
    x = np.random.default_rng(0).normal(size=(3, 4, 2, 2)).astype("float32")
    x[0, 1, 0, 0] = np.inf  # one dimension of a bivariate variable
    x[1, 2, 1] = -np.inf
    leaf = leaf_cls(num_components=3, use_accumulators=use_accumulators)
    out = leaf(x)  # (builds the leaf)
    # like an SPN above the leaf: an impossible value gets no signal
    grads = grad(lambda: keras.ops.exp(leaf(x)), variables=leaf.trainable_weights)

    out = np.asarray(out)
    assert not np.isnan(out).any()
    assert np.all(out[0, 1, 0] == -np.inf) and np.all(out[1, 2, 1] == -np.inf)
    assert np.isfinite(out).sum() == out.size - 2 * 3
    assert grads and all(np.all(np.isfinite(np.asarray(g))) for g in grads)


def test_training_on_an_infinite_value_reports_an_infinite_loss_and_keeps_the_weights_finite():
    spn = _small_spn()
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    x[0, 1] = np.inf
    assert np.asarray(spn(x))[0, 0] == -np.inf and np.all(np.isfinite(np.asarray(spn(x))[1:]))
    spn.compile(optimizer=keras.optimizers.Adam(0.01), loss=losses.NegativeLogLikelihood())
    history = spn.fit(x, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isinf(history.history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in spn.get_weights())


SPATIAL = np.log(np.random.default_rng(2).uniform(0.1, 1.0, size=(3, 2, 2, 3))).astype("float32")
REGION_VALUES = np.log(np.random.default_rng(3).uniform(0.1, 1.0, size=(3, 4, 2, 3))).astype("float32")

# Layers past the leaves get log-probabilities: -inf (probability 0) is valid, NaN is not but must not be hidden.
LOG_SPACE_LAYERS = [
    pytest.param(lambda: layers.DenseSum(2), REGION_VALUES, id="DenseSum-grad"),
    pytest.param(lambda: layers.DenseSum(2, sum_op=sum_ops.SumOpEMBackprop()), REGION_VALUES, id="DenseSum-em"),
    pytest.param(
        lambda: layers.DenseSum(2, sum_op=sum_ops.SumOpHardEMBackprop(sample_prob=0.5)), REGION_VALUES, id="hard_em"
    ),
    pytest.param(lambda: layers.RootSum(return_weighted_child_logits=False), REGION_VALUES[:, :1, :1], id="RootSum"),
    pytest.param(lambda: layers.RootSum(), REGION_VALUES[:, 0, 0], id="RootSum-children"),
    pytest.param(lambda: layers.DenseProduct(2), REGION_VALUES, id="DenseProduct"),
    pytest.param(lambda: layers.ReduceProduct(4), REGION_VALUES, id="ReduceProduct"),
    pytest.param(lambda: layers.PermuteAndPadScopes([[3, 1, 0, 2], [0, 1, 2, 3]]), REGION_VALUES, id="Permute"),
    pytest.param(lambda: layers.Undecompose(), REGION_VALUES, id="Undecompose"),
    pytest.param(lambda: layers.LogDropout(0.5), REGION_VALUES, id="LogDropout"),
    pytest.param(lambda: layers.Conv2DProduct(1, 1, 2, padding="full", num_channels=4, seed=0), SPATIAL, id="conv_p"),
    pytest.param(lambda: layers.Conv2DProduct(2, 1, 2, depthwise=True), SPATIAL, id="Conv2DProduct-depthwise"),
    pytest.param(lambda: layers.Local2DSum(2), SPATIAL, id="Local2DSum"),
    pytest.param(lambda: layers.Conv2DSum(2, sum_op=sum_ops.SumOpUnweightedHardEMBackprop()), SPATIAL, id="Conv2DSum"),
    pytest.param(lambda: layers.SpatialToRegions(), SPATIAL[:, :1, :1], id="SpatialToRegions"),
]


@pytest.mark.parametrize(("make", "x"), LOG_SPACE_LAYERS)
def test_log_space_layers_keep_zero_probabilities_without_nan(make, x):
    x = x.copy()
    x[0] = -np.inf  # every input of sample 0 has probability zero
    x[1, ..., 0] = -np.inf  # one child of every sum (one channel of every cell) of sample 1
    layer = make()
    out = layer(x)  # (builds the layer)
    gradients = grad(lambda: keras.ops.exp(layer(x)), variables=layer.trainable_weights)
    out = np.asarray(out)

    assert not np.isnan(out).any()
    assert np.all(out[0] == -np.inf)
    np.testing.assert_allclose(out[2], np.asarray(layer(x[2:]))[0], rtol=1e-6)  # samples do not mix
    if layer.trainable_weights:  # documented: an all -inf region has -inf sums with a zero gradient
        assert all(np.all(np.isfinite(np.asarray(g))) for g in gradients)


@pytest.mark.parametrize(("make", "x"), LOG_SPACE_LAYERS)
def test_nan_log_probabilities_propagate_to_the_affected_sample_only(make, x):
    # A NaN log-probability (e.g. from NaN parameters) is never turned into a valid value such as -inf.
    x = x.copy()
    x[0].flat[0] = np.nan
    layer = make()
    out = np.asarray(layer(x))
    assert np.isnan(out[0]).any()
    assert not np.isnan(out[1:]).any()
    np.testing.assert_allclose(out[1:], np.asarray(layer(x[1:])), rtol=1e-6)


# --- Empty batches -----------------------------------------------------------------------------------------------


def _small_dgcspn() -> models.SequentialSumProductNetwork:
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(2, 2, 1)),
            layers.IndicatorLeaf(num_components=2, dtype="float32"),
            layers.Conv2DProduct(strides=1, dilations=1, kernel_size=2, padding="full", depthwise=True),
            layers.Local2DSum(num_sums=2),
            layers.Conv2DProduct(strides=1, dilations=2, kernel_size=2, padding="final", num_channels=3, seed=0),
            layers.Conv2DSum(num_sums=2),
            layers.SpatialToRegions(),
            layers.RootSum(return_weighted_child_logits=False),
        ],
        name="dgcspn",
    )


@pytest.mark.parametrize(("make", "shape"), [(_small_spn, (0, 4)), (_small_dgcspn, (0, 2, 2, 1))], ids=["rat", "dgc"])
def test_empty_batches_give_empty_results_of_the_right_shape(make, shape):
    # Chosen behaviour: an empty batch is valid input everywhere and yields an empty result (no error, no NaN).
    spn = make()
    x, mask = np.zeros(shape, "float32"), np.zeros(shape, bool)
    assert tuple(spn(x).shape) == (0, 1)
    assert spn.predict(x, verbose=0).shape == (0, 1)  # keras.Model.predict alone fails with an UnboundLocalError
    assert spn.predict((x, mask), verbose=0).shape == (0, 1)
    assert tuple(spn((x, mask)).shape) == (0, 1)
    assert tuple(spn.log_marginal(x, mask).shape) == (0,)
    assert tuple(spn.log_conditional(x, mask).shape) == (0,)
    for method in ("mpe", "posterior", "sample"):
        assert tuple(spn.complete(x, mask, method=method).shape) == shape
    assert tuple(spn.sample(evidence=x, seed=0).shape) == shape
    assert tuple(spn.zero_evidence_inference(0).shape) == shape
    assert tuple(spn.sample(num_samples=0, seed=0).shape) == shape
    assert tuple(spn.sample(num_samples=np.int64(2), seed=0).shape) == (2, *shape[1:])
    assert tuple(spn.zero_evidence_inference(tensor(1)).shape) == (1, *shape[1:])
    for layer in spn.layers:  # every layer on its own
        x = layer(x)
        assert tuple(x.shape) == (0, *layer.output.shape[1:]), layer.name


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda spn: spn.sample(), ValueError, r"Model '\w+': pass num_samples or evidence. Received neither."),
        (lambda spn: spn.sample(num_samples=-1), ValueError, r"Model '\w+' expects num_samples >= 0. Received: -1"),
        (lambda spn: spn.sample(num_samples=2.0), TypeError, r"expects num_samples to be an integer. Received: 2.0"),
        (lambda spn: spn.sample(num_samples=True), TypeError, r"expects num_samples to be an integer. Received: True"),
        (lambda spn: spn.zero_evidence_inference(-3), ValueError, r"expects size >= 0. Received: -3"),
        (lambda spn: spn.zero_evidence_inference("4"), TypeError, r"expects size to be an integer. Received: '4'"),
    ],
    ids=["none", "negative", "float", "bool", "size-negative", "size-str"],
)
def test_bad_sample_counts_raise(call, error, match):
    with pytest.raises(error, match=match):
        call(_small_spn())


def test_fitting_or_evaluating_an_empty_dataset_warns_and_changes_nothing():
    spn = _small_spn()
    spn.compile(optimizer=keras.optimizers.Adam(0.1), loss=losses.NegativeLogLikelihood())
    before = spn.get_weights()
    with pytest.warns(UserWarning, match="Your input ran out of data"):
        history = spn.fit(np.zeros((0, 4), "float32"), epochs=1, verbose=0)
    with pytest.warns(UserWarning, match="Your input ran out of data"):
        spn.evaluate(np.zeros((0, 4), "float32"), verbose=0)
    assert history.history == {}
    for old, new in zip(before, spn.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


# --- Corrupted and foreign .keras files ----------------------------------------------------------------------------


def _rezip(source, target, member, change):
    """Copy the zip ``source`` to ``target`` with ``member`` changed (``change(bytes) -> bytes``, or None: dropped)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name) if name != member else change(zin.read(name))
            if data is not None:
                zout.writestr(name, data)


def _truncate(path, target):
    target.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


NOT_A_KERAS_ZIP = r"File not found: filepath=.*Please ensure the file is an accessible `.keras` zip file"
CORRUPTIONS = {
    "truncated_zip": (_truncate, ValueError, NOT_A_KERAS_ZIP),
    "random_bytes": (lambda p, t: t.write_bytes(np.random.default_rng(0).bytes(4096)), ValueError, NOT_A_KERAS_ZIP),
    "empty_file": (lambda p, t: t.write_bytes(b""), ValueError, NOT_A_KERAS_ZIP),
    "missing_file": (lambda p, t: None, ValueError, NOT_A_KERAS_ZIP),
    "broken_config_json": (
        lambda p, t: _rezip(p, t, "config.json", lambda b: b[: len(b) // 2]),
        json.JSONDecodeError,  # a ValueError
        r"line 1 column \d+",
    ),
    "config_json_not_a_model": (
        lambda p, t: _rezip(p, t, "config.json", lambda b: b"[]"),
        ValueError,
        r"Expected object to be an instance of `KerasSaveable`, but got \[\]",
    ),
    "missing_config_json": (
        lambda p, t: _rezip(p, t, "config.json", lambda b: None),
        KeyError,
        r"There is no item named 'config.json' in the archive",
    ),
    "missing_weights": (
        lambda p, t: _rezip(p, t, "model.weights.h5", lambda b: None),
        ValueError,
        r"Expected a model.weights.h5 or model.weights.npz file",
    ),
    "truncated_weights": (
        lambda p, t: _rezip(p, t, "model.weights.h5", lambda b: b[: len(b) // 2]),
        OSError,
        r"truncated file",
    ),
    "unknown_layer_class": (
        lambda p, t: _rezip(p, t, "config.json", lambda b: b.replace(b'DenseSum"', b'DenseSumV2"')),
        ValueError,  # Keras alone says "<class SequentialSumProductNetwork> could not be deserialized properly"
        r"Model 'spn' \(SequentialSumProductNetwork\) could not revive one of its layers: Could not locate class "
        r"'DenseSumV2'",
    ),
    "unknown_model_class": (
        lambda p, t: _rezip(p, t, "config.json", lambda b: b.replace(b'SequentialSumProductNetwork"', b'SpnV9"')),
        TypeError,
        r"Could not locate class 'SpnV9'",
    ),
    "invalid_layer_argument": (
        lambda p, t: _rezip(p, t, "config.json", lambda b: b.replace(b'"num_sums": 2', b'"num_sums": 0')),
        ValueError,
        r"DenseSum expects num_sums to be a positive integer. Received: num_sums=0",
    ),
    "weights_of_another_model": (
        lambda p, t: _rezip(p, t, "model.weights.h5", lambda b: _foreign_weights(t.parent)),
        ValueError,
        r"objects could not be loaded.*Layer 'normal_leaf\w*' expected 2 variables, but received 0",
    ),
}


def _foreign_weights(directory):
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    dense.save(directory / "dense.keras")
    return zipfile.ZipFile(directory / "dense.keras").read("model.weights.h5")


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_loading_a_corrupted_keras_file_raises_a_clear_error(corruption, tmp_path):
    corrupt, error, match = CORRUPTIONS[corruption]
    good = tmp_path / "spn.keras"
    _small_spn().save(good)
    bad = tmp_path / "bad.keras"
    corrupt(good, bad)
    with pytest.raises(error, match=rf"(?s){match}"):
        keras.models.load_model(bad)


def test_a_foreign_keras_model_is_rejected_by_spn_queries(tmp_path):
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(tmp_path / "dense.keras")
    foreign = keras.models.load_model(tmp_path / "dense.keras")
    x = np.zeros((2, 4), "float32")
    no_leaf = r"Model '\w+' has no leaf layer \(a BaseLeaf subclass\)"
    for query in (models.SequentialSumProductNetwork.log_marginal, models.SequentialSumProductNetwork.complete):
        with pytest.raises(ValueError, match=no_leaf):
            query(foreign, x)
    with pytest.raises(ValueError, match=no_leaf):
        models.SequentialSumProductNetwork([keras.Input((4,)), *foreign.layers]).log_marginal(x)
    with pytest.raises(ValueError, match=r"Layer 'dense\w*' \(Dense\) comes before the data is in the region layout"):
        region.dense_spn_scopes(foreign)
