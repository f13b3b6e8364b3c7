"""Generative DGC-SPN on Olivetti faces: hard EM and unweighted hard EM, then half-image completion (reduced scale).

Reproduces the generative set-up of the DGC-SPN paper (Van de Wolfshaar and Pronobis, section 5.1 and Table 1):

* pixels standardized sample-wise (each image minus its mean, divided by its standard deviation);
* ``NormalLeaf`` with 4 components per pixel, locations from ``PoonDomingosMeanOfQuantileSplit`` (the mean of
  each quartile of the pixel's values over the training set) and scale fixed to 1 (neither is trained);
* a first ``Conv2DProduct`` over 2x2 patches forming combinations of the children's components, then depthwise
  ``Conv2DProduct`` layers with unit strides, 2x2 patches, full padding and dilations 2, 4, 8, ..., a
  ``Local2DSum`` with 16 channels after each, and a top product with ``'final'`` padding whose cells cover the
  whole image, under a ``RootSum``;
* every sum trained by online hard EM (``SumOpHardEMBackprop``: "DGC-SPN") or by unweighted hard EM
  (``SumOpUnweightedHardEMBackprop``: "DGC-SPN + USI"), with linear accumulators initialized by
  ``EpsilonInverseFanIn(epsilon=1e-2)`` and ``OnlineExpectationMaximization`` accumulating per-sample counts, so
  the weights are the paper's smoothed counts ``(c_i + eps / K) / (sum_j c_j + eps)``; batch size 128;
* completion of the left or the bottom half of the 50 test images (the last 50 faces) by the marginal posterior of
  the leaf components times their modes (``complete(..., method='posterior')``, the paper's inpainting) and, for
  comparison, by the modes on the approximate MPE path (``method='mpe'``); MSE on the 0-255 scale.

**Undoing the sample-wise normalization without cheating.** A test image is standardized before completion and
the completion mapped back with a mean and standard deviation, but the image's own statistics depend on the hidden
half. This script reports three choices side by side:

* *estimated* (the fair headline): the full image's mean and standard deviation predicted from the observed half's
  mean and standard deviation by a linear least-squares fit on the training images (same mask);
* *observed half*: the observed half's own mean and standard deviation (fair, but biased: the hidden half has a
  different brightness);
* *oracle*: the full test image's mean and standard deviation. This leaks two numbers per image from the hidden
  half and is **not** a fair completion; it is shown because a naive implementation does exactly this (the paper
  does not say which statistics it used).

The row "mean standardized training image" completes every image with the per-pixel mean of the standardized
training images (no model, same statistics): a model that ignored the evidence would score about the same.

Reduced scale (the paper: 64x64, all 4**4 = 256 combinations in the first product, 15 epochs, 5 runs): images
averaged down to 32x32, 64 random combinations in the first product, 5 epochs, one run. Lower resolution makes
images smoother and MSEs lower, so the numbers are indicative, not comparable digit for digit. About 5-8 minutes
on 2 CPU cores; writes ``OUTPUT_DIR/dgcspn_completion_olivetti.png`` (original / masked / completed)::

    python examples/dgcspn_completion.py               # reduced scale
    python examples/dgcspn_completion.py --size 64     # the paper's resolution (much slower)
    python examples/dgcspn_completion.py --quick       # tiny smoke run (< 1 minute)
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import data_paths  # examples/data_paths.py: finds and checks the data folder without TensorFlow

# The repository root (a notebook twin has no __file__ and runs from examples/).
REPO = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments (the data folder too); needs no TensorFlow, so a bad path fails at once."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_paths.add_data_dir_argument(parser, "olivettifaces.mat", "olivetti")
    parser.add_argument("--size", type=int, choices=[16, 32, 64], help="image side (default 32; 16 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="default 5 (1 with --quick)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--output-dir", type=Path, default=REPO / "outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny model for smoke tests")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be positive. Received: {args.epochs}")
    args.data_dir = data_paths.olivetti_data_dir(parser, args.data_dir)
    return args


if __name__ == "__main__":
    parse_args()  # bad arguments or a bad --data-dir fail here, before TensorFlow starts

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from libspn_keras import constraints, initializers, layers, losses, models, optimizers, sum_ops  # noqa: E402
from libspn_keras.datasets import load_olivetti_faces  # noqa: E402

EPSILON = 1e-2  # added to the standard deviation when standardizing
HALVES = ("bottom", "left")
STATISTICS = ("estimated", "observed half", "oracle")
SUM_OPS = {
    "DGC-SPN (hard EM)": sum_ops.SumOpHardEMBackprop,
    "DGC-SPN + USI (unweighted hard EM)": sum_ops.SumOpUnweightedHardEMBackprop,
}
PAPER_TABLE_1 = {  # Olivetti, 64x64, MSE of the hidden half on the 0-255 scale: (bottom, left)
    "DGC-SPN + USI": (735, 811),
    "DGC-SPN": (804, 847),
    "Poon-Domingos (APVAHRS)": (918, 942),
}


@dataclass(frozen=True)
class Sizes:
    """Model and training sizes."""

    side: int
    num_sums: int
    first_channels: int | None  # channels of the first product; None: all num_components ** 4 combinations
    epochs: int


REDUCED = Sizes(side=32, num_sums=16, first_channels=64, epochs=5)
QUICK = Sizes(side=16, num_sums=4, first_channels=16, epochs=1)


def load_olivetti(data_dir: Path | None, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train, test)`` faces ``[n, side, side]`` on the 0-255 scale; the last 50 faces are the test set.

    ``data_dir`` holds ``olivettifaces.mat``; ``None`` reads the copy in ``~/.keras/datasets/olivetti``, fetched
    there first if absent.
    """
    faces = load_olivetti_faces(data_dir).images.astype(np.float64)
    if 64 % side:
        raise ValueError(f"--size must divide 64. Received: {side}")
    factor = 64 // side
    faces = faces.reshape(400, side, factor, side, factor).mean(axis=(2, 4))
    return faces[:-50], faces[-50:]


def half_mask(shape: tuple[int, ...], which: str) -> np.ndarray:
    """Evidence mask (``True`` = observed) hiding the left or the bottom half of ``[n, height, width]`` images."""
    mask = np.ones(shape, bool)
    if which == "left":
        mask[:, :, : shape[2] // 2] = False
    else:
        mask[:, shape[1] // 2 :, :] = False
    return mask


def masked_stats(images: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per image over the pixels where ``mask`` is ``True``."""
    observed = np.where(mask, images, np.nan)
    return np.nanmean(observed, axis=(1, 2)), np.nanstd(observed, axis=(1, 2))


def standardize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(images - mean) / (std + EPSILON)`` per image, as ``float32 [n, height, width, 1]`` for the model."""
    z = (images - mean[:, None, None]) / (std[:, None, None] + EPSILON)
    return z[..., np.newaxis].astype("float32")


def unstandardize(z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Map standardized images back to the 0-255 scale (clipped) with per-image ``mean`` and ``std``."""
    return np.clip(z * (std[:, None, None] + EPSILON) + mean[:, None, None], 0.0, 255.0)


def estimate_full_stats(
    train: np.ndarray, test: np.ndarray, mask_train: np.ndarray, mask_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Predict each test image's full mean and standard deviation from its observed half only.

    A linear least-squares fit ``[1, observed mean, observed std] -> full mean`` (and ``-> full std``) on the
    training images with the same mask; nothing of the hidden half of a test image is used.
    """

    def features(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mean, std = masked_stats(images, mask)
        return np.stack([np.ones_like(mean), mean, std], axis=1)

    a_train = features(train, mask_train)
    coef_mean = np.linalg.lstsq(a_train, train.mean(axis=(1, 2)), rcond=None)[0]
    coef_std = np.linalg.lstsq(a_train, train.std(axis=(1, 2)), rcond=None)[0]
    a_test = features(test, mask_test)
    return a_test @ coef_mean, np.maximum(a_test @ coef_std, 1.0)


def build_dgcspn(
    train_z: np.ndarray, sizes: Sizes, sum_op: sum_ops.SumOpBase, seed: int
) -> models.SequentialSumProductNetwork:
    """The generative DGC-SPN of the paper for standardized images ``train_z`` ``[n, side, side, 1]``."""
    side = sizes.side
    em_sums = dict(
        sum_op=sum_op,
        logspace_accumulators=False,
        accumulator_initializer=initializers.EpsilonInverseFanIn(axis=-2, epsilon=1e-2),
        # Unnormalized accumulators, so that they hold the smoothed cumulative counts (gliding_average=False).
        linear_accumulator_constraint=constraints.GreaterEqualEpsilon(),
    )
    stack: list[keras.layers.Layer] = [
        keras.Input(shape=(side, side, 1)),
        layers.NormalLeaf(
            num_components=4,
            location_initializer=initializers.PoonDomingosMeanOfQuantileSplit(train_z, samplewise_normalization=False),
            location_trainable=False,
            scale_initializer=keras.initializers.Constant(1.0),
            scale_trainable=False,
        ),
        # Products of one component of each pixel of a 2x2 patch (a subset of all 4 ** 4 combinations).
        layers.Conv2DProduct(
            strides=1, dilations=1, kernel_size=2, padding="full", num_channels=sizes.first_channels, seed=seed
        ),
        layers.Local2DSum(num_sums=sizes.num_sums, **em_sums),
    ]
    dilation = 2
    while dilation < side:
        stack += [
            layers.Conv2DProduct(strides=1, dilations=dilation, kernel_size=2, padding="full", depthwise=True),
            layers.Local2DSum(num_sums=sizes.num_sums, **em_sums),
        ]
        dilation *= 2
    stack += [
        layers.Conv2DProduct(strides=1, dilations=dilation, kernel_size=2, padding="final", depthwise=True),
        layers.SpatialToRegions(),
        layers.RootSum(return_weighted_child_logits=False, **em_sums),
    ]
    return models.SequentialSumProductNetwork(stack)


def complete(
    spn: models.SequentialSumProductNetwork,
    images: np.ndarray,
    mask: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    method: str,
) -> np.ndarray:
    """Standardize with ``mean``/``std``, complete the unobserved pixels, map back to 0-255 (clipped)."""
    z = standardize(np.where(mask, images, 0.0), mean, std)
    completed = keras.ops.convert_to_numpy(spn.complete(z, mask[..., np.newaxis], method=method))[..., 0]
    completed = unstandardize(completed, mean, std)
    return np.where(mask, images, completed)


def mse_hidden(completed: np.ndarray, images: np.ndarray, mask: np.ndarray) -> float:
    return float(np.mean((completed[~mask] - images[~mask]) ** 2))


def save_grid(path: Path, test: np.ndarray, completions: dict[tuple[str, str], np.ndarray]) -> None:
    """Rows: originals, then per half the masked images (hidden pixels in blue) and each model's completion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def rgb(images: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        gray = np.repeat(images[..., np.newaxis] / 255.0, 3, axis=-1)
        return gray if mask is None else np.where(mask[..., np.newaxis], gray, [0.55, 0.7, 0.9])

    shown = np.linspace(0, len(test) - 1, min(8, len(test))).astype(int)  # different people
    rows: list[tuple[str, np.ndarray]] = [("original", rgb(test))]
    for which in HALVES:
        rows.append((f"{which} half hidden", rgb(test, half_mask(test.shape, which))))
        rows += [(f"{name}: {which} half completed", rgb(completions[(name, which)])) for name in SUM_OPS]
    fig, axes = plt.subplots(len(rows), len(shown), figsize=(1.2 * len(shown), 1.4 * len(rows)), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.97, wspace=0.05, hspace=0.3)
    for r, (title, images) in enumerate(rows):
        for c, index in enumerate(shown):
            axes[r, c].imshow(images[index], interpolation="nearest")
            axes[r, c].axis("off")
        axes[r, 0].text(0.0, 1.05, title, transform=axes[r, 0].transAxes, fontsize=8, va="bottom")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(results: dict[str, Any], baseline: dict[str, dict[str, float]], side: int, num_test: int) -> None:
    header = "".join(f"{name:>24}" for name in ("estimated stats", "observed-half stats", "oracle stats (leak)"))
    print(f"\nCompletion MSE of the hidden half on the 0-255 scale, Olivetti {side}x{side}, {num_test} test images")
    print(f"{'':<46}{header}")
    print(f"{'':<46}" + f"{'bottom':>14}{'left':>10}" * len(STATISTICS))

    def row(label: str, values: dict[str, dict[str, float]]) -> None:
        cells = "".join(f"{values[s]['bottom']:>14.0f}{values[s]['left']:>10.0f}" for s in STATISTICS)
        print(f"{label:<46}{cells}")

    row("mean standardized training image (no model)", baseline)
    for name in SUM_OPS:
        for method in ("posterior", "mpe"):
            row(f"{name}, {method}", results[name]["mse"][method])
    print("\nPaper, Table 1 (Olivetti 64x64, 15 epochs, mean of 5 runs):")
    for name, (bottom, left) in PAPER_TABLE_1.items():
        print(f"  {name:<30}bottom {bottom:>5}   left {left:>5}")
    print(
        "estimated: full-image statistics predicted from the observed half (fitted on the training images), fair;\n"
        "oracle: the test image's own statistics, which use the hidden half (not a fair completion)."
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    sizes = QUICK if args.quick else REDUCED
    sizes = Sizes(
        sizes.side if args.size is None else args.size,
        sizes.num_sums,
        sizes.first_channels,
        sizes.epochs if args.epochs is None else args.epochs,
    )
    start = time.perf_counter()

    train, test = load_olivetti(args.data_dir, sizes.side)
    train_z = standardize(train, train.mean(axis=(1, 2)), train.std(axis=(1, 2)))
    masks = {which: (half_mask(train.shape, which), half_mask(test.shape, which)) for which in HALVES}
    stats: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for which, (mask_train, mask_test) in masks.items():
        stats[("estimated", which)] = estimate_full_stats(train, test, mask_train, mask_test)
        stats[("observed half", which)] = masked_stats(test, mask_test)
        stats[("oracle", which)] = (test.mean(axis=(1, 2)), test.std(axis=(1, 2)))
    # No model: every image completed with the per-pixel mean of the standardized training images.
    mean_z = train_z[..., 0].mean(axis=0)
    baseline = {
        s: {which: mse_hidden(unstandardize(mean_z, *stats[(s, which)]), test, masks[which][1]) for which in HALVES}
        for s in STATISTICS
    }
    print(
        f"Olivetti: {len(train)} training / {len(test)} test faces at {sizes.side}x{sizes.side}; "
        f"{sizes.epochs} epochs of online hard EM, batch size {args.batch_size}"
    )

    results: dict[str, Any] = {}
    completions: dict[tuple[str, str], np.ndarray] = {}
    for name, op in SUM_OPS.items():
        keras.utils.set_random_seed(args.seed)
        fit_start = time.perf_counter()
        spn = build_dgcspn(train_z, sizes, op(), args.seed)
        # Summed (not averaged) negative log-likelihood: each sample adds a count of 1 to its winning children.
        spn.compile(
            optimizer=optimizers.OnlineExpectationMaximization(learning_rate=1.0, gliding_average=False),
            loss=losses.NegativeLogLikelihood(reduction="sum"),
        )
        spn.fit(train_z, epochs=sizes.epochs, batch_size=args.batch_size, verbose=0)
        fit_seconds = time.perf_counter() - fit_start
        test_z = standardize(test, test.mean(axis=(1, 2)), test.std(axis=(1, 2)))
        train_ll = float(np.mean(spn.predict(train_z, batch_size=64, verbose=0)))
        test_ll = float(np.mean(spn.predict(test_z, batch_size=64, verbose=0)))
        mse: dict[str, dict[str, dict[str, float]]] = {"posterior": {}, "mpe": {}}
        for method in mse:
            for s in STATISTICS:
                mse[method][s] = {}
                for which in HALVES:
                    mask = masks[which][1]
                    completed = complete(spn, test, mask, *stats[(s, which)], method=method)
                    mse[method][s][which] = mse_hidden(completed, test, mask)
                    if method == "posterior" and s == "estimated":
                        completions[(name, which)] = completed
        results[name] = {"mse": mse, "fit_seconds": fit_seconds, "train_ll": train_ll, "test_ll": test_ll}
        print(
            f"{name}: {spn.count_params():,} parameters, trained in {fit_seconds:.0f} s; log-likelihood per image "
            f"of standardized pixels: train {train_ll:.1f}, test {test_ll:.1f}"
        )

    print_table(results, baseline, sizes.side, len(test))
    picture = args.output_dir / "dgcspn_completion_olivetti.png"
    save_grid(picture, test, completions)
    seconds = time.perf_counter() - start
    print(f"\nSaved {picture.resolve()}\nWall-clock time: {seconds:.0f} s")
    return {"results": results, "baseline": baseline, "picture": picture, "seconds": seconds, "side": sizes.side}


if __name__ == "__main__":
    main()
