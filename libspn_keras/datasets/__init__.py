"""Loaders for the data sets used by the examples and benchmarks.

Nothing is downloaded: ``load_debd`` reads a local copy of the DEBD binary density-estimation benchmarks and
``load_digits_split`` uses the 8x8 digits shipped inside scikit-learn.
"""

from libspn_keras.datasets._debd import DEBD_DATASETS, DEBD_SPLITS, load_debd
from libspn_keras.datasets._digits import DigitsSplit, load_digits_split

__all__ = ["DEBD_DATASETS", "DEBD_SPLITS", "DigitsSplit", "load_debd", "load_digits_split"]
