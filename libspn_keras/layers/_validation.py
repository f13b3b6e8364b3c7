"""Argument and shape checks shared by all layers, with messages that name the layer."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any


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
