"""Einsum-Networks benchmark RAT-SPN trained by online EM, with the arithmetic floor alongside.

Architecture (Peharz et al., EinsumNetworks benchmark): binary data shaped like DEBD ``accidents`` (111 variables),
depth 5, 32 repetitions, 32 input distributions per leaf region, 32 sums per region, batch 100, online EM with
step 0.05, 3 epochs. Built from libspn_keras layers:

    FlatToRegions(32) -> IndicatorLeaf(2) -> DenseSum(32)            # 32 Bernoulli input distributions per variable
    -> PermuteAndPadScopesRandom -> ReduceProduct(4)                # 32 leaf regions of ~3.5 variables per repetition
    -> 4 x [DenseProduct(2) -> DenseSum(32)] -> DenseProduct(2) -> Undecompose -> RootSum

(31,717,376 parameters; the EinsumNetworks model has 31,717,408.) The "floor" row performs the same multiply-adds
of the sum layers as plain batched matmuls on random tensors, without log-space arithmetic or products.

Data: ``accidents`` from ``../shared/data/debd`` when present, else a synthetic mixture of 20 Bernoulli products of
the same shape (12,758 train / 2,551 test rows), said in the output.

Usage:
    python benchmarks/ratspn_em.py                 # full benchmark (slow on CPU)
    python benchmarks/ratspn_em.py --quick         # tiny sizes, seconds (smoke test)

Peer libraries (SPFlow, EinsumNetworks) are not run by this script yet: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from libspn_keras import datasets, layers, losses, models, optimizers, sum_ops  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_data(data_dir: Path, rows: int | None) -> tuple[np.ndarray, np.ndarray, str]:
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


def build(num_vars: int, depth: int, reps: int, dists: int, sums: int) -> models.SequentialSumProductNetwork:
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


def timed(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    np.asarray(out)
    return (time.perf_counter() - start) / repeats


def floor_seconds(model: keras.Model, batch: int, repeats: int) -> float:
    """Time the sum layers' multiply-adds as plain batched matmuls."""
    operands = []
    for layer in model.layers:
        if isinstance(layer, layers.DenseSum):
            s, d, i, o = layer.accumulators.shape
            operands.append((tf.random.uniform([s * d, batch, i]), tf.random.uniform([s * d, i, o])))

    @tf.function
    def run() -> tf.Tensor:
        return tf.add_n([tf.reduce_sum(tf.matmul(a, b)) for a, b in operands])

    return timed(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO / ".." / "shared" / "data" / "debd")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny model and data (smoke test)")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    depth, reps, dists, sums, rows = (5, 32, 32, 32, None) if not args.quick else (3, 2, 4, 4, 300)
    if args.quick:
        args.epochs = 2
    train, test, source = load_data(args.data_dir, rows)
    model = build(train.shape[1], depth, reps, dists, sums)
    model.compile(optimizer=optimizers.OnlineExpectationMaximization(0.05), loss=losses.NegativeLogLikelihood())
    epoch_times = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.fit(train, batch_size=args.batch_size, epochs=1, verbose=0)
        epoch_times.append(time.perf_counter() - start)
    measured = epoch_times[1:] or epoch_times
    batch = tf.constant(test[: args.batch_size])
    forward = tf.function(lambda x: model(x))
    forward_s = timed(lambda: forward(batch), 5)
    floor_s = floor_seconds(model, int(batch.shape[0]), 5)
    test_ll = float(np.mean(model.log_marginal(test)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"data: {source}, {train.shape[0]} train / {test.shape[0]} test rows, {train.shape[1]} variables")
    print(
        f"model: depth {depth}, {reps} repetitions, {dists} input distributions, {sums} sums, "
        f"{model.count_params():,} parameters; {tf.config.list_logical_devices()[0].device_type}"
    )
    print()
    print("| implementation | s / epoch (median after warm-up) | forward samples / s | peak RSS MB | test LL |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| libspn-keras (online soft EM) | {statistics.median(measured):.2f} | {batch.shape[0] / forward_s:,.0f} "
        f"| {peak_mb:,.0f} | {test_ll:.3f} |"
    )
    print(f"| floor: sum-layer matmuls only | - | {batch.shape[0] / floor_s:,.0f} | - | - |")
    print(f"\nforward pass / floor: {forward_s / floor_s:.1f}x")
    print("SPFlow / EinsumNetworks: not run by this script (see benchmarks/README.md)")


if __name__ == "__main__":
    main()
