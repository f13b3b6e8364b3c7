"""Argument and shape checks shared by all layers, with messages that name the layer."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
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


def check_linear_accumulators(layer: str, accumulators: Any, constraint: Any = None) -> None:
    """Raise a ``ValueError`` unless initial linear accumulators ``[..., num_in, num_out]`` give valid weights.

    Every entry must be finite and non-negative and every sum (column) needs a positive total, since the weights
    are the accumulators divided by that total. ``constraint``, if given, is the linear accumulator constraint the
    initial values already passed through (named in the message).
    """
    values = initial_value(accumulators)
    if values is None:
        return
    totals = values.sum(axis=-2)
    if not np.all(np.isfinite(values)) or values.min() < 0 or totals.min() <= 0:
        after = "" if constraint is None else f" after linear_accumulator_constraint={type(constraint).__name__}"
        raise ValueError(
            f"Layer '{layer}' expects accumulator_initializer to give finite, non-negative linear accumulators with "
            f"a positive total over the inputs of every sum{after} (the weights are the accumulators divided by "
            f"it). Received: min={values.min()}, smallest total={totals.min()}"
        )
