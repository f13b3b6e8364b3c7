"""Forward values, gradients and samples of the leaf layers against scipy.stats / numpy references."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from scipy import stats

from libspn_keras import layers
from tests.backend_utils import grad, run, tensor, to_numpy

MODES = ["eager", "function", "jit"]
LOCATION_SCALE = [
    (layers.NormalLeaf, stats.norm),
    (layers.CauchyLeaf, stats.cauchy),
    (layers.LaplaceLeaf, stats.laplace),
]
LEAF_IDS = ["normal", "cauchy", "laplace"]


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}


def make_location_scale_leaf(leaf_cls, x_shape, num_components, rng, dtype):
    """Build a leaf for inputs of ``x_shape`` and give it random parameters; return it with the parameters."""
    leaf = leaf_cls(num_components=num_components)
    leaf.build(x_shape)
    param_shape = (*x_shape[1:-1], num_components, x_shape[-1])
    location = rng.normal(size=param_shape).astype(dtype)
    scale = rng.uniform(0.3, 2.0, size=param_shape).astype(dtype)
    leaf.location.assign(location[np.newaxis])  # the weights have the original's leading axis
    leaf.scale.assign(scale[np.newaxis])
    return leaf, location, scale


def reference_log_prob(dist, x, location, scale, missing=None):
    """``sum_j logpdf(x[..., j] | location[..., k, j], scale[..., k, j])`` with missing dimensions dropped."""
    x64 = np.asarray(x, np.float64)
    safe = np.where(np.isnan(x64), 0.0, x64)[..., np.newaxis, :]
    per_dim = dist.logpdf(safe, loc=location.astype(np.float64), scale=scale.astype(np.float64))
    if missing is not None:
        per_dim = np.where(missing[..., np.newaxis, :], 0.0, per_dim)
    return per_dim.sum(axis=-1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("var_dim", [1, 3])
@pytest.mark.parametrize(("leaf_cls", "dist"), LOCATION_SCALE, ids=LEAF_IDS)
def test_location_scale_leaf_matches_scipy(leaf_cls, dist, var_dim, mode, floatx):
    rng = np.random.default_rng(0)
    x_shape = (5, 4, 2, var_dim)
    leaf, location, scale = make_location_scale_leaf(leaf_cls, x_shape, 3, rng, floatx)
    x = rng.normal(scale=2.0, size=x_shape).astype(floatx)

    out = run(leaf, mode, tensor(x))

    assert out.shape == (5, 4, 2, 3)
    assert out.dtype == floatx
    np.testing.assert_allclose(out, reference_log_prob(dist, x, location, scale), **tolerance(floatx))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leaf_cls", "dist"), LOCATION_SCALE, ids=LEAF_IDS)
def test_location_scale_leaf_image_layout(leaf_cls, dist, mode):
    # [batch, height, width, channels]: (height, width) index variables, channels are the variable dimensions.
    rng = np.random.default_rng(1)
    x_shape = (3, 2, 3, 2)
    leaf, location, scale = make_location_scale_leaf(leaf_cls, x_shape, 4, rng, "float32")
    x = rng.normal(size=x_shape).astype("float32")

    out = run(leaf, mode, tensor(x))

    assert tuple(leaf.location.shape) == (1, 2, 3, 4, 2)
    np.testing.assert_allclose(out, reference_log_prob(dist, x, location, scale), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("var_dim", [1, 3])
@pytest.mark.parametrize(("leaf_cls", "dist"), LOCATION_SCALE, ids=LEAF_IDS)
def test_nan_marginalizes_per_dimension(leaf_cls, dist, var_dim, mode):
    rng = np.random.default_rng(2)
    x_shape = (6, 3, 2, var_dim)
    leaf, location, scale = make_location_scale_leaf(leaf_cls, x_shape, 2, rng, "float32")
    x = rng.normal(size=x_shape).astype("float32")
    missing = rng.uniform(size=x_shape) < 0.4
    missing[0] = True  # a fully missing sample
    x[missing] = np.nan

    out = np.asarray(run(leaf, mode, tensor(x)))

    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], 0.0)
    np.testing.assert_allclose(out, reference_log_prob(dist, x, location, scale, missing), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per", ["variable", "dimension"])
@pytest.mark.parametrize(("leaf_cls", "dist"), LOCATION_SCALE, ids=LEAF_IDS)
def test_evidence_mask_marginalizes(leaf_cls, dist, per, mode):
    rng = np.random.default_rng(3)
    x_shape = (6, 3, 2, 3)
    leaf, location, scale = make_location_scale_leaf(leaf_cls, x_shape, 2, rng, "float32")
    x = rng.normal(size=x_shape).astype("float32")
    mask_shape = x_shape[:-1] if per == "variable" else x_shape
    observed = rng.uniform(size=mask_shape) < 0.6
    missing = np.broadcast_to(~observed[..., np.newaxis], x_shape) if per == "variable" else ~observed
    # Values behind a False mask must not matter, even if they are huge.
    x = np.where(missing, 1e30, x).astype("float32")

    out = run(lambda v, m: leaf(v, evidence_mask=m), mode, tensor(x), tensor(observed))

    np.testing.assert_allclose(out, reference_log_prob(dist, x, location, scale, missing), rtol=1e-5, atol=1e-5)


def test_evidence_mask_and_nan_combine():
    rng = np.random.default_rng(4)
    x_shape = (4, 3, 1, 2)
    leaf, location, scale = make_location_scale_leaf(layers.NormalLeaf, x_shape, 2, rng, "float32")
    x = rng.normal(size=x_shape).astype("float32")
    nan = rng.uniform(size=x_shape) < 0.3
    observed = rng.uniform(size=x_shape) < 0.7
    x[nan] = np.nan

    out = leaf(x, evidence_mask=observed)

    expected = reference_log_prob(stats.norm, x, location, scale, nan | ~observed)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_marginalizing_changes_the_output():
    # Guards the references above: an observed value contributes a non-zero log-density.
    rng = np.random.default_rng(5)
    leaf, _, _ = make_location_scale_leaf(layers.NormalLeaf, (2, 2, 1, 1), 2, rng, "float32")
    x = np.full((2, 2, 1, 1), 3.0, "float32")
    observed = np.asarray(leaf(x))
    marginal = np.asarray(leaf(x, evidence_mask=np.zeros((2, 2, 1), bool)))
    assert np.all(np.abs(observed) > 1e-3)
    np.testing.assert_array_equal(marginal, 0.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leaf_cls", "dist"), LOCATION_SCALE, ids=LEAF_IDS)
def test_location_scale_log_density_gradients_match_finite_differences(leaf_cls, dist, mode):
    # d/d(x, location, scale) of sum logpdf, against central differences of scipy's logpdf (float64).
    rng = np.random.default_rng(9)
    x = rng.normal(scale=2.0, size=(4, 3))
    location = rng.normal(size=(4, 3))
    scale = rng.uniform(0.3, 2.0, size=(4, 3))
    x[0] = location[0] + 3.5 * scale[0]  # Cauchy: |z| > 1 ...
    x[1] = location[1] + 0.25 * scale[1]  # ... and |z| < 1

    def gradients(*args):
        return grad(leaf_cls.log_density, *args)

    out = run(gradients, mode, *(tensor(v) for v in (x, location, scale)))

    step = 1e-6
    for index in range(3):

        def shifted(delta, index=index):
            args = [x, location, scale]
            args[index] = args[index] + delta
            return dist.logpdf(args[0], loc=args[1], scale=args[2])

        expected = (shifted(step) - shifted(-step)) / (2 * step)
        np.testing.assert_allclose(out[index], expected, rtol=1e-5, atol=1e-6, err_msg=f"argument {index}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cauchy_log_density_is_finite_far_in_the_tails(dtype, mode):
    # log1p(z**2) overflowed to inf for |z| > ~1e19 in float32: -inf instead of about -139 at x = 1e30.
    x = np.array([1.0, 1e30, -1e30, 1e-3, 0.0, 3e38 if dtype == "float32" else 1e300], dtype)
    scale = np.array([1e-30, 1.0, 1.0, 1e-30, 1e-30, 1e-4], dtype)
    location = np.zeros_like(x)

    out = np.asarray(run(layers.CauchyLeaf.log_density, mode, *(tensor(v) for v in (x, location, scale))))

    expected = stats.cauchy.logpdf(x.astype(np.float64), scale=scale.astype(np.float64))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(out[1], -139.29, atol=0.01)


@pytest.mark.parametrize("leaf_cls", [cls for cls, _ in LOCATION_SCALE], ids=LEAF_IDS)
def test_initial_scale_is_the_initializers_value(leaf_cls, floatx):
    # A trainable scale is stored as softplus^-1(scale) (LibSPN Keras 0.6); the scale is the initializer's value.
    initializer = keras.initializers.RandomUniform(1e-3, 30.0, seed=3)
    expected = np.asarray(initializer((4, 2, 3, 2), dtype=floatx), np.float64)
    leaf = leaf_cls(num_components=3, scale_trainable=True, scale_initializer=initializer)
    leaf.build((None, 4, 2, 2))
    np.testing.assert_allclose(to_numpy(leaf.parameters()[1]), expected, **tolerance(floatx))
    np.testing.assert_allclose(to_numpy(leaf.scale)[0], np.log(np.expm1(expected)), **tolerance(floatx))
    assert leaf.scale.trainable and leaf.scale.name == "scale" and leaf.scale.shape == (1, 4, 2, 3, 2)
    # A fixed scale is stored as is.
    fixed = leaf_cls(num_components=3, scale_initializer=initializer)
    fixed.build((None, 4, 2, 2))
    np.testing.assert_allclose(to_numpy(fixed.scale)[0], expected, **tolerance(floatx))
    np.testing.assert_allclose(to_numpy(fixed.parameters()[1]), expected, **tolerance(floatx))


def test_trainable_scale_initializer_is_checked_before_the_softplus_inverse():
    leaf = layers.NormalLeaf(2, scale_trainable=True, scale_initializer=keras.initializers.Constant(-1.0), name="s")
    with pytest.raises(ValueError, match=r"Layer 's' expects scale_initializer to give finite, positive scales"):
        leaf.build((None, 3, 1, 1))


@pytest.mark.parametrize(("leaf_cls", "dist"), LOCATION_SCALE, ids=LEAF_IDS)
def test_location_scale_modes_and_their_log_density(leaf_cls, dist, floatx):
    rng = np.random.default_rng(10)
    leaf, location, scale = make_location_scale_leaf(leaf_cls, (2, 3, 1, 2), 4, rng, floatx)

    np.testing.assert_array_equal(leaf.component_modes(), location)
    np.testing.assert_allclose(leaf.mode_log_prob(), dist.logpdf(location, loc=location, scale=scale), rtol=1e-6)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize(("leaf_cls", "dist"), LOCATION_SCALE, ids=LEAF_IDS)
def test_location_scale_samples_follow_scipy(leaf_cls, dist, mode, floatx):
    rng = np.random.default_rng(11)
    leaf, location, scale = make_location_scale_leaf(leaf_cls, (1, 2, 1, 1), 2, rng, floatx)

    samples = np.asarray(run(lambda: leaf.sample_components(4000, seed=3), mode))

    assert samples.shape == (4000, 2, 1, 2, 1)
    assert samples.dtype == floatx
    for index in np.ndindex(location.shape):
        drawn = samples[(slice(None), *index)]
        frozen = dist(loc=float(location[index]), scale=float(scale[index]))
        # Kolmogorov-Smirnov (a wrong family, location or scale gives p << 1e-3 at 4000 draws) and the median.
        assert stats.kstest(drawn, frozen.cdf).pvalue > 1e-3, index
        assert abs(np.median(drawn) - location[index]) < 0.1 * scale[index], index
    # Wrong-family guard: Laplace draws are rejected against the normal with the same location and scale.
    if leaf_cls is layers.LaplaceLeaf:
        assert (
            stats.kstest(samples[:, 0, 0, 0, 0], stats.norm(location[0, 0, 0, 0], scale[0, 0, 0, 0]).cdf).pvalue < 1e-3
        )


def test_location_scale_samples_are_reproducible_with_a_seed():
    rng = np.random.default_rng(12)
    leaf, _, _ = make_location_scale_leaf(layers.CauchyLeaf, (1, 3, 1, 2), 2, rng, "float32")
    first, second = (np.asarray(leaf.sample_components(5, seed=7)) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, np.asarray(leaf.sample_components(5, seed=8)))
    assert np.all(np.isfinite(first))


def test_the_package_does_not_import_tensorflow_probability():
    code = "import sys, libspn_keras.layers, libspn_keras.models; print('tensorflow_probability' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def indicator_reference(states, num_components, missing=None):
    """``log(one_hot(states))`` with missing variables mapped to ``0`` for every indicator."""
    states = np.asarray(states)
    safe = np.where(np.isnan(states), 0, states) if states.dtype.kind == "f" else states
    one_hot = safe[..., 0, np.newaxis] == np.arange(num_components)
    with np.errstate(divide="ignore"):
        log_one_hot = np.log(one_hot.astype(np.float64))
    if missing is not None:
        log_one_hot = np.where(missing[..., 0, np.newaxis], 0.0, log_one_hot)
    return log_one_hot


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("input_dtype", ["int32", "int64", "float32"])
def test_indicator_leaf_one_hot_in_log_space(input_dtype, mode, floatx):
    rng = np.random.default_rng(6)
    states = rng.integers(0, 4, size=(7, 5, 2, 1)).astype(input_dtype)
    leaf = layers.IndicatorLeaf(num_components=4)

    out = run(leaf, mode, tensor(states))

    assert out.shape == (7, 5, 2, 4)
    assert out.dtype == floatx
    np.testing.assert_array_equal(out, indicator_reference(states, 4))
    np.testing.assert_array_equal(np.exp(np.asarray(out)).sum(axis=-1), 1.0)


@pytest.mark.parametrize("mode", MODES)
def test_indicator_leaf_nan_marginalizes(mode):
    rng = np.random.default_rng(7)
    states = rng.integers(0, 3, size=(6, 4, 2, 1)).astype("float32")
    missing = rng.uniform(size=states.shape) < 0.4
    states[missing] = np.nan
    leaf = layers.IndicatorLeaf(num_components=3, dtype="float32")

    out = run(leaf, mode, tensor(states))

    np.testing.assert_array_equal(out, indicator_reference(states, 3, missing))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per", ["variable", "dimension"])
def test_indicator_leaf_evidence_mask_marginalizes(per, mode):
    rng = np.random.default_rng(8)
    states = rng.integers(0, 3, size=(6, 4, 2, 1)).astype("int32")
    observed = rng.uniform(size=states.shape) < 0.5
    mask = observed[..., 0] if per == "variable" else observed
    # Unobserved entries may hold any value, even one outside [0, num_components).
    states = np.where(observed, states, 99).astype("int32")
    leaf = layers.IndicatorLeaf(num_components=3)

    out = run(lambda s, m: leaf(s, evidence_mask=m), mode, tensor(states), tensor(mask))

    np.testing.assert_array_equal(out, indicator_reference(np.where(observed, states, 0), 3, ~observed))
