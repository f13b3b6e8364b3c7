"""Helpers to represent sum accumulators in log-space."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="libspn_keras")
class LogspaceWrapperInitializer(keras.initializers.Initializer):
    """Initializer returning the logarithm of the values of a wrapped (linear-space) initializer.

    Non-positive values of the wrapped initializer are clipped at the smallest normal number of the dtype before
    the logarithm, so the result is always finite.

    Args:
        initializer: The linear-space initializer to wrap.

    Example:
        >>> import numpy as np
        >>> init = LogspaceWrapperInitializer(keras.initializers.Constant(1.0))
        >>> np.asarray(init((2,))).tolist()
        [0.0, 0.0]
    """

    def __init__(self, initializer: keras.initializers.Initializer | dict[str, Any]) -> None:
        if isinstance(initializer, dict):
            initializer = keras.saving.deserialize_keras_object(initializer)
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        """Draw from the wrapped initializer and take the logarithm."""
        dtype = dtype or keras.config.floatx()
        values = ops.cast(self.initializer(shape, dtype=dtype), dtype)
        tiny = 1e-300 if str(dtype) == "float64" else 1e-37
        return ops.log(ops.maximum(values, ops.cast(tiny, dtype)))

    def get_config(self) -> dict[str, Any]:
        """Return the wrapped initializer, serialized."""
        return {"initializer": keras.saving.serialize_keras_object(self.initializer)}


def logspace_wrapper_initializer(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    """Wrap an initializer so that it produces log-space accumulators.

    Args:
        initializer: Linear-space initializer (the argument's name is LibSPN Keras 0.6's).

    Returns:
        An initializer returning ``log(initializer(shape))``. Already wrapped initializers are returned as is.

    Example:
        >>> import numpy as np, keras
        >>> init = logspace_wrapper_initializer(initializer=keras.initializers.Constant(np.e))
        >>> np.round(np.asarray(init((1,))), 5).tolist()
        [1.0]
    """
    if isinstance(initializer, LogspaceWrapperInitializer):
        return initializer
    return LogspaceWrapperInitializer(initializer)


__all__ = ["LogspaceWrapperInitializer", "logspace_wrapper_initializer"]
