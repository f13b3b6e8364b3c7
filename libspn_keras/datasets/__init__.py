"""Loaders for the data sets used by the examples and benchmarks.

``load_digits_split`` uses the 8x8 digits shipped inside scikit-learn. ``load_debd`` (the DEBD binary
density-estimation benchmarks) and ``load_olivetti_faces`` read a local copy when given its folder; without one
they fetch the public files once into Keras' cache (``~/.keras/datasets``), as ``keras.datasets`` does.
"""

from libspn_keras.datasets._debd import DEBD_DATASETS, DEBD_ORIGIN, DEBD_SPLITS, load_debd
from libspn_keras.datasets._digits import DigitsSplit, load_digits_split
from libspn_keras.datasets._olivetti import OLIVETTI_ORIGIN, OLIVETTI_SHA256, OlivettiFaces, load_olivetti_faces

__all__ = [
    "DEBD_DATASETS",
    "DEBD_ORIGIN",
    "DEBD_SPLITS",
    "OLIVETTI_ORIGIN",
    "OLIVETTI_SHA256",
    "DigitsSplit",
    "OlivettiFaces",
    "load_debd",
    "load_digits_split",
    "load_olivetti_faces",
]
