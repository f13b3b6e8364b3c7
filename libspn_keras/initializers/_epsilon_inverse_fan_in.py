"""Constant initializer epsilon / fan-in for (unweighted) hard EM."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from libspn_keras.initializers._checks import check_axis, check_axis_of_shape, is_number


@keras.saving.register_keras_serializable(package="libspn_keras")
class EpsilonInverseFanIn(keras.initializers.Initializer):
    r"""Initializes all values in a tensor with :math:`\epsilon K^{-1}`, where :math:`K` is the size of ``axis``.

    This is particularly useful for (unweighted) hard EM learning, where accumulators start (almost) empty, and
    should generally be avoided otherwise.

    Args:
        axis: The axis for input nodes so that :math:`K^{-1}` is the inverse fan in. Usually ``-2``.
        epsilon: A small non-zero constant.

    Raises:
        ValueError: If ``epsilon`` is not positive, ``axis`` is not an integer, or (when called) ``axis`` is not an
            axis of ``shape``.

    Example:
        >>> import numpy as np
        >>> np.asarray(EpsilonInverseFanIn(axis=-2, epsilon=1.0)((4, 1))).ravel().tolist()
        [0.25, 0.25, 0.25, 0.25]
    """

    def __init__(self, axis: int = -2, epsilon: float = 1e-4) -> None:
        if not is_number(epsilon) or not epsilon > 0:
            raise ValueError(f"EpsilonInverseFanIn expects epsilon > 0. Received: epsilon={epsilon!r}")
        self.axis = check_axis("EpsilonInverseFanIn", axis)
        self.epsilon = float(epsilon)

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        """Return a constant tensor of ``shape``."""
        dtype = dtype or keras.config.floatx()
        shape = tuple(shape)
        check_axis_of_shape("EpsilonInverseFanIn", self.axis, shape)
        return ops.full(shape, self.epsilon / shape[self.axis], dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"axis": self.axis, "epsilon": self.epsilon}
