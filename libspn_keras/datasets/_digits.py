"""scikit-learn's 8x8 digits, split deterministically into train and test sets."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DigitsSplit(NamedTuple):
    """Train and test arrays of the 8x8 digits; unpacks as ``x_train, y_train, x_test, y_test``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(
    test_fraction: float = 0.25,
    seed: int = 0,
    normalize: bool = True,
    flatten: bool = True,
) -> DigitsSplit:
    """Load scikit-learn's 8x8 digits (1,797 images, 10 classes) as a deterministic, stratified split.

    The images ship inside the ``scikit-learn`` wheel, so nothing is downloaded. The split is stratified by
    class and depends only on ``test_fraction`` and ``seed``.

    Args:
        test_fraction: Fraction of the images held out for testing, in ``(0, 1)``.
        seed: Seed of the shuffle that decides the split.
        normalize: If ``True``, pixels (integers ``0..16``) are divided by 16 to lie in ``[0, 1]``.
        flatten: If ``True``, images have shape ``[64]``; otherwise ``[8, 8]``.

    Returns:
        A ``DigitsSplit`` ``(x_train, y_train, x_test, y_test)``: ``float32`` images of shape
        ``[num_samples, 64]`` (or ``[num_samples, 8, 8]``) and ``int32`` labels of shape ``[num_samples]``.

    Raises:
        ValueError: If ``test_fraction`` is not in ``(0, 1)``.
        ImportError: If scikit-learn is not installed (``pip install "libspn-keras[demo]"``).

    Example:
        >>> x_train, y_train, x_test, y_test = load_digits_split(test_fraction=0.25, seed=0)
        >>> x_train.shape, x_test.shape, x_train.dtype, y_train.dtype
        ((1347, 64), (450, 64), dtype('float32'), dtype('int32'))
        >>> float(x_train.min()), float(x_train.max())
        (0.0, 1.0)
        >>> bool((load_digits_split(seed=0).y_test == y_test).all())
        True
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"load_digits_split expects 0 < test_fraction < 1. Received: test_fraction={test_fraction}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digits_split needs scikit-learn: pip install scikit-learn (or the 'demo' extra)."
        ) from error
    digits = load_digits()
    images = digits.images.astype(np.float32)
    if normalize:
        images /= 16.0
    if flatten:
        images = images.reshape(len(images), -1)
    labels = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return DigitsSplit(x_train, y_train, x_test, y_test)
