"""Backend-specific pieces of the structure layers (products, scopes, sums, validation) not in ``keras.ops``.

Each function has one branch per backend; frameworks are imported lazily inside them, so that importing the
package on JAX does not import TensorFlow. (To be folded into ``libspn_keras.math._backend``.)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from libspn_keras.math._backend import Tensor, backend


@functools.cache
def value_check_error() -> type[Exception]:
    """The exception a failed value check of data raises where values are known (eagerly).

    On TensorFlow it is an ``InvalidArgumentError`` (as ``tf.debugging`` assertions raise eagerly and in a graph),
    built from the message alone; elsewhere a ``ValueError``.

    Example:
        >>> issubclass(value_check_error(), Exception)
        True
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        class InvalidValuesError(tf.errors.InvalidArgumentError):  # type: ignore[misc]
            """``tf.errors.InvalidArgumentError`` raised eagerly by a failed value check."""

            def __init__(self, message: str, *op_error_args: Any) -> None:
                # (message) raised here; (node_def, op, message[, error_code]) when Keras re-raises it with context.
                super().__init__(*((None, None, message) if not op_error_args else (message, *op_error_args)))

        return InvalidValuesError
    return ValueError


def initializer_errors() -> tuple[type[Exception], ...]:
    """The exceptions an initializer raises for values that do not fit the requested shape."""
    if backend() == "tensorflow":
        import tensorflow as tf

        return (ValueError, tf.errors.InvalidArgumentError)
    return (ValueError, TypeError)


def read_variable(variable: Any) -> np.ndarray | None:
    """The current value of ``variable`` as a NumPy array, also while a function is traced; ``None`` if unknown.

    On TensorFlow the value is read outside any graph being built (``tf.init_scope``). On JAX a variable read while
    a function is traced is a tracer: ``None`` then.
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        with tf.init_scope():
            return np.asarray(keras.ops.convert_to_numpy(variable))
    try:
        return np.asarray(keras.ops.convert_to_numpy(variable))
    except Exception:  # a tracer (jax.errors.TracerArrayConversionError and relatives)
        return None


def graph_checked_values(values: Tensor, valid: Tensor, message: str) -> Tensor:
    """``values``, with a check that fails with ``message`` when the TensorFlow graph computing them runs.

    For initial values made inside a traced TensorFlow function: the check is a data dependency
    (``check_numerics`` of zeros, NaN where ``valid`` is ``False``), since a variable's initial value may be lifted
    out of the traced function and control dependencies are not lifted with it. Elsewhere (a traced JAX function)
    the values are returned unchecked.
    """
    if backend() != "tensorflow":
        return values
    import tensorflow as tf

    zeros = tf.zeros_like(values)
    flags = tf.debugging.check_numerics(tf.where(valid, zeros, zeros + np.nan), message)
    return values + flags


def add_n(tensors: Sequence[Tensor]) -> Tensor:
    """The sum of ``tensors`` (same shape and dtype): one ``AddN`` on TensorFlow, chained additions elsewhere.

    Example:
        >>> import keras
        >>> keras.ops.convert_to_numpy(add_n([np.ones(2), np.ones(2), np.ones(2)])).tolist()
        [3.0, 3.0]
    """
    if backend() == "tensorflow":
        import tensorflow as tf

        return tf.add_n(list(tensors))
    return functools.reduce(keras.ops.add, tensors)


def widest_int_dtype() -> str:
    """The widest integer dtype the backend computes in: ``"int64"``, or ``"int32"`` on JAX without x64."""
    if backend() == "jax":
        import jax

        return "int64" if jax.config.read("jax_enable_x64") else "int32"
    return "int64"
