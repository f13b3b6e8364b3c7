"""Hard EM's child selection: ``weighted_argmax`` against an ``argmax`` of the materialized logits, per backend.

The selection sum ops (hard EM, sampling, MPE) pick for every sum ``o`` of every row ``r`` the child ``i`` that
maximizes ``x[g, r, i] + log w[g, i, o]``. Until commit bfad137 they formed the logits ``[groups, rows, in, out]``
and took their ``argmax`` over the children; ``libspn_keras.math._argmax.weighted_argmax`` compares the children
one after another instead (a running maximum). This script times both on the selection shapes of the README
DGC-SPN at batch 256 (``benchmarks/dgcspn.py``) and of the widest level of the ``ratspn_em.py`` RAT-SPN at batch
100, in the backend's compiled modes (TensorFlow: ``tf.function`` and ``tf.function(jit_compile=True)``; JAX:
``jax.jit``), calling the two alternately so that a change of machine load hits both alike, and prints the
medians (ms) and their ratio. Both give the same indices (checked).

Usage:
    python benchmarks/selection.py                    # TensorFlow (KERAS_BACKEND=jax for JAX)
    python benchmarks/selection.py --repeats 5 --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from libspn_keras.math._argmax import weighted_argmax  # noqa: E402

#: ``(where, groups, rows, in, out)``: the README DGC-SPN's sum layers (hard EM, batch 256) and the RAT-SPN level.
SHAPES = [
    ("DGC-SPN local2d_sum", 196, 256, 16, 16),
    ("DGC-SPN local2d_sum_1", 49, 256, 16, 32),
    ("DGC-SPN local2d_sum_2", 64, 256, 32, 32),
    ("DGC-SPN local2d_sum_3", 100, 256, 32, 64),
    ("DGC-SPN local2d_sum_4", 196, 256, 64, 16),
    ("DGC-SPN dense_sum", 1, 256, 4096, 10),
    ("RAT-SPN widest level, batch 100", 16, 100, 1024, 32),
]
QUICK = [("small", 8, 16, 40, 8), ("chunked", 2, 16, 300, 4)]


def logits_argmax(x: Any, log_weights: Any) -> Any:
    """The reference: the ``argmax`` over the children of the logits ``[groups, rows, in, out]``."""
    return ops.cast(ops.argmax(ops.expand_dims(x, -1) + ops.expand_dims(log_weights, 1), axis=-2), "int32")


def compiled_modes() -> list[tuple[str, Any, Any]]:
    """``(mode, reference, weighted_argmax)`` compiled as the backend's training steps are."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return [
            (
                f"tf.function{' (XLA)' if xla else ''}",
                tf.function(logits_argmax, jit_compile=xla),
                tf.function(weighted_argmax, jit_compile=xla),
            )
            for xla in (False, True)
        ]
    import jax

    return [("jax.jit", jax.jit(logits_argmax), jax.jit(weighted_argmax))]


def interleaved(first: Any, second: Any, args: tuple[Any, ...], repeats: int) -> tuple[float, float]:
    """Median ms of ``first(*args)`` and ``second(*args)``, called alternately after one warm-up call each."""
    times: tuple[list[float], list[float]] = ([], [])
    for fn in (first, second):
        np.asarray(fn(*args))
    for _ in range(repeats):
        for fn, record in zip((first, second), times, strict=True):
            start = time.perf_counter()
            np.asarray(fn(*args))
            record.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of each (default 10)")
    parser.add_argument("--quick", action="store_true", help="two small shapes (smoke test)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, {os.cpu_count()} CPUs")
    print("| shape | groups, rows, in, out | mode | argmax of logits ms | weighted_argmax ms | speed-up |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for name, groups, batch, num_in, num_out in QUICK if args.quick else SHAPES:
        x = ops.convert_to_tensor(rng.normal(size=(groups, batch, num_in)).astype("float32"))
        weights = rng.dirichlet(np.ones(num_in), size=(groups, num_out)).transpose(0, 2, 1)
        log_weights = ops.convert_to_tensor(np.log(weights).astype("float32"))
        for mode, reference, ours in compiled_modes():
            if not np.array_equal(np.asarray(reference(x, log_weights)), np.asarray(ours(x, log_weights))):
                raise AssertionError(f"{name}, {mode}: weighted_argmax differs from the argmax of the logits")
            old, new = interleaved(reference, ours, (x, log_weights), args.repeats)
            rows.append({"shape": name, "mode": mode, "reference_ms": old, "ours_ms": new})
            print(
                f"| {name} | {groups}, {batch}, {num_in}, {num_out} | {mode} | {old:.2f} | {new:.2f} | "
                f"{old / new:.1f}x |",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
