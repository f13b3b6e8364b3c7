"""No memory growth: training on many copies of the data, sampling again and again, building model after model.

The memory of a process is measured in a subprocess so that it starts clean (``rss_bytes``: ``psutil`` if
installed, else ``/proc/self/statm``).

**Training.** ``examples/demo.py`` fits a RAT-SPN density estimator (``IndicatorLeaf`` over the 17 pixel
levels, five levels of ``DenseProduct`` / ``DenseSum``, ``RootSum``) to the 8x8 digits (1347 training images) with
``NegativeLogLikelihood`` and Adam, 64 images per batch. Here the same model (``FULL`` sizes) trains for one epoch
on ``copies`` shuffled copies of that training set. The resident set size is recorded after every batch; after a
warm-up (tracing, allocator pools), the growth over the first and the second half of the remaining batches must both
stay small. A leak proportional to the number of batches shows up as equal growth in both halves.

**Sampling and building** (issue 18, item 3). ``sample(64)`` repeated 150 times under a global seed grew RSS by
about 470 MB (3 MB per call): with a global seed, every eager ``tf.random.uniform`` of the sum ops and TFP's
sampler created a new random-op kernel, which TensorFlow keeps; the draws are now stateless
(``libspn_keras.math.stateless_seed``). Building 30 RAT-SPNs (each built, called through ``predict`` and dropped
after ``keras.backend.clear_session()``) grew it by about 100 MB: every graph-mode call of a
``tf.custom_gradient`` function registered its gradient function, which holds the traced graph, in TensorFlow's
global gradient registry for good, and TensorFlow has no public API to release them. In a graph,
``libspn_keras.math.custom_gradient`` now overrides the gradient of an ``IdentityN`` op with one function registered
once, which finds each call's backward rule in a table its graph holds: the graphs are freed with the models.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

from libspn_keras.math import custom_gradient

#: The Keras backend of the test run, used by the measured processes too.
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]

#: Start of every worker: imports, ``rss_bytes`` and the demo module (``examples/demo.py``, the first argument).
WORKER_START = textwrap.dedent(
    """
    import gc, importlib.util, json, os, sys
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np


    def rss_bytes():
        try:
            import psutil
        except ImportError:
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return psutil.Process().memory_info().rss


    spec = importlib.util.spec_from_file_location("example_demo", sys.argv[1])
    demo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = demo
    spec.loader.exec_module(demo)
    """
)

WORKER = WORKER_START + textwrap.dedent(
    """
    from libspn_keras import losses, metrics
    from libspn_keras.datasets import load_digits_split

    copies = int(sys.argv[2])

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    split = load_digits_split(test_fraction=0.25, seed=0)
    x = np.concatenate([rng.permutation(demo.pixel_levels(split.x_train)) for _ in range(copies)])
    x = x[: len(x) // 64 * 64]  # full batches only: a smaller last batch would trace the train step again
    spn = demo.build_density_estimator(demo.FULL)
    spn.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss=losses.NegativeLogLikelihood(),
        metrics=[metrics.LogLikelihood()],
    )
    rss = []


    class RecordMemory(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            rss.append(rss_bytes())


    history = spn.fit(x, epochs=1, batch_size=64, shuffle=True, verbose=0, callbacks=[RecordMemory()])
    print(json.dumps({"rss": rss, "loss": history.history["loss"], "num_images": len(x)}))
    """
)


def run_worker(worker: str, *args: str) -> dict:
    """Run ``worker`` in a fresh Python process (``examples/demo.py`` and ``args`` as arguments); its JSON output."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", worker, str(REPO / "examples" / "demo.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def train_and_record(copies: int) -> dict:
    return run_worker(WORKER, str(copies))


MB = 2**20


def check_memory_is_bounded(record: dict, total_bound: float = 200.0, noise: float = 8.0) -> None:
    """Growth after the warm-up stays below ``total_bound`` MB, and does not go on in the second half.

    A leak per batch grows memory in both halves alike; without one the second half grows by less than ``noise``
    MB (allocator noise) or at most half as much as the first (pools that still fill up).
    """
    rss = record["rss"]
    num_batches = record["num_images"] // 64
    assert len(rss) == num_batches
    assert all(abs(loss) < float("inf") for loss in record["loss"])
    warm = max(5, num_batches // 10)  # tracing and the allocator's first pools
    middle = (warm + num_batches) // 2
    first, second = (rss[middle] - rss[warm]) / MB, (rss[-1] - rss[middle]) / MB
    total = (rss[-1] - rss[warm]) / MB
    report = (
        f"RSS after warm-up {rss[warm] / MB:.0f} MB; growth over batches {warm}-{middle}: {first:.1f} MB, "
        f"{middle}-{num_batches - 1}: {second:.1f} MB, total {total:.1f} MB"
    )
    print(report)
    assert total < total_bound, report
    assert second < max(noise, first / 2), report


def test_one_epoch_on_ten_times_the_demo_data_does_not_grow_memory():
    # 210 batches, about 20 s (a subprocess: TensorFlow import, tracing and training).
    check_memory_is_bounded(train_and_record(copies=10))


def test_memory_check_detects_a_steady_climb():
    steady = [800 * MB] * 210
    check_memory_is_bounded({"rss": steady, "loss": [1.0], "num_images": 210 * 64})
    leaking = [800 * MB + batch * MB // 5 for batch in range(210)]  # 0.2 MB per batch: 38 MB in all
    with pytest.raises(AssertionError, match=r"growth over batches 21-115: 18\.8 MB, 115-209: 18\.8 MB"):
        check_memory_is_bounded({"rss": leaking, "loss": [1.0], "num_images": 210 * 64})
    pools = [800 * MB + min(batch, 60) * MB for batch in range(210)]  # grows early, then flat
    check_memory_is_bounded({"rss": pools, "loss": [1.0], "num_images": 210 * 64})
    with pytest.raises(AssertionError, match="total 250"):
        check_memory_is_bounded({"rss": [0] * 22 + [250 * MB] * 188, "loss": [1.0], "num_images": 210 * 64})


QUERY_WORKER = WORKER_START + textwrap.dedent(
    """
    case, repeats = sys.argv[2], int(sys.argv[3])
    keras.utils.set_random_seed(0)
    x = demo.pixel_levels(np.random.default_rng(0).uniform(size=(64, demo.NUM_PIXELS)))  # the demo's int inputs
    if case == "sample":
        spn = demo.build_density_estimator(demo.QUICK)

        def step():
            spn.sample(64)

    else:

        def step():
            spn = demo.build_density_estimator(demo.QUICK)
            spn.predict(x, verbose=0)
            del spn
            keras.backend.clear_session()
            gc.collect()

    rss = []
    for _ in range(repeats):
        step()
        rss.append(rss_bytes())
    print(json.dumps({"rss": rss}))
    """
)


def repeat_and_record(case: str, repeats: int) -> list[int]:
    """RSS after each of ``repeats`` calls of ``sample(64)`` (``case='sample'``) or model builds (``'build'``)."""
    return run_worker(QUERY_WORKER, case, str(repeats))["rss"]


def check_growth(rss: list[int], warm: int, bound: float) -> None:
    """RSS grows by less than ``bound`` MB from call ``warm`` (tracing, allocator pools) to the last call."""
    growth = (rss[-1] - rss[warm]) / MB
    report = (
        f"RSS after {warm} calls {rss[warm] / MB:.0f} MB, growth over the next {len(rss) - 1 - warm}: {growth:.1f} MB"
    )
    print(report)
    assert growth < bound, report


def test_repeated_sampling_under_a_global_seed_does_not_grow_memory():
    # 160 calls of sample(64) on the demo's RAT-SPN (QUICK sizes), about 40 s: it grew by 40 MB (1 MB now).
    check_growth(repeat_and_record("sample", 160), warm=10, bound=20.0)


def test_building_model_after_model_does_not_grow_memory():
    # 30 RAT-SPNs (QUICK sizes) built, run through predict and dropped, about 60 s: each kept 3-4 MB of traced
    # graphs in TensorFlow's gradient registry (100 MB over 30 models), none now.
    check_growth(repeat_and_record("build", 30), warm=5, bound=20.0)


@pytest.mark.requires_tensorflow
def test_graphs_tracing_a_custom_gradient_are_freed():
    # The quick check of the case above: a tf.function whose tape differentiates a custom gradient is freed with
    # the function (tf.custom_gradient's gradient registry kept every such graph).
    import tensorflow as tf

    @custom_gradient
    def double(x):
        return x * 2.0, lambda dy: dy * 3.0  # a backward rule autodiff would not give

    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = double(x)
        return tape.gradient(y, x)

    graphs = []
    for _ in range(5):
        function = tf.function(gradient)
        x = tf.constant(1.0)
        assert float(function(x)) == 3.0
        graphs.append(weakref.ref(function.get_concrete_function(x).graph))
        del function
    gc.collect()
    # All five were kept before. Once in a few runs under load one graph outlived a collection: allowed.
    assert sum(graph() is not None for graph in graphs) <= 1
