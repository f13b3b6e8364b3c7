"""Argument checks shared by the initializers."""

from __future__ import annotations

import numbers
from typing import Any


def check_axis(initializer: str, axis: Any) -> int:
    """Return ``axis`` as an int, raising a ``ValueError`` that names ``initializer`` unless it is an integer."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"{initializer} expects axis to be an integer. Received: axis={axis!r}")
    return int(axis)


def check_axis_of_shape(initializer: str, axis: int, shape: Any) -> None:
    """Raise a ``ValueError`` unless ``axis`` is an axis of a tensor of ``shape``."""
    rank = len(tuple(shape))
    if not -rank <= axis < rank:
        raise ValueError(
            f"{initializer} works along axis {axis}, which a tensor of shape {tuple(shape)} does not have. "
            f"Received: axis={axis}"
        )


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (``bool`` excluded)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
