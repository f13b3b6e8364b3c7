"""Image completion with a RAT-SPN: mask the left or bottom half of test images and complete it.

Reports the mean squared error of the completed pixels on the 0-255 scale, as in Table 1 of the DGC-SPN paper
(van de Wolfshaar and Pronobis), for MPE completion (modes on the max-product path) and posterior-mean
completion, next to a per-pixel-mean baseline. Saves a PNG grid: original / masked / completed.

Data: scikit-learn's 8x8 digits (default, pip only) or the Olivetti faces (64x64; ``--dataset olivetti``, read
from ``--data-dir``, else ``../shared/data/olivetti`` if present, else fetched once into
``~/.keras/datasets/olivetti``; the last 50 images are the test set as in the paper).

    python examples/completion.py                      # digits, ~1 minute on 2 CPU cores
    python examples/completion.py --dataset olivetti   # Olivetti, downsampled to 32x32 by default
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import data_paths  # examples/data_paths.py: finds and checks the data folder without TensorFlow

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments (the data folder too); needs no TensorFlow, so a bad path fails at once."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["digits", "olivetti"], default="digits")
    data_paths.add_data_dir_argument(parser, "olivettifaces.mat", "olivetti")
    parser.add_argument("--size", type=int, default=32, help="olivetti side length (64 = full resolution)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--output-dir", type=Path, default=REPO / "outputs")
    parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
    args = parser.parse_args(argv)
    if args.size < 1 or 64 % args.size:
        parser.error(f"--size must divide 64. Received: {args.size}")
    if args.dataset == "olivetti":
        args.data_dir = data_paths.olivetti_data_dir(parser, args.data_dir)
    return args


if __name__ == "__main__":
    parse_args()  # bad arguments or a bad --data-dir fail here, before TensorFlow starts

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from libspn_keras import initializers, layers, losses, metrics, models  # noqa: E402
from libspn_keras.datasets import load_olivetti_faces  # noqa: E402

PAPER_OLIVETTI = {"bottom": 735.0, "left": 811.0}  # DGC-SPN + USI, Table 1


def load_images(dataset: str, data_dir: Path | None, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Return (train, test) images on the 0-255 scale, ``[n, height, width]``."""
    if dataset == "digits":
        from sklearn.datasets import load_digits

        images = load_digits().images * (255.0 / 16.0)
        rng = np.random.default_rng(0)
        order = rng.permutation(len(images))
        images = images[order]
        return images[:-200], images[-200:]
    faces = load_olivetti_faces(data_dir).images.astype(np.float64)  # data_dir None: fetched into the cache
    if size and size != 64:
        factor = 64 // size
        faces = faces.reshape(400, size, factor, size, factor).mean(axis=(2, 4))
    return faces[:-50], faces[-50:]


def build_ratspn(
    train: np.ndarray, num_decomps: int, num_components: int, num_sums: int
) -> models.SequentialSumProductNetwork:
    num_vars = train.shape[1]
    depth = int(np.ceil(np.log2(num_vars)))
    stack: list[keras.layers.Layer] = [
        layers.FlatToRegions(num_decomps=num_decomps, input_shape=(num_vars,)),
        layers.NormalLeaf(
            num_components=num_components,
            location_initializer=initializers.PoonDomingosMeanOfQuantileSplit(train, samplewise_normalization=False),
            scale_initializer=keras.initializers.Constant(0.2),
            scale_trainable=False,
        ),
        layers.PermuteAndPadScopesRandom(seed=0),
    ]
    for level in range(depth):
        stack.append(layers.DenseProduct(num_factors=2))
        if level < depth - 1:
            stack.append(layers.DenseSum(num_sums=num_sums))
    stack += [layers.Undecompose(), layers.RootSum(return_weighted_child_logits=False)]
    return models.SequentialSumProductNetwork(stack)


def half_mask(shape: tuple[int, int, int], which: str) -> np.ndarray:
    """Evidence mask (True = observed) hiding the left or bottom half."""
    mask = np.ones(shape, bool)
    if which == "left":
        mask[:, :, : shape[2] // 2] = False
    else:
        mask[:, shape[1] // 2 :, :] = False
    return mask


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    start = time.perf_counter()

    train, test = load_images(args.dataset, args.data_dir, args.size)
    if args.quick:
        train, test, args.epochs = train[:100], test[:10], 1
    height, width = train.shape[1:]
    scale = 255.0
    x_train = (train / scale).reshape(len(train), -1).astype("float32")
    x_test = (test / scale).reshape(len(test), -1).astype("float32")

    spn = build_ratspn(x_train, num_decomps=4 if not args.quick else 1, num_components=4, num_sums=8)
    spn.compile(
        optimizer=keras.optimizers.Adam(0.01), loss=losses.NegativeLogLikelihood(), metrics=[metrics.LogLikelihood()]
    )
    history = spn.fit(x_train, epochs=args.epochs, batch_size=64, verbose=0)
    print(
        f"{args.dataset}: {len(train)} train / {len(test)} test images of {height}x{width}, "
        f"{spn.count_params():,} parameters, train log-likelihood {history.history['llh'][-1]:.2f}"
    )

    baseline = train.mean(axis=0)
    results = {}
    completions = {}
    for which in ("left", "bottom"):
        mask = half_mask(test.shape, which)
        flat_mask = mask.reshape(len(test), -1)
        hidden = ~mask
        row = {"mean image": np.mean((np.broadcast_to(baseline, test.shape)[hidden] - test[hidden]) ** 2)}
        for method in ("mpe", "posterior"):
            completed = keras.ops.convert_to_numpy(spn.complete(x_test, flat_mask, method=method))
            completed = completed.reshape(test.shape) * scale
            completed = np.clip(completed, 0, 255)
            row[method] = float(np.mean((completed[hidden] - test[hidden]) ** 2))
            completions[(which, method)] = completed
        results[which] = row

    print(f"\nCompletion MSE on the 0-255 scale ({args.dataset}, {len(test)} test images)")
    print(f"{'method':<12}{'bottom':>10}{'left':>10}")
    for method in ("mean image", "mpe", "posterior"):
        print(f"{method:<12}{results['bottom'][method]:>10.1f}{results['left'][method]:>10.1f}")
    if args.dataset == "olivetti":
        print(f"{'paper DGC-SPN+USI (64x64)':<12}{PAPER_OLIVETTI['bottom']:>10.1f}{PAPER_OLIVETTI['left']:>10.1f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = min(8, len(test))
    rows = [("original", test)]
    for which in ("left", "bottom"):
        masked = np.where(half_mask(test.shape, which), test, np.nan)
        rows += [
            (f"{which} masked", masked),
            (f"{which} MPE", completions[(which, "mpe")]),
            (f"{which} posterior", completions[(which, "posterior")]),
        ]
    fig, axes = plt.subplots(len(rows), shown, figsize=(1.2 * shown, 1.3 * len(rows)), squeeze=False)
    for r, (title, images) in enumerate(rows):
        for c in range(shown):
            axes[r, c].imshow(images[c], cmap="gray", vmin=0, vmax=255)
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, fontsize=7, loc="left")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / f"completion_{args.dataset}.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"\nSaved {out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
