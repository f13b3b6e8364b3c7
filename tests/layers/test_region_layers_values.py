"""Forward values of the region layers against numpy references written from their definitions."""

import inspect
import itertools

import keras
import numpy as np
import pytest
from scipy.special import logsumexp

from libspn_keras import layers, sum_ops
from tests.backend_utils import dtype_name, run, run_layer, tensor, to_numpy

# Every test runs with normalized weights and with the normalizer applied to the sums (conftest).
pytestmark = pytest.mark.usefixtures("weight_normalization")

MODES = ["eager", "function", "jit"]
# Every concrete sum op shares one forward pass; each is paired with the accumulator spaces it supports.
SUM_OPS = [
    op
    for op in (getattr(sum_ops, name) for name in sum_ops.__all__)
    if isinstance(op, type) and issubclass(op, sum_ops.SumOpBase) and not inspect.isabstract(op)
]
OP_SPACES = [
    pytest.param(op, logspace, id=f"{op.__name__}-{'logspace' if logspace else 'linear'}")
    for op in SUM_OPS
    for logspace in (True, False)
    if op.supports_logspace_accumulators or not logspace
]


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}


def random_log_probs(rng, shape, dtype="float32"):
    return np.log(rng.uniform(0.05, 1.0, size=shape)).astype(dtype)


# ---------------------------------------------------------------------------------------------------- FlatToRegions


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_decomps", [1, 3])
@pytest.mark.parametrize("var_dim", [None, 2])
def test_flat_to_regions_tiles_decompositions(var_dim, num_decomps, mode):
    rng = np.random.default_rng(0)
    shape = (4, 5) if var_dim is None else (4, 5, var_dim)
    x = rng.normal(size=shape).astype("float32")
    x[0, 1] = np.nan

    out = np.asarray(run(layers.FlatToRegions(num_decomps=num_decomps), mode, tensor(x)))

    dv = 1 if var_dim is None else var_dim
    assert out.shape == (4, 5, num_decomps, dv)
    x3 = x.reshape(4, 5, dv)
    for d in range(num_decomps):
        np.testing.assert_array_equal(out[:, :, d, :], x3)


def test_flat_to_regions_keeps_integers():
    x = np.array([[0, 2, 1]], "int32")
    out = layers.FlatToRegions(num_decomps=2)(x)
    assert dtype_name(out) == "int32"
    np.testing.assert_array_equal(np.asarray(out)[0, :, :, 0], [[0, 0], [2, 2], [1, 1]])


# ------------------------------------------------------------------------------------------------ PermuteAndPadScopes


def permute_and_pad_reference(x, permutations):
    """``out[:, s, d] = x[:, permutations[d, s], d]``, or ``0`` (log 1) where the index is ``-1``."""
    batch, _, num_decomps, num_nodes = x.shape
    num_out = permutations.shape[1]
    out = np.zeros((batch, num_out, num_decomps, num_nodes), x.dtype)
    for d in range(num_decomps):
        for s in range(num_out):
            if permutations[d, s] >= 0:
                out[:, s, d] = x[:, permutations[d, s], d]
    return out


@pytest.mark.parametrize("mode", MODES)
def test_permute_and_pad_scopes(mode, floatx):
    rng = np.random.default_rng(1)
    x = random_log_probs(rng, (3, 4, 2, 5), floatx)
    permutations = np.array([[2, -1, 0, 3, 1, -1], [-1, 3, 1, 0, -1, 2]])

    out = run(layers.PermuteAndPadScopes(permutations), mode, tensor(x))

    assert out.dtype == floatx
    np.testing.assert_array_equal(out, permute_and_pad_reference(x, permutations))


@pytest.mark.parametrize("mode", MODES)
def test_permute_and_pad_scopes_with_neg_inf(mode):
    # -inf (probability zero) values must travel unchanged; padding stays exactly 0.
    x = np.full((2, 3, 1, 2), -np.inf, "float32")
    x[0, 1, 0, 1] = -2.0
    permutations = np.array([[1, -1, 0, 2]])

    out = run(layers.PermuteAndPadScopes(permutations), mode, tensor(x))

    np.testing.assert_array_equal(out, permute_and_pad_reference(x, permutations))


@pytest.mark.parametrize(
    ("num_scopes", "factors", "num_decomps"),
    [(4, [2, 2], 3), (5, [2, 2, 2], 4), (6, [2, 2, 2], 3), (7, [3, 3], 2), (3, [4], 2)],
)
def test_permute_and_pad_scopes_random_structure(num_scopes, factors, num_decomps):
    layer = layers.PermuteAndPadScopesRandom(factors=factors, seed=3)
    rng = np.random.default_rng(2)
    x = random_log_probs(rng, (2, num_scopes, num_decomps, 3))

    out = np.asarray(layer(x))

    num_out = int(np.prod(factors))
    perms = layer.permutations
    assert perms.shape == (num_decomps, num_out)
    assert out.shape == (2, num_out, num_decomps, 3)
    for row in perms:
        # Each decomposition uses every scope exactly once ...
        assert sorted(row[row >= 0].tolist()) == list(range(num_scopes))
        # ... and spreads its padding: real scopes at both ends, gaps between them differ by at most one.
        real = np.flatnonzero(row >= 0)
        assert real[0] == 0
        assert real[-1] == num_out - 1 or num_scopes == 1
        gaps = np.diff(real)
        assert gaps.max() - gaps.min() <= 1
    # Padding is spread so that no first-level product merges only padding scopes.
    groups = (perms >= 0).reshape(num_decomps, -1, factors[0])
    assert np.all(groups.any(axis=-1))
    np.testing.assert_array_equal(out, permute_and_pad_reference(x, perms))


def test_permute_and_pad_scopes_random_decomps_differ_and_seed_reproduces():
    x = np.zeros((1, 8, 4, 1), "float32")
    first = layers.PermuteAndPadScopesRandom(factors=[2, 2, 2], seed=7)
    second = layers.PermuteAndPadScopesRandom(factors=[2, 2, 2], seed=7)
    first(x)
    second(x)
    np.testing.assert_array_equal(first.permutations, second.permutations)
    assert len({tuple(row) for row in first.permutations}) > 1


# --------------------------------------------------------------------------------------------------------- Products


def dense_product_reference(x, num_factors):
    """Every combination of one node per merged scope; the first factor's node index varies slowest."""
    batch, num_scopes, num_decomps, num_nodes = x.shape
    out = np.zeros((batch, num_scopes // num_factors, num_decomps, num_nodes**num_factors), x.dtype)
    for s in range(num_scopes // num_factors):
        for index, nodes in enumerate(itertools.product(range(num_nodes), repeat=num_factors)):
            out[:, s, :, index] = sum(x[:, num_factors * s + f, :, n] for f, n in enumerate(nodes))
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("num_factors", "num_scopes"), [(2, 4), (3, 6), (2, 2), (1, 3)])
def test_dense_product(num_factors, num_scopes, mode, floatx):
    rng = np.random.default_rng(3)
    x = random_log_probs(rng, (3, num_scopes, 2, 3), floatx)

    out = run(layers.DenseProduct(num_factors=num_factors), mode, tensor(x))

    assert out.shape == (3, num_scopes // num_factors, 2, 3**num_factors)
    assert out.dtype == floatx
    np.testing.assert_allclose(out, dense_product_reference(x, num_factors), **tolerance(floatx))


def test_dense_product_node_order():
    # Scope 0 has nodes [0, 10], scope 1 has nodes [0, 1]: node index = n0 * 2 + n1.
    x = np.array([[[[0.0, 10.0]], [[0.0, 1.0]]]], "float32")
    out = np.asarray(layers.DenseProduct(num_factors=2)(x))
    np.testing.assert_array_equal(out.ravel(), [0.0, 1.0, 10.0, 11.0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("num_factors", "num_scopes"), [(2, 4), (3, 6), (4, 4)])
def test_reduce_product(num_factors, num_scopes, mode, floatx):
    rng = np.random.default_rng(4)
    x = random_log_probs(rng, (3, num_scopes, 2, 5), floatx)

    out = run(layers.ReduceProduct(num_factors=num_factors), mode, tensor(x))

    expected = np.zeros((3, num_scopes // num_factors, 2, 5))
    for s in range(num_scopes // num_factors):
        for f in range(num_factors):
            expected[:, s] += x[:, num_factors * s + f]
    np.testing.assert_allclose(out, expected, **tolerance(floatx))


# ------------------------------------------------------------------------------------------------------------- Sums


def normalized_log_weights(accumulators, logspace):
    acc = np.asarray(accumulators, np.float64)
    if logspace:
        return acc - logsumexp(acc, axis=-2, keepdims=True)
    return np.log(acc) - np.log(acc.sum(axis=-2, keepdims=True))


def dense_sum_reference(x, accumulators, logspace):
    """``out[b, s, d, o] = logsumexp_i(x[b, s, d, i] + log w[s, d, i, o])``."""
    log_w = normalized_log_weights(accumulators, logspace)
    return logsumexp(np.asarray(x, np.float64)[..., :, np.newaxis] + log_w[np.newaxis], axis=-2)


def make_dense_sum(num_sums, x_shape, logspace, rng, dtype, sum_op_cls=sum_ops.SumOpGradBackprop):
    layer = layers.DenseSum(num_sums=num_sums, logspace_accumulators=logspace, sum_op=sum_op_cls())
    layer.build(x_shape)
    shape = (*x_shape[1:], num_sums)
    accumulators = rng.normal(size=shape) if logspace else rng.uniform(0.1, 3.0, size=shape)
    layer.accumulators.assign(accumulators.astype(dtype))
    return layer, accumulators.astype(dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
def test_dense_sum(logspace, mode, floatx):
    rng = np.random.default_rng(5)
    x_shape = (4, 3, 2, 5)
    layer, accumulators = make_dense_sum(3, x_shape, logspace, rng, floatx)
    x = random_log_probs(rng, x_shape, floatx)

    out = run(layer, mode, tensor(x))

    assert out.shape == (4, 3, 2, 3)
    assert out.dtype == floatx
    np.testing.assert_allclose(out, dense_sum_reference(x, accumulators, logspace), **tolerance(floatx))


@pytest.mark.parametrize(("sum_op_cls", "logspace"), OP_SPACES)
def test_dense_sum_forward_is_the_same_for_every_sum_op(sum_op_cls, logspace):
    rng = np.random.default_rng(15)
    x_shape = (4, 2, 3, 5)
    layer, accumulators = make_dense_sum(2, x_shape, logspace, rng, "float32", sum_op_cls)
    x = random_log_probs(rng, x_shape)
    np.testing.assert_allclose(layer(x), dense_sum_reference(x, accumulators, logspace), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
def test_dense_sum_extreme_inputs(logspace, mode):
    # Very small log-probabilities must not underflow; a region whose inputs are all -inf gives -inf.
    rng = np.random.default_rng(6)
    x_shape = (3, 2, 2, 4)
    layer, accumulators = make_dense_sum(2, x_shape, logspace, rng, "float32")
    x = (random_log_probs(rng, x_shape) - 2000.0).astype("float32")
    x[0, 0, 1, 2] = -np.inf
    x[1, 1, 0, :] = -np.inf

    out = np.asarray(run(layer, mode, tensor(x)))

    expected = dense_sum_reference(x, accumulators, logspace)
    assert np.all(np.isneginf(out[1, 1, 0]))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(out), finite)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-6)


def test_dense_sum_uniform_weights_average():
    # Equal accumulators give a plain average of the children's probabilities.
    layer = layers.DenseSum(num_sums=2, accumulator_initializer=keras.initializers.Constant(2.0))
    x = np.log(np.array([0.1, 0.3, 0.8], "float32")).reshape(1, 1, 1, 3)
    out = np.exp(np.asarray(layer(x)))
    np.testing.assert_allclose(out.ravel(), [0.4, 0.4], rtol=1e-6)


def make_root_sum(num_in, return_weighted_child_logits, logspace, rng, dtype, sum_op_cls=sum_ops.SumOpGradBackprop):
    layer = layers.RootSum(
        return_weighted_child_logits=return_weighted_child_logits,
        logspace_accumulators=logspace,
        sum_op=sum_op_cls(),
    )
    layer.build((None, num_in))
    accumulators = rng.normal(size=(num_in, 1)) if logspace else rng.uniform(0.1, 3.0, size=(num_in, 1))
    layer.accumulators.assign(accumulators.reshape(1, 1, num_in, 1).astype(dtype))  # the original's shape
    return layer, accumulators.astype(dtype)


def root_sum_reference(x, accumulators, logspace, weighted_children):
    children = np.asarray(x, np.float64) + normalized_log_weights(accumulators, logspace)[:, 0][np.newaxis]
    return children if weighted_children else logsumexp(children, axis=-1, keepdims=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("logspace", [True, False], ids=["logspace", "linear"])
@pytest.mark.parametrize("weighted_children", [True, False], ids=["children", "marginal"])
def test_root_sum(weighted_children, logspace, mode, floatx):
    rng = np.random.default_rng(7)
    layer, accumulators = make_root_sum(6, weighted_children, logspace, rng, floatx)
    x = random_log_probs(rng, (5, 6), floatx)

    out = run(layer, mode, tensor(x.reshape(5, 1, 1, 6)))

    assert out.shape == ((5, 6) if weighted_children else (5, 1))
    assert out.dtype == floatx
    expected = root_sum_reference(x, accumulators, logspace, weighted_children)
    np.testing.assert_allclose(out, expected, **tolerance(floatx))


@pytest.mark.parametrize("rank", [2, 4])
@pytest.mark.parametrize(("sum_op_cls", "logspace"), OP_SPACES)
@pytest.mark.parametrize("weighted_children", [True, False], ids=["children", "marginal"])
def test_root_sum_every_sum_op_and_input_rank(weighted_children, sum_op_cls, logspace, rank):
    rng = np.random.default_rng(16)
    layer, accumulators = make_root_sum(4, weighted_children, logspace, rng, "float32", sum_op_cls)
    x = random_log_probs(rng, (3, 4))

    out = layer(x if rank == 2 else x.reshape(3, 1, 1, 4))

    expected = root_sum_reference(x, accumulators, logspace, weighted_children)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------- Undecompose


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("num_decomps_in", "num_decomps"), [(3, 1), (4, 2), (2, 2)])
def test_undecompose(num_decomps_in, num_decomps, mode):
    rng = np.random.default_rng(8)
    x = random_log_probs(rng, (2, 3, num_decomps_in, 4))

    out = np.asarray(run(layers.Undecompose(num_decomps=num_decomps), mode, tensor(x)))

    group = num_decomps_in // num_decomps
    assert out.shape == (2, 3, num_decomps, 4 * group)
    for k in range(num_decomps):
        for j in range(group):
            np.testing.assert_array_equal(out[:, :, k, 4 * j : 4 * (j + 1)], x[:, :, group * k + j, :])


# -------------------------------------------------------------------------------------------------------- LogDropout


@pytest.mark.parametrize("mode", MODES)
def test_log_dropout_is_identity_at_inference(mode):
    x = random_log_probs(np.random.default_rng(9), (8, 2, 2, 5))
    layer = layers.LogDropout(rate=0.5, seed=0)
    np.testing.assert_array_equal(run(lambda v: layer(v, training=False), mode, tensor(x)), x)
    np.testing.assert_array_equal(run(layer, mode, tensor(x)), x)


@pytest.mark.parametrize("mode", MODES)
def test_log_dropout_drops_to_neg_inf_when_training(mode):
    x = random_log_probs(np.random.default_rng(10), (64, 4, 2, 8))
    layer = layers.LogDropout(rate=0.3, seed=0)

    out = np.asarray(run_layer(layer, mode, tensor(x), training=True))

    dropped = np.isneginf(out)
    np.testing.assert_array_equal(out[~dropped], x[~dropped])  # kept values are not rescaled
    assert 0.25 < dropped.mean() < 0.35
    # Every call draws a new mask.
    assert not np.array_equal(np.isneginf(layer(x, training=True)), np.isneginf(layer(x, training=True)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [-1, 2])
def test_log_dropout_axis_at_least_one_keeps_a_survivor(axis, mode):
    x = random_log_probs(np.random.default_rng(11), (32, 3, 4, 6))
    with_guard = layers.LogDropout(rate=0.95, seed=1, axis_at_least_one=axis)
    without_guard = layers.LogDropout(rate=0.95, seed=1)

    out = np.asarray(run(lambda v: with_guard(v, training=True), mode, tensor(x)))
    unguarded = np.asarray(without_guard(x, training=True))

    assert np.all(np.isfinite(out).any(axis=axis))
    assert not np.all(np.isfinite(unguarded).any(axis=axis))  # the guard is what keeps the survivors
    assert np.isneginf(out).mean() > 0.5


def test_log_dropout_noise_shape_broadcasts():
    x = random_log_probs(np.random.default_rng(12), (16, 3, 2, 5))
    layer = layers.LogDropout(rate=0.5, seed=2, noise_shape=[None, 1, 1, 5])

    out = np.asarray(layer(x, training=True))

    dropped = np.isneginf(out)
    # The same nodes are dropped for every scope and decomposition of a sample.
    np.testing.assert_array_equal(dropped, np.broadcast_to(dropped[:, :1, :1, :], dropped.shape))
    assert 0 < dropped.mean() < 1


# --------------------------------------------------------------------------------------------- NormalizeStandardScore


@pytest.mark.parametrize("mode", MODES)
def test_normalize_standard_score_sample_wise(mode, floatx):
    rng = np.random.default_rng(13)
    x = rng.normal(loc=3.0, scale=2.0, size=(5, 4, 3)).astype(floatx)
    x[1, 2, 0] = np.nan
    eps = 1e-3
    layer = layers.NormalizeStandardScore(normalization_epsilon=eps)

    out = np.asarray(run(layer, mode, tensor(x)))

    x64 = x.astype(np.float64).reshape(5, -1)
    mean = np.nanmean(x64, axis=1)[:, None, None]
    std = np.nanstd(x64, axis=1)[:, None, None]
    np.testing.assert_allclose(out, (x - mean) / (std + eps), **tolerance(floatx))
    assert np.isnan(out[1, 2, 0])


def test_normalize_standard_score_adapt():
    rng = np.random.default_rng(14)
    data = rng.normal(loc=-1.0, scale=3.0, size=(40, 6)).astype("float32")
    data[3, 2] = np.nan
    eps = 1e-4
    layer = layers.NormalizeStandardScore(normalization_epsilon=eps, sample_wise=False)
    layer.adapt(data)
    x = rng.normal(size=(7, 6)).astype("float32")

    out = layer(x)

    mean, std = np.nanmean(data.astype(np.float64)), np.nanstd(data.astype(np.float64))
    np.testing.assert_allclose(out, (x - mean) / (std + eps), rtol=1e-5, atol=1e-5)


@pytest.mark.requires_tensorflow  # adapts from a tf.data pipeline
def test_normalize_standard_score_adapt_dataset_matches_array():
    import tensorflow as tf

    rng = np.random.default_rng(15)
    data = rng.normal(loc=2.0, scale=0.5, size=(30, 4)).astype("float32")
    labels = np.zeros(30, "int32")
    from_array = layers.NormalizeStandardScore(sample_wise=False)
    from_array.adapt(data)
    from_dataset = layers.NormalizeStandardScore(sample_wise=False)
    from_dataset.adapt(tf.data.Dataset.from_tensor_slices((data, labels)).batch(7))
    x = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(from_dataset(x), from_array(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(from_array.mean), data.astype(np.float64).mean(), rtol=1e-5)
