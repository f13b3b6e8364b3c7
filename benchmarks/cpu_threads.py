"""How the RAT-SPN benchmark's matmul floor and forward pass scale from 1 to more CPU cores, per Keras backend.

Each (backend, cores) setting runs in its own subprocess pinned to the first ``cores`` CPUs of this process
(``os.sched_setaffinity``, before the backend starts its thread pools), one after the other, ``--rounds`` times
interleaved. The model is ``benchmarks/ratspn_em.py``'s (``build``); the floor is its ``floor_function`` (the sum
layers' multiply-adds as plain batched matmuls) and the forward pass its ``compiled`` model call (``tf.function``
on TensorFlow, ``jax.jit`` on JAX), on a batch of ``--batch-size`` random binary rows, the median of 5 timed calls
after a warm-up call. It prints a Markdown table of the medians over the rounds, with each setting's speed-up over
one core::

    python benchmarks/cpu_threads.py                       # TensorFlow and JAX, 1 and all cores, 1 round
    python benchmarks/cpu_threads.py --rounds 2 --cores 1 2
    python benchmarks/cpu_threads.py --quick               # tiny model (smoke test)

Linux only (``os.sched_setaffinity``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import ratspn_em  # noqa: E402  (the model, its timings and the worker protocol)

BACKENDS = ("tensorflow", "jax")


def measure(quick: bool, batch_size: int) -> dict[str, float]:
    """Samples / s of the floor and of the compiled forward pass, in this process (its backend and CPUs)."""
    sys.path.insert(0, str(REPO))  # this checkout's libspn_keras, not an installed one
    return ratspn_em.floor_and_forward_rates(quick, batch_size)


def run_setting(backend: str, cores: int, quick: bool, batch_size: int) -> dict[str, float] | str:
    """Run ``measure`` in a subprocess on ``backend`` pinned to ``cores`` CPUs; its numbers, or why it failed."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [
        sys.executable,
        __file__,
        "--worker-cores",
        str(cores),
        "--batch-size",
        str(batch_size),
        *(["--quick"] if quick else []),
    ]
    result, why = ratspn_em.run_result_worker(command, env)
    return result if result is not None else f"failed ({why})"


def markdown_table(results: dict[tuple[str, int], list[dict[str, float] | str]]) -> str:
    """One row per (backend, cores): medians over the rounds and the speed-up over the backend's fewest cores."""
    lines = [
        "| backend | cores | floor, samples / s | speed-up | forward, samples / s | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    base: dict[str, tuple[float, float]] = {}
    for (backend, cores), runs in results.items():
        good = [run for run in runs if isinstance(run, dict)]
        if not good:
            lines.append(f"| {backend} | {cores} | {runs[0]} | | | |")
            continue
        floor = statistics.median(run["floor"] for run in good)
        forward = statistics.median(run["forward"] for run in good)
        floor_1, forward_1 = base.setdefault(backend, (floor, forward))
        lines.append(
            f"| {backend} | {cores} | {floor:,.0f} | {floor / floor_1:.2f}x | {forward:,.0f} | "
            f"{forward / forward_1:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    available = sorted(os.sched_getaffinity(0))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument(
        "--cores", nargs="+", type=int, default=sorted({1, len(available)}), help="core counts (default: 1 and all)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the settings")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny model (smoke test)")
    parser.add_argument("--worker-cores", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_cores is not None:
        os.sched_setaffinity(0, available[: args.worker_cores])
        ratspn_em.print_result(measure(args.quick, args.batch_size))
        return ""
    if any(not 1 <= cores <= len(available) for cores in args.cores):
        parser.error(f"--cores must be between 1 and {len(available)} (the CPUs of this process): {args.cores}")
    settings = [(backend, cores) for backend in args.backends for cores in sorted(set(args.cores))]
    results: dict[tuple[str, int], list[dict[str, float] | str]] = {setting: [] for setting in settings}
    for _ in range(args.rounds):
        for backend, cores in settings:
            results[backend, cores].append(run_setting(backend, cores, args.quick, args.batch_size))
    table = markdown_table(results)
    print(table)
    return table


if __name__ == "__main__":
    main()
