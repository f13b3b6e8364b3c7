"""Argument and shape checks shared by all layers, with messages that name the layer."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (``bool`` excluded)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(layer: str, name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise a ``ValueError`` quoting it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer() or value < 1:
        raise ValueError(f"{layer} expects {name} to be a positive integer. Received: {name}={value!r}")
    return int(float(value))


def check_rank(layer: str, input_shape: Sequence[Any], rank: int, layout: str) -> None:
    """Raise a ``ValueError`` unless ``input_shape`` (batch included) has ``rank`` axes."""
    if len(input_shape) != rank:
        raise ValueError(
            f"Layer '{layer}' expects inputs of rank {rank} with layout {layout}. "
            f"Received: input_shape={tuple(input_shape)}"
        )


def check_float_dtype(layer: str, dtype: Any, what: str = "log-probabilities") -> None:
    """Raise a ``TypeError`` quoting ``what`` the layer expects unless ``dtype`` is a floating dtype."""
    name = getattr(dtype, "name", dtype)
    if "float" not in str(name):
        raise TypeError(f"Layer '{layer}' expects floating-point {what}. Received: dtype={name}")


# Keras shapes: a tuple of ints with ``None`` for unknown sizes (usually the batch). Arithmetic on entries is only
# done after ``build`` checked that the entries involved are known, hence ``Any``.
Shape = tuple[Any, ...]


def initial_value(variable: Any) -> np.ndarray | None:
    """Value of a freshly created weight as a NumPy array, or ``None`` where it is not available yet.

    (A layer built lazily inside a ``tf.function``, e.g. the first ``fit`` step, may get a weight whose value is
    only set when the graph runs; build-time value checks are then skipped.)
    """
    with tf.init_scope():
        value = np.asarray(keras.ops.convert_to_numpy(variable))
    return value if value.shape == tuple(variable.shape) else None


def check_linear_accumulators(layer: str, accumulators: Any) -> None:
    """Raise a ``ValueError`` unless initial linear accumulators ``[..., num_in, num_out]`` give valid weights.

    Every entry must be finite and non-negative and every sum (column) needs a positive total, since the weights
    are the accumulators divided by that total.
    """
    values = initial_value(accumulators)
    if values is None:
        return
    totals = values.sum(axis=-2)
    if not np.all(np.isfinite(values)) or values.min() < 0 or totals.min() <= 0:
        raise ValueError(
            f"Layer '{layer}' expects accumulator_initializer to give finite, non-negative linear accumulators with "
            "a positive total over the inputs of every sum (the weights are the accumulators divided by it). "
            f"Received: min={values.min()}, smallest total={totals.min()}"
        )


def checked_initializer(layer: str, name: str, initializer: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``initializer`` (the layer's argument ``name``) so that values of another shape raise a ``ValueError``.

    Keras 3's ``keras.initializers.Constant`` broadcasts its value to the requested shape instead of reshaping it
    (as ``tf.keras`` 2 did), so an array of the right size in another shape silently gives other values, or a
    broadcasting error from deep inside Keras. The error names the layer, the argument and both shapes.

    Example:
        >>> import keras, numpy as np
        >>> init = checked_initializer("root_sum", "accumulator_initializer", keras.initializers.Constant(np.ones(3)))
        >>> init((3, 1))
        Traceback (most recent call last):
        ...
        ValueError: Layer 'root_sum' expects accumulator_initializer to give values of shape (3, 1). ...
    """

    def initialize(shape: Any, dtype: Any = None) -> Any:
        expected = tuple(int(size) for size in shape)
        value = getattr(getattr(initializer, "initializer", initializer), "value", None)  # Constant, maybe wrapped
        received = "an initializer that fails" if value is None else f"a value of shape {np.shape(value)}"
        hint = (
            f"{name} to give values of shape {expected}. keras.initializers.Constant broadcasts its value instead of "
            "reshaping it (Keras 3), so pass an array of exactly this shape (e.g. np.reshape(value, shape))."
        )
        try:
            values = initializer(shape, dtype=dtype)
        except (ValueError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(f"Layer '{layer}' expects {hint} Received: {received}") from error
        if tuple(values.shape) != expected:
            raise ValueError(f"Layer '{layer}' expects {hint} Received: values of shape {tuple(values.shape)}")
        return values

    return initialize
