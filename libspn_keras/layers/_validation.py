"""Argument and shape checks shared by all layers, with messages that name the layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_positive_int(layer: str, name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise a ``ValueError`` quoting it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 1:
        raise ValueError(f"{layer} expects {name} to be a positive integer. Received: {name}={value!r}")
    return int(value)


def check_rank(layer: str, input_shape: Sequence[Any], rank: int, layout: str) -> None:
    """Raise a ``ValueError`` unless ``input_shape`` (batch included) has ``rank`` axes."""
    if len(input_shape) != rank:
        raise ValueError(
            f"Layer '{layer}' expects inputs of rank {rank} with layout {layout}. "
            f"Received: input_shape={tuple(input_shape)}"
        )


def check_float_dtype(layer: str, dtype: Any) -> None:
    """Raise a ``TypeError`` unless ``dtype`` is a floating dtype."""
    if "float" not in str(dtype):
        raise TypeError(f"Layer '{layer}' expects floating-point log-probabilities. Received: dtype={dtype}")


# Keras shapes: a tuple of ints with ``None`` for unknown sizes (usually the batch). Arithmetic on entries is only
# done after ``build`` checked that the entries involved are known, hence ``Any``.
Shape = tuple[Any, ...]
