"""RAT-SPNs on scikit-learn's 8x8 digits: density estimation, classification, missing data and a picture.

Runs with pip alone (the digits ship inside scikit-learn), in well under a minute on 2 CPU cores::

    pip install ".[demo]" && python examples/demo.py

1. A RAT-SPN *density estimator* is fitted without labels by maximum likelihood (``NegativeLogLikelihood`` +
   Adam). Its leaves model each pixel as what it is, one of 17 levels (the integers 0..16): an
   ``IndicatorLeaf(num_components=17)`` followed by a ``DenseSum`` makes a few categorical distributions per pixel,
   which products and sums mix into a joint distribution. The log-likelihood is that of the discrete images,
   reported per image in nats and as bits per pixel, next to an independent per-pixel histogram (the best model
   that ignores how pixels depend on each other).
2. A RAT-SPN *classifier* (class sums ``DenseSum(num_sums=10)`` under ``RootSum(return_weighted_child_logits=True)``)
   is trained discriminatively with ``SparseCategoricalCrossentropy(from_logits=True)`` on standardized pixels.
   It is also evaluated with the bottom half of every test image missing (``NaN``): the SPN marginalizes
   missing pixels exactly.
3. A picture with the training curves and a few test digits with their predicted labels is written to
   ``OUTPUT_DIR/digits_demo.png``.

The run is reproducible: ``--seed`` seeds Keras, NumPy and the backend (``keras.utils.set_random_seed``) and, on
TensorFlow, its ops are made deterministic (``tf.config.experimental.enable_op_determinism``), so two runs on one
machine print the same numbers. It runs on the TensorFlow (default) and JAX backends (``KERAS_BACKEND=jax``).
Use ``--quick`` for a seconds-long smoke run with tiny models.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; needs no TensorFlow, so a bad argument fails at once."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and 1 epoch (smoke test)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of both models (default: 10)")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs"), help="where the picture goes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (keras.utils.set_random_seed)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1. Received: {args.epochs}")
    return args


if __name__ == "__main__":
    parse_args()  # bad arguments fail here, before TensorFlow starts

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from libspn_keras import layers, losses, metrics, models  # noqa: E402
from libspn_keras.datasets import DigitsSplit, load_digits_split  # noqa: E402

NUM_PIXELS = 64
NUM_LEVELS = 17  # pixel values are the integers 0..16


@dataclass(frozen=True)
class Sizes:
    """Sizes of both models and their training budgets."""

    density_decomps: int
    density_pixel_components: int
    density_sums: int
    density_epochs: int
    classifier_decomps: int
    classifier_components: int
    classifier_sums: int
    classifier_epochs: int


FULL = Sizes(8, 4, 8, 10, 10, 8, 8, 10)
QUICK = Sizes(2, 2, 2, 1, 2, 2, 2, 1)


def sum_initializer() -> keras.initializers.Initializer:
    # A fresh initializer per sum layer, created after keras.utils.set_random_seed, makes the run reproducible.
    return keras.initializers.TruncatedNormal(mean=1.0, stddev=0.5)


def build_density_estimator(sizes: Sizes) -> models.SequentialSumProductNetwork:
    """RAT-SPN over categorical pixel leaves: five levels of (products of 2 scopes, sums), then the root."""
    stack: list[keras.layers.Layer] = [
        keras.Input(shape=(NUM_PIXELS,), dtype="int32"),
        layers.FlatToRegions(num_decomps=sizes.density_decomps),
        layers.IndicatorLeaf(num_components=NUM_LEVELS),  # one indicator per pixel level
        # Each sum over a pixel's 17 indicators is a categorical distribution of that pixel.
        layers.DenseSum(num_sums=sizes.density_pixel_components, accumulator_initializer=sum_initializer()),
        layers.PermuteAndPadScopesRandom(seed=0),  # factors [2, 2, 2, 2, 2, 2] are inferred from the products
    ]
    for _ in range(5):  # 64 -> 32 -> 16 -> 8 -> 4 -> 2 scopes
        stack += [
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=sizes.density_sums, accumulator_initializer=sum_initializer()),
        ]
    stack += [
        layers.ReduceProduct(num_factors=2),  # 2 -> 1 scope
        layers.Undecompose(),  # mix all decompositions in the root
        layers.RootSum(return_weighted_child_logits=False),
    ]
    return models.SequentialSumProductNetwork(stack, unsupervised=True, name="density_ratspn")


def build_classifier(sizes: Sizes) -> models.SequentialSumProductNetwork:
    """RAT-SPN with factorized leaf regions of 8 pixels and one sum per class at the top."""
    stack: list[keras.layers.Layer] = [
        keras.Input(shape=(NUM_PIXELS,)),
        layers.FlatToRegions(num_decomps=sizes.classifier_decomps),
        layers.NormalLeaf(num_components=sizes.classifier_components, scale_trainable=True),
        layers.PermuteAndPadScopesRandom(seed=0),
        layers.ReduceProduct(num_factors=8),  # 64 pixels -> 8 leaf regions of 8 pixels each
        layers.DenseProduct(num_factors=2),  # 8 -> 4 scopes
        layers.DenseSum(num_sums=sizes.classifier_sums, accumulator_initializer=sum_initializer()),
        layers.DenseProduct(num_factors=2),  # 4 -> 2 scopes
        layers.DenseSum(num_sums=sizes.classifier_sums, accumulator_initializer=sum_initializer()),
        layers.DenseProduct(num_factors=2),  # 2 -> 1 scope
        layers.Undecompose(),
        layers.DenseSum(num_sums=10, accumulator_initializer=sum_initializer()),  # one sub-SPN per class
        layers.RootSum(return_weighted_child_logits=True),  # logits log p(x, y=c)
    ]
    return models.SequentialSumProductNetwork(stack, unsupervised=False, name="classifier_ratspn")


def pixel_levels(images: np.ndarray) -> np.ndarray:
    """Map pixels in [0, 1] (multiples of 1/16) back to their levels, the integers 0..16."""
    return np.rint(images * (NUM_LEVELS - 1)).astype(np.int32)


def bits_per_pixel(log_likelihood: float) -> float:
    """Turn a log-likelihood per image (nats) into a negative log2-likelihood per pixel."""
    return -log_likelihood / (NUM_PIXELS * np.log(2.0))


def histogram_log_likelihood(train: np.ndarray, test: np.ndarray, pseudo_count: float = 1.0) -> float:
    """Mean test log-likelihood of independent per-pixel histograms of ``train`` levels (a baseline).

    Each pixel gets its own categorical distribution over the 17 levels, the training counts plus
    ``pseudo_count`` (so levels never seen in training keep a small probability).
    """
    counts = np.stack([np.bincount(column, minlength=NUM_LEVELS) for column in train.T]) + pseudo_count
    log_probs = np.log(counts / counts.sum(axis=1, keepdims=True))  # [pixel, level]
    return float(log_probs[np.arange(NUM_PIXELS), test].sum(axis=1).mean())


def train_density_estimator(x_train: np.ndarray, x_test: np.ndarray, sizes: Sizes, epochs: int) -> dict:
    train, test = pixel_levels(x_train), pixel_levels(x_test)
    spn = build_density_estimator(sizes)
    spn.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.05),
        loss=losses.NegativeLogLikelihood(),
        metrics=[metrics.LogLikelihood()],
    )
    start = time.perf_counter()
    history = spn.fit(train, epochs=epochs, batch_size=64, validation_data=(test,), verbose=0)  # no labels
    seconds = time.perf_counter() - start
    train_ll = spn.evaluate(train, verbose=0, return_dict=True)["llh"]
    test_ll = spn.evaluate(test, verbose=0, return_dict=True)["llh"]
    baseline = histogram_log_likelihood(train, test)
    print(f"[density]    RAT-SPN, {spn.count_params():,} parameters, {epochs} epochs in {seconds:.1f} s")
    rows = [("train", train_ll), ("test", test_ll), ("test, per-pixel histograms (baseline)", baseline)]
    for label, value in rows:
        nats = f"{value:8.2f} nats ({bits_per_pixel(value):.3f} bits/pixel)"
        print(f"[density]    {label + ' log-likelihood per image:':<62}{nats}")
    return {"history": history.history, "train_ll": train_ll, "test_ll": test_ll, "baseline_ll": baseline}


def train_classifier(split: DigitsSplit, sizes: Sizes, epochs: int) -> dict:
    mean, std = split.x_train.mean(axis=0), split.x_train.std(axis=0)
    std[std < 0.05] = 1.0  # border pixels that are (almost) always 0
    x_train, x_test = (split.x_train - mean) / std, (split.x_test - mean) / std
    spn = build_classifier(sizes)
    spn.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    start = time.perf_counter()
    history = spn.fit(
        x_train, split.y_train, epochs=epochs, batch_size=64, validation_data=(x_test, split.y_test), verbose=0
    )
    seconds = time.perf_counter() - start
    predicted = spn.predict(x_test, verbose=0).argmax(axis=1)
    accuracy = float((predicted == split.y_test).mean())

    half_missing = x_test.copy()
    half_missing.reshape(-1, 8, 8)[:, 4:] = np.nan  # bottom half unobserved: marginalized by the leaves
    predicted_half = spn.predict(half_missing, verbose=0).argmax(axis=1)
    accuracy_half = float((predicted_half == split.y_test).mean())
    print(f"[classifier] RAT-SPN, {spn.count_params():,} parameters, {epochs} epochs in {seconds:.1f} s")
    print(f"[classifier] test accuracy: {accuracy:.2%} (chance: 10%)")
    print(f"[classifier] test accuracy with the bottom half of each image missing (NaN): {accuracy_half:.2%}")
    return {
        "history": history.history,
        "accuracy": accuracy,
        "accuracy_half": accuracy_half,
        "predicted": predicted,
        "predicted_half": predicted_half,
    }


def save_picture(path: Path, split: DigitsSplit, density: dict, classifier: dict, num_digits: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(12, 6.5), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[1.3, 1])  # type: ignore[misc]
    curves = top.subplots(1, 2)
    epochs = np.arange(1, len(density["history"]["llh"]) + 1)
    curves[0].plot(epochs, density["history"]["llh"], label="train")
    curves[0].plot(epochs, density["history"]["val_llh"], label="test")
    curves[0].axhline(density["baseline_ll"], color="gray", linestyle="--", label="per-pixel histogram (test)")
    curves[0].set(title="Density estimator", xlabel="epoch", ylabel="log-likelihood per image (nats)")
    curves[0].legend()
    epochs = np.arange(1, len(classifier["history"]["accuracy"]) + 1)
    curves[1].plot(epochs, classifier["history"]["accuracy"], label="train")
    curves[1].plot(epochs, classifier["history"]["val_accuracy"], label="test")
    curves[1].set(title="Classifier", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    curves[1].legend()

    axes = bottom.subplots(2, num_digits)
    bottom.suptitle("Test digits with predicted labels: full image (top), bottom half missing (below)")
    for column in range(num_digits):
        image, label = split.x_test[column].reshape(8, 8), split.y_test[column]
        half = np.where(np.arange(8)[:, None] < 4, image, np.nan)
        for row, (shown, predicted) in enumerate(
            [(image, classifier["predicted"][column]), (half, classifier["predicted_half"][column])]
        ):
            axis = axes[row, column]
            axis.imshow(np.ma.masked_invalid(shown), cmap="gray_r", vmin=0, vmax=1)
            axis.set_facecolor("#f4c7c3")
            correct = predicted == label
            title = f"pred {predicted}" if correct else f"pred {predicted} (true {label})"
            axis.set_title(title, color="green" if correct else "red", fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # same numbers from run to run
    sizes = QUICK if args.quick else FULL
    split = load_digits_split(test_fraction=0.25, seed=0)
    print(f"8x8 digits: {len(split.x_train)} train / {len(split.x_test)} test images, pixels scaled to [0, 1]")

    density = train_density_estimator(
        split.x_train, split.x_test, sizes, args.epochs if args.epochs is not None else sizes.density_epochs
    )
    classifier = train_classifier(split, sizes, args.epochs if args.epochs is not None else sizes.classifier_epochs)

    args.output_dir.mkdir(parents=True, exist_ok=True)
    picture = args.output_dir / "digits_demo.png"
    save_picture(picture, split, density, classifier)
    print(f"picture written to {picture.resolve()}")
    print(f"total time {time.perf_counter() - start:.1f} s")
    return {"density": density, "classifier": classifier, "picture": picture}


if __name__ == "__main__":
    main()
