"""Constraints for linear accumulators."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _check_epsilon(cls: str, epsilon: float) -> None:
    if not epsilon > 0:
        raise ValueError(f"{cls} expects epsilon > 0. Received: epsilon={epsilon}")


@keras.saving.register_keras_serializable(package="libspn_keras")
class GreaterEqualEpsilon(keras.constraints.Constraint):
    """Constrains the weight to be greater than or equal to epsilon.

    Args:
        epsilon: Constant, usually small non-zero.

    Example:
        >>> import numpy as np
        >>> c = GreaterEqualEpsilon(epsilon=0.1)
        >>> np.asarray(c(np.array([-1.0, 0.5], "float32"))).tolist()
        [0.10000000149011612, 0.5]
    """

    def __init__(self, epsilon: float = 1e-10) -> None:
        _check_epsilon("GreaterEqualEpsilon", epsilon)
        self.epsilon = float(epsilon)

    def __call__(self, w: Any) -> Any:
        """Clip ``w`` from below at ``epsilon``."""
        return ops.maximum(w, ops.cast(self.epsilon, w.dtype))

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="libspn_keras")
class GreaterEqualEpsilonNormalized(keras.constraints.Constraint):
    """Constrains the weight to be greater than or equal to epsilon and then normalizes along ``axis``.

    Args:
        epsilon: Constant, usually small non-zero.
        axis: Axis along which the weights are normalized to sum to one (the input-node axis of sums, ``-2``).

    Example:
        >>> import numpy as np
        >>> c = GreaterEqualEpsilonNormalized(epsilon=1e-10, axis=-2)
        >>> np.asarray(c(np.array([[1.0], [3.0]], "float32"))).ravel().tolist()
        [0.25, 0.75]
    """

    def __init__(self, epsilon: float = 1e-10, axis: int = -2) -> None:
        _check_epsilon("GreaterEqualEpsilonNormalized", epsilon)
        self.epsilon = float(epsilon)
        self.axis = int(axis)

    def __call__(self, w: Any) -> Any:
        """Clip ``w`` from below at ``epsilon`` and normalize along ``axis``."""
        clipped = ops.maximum(w, ops.cast(self.epsilon, w.dtype))
        return clipped / ops.sum(clipped, axis=self.axis, keepdims=True)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"epsilon": self.epsilon, "axis": self.axis}
