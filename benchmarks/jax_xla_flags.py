"""The RAT-SPN benchmark's matmul floor and forward pass on JAX (CPU) under several ``XLA_FLAGS`` settings.

Each setting runs in its own subprocess (``XLA_FLAGS`` is read once, when JAX starts its backend), one after the
other, ``--rounds`` times interleaved: the model is ``benchmarks/ratspn_em.py``'s (``build``, its ``floor_function``
and ``jax.jit`` of the model), a batch of ``--batch-size`` random binary rows, the median of 5 timed calls after a
warm-up call. It prints a Markdown table of the medians over the rounds::

    python benchmarks/jax_xla_flags.py                     # the settings in SETTINGS, 1 round
    python benchmarks/jax_xla_flags.py --rounds 2 --flags= --flags=--xla_cpu_use_onednn=true
    python benchmarks/jax_xla_flags.py --quick             # tiny model (smoke test)
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

#: The XLA CPU settings tried by default: none, oneDNN for the dots (two ways), XNNPACK off, wider vectors,
#: XNNPACK graph fusion, and no YNNPACK fusions (XLA's own dot and reduction kernels instead of jaxlib 0.10's
#: default YNNPACK ones; ``cpu_settings.py`` measures it on the train step too).
SETTINGS = (
    "",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_prefer_vector_width=512",
    "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "--xla_cpu_experimental_ynn_fusion_type=",
)


def measure(quick: bool, batch_size: int) -> dict[str, float]:
    """Samples / s of the floor and of the compiled forward pass, in this process (its ``XLA_FLAGS``)."""
    sys.path.insert(0, str(REPO))  # this checkout's libspn_keras, not an installed one
    return ratspn_em.floor_and_forward_rates(quick, batch_size)


def run_setting(flags: str, quick: bool, batch_size: int) -> dict[str, float] | str:
    """Run ``measure`` in a subprocess with ``XLA_FLAGS=flags``; its numbers, or why it failed."""
    env = {**os.environ, "XLA_FLAGS": flags, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, "--worker", "--batch-size", str(batch_size), *(["--quick"] if quick else [])]
    result, why = ratspn_em.run_result_worker(command, env)
    return result if result is not None else f"failed ({why})"


def markdown_table(results: dict[str, list[dict[str, float] | str]]) -> str:
    lines = ["| `XLA_FLAGS` | floor, samples / s | forward (XLA), samples / s |", "| --- | ---: | ---: |"]
    for flags, runs in results.items():
        good = [run for run in runs if isinstance(run, dict)]
        label = f"`{flags}`" if flags else "(none)"
        if not good:
            lines.append(f"| {label} | {runs[0]} | |")
            continue
        floor = statistics.median(run["floor"] for run in good)
        forward = statistics.median(run["forward"] for run in good)
        lines.append(f"| {label} | {floor:,.0f} | {forward:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--flags", action="append", help="an XLA_FLAGS setting to compare, as --flags=VALUE (repeat; default: SETTINGS)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the settings")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny model (smoke test)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        ratspn_em.print_result(measure(args.quick, args.batch_size))
        return
    settings = args.flags if args.flags is not None else list(SETTINGS)
    results: dict[str, list[dict[str, float] | str]] = {flags: [] for flags in settings}
    for _ in range(args.rounds):
        for flags in settings:
            results[flags].append(run_setting(flags, args.quick, args.batch_size))
    print(markdown_table(results))


if __name__ == "__main__":
    main()
