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
    first, second = spn.sample(32, seed=0).numpy(), spn.sample(32, seed=0).numpy()
    np.testing.assert_array_equal(first, second)
    assert first.dtype == floatx
    assert np.abs(first - spn.sample(32, seed=1).numpy()).max() > 0.1  # another seed, other samples
    assert len(np.unique(first, axis=0)) == 32  # and the rows of one call differ


def test_complete_by_sampling_with_the_same_seed_gives_the_same_completion():
    spn = normal_spn()
    x = np.tile(np.array([[0.5, np.nan, -1.0, np.nan, np.nan, 2.0]], "float32"), (16, 1))
    first = spn.complete(x, method="sample", seed=3).numpy()
    np.testing.assert_array_equal(first, spn.complete(x, method="sample", seed=3).numpy())
    np.testing.assert_array_equal(first, spn.sample(evidence=x, seed=3).numpy())
    np.testing.assert_array_equal(first[:, [0, 2, 5]], x[:, [0, 2, 5]])
    assert not np.array_equal(first, spn.complete(x, method="sample", seed=4).numpy())


def test_a_seed_generator_advances_and_reproduces_from_its_seed():
    spn = normal_spn()
    generator = keras.random.SeedGenerator(5)
    first, second = spn.sample(8, seed=generator).numpy(), spn.sample(8, seed=generator).numpy()
    assert not np.array_equal(first, second)
    again = keras.random.SeedGenerator(5)
    np.testing.assert_array_equal(first, spn.sample(8, seed=again).numpy())
    np.testing.assert_array_equal(second, spn.sample(8, seed=again).numpy())


def test_without_a_seed_draws_follow_keras_set_random_seed():
    spn = normal_spn()
    keras.utils.set_random_seed(11)
    first = spn.sample(8).numpy()
    later = spn.sample(8).numpy()
    keras.utils.set_random_seed(11)
    np.testing.assert_array_equal(first, spn.sample(8).numpy())
    np.testing.assert_array_equal(later, spn.sample(8).numpy())
    assert not np.array_equal(first, later)


@pytest.mark.parametrize("leaf_class", [layers.NormalLeaf, layers.CauchyLeaf, layers.LaplaceLeaf])
def test_sample_components_honour_the_seed(leaf_class, floatx):
    leaf = leaf_class(num_components=2)
    leaf.build((None, 3, 2, 1))
    first = leaf.sample_components(64, seed=7).numpy()
    assert first.shape == (64, 3, 2, 2, 1) and first.dtype == floatx
    np.testing.assert_array_equal(first, leaf.sample_components(64, seed=7).numpy())
    assert not np.array_equal(first, leaf.sample_components(64, seed=8).numpy())
    keras.utils.set_random_seed(2)
    unseeded = leaf.sample_components(64).numpy()
    keras.utils.set_random_seed(2)
    np.testing.assert_array_equal(unseeded, leaf.sample_components(64).numpy())


def test_sampled_leaf_representation_honours_the_seed():
    leaf = layers.NormalLeaf(num_components=2, leaf_representation="sample")
    leaf.build((None, 3, 1, 1))
    np.testing.assert_array_equal(
        leaf.get_leaf_representation(5, seed=1).numpy(), leaf.get_leaf_representation(5, seed=1).numpy()
    )


def test_hard_em_sampling_in_training_follows_the_op_seed():
    """The draws of ``sample_prob`` come from ``op.seed`` (Keras' global generator by default)."""
    x = np.random.default_rng(0).normal(size=(64, 4, 2, 6)).astype("float32")
    accumulators = np.random.default_rng(1).uniform(0.1, 1.0, size=(4, 2, 6, 5)).astype("float32")

    def counts(op):
        import tensorflow as tf

        x_t, acc = tf.constant(x), tf.constant(accumulators)
        with tf.GradientTape() as tape:
            tape.watch(acc)
            out = op.weighted_sum(x_t, acc, logspace_accumulators=False)
        return tape.gradient(out, acc).numpy()

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
    first = sampler.zero_evidence_inference(6).numpy()
    keras.utils.set_random_seed(4)
    np.testing.assert_array_equal(first, sampler.zero_evidence_inference(6).numpy())


@pytest.mark.parametrize("seed", [1.5, "0", True, np.zeros(2)])
def test_a_bad_seed_is_a_clear_type_error(seed):
    spn = normal_spn()
    with pytest.raises(TypeError, match=r"Model '.*' expects seed to be None, an int or a keras.random.SeedGenerator"):
        spn.sample(4, seed=seed)


def test_stateless_seed_is_the_same_for_an_int_and_advances_a_generator():
    np.testing.assert_array_equal(stateless_seed(3).numpy(), stateless_seed(3).numpy())
    generator = keras.random.SeedGenerator(3)
    assert not np.array_equal(stateless_seed(generator).numpy(), stateless_seed(generator).numpy())
