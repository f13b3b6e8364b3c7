"""Clipping constraint for scale parameters."""

from __future__ import annotations

import numbers
from typing import Any

import keras
from keras import ops


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # not NaN


@keras.saving.register_keras_serializable(package="libspn_keras")
class Clip(keras.constraints.Constraint):
    """Constrains the weights to be between ``min`` and ``max``.

    Args:
        min: Minimum clip value.
        max: Maximum clip value, or ``None`` for no upper bound.

    Raises:
        ValueError: If ``min`` or ``max`` is not a number, or ``max`` is given and smaller than ``min``.

    Example:
        >>> import numpy as np
        >>> np.asarray(Clip(0.5, 2.0)(np.array([0.0, 1.0, 3.0], "float32"))).tolist()
        [0.5, 1.0, 2.0]
    """

    def __init__(self, min: float, max: float | None = None) -> None:  # noqa: A002 (manual's names)
        for name, value in (("min", min), ("max", max)):
            if (value is not None or name == "min") and not _is_number(value):
                raise ValueError(f"Clip expects {name} to be a number. Received: {name}={value!r}")
        if max is not None and max < min:
            raise ValueError(f"Clip expects max >= min. Received: min={min}, max={max}")
        self.min = float(min)
        self.max = None if max is None else float(max)

    def __call__(self, w: Any) -> Any:
        """Clip ``w`` into ``[min, max]``."""
        w = ops.maximum(w, ops.cast(self.min, w.dtype))
        if self.max is not None:
            w = ops.minimum(w, ops.cast(self.max, w.dtype))
        return w

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"min": self.min, "max": self.max}
