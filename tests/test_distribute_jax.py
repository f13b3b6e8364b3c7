"""Training under ``keras.distribution.DataParallel`` (JAX, two virtual CPU devices) matches one device.

The JAX twin of ``tests/test_distribute.py`` (issue 19, scale-out). Each case runs in a fresh interpreter: the
virtual devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``) must be set before JAX starts, and this
test process keeps its own single device. Only run with ``KERAS_BACKEND=jax``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution.DataParallel is tested on the JAX backend"
)

SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import keras
    import numpy as np

    devices = jax.devices("cpu")
    assert len(devices) == 2, devices
    case = sys.argv[1]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")  # one batch: one training step

    if case == "dense":  # the mechanics, with a plain Keras model
        y = rng.normal(size=(16, 3)).astype("float32")

        def build():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(3)])
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
            return model

        targets = (y,)
    else:
        import libspn_keras as spnk
        from libspn_keras import layers, losses, optimizers, sum_ops

        if case == "adam":
            make_op, make_opt, em = sum_ops.SumOpGradBackprop, lambda: keras.optimizers.Adam(0.01), False
        elif case == "hard_em":
            make_op, em = sum_ops.SumOpHardEMBackprop, True
            make_opt = lambda: optimizers.OnlineExpectationMaximization(0.1)  # noqa: E731
        elif case == "soft_em":
            make_op, em = sum_ops.SumOpEMBackprop, True
            make_opt = lambda: optimizers.OnlineExpectationMaximization(0.1)  # noqa: E731
        else:
            raise ValueError(case)

        def build():  # a small RAT-SPN: two random decompositions of 6 variables
            keras.utils.set_random_seed(0)
            op = make_op()
            model = spnk.models.SequentialSumProductNetwork([
                layers.FlatToRegions(num_decomps=2, input_shape=(6,)),
                layers.NormalLeaf(num_components=3, use_accumulators=em, scale_trainable=em),
                layers.PermuteAndPadScopesRandom(seed=0),
                layers.DenseProduct(num_factors=2),
                layers.DenseSum(num_sums=2, sum_op=op),
                layers.ReduceProduct(num_factors=2),
                layers.DenseProduct(num_factors=2),
                layers.Undecompose(),
                layers.RootSum(return_weighted_child_logits=False, sum_op=op),
            ])
            model.compile(optimizer=make_opt(), loss=losses.NegativeLogLikelihood())
            return model

        targets = ()

    single = build()
    initial = [np.asarray(w) for w in single.get_weights()]
    single.fit(x, *targets, batch_size=16, epochs=1, shuffle=False, verbose=0)

    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    parallel = build()
    # The variables are replicated on both devices, and the batch is split between them.
    assert all(len(v.value.sharding.device_set) == 2 for v in parallel.weights), "not distributed"
    assert distribution.get_data_layout((16, 6)).axes[0] == "batch"
    parallel.fit(x, *targets, batch_size=16, epochs=1, shuffle=False, verbose=0)
    keras.distribution.set_distribution(None)

    diffs = [float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(single.weights, parallel.weights)]
    changed = max((float(np.abs(np.asarray(a) - b).max()) for a, b in zip(single.weights, initial)), default=0.0)
    print("MAXDIFF", max(diffs), "CHANGED", changed)
    """
)


def _run(case: str, tmp_path) -> tuple[float, float]:
    script = tmp_path / "distributed_jax.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(script), case], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("MAXDIFF"))
    _, max_diff, _, changed = line.split()
    assert float(changed) > 1e-3, "training must move the weights, or the comparison proves nothing"
    return float(max_diff), float(changed)


def test_data_parallel_mechanics_with_a_dense_model(tmp_path):
    """The subprocess really splits a batch over two devices, and one Adam step equals the single-device one."""
    max_diff, _ = _run("dense", tmp_path)
    assert max_diff < 1e-6


@pytest.mark.parametrize("case", ["adam", "hard_em", "soft_em"])
def test_data_parallel_matches_single_device(case, tmp_path):
    """One Adam step (gradient sum op) and one online EM step (soft and hard EM ops) of a small RAT-SPN."""
    max_diff, _ = _run(case, tmp_path)
    assert max_diff < 1e-5
