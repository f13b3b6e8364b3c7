"""Einsum-Networks benchmark RAT-SPN trained by online EM: libspn-keras, SPFlow and the arithmetic floor.

Architecture (Peharz et al., EinsumNetworks benchmark): binary data shaped like DEBD ``accidents`` (111 variables),
depth 5, 32 repetitions, 32 input distributions per leaf region, 32 sums per region, batch 100, online EM with
step 0.05 (``OnlineExpectationMaximization(0.05, normalized_update=True)``, the update of EinsumNetworks), 3 epochs.
Built from libspn_keras layers:

    FlatToRegions(32) -> IndicatorLeaf(2) -> DenseSum(32)            # 32 Bernoulli input distributions per variable
    -> PermuteAndPadScopesRandom -> ReduceProduct(4)                # 32 leaf regions of ~3.5 variables per repetition
    -> 4 x [DenseProduct(2) -> DenseSum(32)] -> DenseProduct(2) -> Undecompose -> RootSum

(31,717,376 parameters; the EinsumNetworks model has 31,717,408.) The "floor" row performs the same multiply-adds
of the sum layers as plain batched matmuls on random tensors, without log-space arithmetic or products; the
"floor + outer products" row also forms the linear outer products those matmuls read (from random factors), which
is as far as a forward pass that materializes the products can get.

Peer: SPFlow 1.x (``pip install spflow``, PyTorch CPU), the same model as ``spflow.zoo.einet.Einet`` (Bernoulli
leaves, 32 per variable and repetition, ``Factorize`` into 32 leaf regions, 5 levels of ``EinsumLayer``, repetition
mixing at the root), trained by SPFlow's minibatch EM step (``spflow.learn.expectation_maximization_batched`` on
one batch at a time), followed by the online-EM interpolation of EinsumNetworks:
``theta <- (1 - 0.05) theta + 0.05 theta_batch`` (SPFlow's own step replaces the parameters by the batch
estimate). ``--spflow-em autograd`` computes the EinsumLayer E-step as ``w * dLL/dw`` from the backward pass (the
EinsumNetworks method, the same counts) instead of SPFlow's explicit ``[batch, regions, sums, repetitions, K, K]``
tensor, which takes ~14.5 GB and 1-2 min per batch at full size on 2 cores. A peer that is not installed gets a
row saying so.

Each implementation runs in its own subprocess of this script, with the same data (written by the libspn-keras
process), the same number of intra-op threads and the same epochs (libspn-keras: one ``model.fit`` call on a
``tf.data.Dataset`` without autotuning, see ``training_dataset``); "peak RSS" is that subprocess's ``ru_maxrss``
when training has ended, before anything else is timed (framework runtime, data and model included). Data:
``accidents`` from ``../shared/data/debd`` when present, else a synthetic mixture of 20 Bernoulli products of the
same shape (12,758 train / 2,551 test rows), said in the output.

Usage:
    python benchmarks/ratspn_em.py                       # full benchmark, every installed peer (slow on CPU)
    python benchmarks/ratspn_em.py --quick               # tiny sizes, seconds (smoke test)
    python benchmarks/ratspn_em.py --peers none          # libspn-keras and the floor only
    python benchmarks/ratspn_em.py --spflow-em autograd  # SPFlow with the EinsumNetworks E-step
    python benchmarks/ratspn_em.py --max-batches 10      # 10 batches per epoch, s/epoch extrapolated
    python benchmarks/ratspn_em.py --em-update counts    # libspn-keras's gliding average of counts instead
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
PEERS = {"spflow": ("SPFlow", "pip install spflow")}  # import name: (display name, how to install)
RESULT_MARK = "RESULT "
STEP = 0.05
#: Batches per epoch of the train step that ``floor_and_forward_rates`` times.
TRAIN_STEP_BATCHES = 20
OUR_LABELS = {
    "normalized": "libspn-keras (online soft EM, normalized_update)",
    "counts": "libspn-keras (online soft EM, gliding average of counts)",
}
PRODUCTS_FLOOR_LABEL = "floor + outer products: the matmuls and the products they read"
SPFLOW_LABELS = {
    "native": "SPFlow Einet (SPFlow EM step + online interpolation)",
    "autograd": "SPFlow Einet (autograd E-step + online interpolation)",
}


def sizes(quick: bool) -> dict[str, int | None]:
    if quick:
        return {"depth": 3, "reps": 2, "dists": 4, "sums": 4, "rows": 300}
    return {"depth": 5, "reps": 32, "dists": 32, "sums": 32, "rows": None}


def timed(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    np.asarray(out)
    return (time.perf_counter() - start) / repeats


def median_call_seconds(fn: Callable[[], Any], calls: int = 5) -> float:
    """Median wall time of ``calls`` calls of ``fn`` after a warm-up call (each result read back to NumPy)."""
    np.asarray(fn())
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        np.asarray(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floor_and_forward_rates(quick: bool, batch_size: int, train_step: bool = False) -> dict[str, float]:
    """Samples / s of the floor and of the compiled forward pass of the benchmark RAT-SPN, in this process.

    The model of ``sizes(quick)`` over 111 variables (16 if ``quick``), a batch of ``batch_size`` random binary
    rows; ``median_call_seconds`` of ``floor_function`` and of the ``compiled`` model call (``tf.function`` or
    ``jax.jit``). With ``train_step``, also ``"train_step"``: ``fit_online_em`` as ``run_libspn`` runs it (online
    soft EM, normalized update) on ``TRAIN_STEP_BATCHES`` batches of random binary rows for 3 epochs, the median of
    the last two. Used by ``cpu_threads.py``, ``jax_xla_flags.py`` and ``cpu_settings.py``, which run it in pinned or
    flagged processes.
    """
    import keras

    keras.utils.set_random_seed(0)
    size = sizes(quick)
    num_vars = 16 if quick else 111
    model = build(num_vars, size["depth"], size["reps"], size["dists"], size["sums"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (batch_size, num_vars)).astype("float32")
    floor = floor_function(model, batch_size)
    forward = compiled(lambda rows: model(rows), model=model)
    rates = {
        "floor": batch_size / median_call_seconds(floor),
        "forward": batch_size / median_call_seconds(lambda: forward(x)),
    }
    if train_step:
        rows = rng.integers(0, 2, (TRAIN_STEP_BATCHES * batch_size, num_vars)).astype("float32")
        clock = fit_online_em(model, rows, batch_size, epochs=3)
        rates["train_step"] = len(rows) / statistics.median(clock.epoch_s[1:])
    return rates


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batches(data: Any, size: int) -> list[Any]:
    """Consecutive batches (test log-likelihoods are taken batch by batch, so peak memory is the training's)."""
    return [data[first : first + size] for first in range(0, len(data), size)]


def epoch_rows(train: np.ndarray, batch_size: int, max_batches: int | None) -> int:
    return len(train) if max_batches is None else min(len(train), max_batches * batch_size)


# --------------------------------------------------------------------------------------------- libspn-keras


def load_data(data_dir: Path, rows: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    from libspn_keras import datasets

    try:
        splits = datasets.load_debd("accidents", data_dir)
        train, test, source = splits["train"], splits["test"], "DEBD accidents"
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        probs = rng.uniform(0.05, 0.95, size=(20, 111))

        def draw(n: int) -> np.ndarray:
            return (rng.uniform(size=(n, 111)) < probs[rng.integers(0, 20, n)]).astype(np.int32)

        train, test, source = draw(12758), draw(2551), "synthetic mixture of 20 Bernoulli products"
    if rows:
        train, test = train[:rows], test[: max(rows // 5, 10)]
    return train.astype("float32"), test.astype("float32"), source


def build(num_vars: int, depth: int, reps: int, dists: int, sums: int) -> Any:
    import keras

    from libspn_keras import layers, models, sum_ops

    op = sum_ops.SumOpEMBackprop()
    leaf_factor = int(np.ceil(num_vars / 2**depth))
    stack: list[keras.layers.Layer] = [
        layers.FlatToRegions(num_decomps=reps, input_shape=(num_vars,)),
        layers.IndicatorLeaf(num_components=2),
        layers.DenseSum(num_sums=dists, sum_op=op),
        layers.PermuteAndPadScopesRandom(seed=0),
        layers.ReduceProduct(num_factors=leaf_factor),
    ]
    for _ in range(depth - 1):
        stack += [layers.DenseProduct(num_factors=2), layers.DenseSum(num_sums=sums, sum_op=op)]
    stack += [
        layers.DenseProduct(num_factors=2),
        layers.Undecompose(),
        layers.RootSum(return_weighted_child_logits=False, sum_op=op),
    ]
    return models.SequentialSumProductNetwork(stack)


def backend_name() -> str:
    import keras

    return str(keras.backend.backend())


def compiled(fn: Callable[..., Any], jit_compile: bool = False, model: Any = None) -> Callable[..., Any]:
    """``fn`` as one compiled computation: ``tf.function(fn, jit_compile=jit_compile)`` on TensorFlow.

    On JAX every compiled function is XLA (``jax.jit``): ``jit_compile`` changes nothing. ``model``'s variables,
    if given, are inputs of the compiled function (``keras.StatelessScope``) rather than constants baked into it.
    """
    if backend_name() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=jit_compile)  # type: ignore[no-any-return]
    import jax
    import keras

    variables = list(model.variables) if model is not None else []

    @jax.jit
    def run(values: list[Any], *args: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return fn(*args)

    return lambda *args: run([v.value for v in variables], *args)


def random_uniform(shape: list[int]) -> Any:
    """Uniform random values (the floors' operands: their values do not matter, only their shapes)."""
    if backend_name() == "tensorflow":
        import tensorflow as tf

        return tf.random.uniform(shape)
    import keras

    return keras.random.uniform(shape)


def floor_operands(model: Any, batch: int) -> list[tuple[Any, Any]]:
    """Random operands of the floor: ``([regions, batch, in], [regions, in, out])`` per ``DenseSum`` layer."""
    from libspn_keras import layers

    operands = []
    for layer in model.layers:
        if isinstance(layer, layers.DenseSum):
            s, d, i, o = layer.accumulators.shape
            operands.append((random_uniform([s * d, batch, i]), random_uniform([s * d, i, o])))
    return operands


def floor_function(model: Any, batch: int, jit_compile: bool = False) -> Callable[[], Any]:
    """The sum layers' multiply-adds as plain batched matmuls on random tensors (the "floor")."""
    from keras import ops

    operands = floor_operands(model, batch)

    def run(operands: list[tuple[Any, Any]]) -> Any:
        return sum(ops.sum(ops.matmul(a, b)) for a, b in operands)

    run_compiled = compiled(run, jit_compile=jit_compile)
    return lambda: run_compiled(operands)


def outer_products(factors: list[Any]) -> Any:
    """Row-wise outer products of linear factors ``[regions, rows, nodes]`` -> ``[regions, rows, nodes ** f]``.

    Formed as ``libspn_keras.math.log_product_weighted_sum_parts`` forms them: one batched ``[n^k, 1] x [1, n]``
    matmul per further factor; node ``(i, j)`` is at ``i * n + j`` (the first factor varies slowest).
    """
    from keras import ops

    products = ops.convert_to_tensor(factors[0])
    for factor in factors[1:]:
        by_row = ops.reshape(products, [-1, products.shape[-1], 1])
        products = ops.matmul(by_row, ops.reshape(factor, [-1, 1, factor.shape[-1]]))
        products = ops.reshape(products, [factor.shape[0], factor.shape[1], -1])
    return products


def products_floor_operands(model: Any, batch: int) -> list[tuple[list[Any], Any]]:
    """Random operands of "floor + outer products": ``(factors, weights)`` per ``DenseSum`` layer.

    A sum over a ``DenseProduct`` output gets that product's linear factors (``[regions, batch, nodes]`` each, whose
    ``outer_products`` are the floor's left operand); any other sum gets the floor's left operand as one factor.
    """
    from libspn_keras import layers

    operands = []
    for previous, layer in zip([None, *model.layers[:-1]], model.layers, strict=True):
        if not isinstance(layer, layers.DenseSum):
            continue
        s, d, i, o = layer.accumulators.shape
        if isinstance(previous, layers.DenseProduct):
            nodes = round(i ** (1 / previous.num_factors))
            factors = [random_uniform([s * d, batch, nodes]) for _ in range(previous.num_factors)]
        else:
            factors = [random_uniform([s * d, batch, i])]
        operands.append((factors, random_uniform([s * d, i, o])))
    return operands


def products_floor_function(model: Any, batch: int, jit_compile: bool = False) -> Callable[[], Any]:
    """The floor plus the linear outer products that the matmuls of sums over ``DenseProduct`` outputs read.

    The same matmuls as ``floor_function``; where a sum's children are the products of a ``DenseProduct``, its
    matmul's left operand is formed from random linear factors by ``outer_products``, as the library forms it. Any
    forward pass that materializes the products before contracting them (every implementation built from
    framework ops, without a kernel that forms them inside the matmul) pays at least this: the gap between this row
    and the floor is the cost of writing and re-reading the products, the gap between the forward pass and this row
    everything else (leaves, ``exp`` / ``log``, maxima, the root).
    """
    from keras import ops

    operands = products_floor_operands(model, batch)

    def run(operands: list[tuple[list[Any], Any]]) -> Any:
        return sum(ops.sum(ops.matmul(outer_products(f), w)) for f, w in operands)

    run_compiled = compiled(run, jit_compile=jit_compile)
    return lambda: run_compiled(operands)


def forward_and_floor(model: Any, batch: Any, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per forward batch, per floor batch and per "floor + outer products" batch, in graph mode and XLA.

    Each is the median of ``rounds`` rounds; the six functions are timed alternately, round by round, which keeps
    a change of machine speed during the run (other jobs, frequency scaling) out of the ratios (medians of the
    per-round ratios).

    Returns:
        ``{"graph": {...}, "xla": {...}}`` (``tf.function`` without and with ``jit_compile=True``; on JAX both
        are ``jax.jit``), each with
        ``forward_s``, ``floor_s``, ``products_floor_s``, ``ratio`` (forward / floor) and ``products_ratio``
        (floor + outer products over the floor).
    """
    modes = {"graph": False, "xla": True}
    size = int(batch.shape[0])
    functions = {
        mode: (
            compiled(lambda x: model(x), jit_compile=jit, model=model),
            floor_function(model, size, jit_compile=jit),
            products_floor_function(model, size, jit_compile=jit),
        )
        for mode, jit in modes.items()
    }
    rows: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, (forward, floor, products_floor) in functions.items():
            forward_s = timed(lambda forward=forward: forward(batch), 3)
            rows[mode].append((forward_s, timed(floor, 3), timed(products_floor, 3)))
    return {
        mode: {
            "forward_s": statistics.median(f for f, _, _ in timings),
            "floor_s": statistics.median(g for _, g, _ in timings),
            "products_floor_s": statistics.median(p for _, _, p in timings),
            "ratio": statistics.median(f / g for f, g, _ in timings),
            "products_ratio": statistics.median(p / g for _, g, p in timings),
        }
        for mode, timings in rows.items()
    }


def layer_profile(model: Any, batch: Any, repeats: int) -> list[tuple[str, str, float]]:
    """Forward time of every prefix of the model (in ``tf.function`` or ``jax.jit``, best of ``repeats``), in ms.

    A prefix ends where the full model's next layer would read: a ``DenseProduct`` followed by a ``DenseSum`` is
    timed with it (the sum contracts the factors, the products are never formed), and a prefix's output is taken
    in the layout the next layer reads (the attached position rows where there are some), so that no prefix pays
    for a transpose the full model does not do.
    """
    from keras import ops

    from libspn_keras import layers
    from libspn_keras.math import attached_rows

    ends = [
        k
        for k, layer in enumerate(model.layers, start=1)
        if not (
            isinstance(layer, layers.DenseProduct)
            and k < len(model.layers)
            and isinstance(model.layers[k], layers.DenseSum)
        )
    ]
    profile, start = [], 0
    for end in ends:

        def prefix_impl(x: Any, stop: int = end) -> Any:
            for layer in model.layers[:stop]:
                x = layer(x)
            rows = attached_rows(x)
            return ops.sum(x if rows is None else rows)

        prefix = compiled(prefix_impl, model=model)

        seconds = min(timed(lambda prefix=prefix: prefix(batch), 1) for _ in range(repeats))
        name = " + ".join(layer.name for layer in model.layers[start:end])
        profile.append((name, str(tuple(model.layers[end - 1].output.shape[1:])), seconds * 1000))
        start = end
    return profile


def epoch_clock() -> Any:
    """A Keras callback that times every epoch of one ``model.fit`` call (``epoch_s``) and notes when training ended.

    The script reports how long ``fit`` took to return after training (``fit_return_s``): with the input pipeline
    of ``model.fit(numpy_array)`` that was up to ~37 s of idle waiting per epoch on TF 2.21 (see
    ``training_dataset``); it should now be ~0.
    """
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch_s: list[float] = []
            self.start = self.train_end = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epoch_s.append(time.perf_counter() - self.start)

        def on_train_end(self, logs: Any = None) -> None:
            self.train_end = time.perf_counter()

    return EpochClock()


def fit_online_em(model: Any, rows: np.ndarray, batch_size: int, epochs: int, normalized_update: bool = True) -> Any:
    """Compile ``model`` for online EM (step ``STEP``, negative log-likelihood) and fit it on ``rows``; its clock.

    The one training run of the benchmark: ``run_libspn``'s and ``floor_and_forward_rates``'s train step.
    ``normalized_update`` interpolates normalized weights like EinsumNetworks (``--em-update normalized``, the
    default); ``False`` keeps libspn-keras's gliding average of counts. Returns the ``epoch_clock`` callback.
    """
    from libspn_keras import losses, optimizers

    optimizer = optimizers.OnlineExpectationMaximization(STEP, normalized_update=normalized_update)
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    clock = epoch_clock()
    model.fit(**training_input(rows, batch_size), epochs=epochs, verbose=0, callbacks=[clock])
    return clock


def training_input(rows: np.ndarray, batch_size: int) -> dict[str, Any]:
    """``model.fit``'s data arguments: ``training_dataset`` on TensorFlow, the rows shuffled by ``fit`` elsewhere."""
    if backend_name() == "tensorflow":
        return {"x": training_dataset(rows, batch_size), "shuffle": False}  # the dataset reshuffles itself
    return {"x": rows, "batch_size": batch_size, "shuffle": True}


def training_dataset(rows: np.ndarray, batch_size: int) -> Any:
    """``model.fit``'s input: ``rows`` reshuffled every epoch, in batches, with tf.data autotuning off.

    The same batches as ``model.fit(rows, batch_size=batch_size)``. With a NumPy array, Keras builds a tf.data
    pipeline with autotuning on; on TF 2.21 (2 cores), dropping its iterator at the end of an epoch sometimes
    blocked for up to ~37 s, idle, before the next epoch (or the return of ``fit``) could start: ~82 s per epoch
    of ~45 s of training. Without autotuning nothing waits.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    shuffled = tf.data.Dataset.from_tensor_slices(rows).shuffle(len(rows), seed=0, reshuffle_each_iteration=True)
    return shuffled.batch(batch_size).with_options(options)


def set_threads(threads: int, host_devices: int = 1) -> None:
    """Use ``threads`` intra-op threads; on JAX, optionally ``host_devices`` CPU devices for data parallelism.

    On JAX, which has no intra-op thread setting, fewer threads than cores pin the process to the first
    ``threads`` cores (``os.sched_setaffinity``); all cores leave XLA's defaults. (An earlier version set
    ``--xla_cpu_multi_thread_eigen=false``, JAX's recipe for *one* thread, which made JAX's matmuls single-threaded.)
    ``host_devices > 1`` splits the CPU into that many XLA devices (``--xla_force_host_platform_device_count``), and
    ``run_libspn`` then trains with ``keras.distribution.DataParallel`` over them. Both take effect only before JAX
    starts its CPU backend (importing Keras does not start it).
    """
    if backend_name() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        return
    cores = sorted(os.sched_getaffinity(0))
    if threads < len(cores):
        os.sched_setaffinity(0, cores[:threads])
    if host_devices > 1:
        flags = f"--xla_force_host_platform_device_count={host_devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def cpu_model() -> str:
    """The CPU's model name and its widest x86 vector extension, as Linux reports them.

    CPU timings depend on both (TensorFlow's oneDNN and XLA's kernels gain differently from AVX-512), so the
    tables print them.

    Example:
        >>> cpu_model()  # doctest: +SKIP
        'AMD EPYC (AVX2)'
    """
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        fields["model name"] = platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    extensions = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
    isa = next((label for flag, label in extensions if flag in flags), "")
    return fields.get("model name", "unknown CPU") + (f" ({isa})" if isa else "")


def library_description() -> tuple[str, str]:
    """The device (with ``cpu_model`` on a CPU) and the library versions of the libspn-keras run."""
    import keras

    if backend_name() == "tensorflow":
        import tensorflow as tf

        device = tf.config.list_logical_devices()[0].device_type
        version = f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    else:
        import jax

        device = jax.devices()[0].platform.upper()
        version = f"JAX {jax.__version__}, Keras {keras.__version__}"
    cores = len(os.sched_getaffinity(0))
    return (f"CPU: {cpu_model()}, {cores} usable cores" if device == "CPU" else device), version


def run_libspn(args: argparse.Namespace) -> dict[str, Any]:
    set_threads(args.threads, args.jax_host_devices)
    import keras

    if args.jax_host_devices > 1 and backend_name() == "jax":
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=keras.distribution.list_devices("cpu"))
        )
    keras.utils.set_random_seed(0)
    size = sizes(args.quick)
    train, test, source = load_data(args.data_dir, size["rows"])
    np.savez(args.data_file, train=train, test=test, source=source)
    model = build(train.shape[1], size["depth"], size["reps"], size["dists"], size["sums"])
    fit_rows = epoch_rows(train, args.batch_size, args.max_batches)
    clock = fit_online_em(model, train[:fit_rows], args.batch_size, args.epochs, args.em_update == "normalized")
    fit_return_s = time.perf_counter() - clock.train_end
    training_peak_mb = peak_rss_mb()  # before the floors' operands and the timed functions are allocated
    batch = keras.ops.convert_to_tensor(test[: args.batch_size])
    timings = forward_and_floor(model, batch, 5)
    profile = layer_profile(model, batch, 10) if args.profile_layers else []
    device, library = library_description()
    test_ll = float(np.mean(np.concatenate([model.log_marginal(part) for part in batches(test, args.batch_size)])))
    return {
        "params": model.count_params(),
        "epoch_s": clock.epoch_s,
        "fit_return_s": fit_return_s,
        "fit_rows": fit_rows,
        "forward_s": timings["graph"]["forward_s"],
        "forward_batch": int(batch.shape[0]),
        "floor_s": timings["graph"]["floor_s"],
        "floor_ratio": timings["graph"]["ratio"],
        "products_floor_s": timings["graph"]["products_floor_s"],
        "products_ratio": timings["graph"]["products_ratio"],
        "xla": timings["xla"],
        "profile": profile,
        "peak_mb": training_peak_mb,
        "test_ll": test_ll,
        "source": source,
        "train_rows": int(train.shape[0]),
        "test_rows": int(test.shape[0]),
        "num_vars": int(train.shape[1]),
        "device": device,
        "library": library,
    }


# --------------------------------------------------------------------------------------------------- SPFlow


def build_spflow(num_vars: int, depth: int, reps: int, dists: int, sums: int, **_: Any) -> Any:
    """The same RAT-SPN in SPFlow: ``Einet`` with EinsumLayers (outer product + sum in one layer)."""
    from spflow.meta.data.scope import Scope
    from spflow.modules.leaves import Bernoulli
    from spflow.zoo.einet import Einet

    leaves = Bernoulli(scope=Scope(list(range(num_vars))), out_channels=dists, num_repetitions=reps)
    return Einet(
        [leaves], num_classes=1, num_sums=sums, num_leaves=dists, depth=depth, num_repetitions=reps, layer_type="einsum"
    )


def spflow_autograd_estep(model: Any) -> None:
    """Compute each EinsumLayer's E-step as ``w * dLL/dw`` from the backward pass (EinsumNetworks' method).

    SPFlow's own ``EinsumLayer._expectation_maximization_step`` sums
    ``exp(log w + log dLL/d out + left + right - out)`` over an explicit ``[batch, D, O, R, I, J]`` tensor; by the
    chain rule that sum is ``w * dLL/dw``, which autograd already has. The rest of SPFlow's EM traversal (mixing
    layer, leaves) is unchanged.
    """
    import torch
    from spflow.modules.einsum import EinsumLayer

    for layer in model.modules():
        if not isinstance(layer, EinsumLayer):
            continue

        def normalized_weights(layer: Any = layer, original: Any = layer._normalized_weights) -> Any:
            weights = original()
            if weights.requires_grad:
                weights.retain_grad()
                layer._benchmark_weights = weights
            return weights

        def em_step(data: Any, bias_correction: bool = True, *, cache: Any, layer: Any = layer) -> None:
            with torch.no_grad():
                weights = layer._benchmark_weights
                counts = (weights * weights.grad).clamp_min(1e-30)
                layer.log_weights = (counts / counts.sum((-2, -1), keepdim=True)).log()
            layer._benchmark_weights = None
            children = list(layer.inputs) if layer._two_inputs else [layer.inputs.inputs]
            for child in children:
                child._expectation_maximization_step(data, bias_correction=bias_correction, cache=cache)

        layer._normalized_weights = normalized_weights
        layer._expectation_maximization_step = em_step


class OnlineInterpolation:
    """EinsumNetworks' online EM on top of a full EM step: ``theta <- (1 - step) theta_old + step theta_new``.

    Sum weights are interpolated as normalized weights, Bernoulli leaves as success probabilities (their
    expectation parameters), as in EinsumNetworks' ``em_update``.
    """

    def __init__(self, model: Any, step: float) -> None:
        from spflow.modules.einsum import EinsumLayer
        from spflow.modules.leaves import Bernoulli
        from spflow.modules.sums import Sum

        self.step = step
        self.entries: list[tuple[Any, str]] = []
        for module in model.modules():
            if isinstance(module, Bernoulli):
                self.entries.append((module, "probs"))
            elif isinstance(module, EinsumLayer | Sum):
                self.entries.append((module, "log_weights"))
        covered = sum(p.numel() for module, _ in self.entries for p in module.parameters(recurse=False))
        total = sum(p.numel() for p in model.parameters())
        if covered != total:
            raise RuntimeError(f"online EM covers {covered} of {total} SPFlow parameters")

    def snapshot(self) -> list[Any]:
        return [self._value(module, kind).detach().clone() for module, kind in self.entries]

    def interpolate(self, old: list[Any]) -> None:
        import torch

        with torch.no_grad():
            for (module, kind), before in zip(self.entries, old, strict=True):
                after = self._value(module, kind)
                if kind == "probs":
                    module.probs = (1.0 - self.step) * before + self.step * after
                else:
                    module.log_weights = torch.logaddexp(before + math.log1p(-self.step), after + math.log(self.step))

    @staticmethod
    def _value(module: Any, kind: str) -> Any:
        return module.probs if kind == "probs" else module.log_weights


def run_spflow(args: argparse.Namespace) -> dict[str, Any]:
    import spflow
    import torch
    from spflow.learn import expectation_maximization_batched

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)  # SPFlow's Factorize draws its leaf-region sizes with np.random
    data = np.load(args.data_file)
    train, test = torch.from_numpy(data["train"]), torch.from_numpy(data["test"])
    model = build_spflow(train.shape[1], **sizes(args.quick))
    if args.spflow_em == "autograd":
        spflow_autograd_estep(model)
    online = OnlineInterpolation(model, STEP)
    fit_rows = epoch_rows(data["train"], args.batch_size, args.max_batches)
    generator = torch.Generator().manual_seed(0)
    epoch_times = []
    model.train()
    for _ in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(fit_rows, generator=generator)  # the first fit_rows rows, as model.fit gets them
        for first in range(0, fit_rows, args.batch_size):
            batch = train[order[first : first + args.batch_size]]
            before = online.snapshot()
            expectation_maximization_batched(model, [batch], num_epochs=1)
            online.interpolate(before)
        epoch_times.append(time.perf_counter() - start)
    training_peak_mb = peak_rss_mb()
    model.eval()
    batch = test[: args.batch_size]
    with torch.no_grad():
        forward_s = timed(lambda: model.log_likelihood(batch), 5)
        test_ll = float(
            torch.cat([model.log_likelihood(part).flatten() for part in batches(test, args.batch_size)]).mean()
        )
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "epoch_s": epoch_times,
        "fit_rows": fit_rows,
        "forward_s": forward_s,
        "forward_batch": int(batch.shape[0]),
        "peak_mb": training_peak_mb,
        "test_ll": test_ll,
        "library": f"SPFlow {spflow.__version__}, PyTorch {torch.__version__}",
    }


# ---------------------------------------------------------------------------------------------------- driver


def print_result(result: dict[str, Any]) -> None:
    """Answer ``run_result_worker`` from a worker process: one line, ``RESULT_MARK`` and ``result`` as JSON."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def run_result_worker(
    command: list[str], env: dict[str, str] | None = None, capture_stderr: bool = True
) -> tuple[dict[str, Any] | None, str]:
    """Run ``command``, a worker process that ends with ``print_result``: its result, or ``None`` and why not.

    This script's workers and those of ``cpu_threads.py``, ``jax_xla_flags.py``, ``cpu_settings.py`` and
    ``dgcspn.py`` (each setting or configuration in a process of its own) answer this way.

    Args:
        command: The worker's command line.
        env: Its environment (default: this process's).
        capture_stderr: Keep its stderr for the reason it failed (the last line) instead of passing it through.

    Returns:
        The worker's result and ``""``, or ``None`` and a reason such as ``"exit code 1"``.

    Example:
        >>> run_result_worker([sys.executable, "-c", "import sys; sys.exit('no luck')"])
        (None, 'no luck')
    """
    stderr = subprocess.PIPE if capture_stderr else None
    process = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, check=False)
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :]), ""
    if process.returncode < 0:
        return None, f"signal {-process.returncode}, out of memory?"
    last = (process.stderr or "").strip().splitlines()
    return None, last[-1][:120] if last else f"exit code {process.returncode}"


def run_worker(name: str, data_file: Path) -> tuple[dict[str, Any] | None, str]:
    """Train and time implementation ``name`` in a subprocess of this script (its stderr passed through)."""
    command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--worker", name]
    return run_result_worker([*command, "--data-file", str(data_file)], capture_stderr=False)


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def selected_peers(option: str) -> list[str]:
    if option == "all":
        return list(PEERS)
    names = [name.strip() for name in option.split(",") if name.strip() and name.strip() != "none"]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        raise SystemExit(f"unknown peer(s) {unknown}; known: {sorted(PEERS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO / ".." / "shared" / "data" / "debd")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny model and data (smoke test)")
    parser.add_argument(
        "--peers", default="all", help="comma-separated peers to run (spflow), 'all' (default: every one), or 'none'"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="intra-op threads for TensorFlow and PyTorch (default: all cores)",
    )
    parser.add_argument(
        "--jax-host-devices",
        type=int,
        default=1,
        help="JAX only: split the CPU into this many XLA devices and train with keras.distribution.DataParallel "
        "over them (XLA runs one device's batch share per core; default 1)",
    )
    parser.add_argument(
        "--spflow-em",
        choices=["native", "autograd"],
        default="native",
        help="SPFlow's EinsumLayer E-step: its own (default) or w * dLL/dw from the backward pass",
    )
    parser.add_argument(
        "--em-update",
        choices=["normalized", "counts"],
        default="normalized",
        help="libspn-keras online EM: interpolate normalized weights like EinsumNetworks and the SPFlow row "
        "(OnlineExpectationMaximization(normalized_update=True), default) or the gliding average of counts",
    )
    parser.add_argument(
        "--max-batches", type=int, default=None, help="train on this many batches per epoch; s/epoch extrapolated"
    )
    parser.add_argument(
        "--profile-layers", action="store_true", help="also print the libspn-keras forward time layer by layer"
    )
    parser.add_argument("--worker", choices=["libspn-keras", "spflow"], help=argparse.SUPPRESS)
    parser.add_argument("--data-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.epochs = 2
    if args.worker:
        print_result((run_libspn if args.worker == "libspn-keras" else run_spflow)(args))
        return
    peers = selected_peers(args.peers)

    failed = False
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "data.npz"
        ours, why = run_worker("libspn-keras", data_file)
        if ours is None:
            raise SystemExit(f"the libspn-keras run failed ({why})")
        results = {"libspn-keras": ours}
        for peer in peers:
            if not installed(peer):
                rows.append((peer, f"not installed ({PEERS[peer][1]})"))
                continue
            result, why = run_worker(peer, data_file)
            if result is None:
                failed = True
                rows.append((peer, f"failed ({why})"))
            else:
                results[peer] = result
                rows.append((peer, ""))

    size = sizes(args.quick)
    full_batches = math.ceil(ours["train_rows"] / args.batch_size)
    used_batches = math.ceil(ours["fit_rows"] / args.batch_size)
    scale = full_batches / used_batches
    mark = "*" if used_batches < full_batches else ""

    def epoch_s(result: dict[str, Any]) -> float:
        return statistics.median(result["epoch_s"][1:] or result["epoch_s"]) * scale

    def samples_per_s(result: dict[str, Any]) -> float:
        return result["forward_batch"] / result["forward_s"]

    print(
        f"data: {ours['source']}, {ours['train_rows']} train / {ours['test_rows']} test rows, "
        f"{ours['num_vars']} variables"
    )
    print(
        f"model: depth {size['depth']}, {size['reps']} repetitions, {size['dists']} input distributions, "
        f"{size['sums']} sums; batch {args.batch_size}, online EM step {STEP}, {args.epochs} epochs"
        + (f" of {used_batches} of {full_batches} batches each" if mark else "")
    )
    print(f"intra-op threads: {args.threads} (TensorFlow and PyTorch); {ours['device']}")
    for name, result in results.items():
        print(f"{name}: {result['library']}")
    print()
    print(
        "| implementation | parameters | s / epoch (median after warm-up) | forward samples / s "
        "| peak RSS MB (own process) | test LL |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {OUR_LABELS[args.em_update]} | {ours['params']:,} | {epoch_s(ours):.2f}{mark} "
        f"| {samples_per_s(ours):,.0f} | {ours['peak_mb']:,.0f} | {ours['test_ll']:.3f} |"
    )
    for peer, status in rows:
        if status:
            print(f"| {PEERS[peer][0]} | {status} | - | - | - | - |")
            continue
        label = SPFLOW_LABELS[args.spflow_em] if peer == "spflow" else peer
        result = results[peer]
        print(
            f"| {label} | {result['params']:,} | {epoch_s(result):.2f}{mark} | {samples_per_s(result):,.0f} "
            f"| {result['peak_mb']:,.0f} | {result['test_ll']:.3f} |"
        )
    print(f"| floor: sum-layer matmuls only | - | - | {ours['forward_batch'] / ours['floor_s']:,.0f} | - | - |")
    print(f"| {PRODUCTS_FLOOR_LABEL} | - | - | {ours['forward_batch'] / ours['products_floor_s']:,.0f} | - | - |")
    xla = ours["xla"]
    xla_samples = ours["forward_batch"] / xla["forward_s"]
    print(f"| libspn-keras forward under XLA (jit_compile=True) | - | - | {xla_samples:,.0f} | - | - |")
    print(f"| floor under XLA | - | - | {ours['forward_batch'] / xla['floor_s']:,.0f} | - | - |")
    xla_products = ours["forward_batch"] / xla["products_floor_s"]
    print(f"| {PRODUCTS_FLOOR_LABEL} under XLA | - | - | {xla_products:,.0f} | - | - |")
    if mark:
        print(f"\n* extrapolated from {used_batches} of {full_batches} batches per epoch (--max-batches)")
    print(
        f"\nforward pass / floor: {ours['floor_ratio']:.2f}x; both under XLA: {xla['ratio']:.2f}x "
        "(medians of 5 interleaved rounds of timings)"
    )
    print(
        f"floor + outer products / floor: {ours['products_ratio']:.2f}x; both under XLA: {xla['products_ratio']:.2f}x "
        "(what forming the products costs before any log-space arithmetic, leaf or root)"
    )
    print(
        f"libspn-keras: one model.fit call for all epochs (a tf.data.Dataset, autotuning off), each epoch timed by a "
        f"callback; fit returned "
        f"{ours['fit_return_s']:.1f} s after training ended (not counted)"
    )
    if ours.get("profile"):
        print("\nlibspn-keras forward pass layer by layer (tf.function over each prefix of the model, best of 10):\n")
        print("| layers | output shape (no batch) | prefix ms | step ms |")
        print("| --- | --- | ---: | ---: |")
        previous = 0.0
        for name, shape, ms in ours["profile"]:
            print(f"| {name} | {shape} | {ms:.1f} | {ms - previous:.1f} |")
            previous = ms
        print(f"| floor: sum-layer matmuls only | | {ours['floor_s'] * 1000:.1f} | |")
    for peer in results:
        if peer != "libspn-keras":
            theirs = results[peer]
            print(
                f"libspn-keras vs SPFlow: {epoch_s(theirs) / epoch_s(ours):.1f}x faster per epoch, "
                f"forward {samples_per_s(ours) / samples_per_s(theirs):.1f}x "
                "(SPFlow's time over libspn-keras's; below 1 means libspn-keras is slower)"
            )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
