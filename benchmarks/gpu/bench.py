"""GPU benchmark under JAX: libspn-keras next to PyJuice and SPFlow's Einet on the same GPU (issue 21).

One table: seconds per epoch, forward samples per second, peak GPU memory and test log-likelihood, with the
ratio of each time to PyJuice's on the same circuit and batch.

(a) RAT-SPN of ``benchmarks/ratspn_em.py`` (DEBD accidents, depth 5, 32 repetitions, 32 input distributions,
    32 sums per region, online EM with step 0.05) at batch 100 (the Einsum Networks benchmark) and 1,000:
    - libspn-keras on JAX (``model.fit`` with ``OnlineExpectationMaximization(0.05, normalized_update=True)``);
    - PyJuice ``pyjuice.structures.RAT_SPN(111, num_latents=32, depth=5, num_repetitions=32)`` with Bernoulli
      (2-category) inputs, mini-batch EM with step 0.05: the same depth, repetitions and region sizes; PyJuice's
      leaf regions are products of univariate inputs with 32 components each, where ours mix 32 Bernoulli
      products per variable first, so the parameter counts differ (both printed);
    - SPFlow ``Einet`` (PyTorch) with the EinsumNetworks E-step (``--spflow-em autograd`` of ratspn_em.py);
    - "JAX matmul floor": the sum layers' multiply-adds of our RAT-SPN as bare batched matmuls in JAX.
(b) HCLT on accidents, ``num_latents`` K (default 32): ``libspn_keras.structure.hclt`` against
    ``pyjuice.structures.HCLT`` (same K, mini-batch EM with step 0.05, pseudocount 0.1 for PyJuice;
    ``SumOpEMBackprop`` sums with ``OnlineExpectationMaximization(0.05, normalized_update=True)`` for ours).
(c) The README DGC-SPN (``benchmarks/dgcspn.py``) train step at batch 256, gradient (Adam) and hard EM.

Every measurement runs in its own subprocess (JAX and PyTorch never share a process; JAX does not preallocate
GPU memory, so its peak is what it used). Epoch time is the fastest epoch after the first (which compiles).

Usage:
    KERAS_BACKEND=jax python benchmarks/gpu/bench.py                 # the full table (GPU)
    KERAS_BACKEND=jax python benchmarks/gpu/bench.py --quick         # tiny sizes, CPU, seconds (CI smoke test)
    bash benchmarks/gpu/run.sh                                       # on the lent GPU machine: wheels + table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
RESULT_MARK = "GPU_BENCH_RESULT "
STEP = 0.05


EPOCHS: int | None = None  # --epochs


def sizes(quick: bool) -> dict[str, Any]:
    if EPOCHS:
        return {**_sizes(quick), "epochs": EPOCHS}
    return _sizes(quick)


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(depth=3, reps=2, dists=4, sums=4, rows=400, batches=(50,), hclt_k=4, dgc_batch=4, epochs=2)
    return dict(depth=5, reps=32, dists=32, sums=32, rows=None, batches=(100, 1000), hclt_k=32, dgc_batch=256, epochs=2)


def load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    from ratspn_em import load_data

    return load_data(Path(args.data_dir), sizes(args.quick)["rows"])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def jax_peak_mb() -> float | None:
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def median_time(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class EpochClock:
    """A Keras callback recording each epoch's seconds."""

    def __new__(cls) -> Any:
        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.epoch_s: list[float] = []

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.epoch_s.append(time.perf_counter() - self.start)

        return Clock()


def jax_forward(model: Any, x: np.ndarray) -> tuple[Any, Any]:
    """A jitted stateless forward pass of ``model`` and its argument list."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def forward(trainable: Any, non_trainable: Any, x: Any) -> Any:
        return model.stateless_call(trainable, non_trainable, x)[0]

    return forward, (trainable, non_trainable, jax.numpy.asarray(x))


def device_name() -> str:
    import jax

    device = jax.local_devices()[0]
    return f"{device.platform}:{getattr(device, 'device_kind', '')}"


def fit_ours(model: Any, train: np.ndarray, test: np.ndarray, batch: int, epochs: int, optimizer: Any) -> dict:
    import jax

    from libspn_keras import losses

    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    clock = EpochClock()
    model.fit(train, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[clock])
    padded = np.concatenate([test, test[: (-len(test)) % batch]]) if len(test) % batch else test
    forward, (trainable, non_trainable, _) = jax_forward(model, padded[:batch])
    first = jax.numpy.asarray(padded[:batch])
    forward_s = median_time(lambda: jax.block_until_ready(forward(trainable, non_trainable, first)), 10)
    outs = [np.asarray(forward(trainable, non_trainable, padded[i : i + batch])) for i in range(0, len(padded), batch)]
    ll = float(np.mean(np.concatenate(outs)[: len(test), 0]))  # the root's log p(x) per sample
    return dict(
        epoch_s=min(clock.epoch_s[1:] or clock.epoch_s),
        first_epoch_s=clock.epoch_s[0],
        forward_sps=batch / forward_s,
        test_ll=ll,
        params=model.count_params(),
        peak_mb=jax_peak_mb(),
    )


def run_ours_ratspn(args: argparse.Namespace) -> dict[str, Any]:
    import keras
    from ratspn_em import build

    from libspn_keras import optimizers

    keras.utils.set_random_seed(0)
    size = sizes(args.quick)
    train, test, _ = load(args)
    model = build(train.shape[1], size["depth"], size["reps"], size["dists"], size["sums"])
    optimizer = optimizers.OnlineExpectationMaximization(STEP, normalized_update=True)
    return fit_ours(model, train, test, args.batch, size["epochs"], optimizer)


def run_floor_ratspn(args: argparse.Namespace) -> dict[str, Any]:
    """The multiply-adds of our RAT-SPN's sum layers as bare batched matmuls in JAX (forward only)."""
    import jax
    import jax.numpy as jnp
    from ratspn_em import build

    from libspn_keras import layers

    size = sizes(args.quick)
    train, _, _ = load(args)
    model = build(train.shape[1], size["depth"], size["reps"], size["dists"], size["sums"])
    key = jax.random.PRNGKey(0)
    operands = []
    for layer in model.layers:
        if isinstance(layer, layers.DenseSum):
            *middle, i, o = layer.accumulators.shape
            groups = int(np.prod(middle))
            key, a, b = jax.random.split(key, 3)
            operands.append((jax.random.uniform(a, (groups, args.batch, i)), jax.random.uniform(b, (groups, i, o))))

    @jax.jit
    def run(operands: Any) -> Any:
        return sum(jnp.sum(jnp.matmul(a, b)) for a, b in operands)

    forward_s = median_time(lambda: jax.block_until_ready(run(operands)), 10)
    return dict(forward_sps=args.batch / forward_s, peak_mb=jax_peak_mb())


def torch_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_peak_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def torch_sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_pyjuice(ns: Any, args: argparse.Namespace, train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    import pyjuice as juice
    import torch

    device = torch_device()
    pc = juice.compile(ns, verbose=False)
    pc.to(device)
    x_train = torch.from_numpy(train.astype(np.int64)).to(device)
    x_test = torch.from_numpy(test.astype(np.int64)).to(device)
    optimizer = juice.optim.MiniBatchEM(pc, step_size=STEP, pseudocount=0.1)
    generator = torch.Generator(device="cpu").manual_seed(0)
    epoch_s = []
    for _ in range(sizes(args.quick)["epochs"]):
        order = torch.randperm(len(x_train), generator=generator).to(device)
        torch_sync()
        start = time.perf_counter()
        for first in range(0, len(x_train), args.batch):
            x = x_train[order[first : first + args.batch]]
            lls = pc(x)  # PyJuice's documented mini-batch EM loop
            lls.mean().backward()
            optimizer.step()
        torch_sync()
        epoch_s.append(time.perf_counter() - start)
    batch = x_test[: args.batch]
    with torch.no_grad():

        def forward() -> None:
            pc(batch)
            torch_sync()

        forward_s = median_time(forward, 10)
        lls = torch.cat([pc(x_test[i : i + args.batch]).flatten() for i in range(0, len(x_test), args.batch)])
    return dict(
        epoch_s=min(epoch_s[1:] or epoch_s),
        first_epoch_s=epoch_s[0],
        forward_sps=len(batch) / forward_s,
        test_ll=float(lls.mean()),
        params=int(pc.num_sum_params),  # sum parameters (PyJuice's count; input parameters not included)
        peak_mb=torch_peak_mb(),
    )


def run_pyjuice_ratspn(args: argparse.Namespace) -> dict[str, Any]:
    import pyjuice as juice
    import pyjuice.distributions as dists
    import torch

    torch.manual_seed(0)
    size = sizes(args.quick)
    train, test, _ = load(args)
    ns = juice.structures.RAT_SPN(
        train.shape[1],
        num_latents=size["sums"],
        depth=size["depth"],
        num_repetitions=size["reps"],
        num_pieces=2,
        input_dist=dists.Categorical(num_cats=2),
    )
    return train_pyjuice(ns, args, train, test)


def run_pyjuice_hclt(args: argparse.Namespace) -> dict[str, Any]:
    import pyjuice as juice
    import pyjuice.distributions as dists
    import torch

    torch.manual_seed(0)
    train, test, _ = load(args)
    ns = juice.structures.HCLT(
        torch.from_numpy(train.astype(np.int64)).to(torch_device()),
        num_latents=sizes(args.quick)["hclt_k"],
        input_dist=dists.Categorical(num_cats=2),
    )
    return train_pyjuice(ns, args, train, test)


def run_ours_hclt(args: argparse.Namespace) -> dict[str, Any]:
    import keras

    from libspn_keras import optimizers, structure, sum_ops

    keras.utils.set_random_seed(0)
    train, test, _ = load(args)
    model = structure.hclt(
        train.astype(np.int32), num_latents=sizes(args.quick)["hclt_k"], sum_op=sum_ops.SumOpEMBackprop()
    )
    optimizer = optimizers.OnlineExpectationMaximization(STEP, normalized_update=True)  # PyJuice's mini-batch EM
    return fit_ours(model, train, test, args.batch, sizes(args.quick)["epochs"], optimizer)


def run_spflow_ratspn(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from ratspn_em import OnlineInterpolation, build_spflow, spflow_autograd_estep
    from spflow.learn import expectation_maximization_batched

    torch.manual_seed(0)
    np.random.seed(0)
    size = sizes(args.quick)
    train_np, test_np, _ = load(args)
    device = torch_device()
    model = build_spflow(train_np.shape[1], **size).to(device)
    spflow_autograd_estep(model)
    online = OnlineInterpolation(model, STEP)
    train, test = torch.from_numpy(train_np).to(device), torch.from_numpy(test_np).to(device)
    epoch_s = []
    model.train()
    for _ in range(size["epochs"]):
        order = torch.randperm(len(train)).to(device)
        torch_sync()
        start = time.perf_counter()
        for first in range(0, len(train), args.batch):
            before = online.snapshot()
            expectation_maximization_batched(model, [train[order[first : first + args.batch]]], num_epochs=1)
            online.interpolate(before)
        torch_sync()
        epoch_s.append(time.perf_counter() - start)
        if not args.quick and epoch_s[-1] > 60:
            break  # one slow epoch is enough to report
    model.eval()
    with torch.no_grad():
        batch = test[: args.batch]

        def forward() -> None:
            model.log_likelihood(batch)
            torch_sync()

        forward_s = median_time(forward, 5)
        parts = [model.log_likelihood(test[i : i + args.batch]).flatten() for i in range(0, len(test), args.batch)]
        ll = float(torch.cat(parts).mean())
    return dict(
        epoch_s=min(epoch_s[1:] or epoch_s),
        first_epoch_s=epoch_s[0],
        forward_sps=len(batch) / forward_s,
        test_ll=ll,
        params=sum(p.numel() for p in model.parameters()),
        peak_mb=torch_peak_mb(),
    )


def run_ours_dgcspn(args: argparse.Namespace) -> dict[str, Any]:
    import jax
    import keras
    from dgcspn import OPS, QUICK, README, build_readme_dgcspn

    from libspn_keras import losses, optimizers

    keras.utils.set_random_seed(0)
    op = args.op
    model = build_readme_dgcspn(OPS[op](), QUICK if args.quick else README)
    optimizer = keras.optimizers.Adam(1e-3) if op == "grad" else optimizers.OnlineExpectationMaximization(STEP)
    model.compile(optimizer=optimizer, loss=losses.NegativeLogLikelihood())
    batch = sizes(args.quick)["dgc_batch"]
    x = np.random.default_rng(0).normal(size=(batch, 28, 28, 1)).astype("float32")
    step_s = median_time(lambda: model.train_on_batch(x), 10)
    forward, fargs = jax_forward(model, x)
    forward_s = median_time(lambda: jax.block_until_ready(forward(*fargs)), 10)
    return dict(step_s=step_s, forward_sps=batch / forward_s, params=model.count_params(), peak_mb=jax_peak_mb())


WORKERS = {
    "ours-ratspn": run_ours_ratspn,
    "floor-ratspn": run_floor_ratspn,
    "pyjuice-ratspn": run_pyjuice_ratspn,
    "spflow-ratspn": run_spflow_ratspn,
    "ours-hclt": run_ours_hclt,
    "pyjuice-hclt": run_pyjuice_hclt,
    "ours-dgcspn": run_ours_dgcspn,
}
LABELS = {
    "ours-ratspn": "libspn-keras (JAX)",
    "floor-ratspn": "JAX matmul floor (forward)",
    "pyjuice-ratspn": "PyJuice",
    "spflow-ratspn": "SPFlow Einet (PyTorch)",
    "ours-hclt": "libspn-keras (JAX)",
    "pyjuice-hclt": "PyJuice",
    "ours-dgcspn": "libspn-keras (JAX)",
}


def run_worker(args: argparse.Namespace, name: str, extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, *extra, "--data-dir", args.data_dir]
    command += ["--epochs", str(args.epochs)] if args.epochs else []
    if args.quick:
        command.append("--quick")
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=args.worker_timeout)
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return {**json.loads(line[len(RESULT_MARK) :]), "wall_s": wall}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail)[-300:] or f"exit {proc.returncode}", "wall_s": wall}


def fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def table(rows: list[tuple[str, str, str, dict[str, Any]]]) -> str:
    lines = [
        "| benchmark | batch | implementation | s/epoch (or s/step) | vs PyJuice | forward samples/s | vs PyJuice | "
        "peak GPU MB | test LL | params |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    reference: dict[tuple[str, str], dict[str, Any]] = {}
    for bench, batch, name, result in rows:
        if name.startswith("pyjuice") and "error" not in result:
            reference[(bench, batch)] = result
    for bench, batch, name, result in rows:
        label = LABELS[name]
        if "error" in result:
            lines.append(f"| {bench} | {batch} | {label} | failed: {result['error']} | | | | | | |")
            continue
        ref = reference.get((bench, batch), {})
        time_s = result.get("epoch_s", result.get("step_s"))
        ratio = time_s / ref["epoch_s"] if time_s and ref.get("epoch_s") else None
        speed = result.get("forward_sps")
        fwd_ratio = ref["forward_sps"] / speed if ref.get("forward_sps") and speed else None
        lines.append(
            f"| {bench} | {batch} | {label} | {fmt(time_s, '.3f')} | {fmt(ratio, '.2f', 'x')} | "
            f"{fmt(speed, ',.0f')} | {fmt(fwd_ratio, '.2f', 'x')} | {fmt(result.get('peak_mb'), ',.0f')} | "
            f"{fmt(result.get('test_ll'), '.2f')} | {fmt(result.get('params'), ',')} |"
        )
    return "\n".join(lines)


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    from importlib.metadata import PackageNotFoundError, version

    for package in ("jax", "jaxlib", "keras", "torch", "triton", "pyjuice", "spflow"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} missing")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes on CPU (smoke test)")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "debd"))
    parser.add_argument("--only", default="ratspn,hclt,dgcspn", help="comma-separated of ratspn, hclt, dgcspn")
    parser.add_argument("--peers", default="pyjuice,spflow", help="comma-separated peers to run ('none': ours only)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for the table (default $OUT)")
    parser.add_argument("--worker-timeout", type=float, default=300, help="seconds per measurement")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training run (default 2)")
    parser.add_argument("--workers", default=None, help="comma-separated measurements to run (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--op", default="grad", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global EPOCHS
    EPOCHS = args.epochs
    if args.worker:
        result = WORKERS[args.worker](args)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return ""
    size = sizes(args.quick)
    only, peers = set(args.only.split(",")), set(args.peers.split(","))
    plan: list[tuple[str, str, str, list[str]]] = []
    # Most telling first (a run stopped at its time limit keeps those): RAT-SPN at the first batch size, HCLT,
    # DGC-SPN, RAT-SPN at the larger batch, then SPFlow (the slowest peer).
    ratspn = [
        [("RAT-SPN", str(b), name, ["--batch", str(b)]) for name in ("ours-ratspn", "pyjuice-ratspn", "floor-ratspn")]
        for b in size["batches"]
    ]
    spflow = [("RAT-SPN", str(b), "spflow-ratspn", ["--batch", str(b)]) for b in size["batches"]]
    hclt_batch = str(size["batches"][-1])
    hclt = [(f"HCLT K={size['hclt_k']}", hclt_batch, n, ["--batch", hclt_batch]) for n in ("ours-hclt", "pyjuice-hclt")]
    dgc = [(f"DGC-SPN step ({op})", str(size["dgc_batch"]), "ours-dgcspn", ["--op", op]) for op in ("grad", "hard-em")]
    for group, wanted in ((ratspn[0], "ratspn"), (hclt, "hclt"), (dgc, "dgcspn"), (sum(ratspn[1:], []), "ratspn")):
        plan += group if wanted in only else []
    plan += spflow if "ratspn" in only else []
    plan = [entry for entry in plan if entry[2].split("-")[0] not in {"pyjuice", "spflow"} - peers]
    plan = [entry for entry in plan if args.workers is None or entry[2] in args.workers.split(",")]
    rows = []
    for bench, batch, name, extra in plan:
        result = run_worker(args, name, extra)
        print(f"{bench} batch {batch} {name}: {result}", flush=True)
        rows.append((bench, batch, name, result))
        if args.out:  # as it goes, so that a run stopped at its time limit keeps what it measured
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "gpu_bench.json").write_text(json.dumps(rows, indent=1))
    report = f"{versions()}\n\n{table(rows)}\n"
    print(report)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_bench.md").write_text(report)
        (Path(args.out) / "gpu_bench.json").write_text(json.dumps([r for r in rows], indent=1))
    return report


if __name__ == "__main__":
    main()
