"""README DGC-SPN (28x28x1): time per batch and peak memory, per sum op, with and without XLA (``jit_compile``).

The model is exactly the DGC-SPN of the LibSPN Keras README (1,214,498 parameters): ``NormalLeaf`` with 16
components, two non-overlapping 2x2 stride-2 depthwise ``Conv2DProduct`` layers, overlapping products with full
padding and dilations 1, 2, 4, a 'final' product with dilation 8, ``Local2DSum`` layers with 16/32/32/64/64 sums,
``SpatialToRegions``, a ``DenseSum`` with 10 class sums and a ``RootSum`` returning the weighted class logits. As in
the README there is no ``NormalizeStandardScore``; the inputs are standard-normal pixels. The gradient op uses the
README's log-space accumulators; the EM ops require linear accumulators (same shapes and initializer, so the same
parameter count).

For each batch size, sum op and compilation mode (``tf.function`` or ``tf.function(jit_compile=True)``) it
measures, after warm-up, the median over ``--repeats`` timed calls of:

* forward: ``log p(x) = logsumexp`` of the class logits, ``[batch]``;
* train step: forward, the NLL ``-mean log p(x)``, ``GradientTape`` gradients of all trainable variables (with
  the EM ops the backward pass yields the EM counts) and one optimizer update: Adam (1e-3) for
  ``SumOpGradBackprop``, ``OnlineExpectationMaximization`` (0.05) for the EM ops;
* the first call of each (tracing plus, with ``jit_compile``, XLA compilation);
* peak memory: on CPU the peak resident set size (``ru_maxrss``) of a fresh process per configuration (the
  default; ``--no-subprocess`` and ``--quick`` measure in one process, so the peak is cumulative), which includes
  the TensorFlow runtime (the "base" column: resident memory after building the model, before the first call)
  and, with ``jit_compile``, the XLA compiler; on a GPU the peak of ``tf.config.experimental.get_memory_info``.

Each ``jit_compile`` configuration also checks XLA against the plain ``tf.function``: at the same weights, the
maximum absolute difference of the forward log-likelihoods and the largest difference of the gradients (or EM
counts) relative to the largest gradient of the same variable.

On JAX (``KERAS_BACKEND=jax``) the plain mode runs eagerly (op by op) and the ``jit_compile`` mode is ``jax.jit``
of a stateless forward pass / training step (``model.stateless_call``, ``optimizer.stateless_apply``); GPU peak
memory is ``peak_bytes_in_use`` of the device's ``memory_stats``, which JAX cannot reset (cumulative per process).

Usage:
    python benchmarks/dgcspn.py                               # batch 64 and 256, grad and hard EM, both modes
    python benchmarks/dgcspn.py --ops grad,em,hard-em,unweighted-hard-em --repeats 20
    python benchmarks/dgcspn.py --quick                       # tiny smoke run (< 1 minute)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Measure the checkout this script belongs to (also when the package is not installed).
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import ratspn_em  # noqa: E402  (cpu_model and the worker protocol)

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf

from libspn_keras import layers, losses, optimizers, sum_ops  # noqa: E402

README_PARAMS = 1_214_498
OPS = {
    "grad": sum_ops.SumOpGradBackprop,
    "em": sum_ops.SumOpEMBackprop,
    "hard-em": sum_ops.SumOpHardEMBackprop,
    "unweighted-hard-em": sum_ops.SumOpUnweightedHardEMBackprop,
}


@dataclass(frozen=True)
class Sizes:
    """Leaf components and sums per ``Local2DSum`` (the README: 16 and 16/32/32/64/64)."""

    num_components: int = 16
    num_sums: tuple[int, ...] = (16, 32, 32, 64, 64)


README = Sizes()
QUICK = Sizes(num_components=4, num_sums=(4, 4, 4, 4, 4))


def build_readme_dgcspn(op: sum_ops.SumOpBase, sizes: Sizes = README, seed: int = 0) -> keras.Sequential:
    """The README's DGC-SPN with ``op`` in every sum layer (linear accumulators for the EM ops)."""
    logspace = op.supports_logspace_accumulators
    sum_kwargs: dict[str, Any] = dict(
        accumulator_initializer=keras.initializers.TruncatedNormal(stddev=0.5, mean=1.0, seed=seed),
        logspace_accumulators=logspace,
        sum_op=op,
    )
    products = [  # (strides, dilations, padding) of the README's Conv2DProduct layers before each Local2DSum
        (2, 1, "valid"),
        (2, 1, "valid"),
        (1, 1, "full"),
        (1, 2, "full"),
        (1, 4, "full"),
    ]
    stack: list[Any] = [
        keras.Input(shape=(28, 28, 1)),
        layers.NormalLeaf(
            num_components=sizes.num_components,
            location_trainable=True,
            location_initializer=keras.initializers.TruncatedNormal(stddev=1.0, mean=0.0, seed=seed),
        ),
    ]
    for (strides, dilations, padding), num_sums in zip(products, sizes.num_sums, strict=True):
        stack += [
            layers.Conv2DProduct(
                depthwise=True, strides=strides, dilations=dilations, kernel_size=[2, 2], padding=padding
            ),
            layers.Local2DSum(num_sums=num_sums, **sum_kwargs),
        ]
    stack += [
        layers.Conv2DProduct(depthwise=True, strides=[1, 1], dilations=[8, 8], kernel_size=[2, 2], padding="final"),
        layers.SpatialToRegions(),
        layers.DenseSum(num_sums=10, **sum_kwargs),
        layers.RootSum(
            return_weighted_child_logits=True,
            logspace_accumulators=logspace,
            accumulator_initializer=keras.initializers.TruncatedNormal(stddev=0.0, mean=1.0),
            sum_op=op,
        ),
    ]
    return keras.Sequential(stack)


@dataclass
class Config:
    """One measured configuration."""

    batch: int
    op: str
    jit: bool
    repeats: int
    warmup: int
    quick: bool


def gpu_present() -> bool:
    if BACKEND == "tensorflow":
        return bool(tf.config.list_physical_devices("GPU"))
    import jax

    return jax.default_backend() == "gpu"


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    if gpu_present():
        if BACKEND == "tensorflow":
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        import jax

        return jax.devices()[0].memory_stats()["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def reset_peak() -> None:
    if gpu_present() and BACKEND == "tensorflow":  # JAX cannot reset its peak
        tf.config.experimental.reset_memory_stats("GPU:0")


def jax_functions(model: Any, optimizer: Any, loss_fn: Any, jit: bool) -> tuple[Any, Any, Any]:
    """``(forward, train_step, gradients)`` of ``x`` on JAX: stateless, under ``jax.jit`` with ``jit``.

    ``forward`` and ``gradients`` read the model's current variables; ``train_step`` keeps the variables and the
    optimizer's state between calls (from the model's variables at its first call).
    """
    import jax

    compile_fn = jax.jit if jit else (lambda fn: fn)
    trainable, non_trainable = model.trainable_variables, model.non_trainable_variables
    if not optimizer.built:
        optimizer.build(trainable)

    def forward_impl(trainable_values: Any, non_trainable_values: Any, x: Any) -> Any:
        logits, _ = model.stateless_call(trainable_values, non_trainable_values, x)
        return keras.ops.logsumexp(logits, axis=-1)

    def loss_and_updates(trainable_values: Any, non_trainable_values: Any, x: Any) -> tuple[Any, Any]:
        logits, updated = model.stateless_call(trainable_values, non_trainable_values, x, training=True)
        return loss_fn(None, logits), updated

    def grads_impl(trainable_values: Any, non_trainable_values: Any, x: Any) -> Any:
        return jax.grad(loss_and_updates, has_aux=True)(trainable_values, non_trainable_values, x)[0]

    def train_impl(trainable_values: Any, non_trainable_values: Any, optimizer_values: Any, x: Any) -> Any:
        (loss, updated), grads = jax.value_and_grad(loss_and_updates, has_aux=True)(
            trainable_values, non_trainable_values, x
        )
        trainable_values, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable_values)
        return loss, trainable_values, updated, optimizer_values

    forward_compiled, grads_compiled = compile_fn(forward_impl), compile_fn(grads_impl)
    train_compiled = compile_fn(train_impl)

    def values() -> tuple[list[Any], list[Any]]:
        return [v.value for v in trainable], [v.value for v in non_trainable]

    state: list[Any] = []

    def train_step(x: Any) -> Any:
        if not state:
            state.extend([*values(), [v.value for v in optimizer.variables]])
        loss, *state[:] = train_compiled(*state, x)
        return loss

    return (
        lambda x: forward_compiled(*values(), x),
        train_step,
        lambda x: grads_compiled(*values(), x),
    )


def timed(fn: Any, repeats: int, warmup: int) -> tuple[float, float]:
    """Seconds of the first call (tracing and compilation) and the median of ``repeats`` calls after warm-up."""
    start = time.perf_counter()
    np.asarray(fn())
    first = time.perf_counter() - start
    for _ in range(warmup):
        np.asarray(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(fn())  # waits for the result
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def measure(config: Config) -> dict[str, Any]:
    """Build the model and measure one configuration (in this process)."""
    keras.utils.set_random_seed(0)
    op = OPS[config.op]()
    model = build_readme_dgcspn(op, QUICK if config.quick else README)
    params = model.count_params()
    if not config.quick and params != README_PARAMS:
        raise AssertionError(f"the README DGC-SPN has {README_PARAMS:,} parameters, built {params:,}")
    optimizer = keras.optimizers.Adam(1e-3) if config.op == "grad" else optimizers.OnlineExpectationMaximization(0.05)
    loss_fn = losses.NegativeLogLikelihood()
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(config.batch, 28, 28, 1)).astype("float32"))
    variables = model.trainable_variables

    if BACKEND == "tensorflow":

        def forward_impl(x: Any) -> Any:
            return tf.reduce_logsumexp(model(x), axis=-1)

        def grads_impl(x: Any) -> list[Any]:
            with tf.GradientTape() as tape:
                loss = loss_fn(None, model(x, training=True))
            return tape.gradient(loss, variables)

        def train_impl(x: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = loss_fn(None, model(x, training=True))
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        forward = tf.function(forward_impl, jit_compile=config.jit)
        train_step = tf.function(train_impl, jit_compile=config.jit)
        optimizer.build(variables)

        def plain_and_jit() -> tuple[Any, Any, Any]:
            """(jit gradients, plain log-likelihoods, plain gradients) at the current weights."""
            jit_grads = tf.function(grads_impl, jit_compile=True)(x)
            return jit_grads, tf.function(forward_impl)(x), tf.function(grads_impl)(x)
    else:
        forward, train_step, jit_gradients = jax_functions(model, optimizer, loss_fn, config.jit)

        def plain_and_jit() -> tuple[Any, Any, Any]:
            plain_forward, _, plain_gradients = jax_functions(model, optimizer, loss_fn, False)
            return jit_gradients(x), plain_forward(x), plain_gradients(x)

    base_mb = current_rss_mb()

    reset_peak()
    forward_first, forward_s = timed(lambda: forward(x), config.repeats, config.warmup)
    forward_peak = peak_mb()
    result: dict[str, Any] = {}
    if config.jit:  # XLA against the plain tf.function (eager on JAX), at the initial weights
        snapshot = [keras.ops.convert_to_numpy(v) for v in model.weights]
        jit_ll = keras.ops.convert_to_numpy(forward(x))
        jit_grads, ref_ll, ref_grads = plain_and_jit()
        jit_grads = [keras.ops.convert_to_numpy(g) for g in jit_grads]
        ref_ll = keras.ops.convert_to_numpy(ref_ll)
        ref_grads = [keras.ops.convert_to_numpy(g) for g in ref_grads]
        result["ll_max_abs_diff"] = float(np.max(np.abs(jit_ll - ref_ll)))
        result["ll_mean"] = float(np.mean(ref_ll))
        owner = {id(v): layer.name for layer in model.layers for v in layer.weights}
        # Per variable: the largest difference relative to the largest gradient (or EM count) of the variable.
        rel, layer, diff = max(
            (float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)), owner[id(v)], float(np.max(np.abs(a - b))))
            for v, a, b in zip(variables, jit_grads, ref_grads, strict=True)
        )
        result.update(grad_max_rel_diff=rel, grad_worst_layer=layer, grad_worst_abs_diff=diff)
        for variable, value in zip(model.weights, snapshot, strict=True):
            variable.assign(value)
    reset_peak()
    train_first, train_s = timed(lambda: train_step(x), config.repeats, config.warmup)
    result.update(
        asdict(config),
        params=params,
        forward_ms=1e3 * forward_s,
        train_ms=1e3 * train_s,
        forward_first_s=forward_first,
        train_first_s=train_first,
        forward_peak_mb=forward_peak,
        peak_mb=peak_mb(),
        base_mb=base_mb,
        device="GPU" if gpu_present() else "CPU",
    )
    return result


def measure_in_subprocess(config: Config) -> dict[str, Any]:
    """Run ``measure(config)`` in a fresh Python process, so peak memory is per configuration."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(asdict(config))]
    result, why = ratspn_em.run_result_worker(command)
    return result if result is not None else {**asdict(config), "error": why}


def machine_info() -> str:
    if BACKEND != "tensorflow":
        import jax

        platform_name = jax.default_backend().upper()
        kind = ratspn_em.cpu_model() if platform_name == "CPU" else jax.devices()[0].device_kind
        device = f"{platform_name}: {kind}"
        return (
            f"{device}; {len(os.sched_getaffinity(0))} usable cores (os.cpu_count() {os.cpu_count()}); "
            f"JAX {jax.__version__}, Keras {keras.__version__}, Python {platform.python_version()}"
        )
    threads = (
        f"intra-op {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, "
        f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}"
    )
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"GPU: {details.get('device_name', gpus[0].name)}"
    else:
        device = f"CPU: {ratspn_em.cpu_model()}"
    return (
        f"{device}; {len(os.sched_getaffinity(0))} usable cores (os.cpu_count() {os.cpu_count()}); TF threads: "
        f"{threads}; TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}"
    )


def table(results: list[dict[str, Any]], cumulative_memory: bool) -> str:
    memory = "peak MB (GPU)" if results and results[0].get("device") == "GPU" else "peak RSS MB"
    if cumulative_memory:
        memory += " (cumulative)"
    rows = [
        f"| batch | sum op | mode | forward ms | train step ms | first call s (fwd / train) | {memory} (fwd / train) "
        "| base MB | XLA speed-up (fwd / train) | max abs diff log p | grad max rel diff (layer) |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    plain = {(r["batch"], r["op"]): r for r in results if not r["jit"] and "error" not in r}
    for r in results:
        mode = "jit_compile" if r["jit"] else "tf.function"
        if "error" in r:
            rows.append(f"| {r['batch']} | {r['op']} | {mode} | FAILED: {r['error']} | | | | | | | |")
            continue
        speedup = diff = grad_diff = "-"
        if r["jit"]:
            ref = plain.get((r["batch"], r["op"]))
            if ref:
                speedup = f"{ref['forward_ms'] / r['forward_ms']:.2f}x / {ref['train_ms'] / r['train_ms']:.2f}x"
            diff = f"{r['ll_max_abs_diff']:.1e} (mean log p {r['ll_mean']:.0f})"
            grad_diff = f"{r['grad_max_rel_diff']:.1e} ({r['grad_worst_layer']}, abs {r['grad_worst_abs_diff']:.0e})"
        rows.append(
            f"| {r['batch']} | {r['op']} | {mode} | {r['forward_ms']:.1f} | {r['train_ms']:.1f} "
            f"| {r['forward_first_s']:.1f} / {r['train_first_s']:.1f} "
            f"| {r['forward_peak_mb']:,.0f} / {r['peak_mb']:,.0f} | {r['base_mb']:,.0f} | {speedup} | {diff} "
            f"| {grad_diff} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 64,256; 4 with --quick)")
    parser.add_argument(
        "--ops", default=None, help=f"comma-separated, of {', '.join(OPS)} (default grad,hard-em; hard-em with --quick)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls after the first (default 2)")
    parser.add_argument("--modes", default="plain,jit", help="comma-separated, of plain (tf.function) and jit")
    parser.add_argument(
        "--subprocess",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a fresh process per configuration, for per-configuration peak RSS (default; --quick: in-process)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny model (4 components, 4 sums), batch 4, 1 repeat")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        ratspn_em.print_result(measure(Config(**json.loads(args.worker))))
        return []

    ops = [op.strip() for op in (args.ops or ("hard-em" if args.quick else "grad,hard-em")).split(",") if op.strip()]
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = [op for op in ops if op not in OPS] + [mode for mode in modes if mode not in ("plain", "jit")]
    if unknown:
        parser.error(f"unknown ops or modes: {unknown}")
    batch_sizes = [int(b) for b in (args.batch_sizes or ("4" if args.quick else "64,256")).split(",")]
    repeats = args.repeats or (1 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    in_process = not args.subprocess if args.subprocess is not None else args.quick
    run = measure if in_process else measure_in_subprocess

    print(f"machine: {machine_info()}")
    print(
        f"model: README DGC-SPN, 28x28x1 inputs, {'QUICK sizes ' + str(asdict(QUICK)) if args.quick else 'full size'}; "
        f"median of {repeats} timed calls after 1 + {warmup} warm-up calls; "
        f"{'one process' if in_process else 'a fresh process per configuration'}"
    )
    results = []
    for batch in batch_sizes:
        for op in ops:
            for mode in modes:
                start = time.perf_counter()
                result = run(Config(batch, op, mode == "jit", repeats, warmup, args.quick))
                results.append(result)
                status = f"ERROR {result['error']}" if "error" in result else f"params {result['params']:,}"
                print(f"  batch {batch} {op} {mode}: {time.perf_counter() - start:.0f} s, {status}", flush=True)
    params = sorted({r["params"] for r in results if "params" in r})
    print(f"parameters: {', '.join(f'{p:,}' for p in params)} (README DGC-SPN: {README_PARAMS:,})\n")
    print(table(results, cumulative_memory=in_process))
    print(
        "\ntrain step = forward + NLL + GradientTape backward (EM counts for the EM ops) + optimizer update "
        "(Adam for grad, OnlineExpectationMaximization for EM); XLA speed-up = tf.function time / jit_compile time"
    )
    return results


if __name__ == "__main__":
    main()
