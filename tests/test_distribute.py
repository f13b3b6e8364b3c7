"""Training under tf.distribute.MirroredStrategy matches one device (two logical CPU devices).

Each case runs in a fresh interpreter: logical devices must be configured before TensorFlow initializes, and
collective ops of several strategies in one process interfere.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute.MirroredStrategy needs the TensorFlow backend (JAX: tests/test_distribute_jax.py)",
)

SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import libspn_keras as spnk
    from libspn_keras import layers, losses, optimizers, sum_ops

    case = sys.argv[1]
    if case == "adam":
        make_op, make_opt, em = sum_ops.SumOpGradBackprop, lambda: keras.optimizers.Adam(0.01), False
    elif case == "hard_em":
        make_op, make_opt, em = sum_ops.SumOpHardEMBackprop, lambda: optimizers.OnlineExpectationMaximization(0.1), True
    elif case == "normalized_em":
        def make_opt():
            return optimizers.OnlineExpectationMaximization(0.1, normalized_update=True)

        make_op, em = sum_ops.SumOpEMBackprop, True
    else:
        make_op, make_opt, em = sum_ops.SumOpEMBackprop, lambda: optimizers.OnlineExpectationMaximization(0.1), True

    def build():
        keras.utils.set_random_seed(0)
        op = make_op()
        return spnk.models.SequentialSumProductNetwork([
            layers.FlatToRegions(num_decomps=2, input_shape=(6,)),
            layers.NormalLeaf(num_components=3, use_accumulators=em, scale_trainable=em),
            layers.PermuteAndPadScopesRandom(seed=0),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2, sum_op=op),
            layers.ReduceProduct(num_factors=2),
            # A root over the products of both decompositions: computed from the factors where the op fuses them.
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False, sum_op=op),
        ])

    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    single = build()
    single.compile(optimizer=make_opt(), loss=losses.NegativeLogLikelihood())
    single.fit(x, batch_size=16, epochs=2, shuffle=False, verbose=0)

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = build()
        mirrored.compile(optimizer=make_opt(), loss=losses.NegativeLogLikelihood())
    mirrored.fit(x, batch_size=16, epochs=2, shuffle=False, verbose=0)

    diffs = [float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(single.weights, mirrored.weights)]
    changed = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(single.weights, build().weights))
    print("MAXDIFF", max(diffs), "CHANGED", changed)
    """
)


@pytest.mark.parametrize("case", ["adam", "hard_em", "soft_em", "normalized_em"])
def test_mirrored_strategy_matches_single_device(case, tmp_path):
    script = tmp_path / "distributed.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), case], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("MAXDIFF"))
    _, max_diff, _, changed = line.split()
    assert float(changed) > 1e-3, "training must move the weights, or the comparison proves nothing"
    assert float(max_diff) < 1e-5, line
