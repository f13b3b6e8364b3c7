"""Leaves with ``use_accumulators=True``: the original's weight list, and E-step statistics against a brute force."""

import keras
import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import norm

from libspn_keras import layers, models, sum_ops
from tests.backend_utils import grad, to_numpy


def em_normal_leaf(**initializers) -> layers.NormalLeaf:
    """A ``NormalLeaf`` of two components with EM accumulators and a trainable scale (the original's 4 weights)."""
    return layers.NormalLeaf(num_components=2, use_accumulators=True, scale_trainable=True, **initializers)


def mixture(leaf):
    """A mixture of two products of one normal per variable (3 variables), trained by soft EM."""
    return models.SequentialSumProductNetwork(
        [
            keras.Input((3,)),
            layers.FlatToRegions(num_decomps=1),
            leaf,
            layers.ReduceProduct(num_factors=3),
            layers.RootSum(return_weighted_child_logits=False, sum_op=sum_ops.SumOpEMBackprop()),
        ]
    )


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["location", "scale"]),
        ({"use_accumulators": True}, ["first_order_moment_denom_accum", "first_order_moment_num_accum", "scale"]),
        (
            {"use_accumulators": True, "scale_trainable": True},
            [
                "first_order_moment_denom_accum",
                "first_order_moment_num_accum",
                "second_order_moment_denom_accum",
                "second_order_moment_num_accum",
            ],
        ),
    ],
)
def test_weights_are_listed_as_in_the_original(kwargs, names):
    leaf = layers.NormalLeaf(num_components=2, **kwargs)
    mixture(leaf)
    assert [weight.name for weight in leaf.weights] == names
    assert all(tuple(weight.shape) == (1, 3, 1, 2, 1) for weight in leaf.weights)
    assert (leaf.scale is None) == (len(names) == 4)


def test_scale_is_the_second_moment_over_its_own_count():
    leaf = em_normal_leaf(
        location_initializer=keras.initializers.Constant(0.5),
        scale_initializer=keras.initializers.Constant(2.0),
        accumulator_initializer=keras.initializers.Constant(3.0),
    )
    mixture(leaf)
    # Initially s1 = 0.5 n, s2 = (2**2 + 0.5**2) n2.
    np.testing.assert_allclose(to_numpy(leaf.location), 1.5)
    np.testing.assert_allclose(to_numpy(leaf.second_moment), 4.25 * 3.0, rtol=1e-6)
    leaf.second_count.assign(np.full(leaf.second_count.shape, 6.0, "float32"))  # halves s2 / n2
    location, scale = (to_numpy(v) for v in leaf.parameters())
    np.testing.assert_allclose(location, 0.5, rtol=1e-6)
    np.testing.assert_allclose(scale, np.sqrt(4.25 / 2 - 0.25), rtol=1e-6)


def test_e_step_statistics_are_posterior_weighted_moments(float64):
    rng = np.random.default_rng(0)
    locations, scales = rng.normal(size=(3, 2)), rng.uniform(0.5, 2.0, (3, 2))
    leaf = em_normal_leaf(
        location_initializer=keras.initializers.Constant(locations[None, :, None, :, None]),
        scale_initializer=keras.initializers.Constant(scales[None, :, None, :, None]),
    )
    spn = mixture(leaf)
    root = spn.layers[-1]
    root.accumulators.assign(np.array([0.3, 0.7]).reshape(1, 1, 2, 1))
    x = rng.normal(size=(6, 3))
    x[1, 2] = np.nan  # missing: no statistics from it
    statistics = [leaf.count, leaf.location, leaf.second_count, leaf.second_moment]
    gradients = [to_numpy(g).reshape(3, 2) for g in grad(spn, x, variables=statistics)[1:]]

    observed = ~np.isnan(x)
    log_densities = np.where(observed[:, :, None], norm.logpdf(np.nan_to_num(x)[:, :, None], locations, scales), 0.0)
    posterior = softmax(np.log([0.3, 0.7]) + log_densities.sum(axis=1), axis=1)  # [batch, component]
    mass = posterior[:, None, :] * observed[:, :, None]  # [batch, variable, component]
    values = np.nan_to_num(x)[:, :, None]
    expected = [mass.sum(0), (mass * values).sum(0), mass.sum(0), (mass * values**2).sum(0)]
    for got, want in zip(gradients, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_statistics_are_finite_when_the_counts_start_at_zero():
    # s2 comes from the initial location itself, not from s1 / n (0 / 0 with zero counts).
    leaf = em_normal_leaf(
        location_initializer=keras.initializers.Constant(0.5),
        accumulator_initializer=keras.initializers.Zeros(),
    )
    mixture(leaf)
    np.testing.assert_array_equal(to_numpy(leaf.location), 0.0)
    np.testing.assert_array_equal(to_numpy(leaf.second_moment), 0.0)
