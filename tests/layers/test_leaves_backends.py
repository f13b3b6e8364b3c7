"""Leaves, LogDropout, NormalizeStandardScore and data helpers on the JAX backend, compared with TensorFlow.

The script below runs in this (TensorFlow) process and in a subprocess with ``KERAS_BACKEND=jax``; both must give
the same log-probabilities, EM gradients (also under ``jax.jit``), modes and normalizations, and samples that
follow scipy's distributions.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from libspn_keras._data import concatenated_samples, input_batches, is_batched_dataset

SCRIPT = r"""
import sys
import numpy as np
import keras
from scipy import stats
from libspn_keras.layers import CauchyLeaf, LaplaceLeaf, LogDropout, NormalizeStandardScore, NormalLeaf
from libspn_keras.initializers import PoonDomingosMeanOfQuantileSplit
from libspn_keras.math import vjp

backend = keras.backend.backend()
rng = np.random.default_rng(0)
x = rng.normal(size=(6, 3, 2, 2)).astype("float32")
x[0, 0, 0, 0] = np.nan
x[2, 2, 0, 1] = np.inf
mask = rng.random((6, 3, 2)) > 0.3
loc = rng.normal(size=(3, 2, 4, 2)).astype("float32")
scale = rng.uniform(0.3, 2.0, size=(3, 2, 4, 2)).astype("float32")
cotangent = (np.arange(6 * 3 * 2 * 4) % 7).reshape(6, 3, 2, 4).astype("float32") / 7.0


def variable_gradients(leaf):
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            total = tf.reduce_sum(leaf(x) * cotangent)
        return [np.asarray(g) for g in tape.gradient(total, leaf.trainable_variables)]
    import jax

    trainable = [v.value for v in leaf.trainable_variables]
    fixed = [v.value for v in leaf.non_trainable_variables]

    def total(trainable):
        return (leaf.stateless_call(trainable, fixed, x)[0] * cotangent).sum()

    eager, jitted = jax.grad(total)(trainable), jax.jit(jax.grad(total))(trainable)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    return [np.asarray(g) for g in eager]


out = {}
for cls, dist in ((NormalLeaf, stats.norm), (CauchyLeaf, stats.cauchy), (LaplaceLeaf, stats.laplace)):
    for em, trainable_scale in ((False, False), (False, True), (True, False), (True, True)):
        if em and trainable_scale and cls is not NormalLeaf:
            continue
        name = f"{cls.__name__}-{em}-{trainable_scale}"
        leaf = cls(
            num_components=4, location_initializer=keras.initializers.Constant(loc),
            scale_initializer=keras.initializers.Constant(scale), use_accumulators=em,
            scale_trainable=trainable_scale,
        )
        leaf.build((None, 3, 2, 2))
        out[name + "-log-prob"] = np.asarray(leaf(x))
        out[name + "-masked"] = np.asarray(leaf(x, evidence_mask=mask))
        out[name + "-modes"] = np.asarray(leaf.get_modes())
        out[name + "-mode-log-prob"] = np.asarray(leaf.mode_log_prob())
        for i, grad in enumerate(variable_gradients(leaf)):
            out[name + f"-grad{i}"] = grad
        out[name + "-grad-x"] = np.asarray(vjp(leaf, [np.nan_to_num(x, posinf=0.5)], cotangent)[1][0])
    leaf = cls(
        num_components=2, location_initializer=keras.initializers.Constant(1.5),
        scale_initializer=keras.initializers.Constant(0.7), leaf_representation="sample",
    )
    leaf.build((None, 1, 1, 1))
    samples = np.asarray(leaf.get_leaf_representation(4000, seed=3))
    assert samples.shape == (4000, 1, 1, 2, 1) and samples.dtype == "float32"
    assert np.array_equal(samples, np.asarray(leaf.get_leaf_representation(4000, seed=3)))
    generator = keras.random.SeedGenerator(3)
    assert not np.array_equal(*(np.asarray(leaf.sample_components(3, seed=generator)) for _ in range(2)))
    for k in range(2):
        assert stats.kstest(samples[:, 0, 0, k, 0], dist(1.5, 0.7).cdf).pvalue > 1e-3, (cls, k)

dropout = LogDropout(rate=0.5, seed=0, axis_at_least_one=-1, noise_shape=(None, 1, 2, 3))
dropped = np.isfinite(np.asarray(dropout(np.zeros((5, 4, 2, 3), "float32"), training=True)))
assert dropped.any(axis=-1).all() and not dropped.all() and (dropped == dropped[:, :1]).all()

data = rng.normal(2.0, 3.0, size=(20, 5)).astype("float32")
data[3, 1] = np.nan
for axes in ("global", "variable-wise"):
    layer = NormalizeStandardScore(axes=axes)
    layer.adapt((batch, None) for batch in np.array_split(data, 3))
    out["normalized-" + axes] = np.asarray(layer(data))
layer = NormalizeStandardScore()
out["normalized-sample-wise"] = np.asarray(layer(data))
out["denormalized"] = np.asarray(layer.denormalize(out["normalized-sample-wise"], data))
out["poon-domingos"] = np.asarray(PoonDomingosMeanOfQuantileSplit(iter(np.array_split(data, 4)))((5, 1, 3, 1)))
np.savez(sys.argv[1], **out)
"""


@pytest.mark.requires_tensorflow  # computes the reference in this (TensorFlow) process, JAX in a subprocess
def test_jax_backend_matches_tensorflow(tmp_path):
    pytest.importorskip("jax")
    tf_path, jax_path = tmp_path / "tensorflow.npz", tmp_path / "jax.npz"
    old_argv = sys.argv
    sys.argv = ["script", str(tf_path)]
    try:
        exec(compile(SCRIPT, "leaves_script", "exec"), {"__name__": "leaves_script"})
    finally:
        sys.argv = old_argv
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(jax_path)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    expected, got = np.load(tf_path), np.load(jax_path)
    assert set(expected) == set(got)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=2e-5, err_msg=key)


def test_input_batches_of_arrays_tuples_iterators_and_datasets():
    data = np.arange(12.0).reshape(6, 2)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return data[2 * index : 2 * index + 2], np.zeros(2)

    assert not is_batched_dataset(data) and not is_batched_dataset([data]) and is_batched_dataset(iter([data]))
    assert [b.tolist() for b in input_batches(data)] == [data.tolist()]
    assert [b.tolist() for b in input_batches((data, None))] == [data.tolist()]
    for batches in (Batches(), iter(np.split(data, 3)), ((b, None) for b in np.split(data, 3))):
        assert is_batched_dataset(batches)
        np.testing.assert_array_equal(concatenated_samples(batches), data)
    assert concatenated_samples(data.tolist()).dtype == np.float64
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((data, np.zeros(6))).batch(4)
        assert is_batched_dataset(dataset)
        assert [b.shape for b in input_batches(dataset)] == [(4, 2), (2, 2)]
        np.testing.assert_array_equal(concatenated_samples(tf.constant(data)), data)
