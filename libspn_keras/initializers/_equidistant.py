"""Equidistant initializer for leaf locations."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from libspn_keras.initializers._checks import check_axis, check_axis_of_shape


@keras.saving.register_keras_serializable(package="libspn_keras")
class Equidistant(keras.initializers.Initializer):
    """Initializer that spaces values equidistantly along the component axis of a leaf's location.

    Leaf locations have shape ``[*variables, num_components, var_dimensionality]``, so by default the values are
    spaced along axis ``-2`` (the components; the original library's layout had them on the last axis) and
    broadcast over all other axes. Pass ``axis=-1`` to space the last axis of an arbitrary tensor.

    Args:
        minval: Lower bound of the range of values to generate.
        maxval: Upper bound of the range of values to generate.
        axis: Axis along which values are spaced. If the tensor has rank 1, the only axis is used.

    Raises:
        ValueError: If ``maxval < minval``, ``axis`` is not an integer, or (when called on a tensor of rank > 1)
            ``axis`` is not an axis of ``shape``.

    Example:
        >>> import numpy as np
        >>> np.asarray(Equidistant(0.0, 1.0)((2, 3, 1)))[0, :, 0].tolist()
        [0.0, 0.5, 1.0]
        >>> np.asarray(Equidistant(0.0, 1.0, axis=-1)((1, 3))).tolist()
        [[0.0, 0.5, 1.0]]
    """

    def __init__(self, minval: float = 0.0, maxval: float = 1.0, axis: int = -2) -> None:
        if maxval < minval:
            raise ValueError(f"Equidistant expects maxval >= minval. Received: minval={minval}, maxval={maxval}")
        self.minval = float(minval)
        self.maxval = float(maxval)
        self.axis = check_axis("Equidistant", axis)

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        """Fill ``axis`` with ``linspace(minval, maxval, shape[axis])``, broadcast over the other axes."""
        dtype = dtype or keras.config.floatx()
        shape = tuple(shape)
        if len(shape) > 1:
            check_axis_of_shape("Equidistant", self.axis, shape)
        axis = self.axis % len(shape) if len(shape) > 1 else 0
        values = ops.linspace(self.minval, self.maxval, shape[axis], dtype=dtype)
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return ops.broadcast_to(ops.reshape(values, view), shape)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"minval": self.minval, "maxval": self.maxval, "axis": self.axis}
