"""Every random query honours its seed (issue 18, item 2).

``sample(n, seed=0)`` twice gave different samples (up to 4.8 apart): the leaves passed the int to TFP's stateful
sampler and the sum ops drew with ``tf.random.uniform``. Now every draw is stateless, with seeds from one
``keras.random.SeedGenerator`` per query; without a seed they come from Keras' global generator, so
``keras.utils.set_random_seed`` makes them reproducible.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from libspn_keras import layers, models
from libspn_keras.math import stateless_seed
from libspn_keras.sum_ops import SumOpHardEMBackprop, SumOpSampleBackprop
from tests.backend_utils import grad, tensor, to_numpy

NUM_VARS = 6


def normal_spn(sum_op=None) -> models.SequentialSumProductNetwork:
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(NUM_VARS,)),
            layers.FlatToRegions(num_decomps=2),
            layers.NormalLeaf(num_components=3, location_initializer=keras.initializers.RandomNormal(stddev=2.0)),
            layers.PermuteAndPadScopesRandom(seed=0),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=3, sum_op=sum_op),
            layers.DenseProduct(num_factors=3),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, sum_op=sum_op),
        ]
    )


def test_sample_with_the_same_seed_gives_the_same_samples(floatx):
    spn = normal_spn()
    first, second = to_numpy(spn.sample(32, seed=0)), to_numpy(spn.sample(32, seed=0))
    np.testing.assert_array_equal(first, second)
    assert first.dtype == floatx
    assert np.abs(first - to_numpy(spn.sample(32, seed=1))).max() > 0.1  # another seed, other samples
    assert len(np.unique(first, axis=0)) == 32  # and the rows of one call differ


def test_complete_by_sampling_with_the_same_seed_gives_the_same_completion():
    spn = normal_spn()
    x = np.tile(np.array([[0.5, np.nan, -1.0, np.nan, np.nan, 2.0]], "float32"), (16, 1))
    first = to_numpy(spn.complete(x, method="sample", seed=3))
    np.testing.assert_array_equal(first, to_numpy(spn.complete(x, method="sample", seed=3)))
    np.testing.assert_array_equal(first, to_numpy(spn.sample(evidence=x, seed=3)))
    np.testing.assert_array_equal(first[:, [0, 2, 5]], x[:, [0, 2, 5]])
    assert not np.array_equal(first, to_numpy(spn.complete(x, method="sample", seed=4)))


def test_a_seed_generator_advances_and_reproduces_from_its_seed():
    spn = normal_spn()
    generator = keras.random.SeedGenerator(5)
    first, second = to_numpy(spn.sample(8, seed=generator)), to_numpy(spn.sample(8, seed=generator))
    assert not np.array_equal(first, second)
    again = keras.random.SeedGenerator(5)
    np.testing.assert_array_equal(first, to_numpy(spn.sample(8, seed=again)))
    np.testing.assert_array_equal(second, to_numpy(spn.sample(8, seed=again)))


def test_without_a_seed_draws_follow_keras_set_random_seed():
    spn = normal_spn()
    keras.utils.set_random_seed(11)
    first = to_numpy(spn.sample(8))
    later = to_numpy(spn.sample(8))
    keras.utils.set_random_seed(11)
    np.testing.assert_array_equal(first, to_numpy(spn.sample(8)))
    np.testing.assert_array_equal(later, to_numpy(spn.sample(8)))
    assert not np.array_equal(first, later)


@pytest.mark.parametrize("leaf_class", [layers.NormalLeaf, layers.CauchyLeaf, layers.LaplaceLeaf])
def test_sample_components_honour_the_seed(leaf_class, floatx):
    leaf = leaf_class(num_components=2)
    leaf.build((None, 3, 2, 1))
    first = to_numpy(leaf.sample_components(64, seed=7))
    assert first.shape == (64, 3, 2, 2, 1) and first.dtype == floatx
    np.testing.assert_array_equal(first, to_numpy(leaf.sample_components(64, seed=7)))
    assert not np.array_equal(first, to_numpy(leaf.sample_components(64, seed=8)))
    keras.utils.set_random_seed(2)
    unseeded = to_numpy(leaf.sample_components(64))
    keras.utils.set_random_seed(2)
    np.testing.assert_array_equal(unseeded, to_numpy(leaf.sample_components(64)))


def test_sampled_leaf_representation_honours_the_seed():
    leaf = layers.NormalLeaf(num_components=2, leaf_representation="sample")
    leaf.build((None, 3, 1, 1))
    np.testing.assert_array_equal(
        to_numpy(leaf.get_leaf_representation(5, seed=1)), to_numpy(leaf.get_leaf_representation(5, seed=1))
    )


def test_hard_em_sampling_in_training_follows_the_op_seed():
    """The draws of ``sample_prob`` come from ``op.seed`` (Keras' global generator by default)."""
    x = np.random.default_rng(0).normal(size=(64, 4, 2, 6)).astype("float32")
    accumulators = np.random.default_rng(1).uniform(0.1, 1.0, size=(4, 2, 6, 5)).astype("float32")

    def counts(op):
        (d_acc,) = grad(lambda acc: op.weighted_sum(tensor(x), acc, logspace_accumulators=False), accumulators)
        return to_numpy(d_acc)

    op = SumOpHardEMBackprop(sample_prob=0.5)
    op.seed = 9
    np.testing.assert_array_equal(counts(op), counts(op))
    keras.utils.set_random_seed(3)
    default = SumOpHardEMBackprop(sample_prob=0.5)
    first = counts(default)
    keras.utils.set_random_seed(3)
    np.testing.assert_array_equal(first, counts(default))
    assert not np.array_equal(first, counts(default))


def test_infer_no_evidence_sampling_follows_set_random_seed():
    spn = normal_spn(SumOpSampleBackprop())
    sampler = models.SequentialSumProductNetwork([keras.Input(shape=(NUM_VARS,)), *spn.layers], infer_no_evidence=True)
    keras.utils.set_random_seed(4)
    first = to_numpy(sampler.zero_evidence_inference(6))
    keras.utils.set_random_seed(4)
    np.testing.assert_array_equal(first, to_numpy(sampler.zero_evidence_inference(6)))


@pytest.mark.parametrize("seed", [1.5, "0", True, np.zeros(2)])
def test_a_bad_seed_is_a_clear_type_error(seed):
    spn = normal_spn()
    with pytest.raises(TypeError, match=r"Model '.*' expects seed to be None, an int or a keras.random.SeedGenerator"):
        spn.sample(4, seed=seed)


def test_stateless_seed_is_the_same_for_an_int_and_advances_a_generator():
    np.testing.assert_array_equal(to_numpy(stateless_seed(3)), to_numpy(stateless_seed(3)))
    generator = keras.random.SeedGenerator(3)
    assert not np.array_equal(to_numpy(stateless_seed(generator)), to_numpy(stateless_seed(generator)))
