"""Constraint for log-space accumulators."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="libspn_keras")
class LogNormalized(keras.constraints.Constraint):
    """Normalizes log-space weights so that ``logsumexp`` along ``axis`` is zero.

    Args:
        axis: Axis along which to normalize.

    Example:
        >>> import numpy as np
        >>> c = LogNormalized(axis=-2)
        >>> w = np.asarray(c(np.log(np.array([[1.0], [3.0]], "float32"))))
        >>> np.round(np.exp(w).ravel(), 4).tolist()
        [0.25, 0.75]
    """

    def __init__(self, axis: int = -2) -> None:
        self.axis = int(axis)

    def __call__(self, w: Any) -> Any:
        """Subtract the log-normalizer along ``axis``."""
        return w - ops.logsumexp(w, axis=self.axis, keepdims=True)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"axis": self.axis}
