"""Equidistant initializer for leaf locations."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="libspn_keras")
class Equidistant(keras.initializers.Initializer):
    """Initializer that generates tensors where the last axis is initialized with 'equidistant' values.

    Args:
        minval: Lower bound of the range of values to generate.
        maxval: Upper bound of the range of values to generate.

    Example:
        >>> import numpy as np
        >>> np.asarray(Equidistant(0.0, 1.0)((1, 3))).tolist()
        [[0.0, 0.5, 1.0]]
    """

    def __init__(self, minval: float = 0.0, maxval: float = 1.0) -> None:
        if maxval < minval:
            raise ValueError(f"Equidistant expects maxval >= minval. Received: minval={minval}, maxval={maxval}")
        self.minval = float(minval)
        self.maxval = float(maxval)

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        """Fill the last axis with ``linspace(minval, maxval, shape[-1])``, broadcast over the others."""
        dtype = dtype or keras.config.floatx()
        shape = tuple(shape)
        values = ops.linspace(self.minval, self.maxval, shape[-1], dtype=dtype)
        return ops.broadcast_to(values, shape)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"minval": self.minval, "maxval": self.maxval}
