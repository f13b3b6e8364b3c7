"""The RAT-SPN benchmark's train step, forward pass and matmul floor under process-level CPU settings, per backend.

Some of what a CPU run costs is set outside the library, when the process starts: how glibc's ``malloc`` hands
out large blocks (``GLIBC_TUNABLES``) and, on JAX, which kernels XLA uses (``XLA_FLAGS``). Both are read once, at
start-up, so each (setting, backend) runs in its own subprocess, one after the other, ``--rounds`` times
interleaved. The model is ``benchmarks/ratspn_em.py``'s (``floor_and_forward_rates`` with ``train_step``): a
training step of ``model.fit`` with online soft EM (20 batches of ``--batch-size`` random binary rows per epoch,
the median of epochs 2 and 3), the compiled forward pass and the floor (the sum layers' matmuls alone), each
forward and floor the median of 5 timed calls after a warm-up call. It prints a
Markdown table of the medians over the rounds, with JAX's time per step over TensorFlow's under the same setting
and at TensorFlow's defaults, after the CPU's model (``ratspn_em.cpu_model``)::

    python benchmarks/cpu_settings.py                      # every setting in SETTINGS, both backends, 1 round
    python benchmarks/cpu_settings.py --rounds 3 --settings defaults "malloc keeps memory"
    python benchmarks/cpu_settings.py --quick              # tiny model (smoke test)

Linux with glibc (``GLIBC_TUNABLES``, glibc >= 2.26; other C libraries ignore it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import ratspn_em  # noqa: E402  (the model, its timings and the worker protocol)

BACKENDS = ("tensorflow", "jax")


class Setting(NamedTuple):
    """Environment variables of a worker: ``env`` for every backend, ``xla_flags`` for JAX only."""

    env: dict[str, str]
    xla_flags: str = ""


#: ``KEEP_MEMORY``: glibc's ``malloc`` serves every thread from one arena (``arena_max=1``), never maps a block of
#: its own (``mmap_max=0``) and keeps what is freed (a trim threshold of 100 GB). By default, blocks of 32 MB and
#: more are mapped on ``malloc`` and unmapped on ``free``, so the buffers that each step allocates afresh (hundreds of
#: MB here) are page-faulted and zeroed by the kernel on every step; kept, they are reused. The process keeps its
#: peak heap for as long as it runs (as TensorFlow's and PyTorch's caching allocators do).
#: ``--xla_cpu_experimental_ynn_fusion_type=`` (empty): XLA's CPU compiler does not route dots and reductions to
#: YNNPACK (jaxlib 0.10's default) but emits its own (Eigen) kernels. TensorFlow never gets ``XLA_FLAGS`` here: an
#: XLA flag that its own XLA does not know aborts the process.
KEEP_MEMORY = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=100000000000"
SETTINGS: dict[str, Setting] = {
    "defaults": Setting({}),
    "malloc keeps memory": Setting({"GLIBC_TUNABLES": KEEP_MEMORY}),
    "malloc keeps memory, no YNNPACK": Setting(
        {"GLIBC_TUNABLES": KEEP_MEMORY}, "--xla_cpu_experimental_ynn_fusion_type="
    ),
}


def measure(quick: bool, batch_size: int) -> dict[str, float]:
    """Samples / s of the train step, the forward pass and the floor, in this process (its backend and settings)."""
    sys.path.insert(0, str(REPO))  # this checkout's libspn_keras, not an installed one
    return ratspn_em.floor_and_forward_rates(quick, batch_size, train_step=True)


def worker_env(setting: Setting, backend: str) -> dict[str, str]:
    """This process's environment with ``setting``'s variables for a worker on ``backend``."""
    env = {**os.environ, **setting.env, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend == "jax" and setting.xla_flags:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {setting.xla_flags}".strip()
    return env


def run_setting(setting: Setting, backend: str, quick: bool, batch_size: int) -> dict[str, float] | str:
    """Run ``measure`` in a subprocess with ``setting`` on ``backend``; its numbers, or why it failed."""
    command = [sys.executable, __file__, "--worker", "--batch-size", str(batch_size), *(["--quick"] if quick else [])]
    env = worker_env(setting, backend)
    result, why = ratspn_em.run_result_worker(command, env)
    return result if result is not None else f"failed ({why})"


def markdown_table(results: dict[tuple[str, str], list[dict[str, float] | str]], batch_size: int) -> str:
    """One row per (setting, backend): ms per batch (medians over the rounds) and JAX's ratios to TensorFlow.

    The ratios are JAX's train step and forward pass over TensorFlow's under the same setting, and its train step
    over TensorFlow's at defaults (the fair comparison where a setting helps one backend only).
    """
    lines = [
        "| setting | backend | train step, ms | forward, ms | floor, ms | JAX / TF, train step | JAX / TF, forward "
        "| JAX / TF at defaults, train step |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    times: dict[tuple[str, str], dict[str, float]] = {}
    for (name, backend), runs in results.items():
        good = [run for run in runs if isinstance(run, dict)]
        if not good:
            lines.append(f"| {name} | {backend} | {runs[0]} | | | | | |")
            continue
        ms = {key: statistics.median(1000 * batch_size / run[key] for run in good) for key in good[0]}
        times[name, backend] = ms
        ratios = ["", "", ""]
        tf, tf_defaults = times.get((name, "tensorflow")), times.get(("defaults", "tensorflow"))
        if backend == "jax" and tf is not None:
            ratios[:2] = [f"{ms['train_step'] / tf['train_step']:.2f}x", f"{ms['forward'] / tf['forward']:.2f}x"]
        if backend == "jax" and tf_defaults is not None:
            ratios[2] = f"{ms['train_step'] / tf_defaults['train_step']:.2f}x"
        lines.append(
            f"| {name} | {backend} | {ms['train_step']:.1f} | {ms['forward']:.1f} | {ms['floor']:.1f} | "
            + " | ".join(ratios)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the settings")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny model (smoke test)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        ratspn_em.print_result(measure(args.quick, args.batch_size))
        return ""
    order = [(name, backend) for name in args.settings for backend in BACKENDS if backend in args.backends]
    results: dict[tuple[str, str], list[dict[str, float] | str]] = {key: [] for key in order}
    for _ in range(args.rounds):
        for name, backend in order:
            results[name, backend].append(run_setting(SETTINGS[name], backend, args.quick, args.batch_size))
    table = markdown_table(results, args.batch_size)
    print(f"CPU: {ratspn_em.cpu_model()}, {len(os.sched_getaffinity(0))} usable cores\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
