"""Training does not grow memory without bound: the demo's density estimator on many copies of its data.

``examples/demo.py`` fits a RAT-SPN density estimator (``IndicatorLeaf`` over the 17 pixel levels, five levels of
``DenseProduct`` / ``DenseSum``, ``RootSum``) to the 8x8 digits (1347 training images) with
``NegativeLogLikelihood`` and Adam, 64 images per batch. Here the same model (``FULL`` sizes) trains for one epoch
on ``copies`` shuffled copies of that training set, in a subprocess so that the measurement starts from a clean
process. The resident set size (``psutil`` if installed, else ``/proc/self/statm``) is recorded after every batch;
after a warm-up (tracing, allocator pools), the growth over the first and the second half of the remaining batches
must both stay small. A leak proportional to the number of batches shows up as equal growth in both halves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    from libspn_keras import losses, metrics
    from libspn_keras.datasets import load_digits_split


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


def train_and_record(copies: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(REPO / "examples" / "demo.py"), str(copies)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


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
