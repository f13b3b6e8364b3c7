"""Marks variables whose 'gradients' are EM statistics rather than derivatives."""

from __future__ import annotations

from typing import Any

_FLAG = "_libspn_keras_em_statistic"
_AXIS = "_libspn_keras_em_outcome_axis"


def mark_em_statistic(variable: Any, outcome_axis: int | None = None) -> None:
    """Mark ``variable`` as an accumulator of EM statistics (updated by ``OnlineExpectationMaximization``).

    Args:
        variable: The variable.
        outcome_axis: The axis along which the statistics count mutually exclusive outcomes (the children of a
            sum: ``-2`` for sum accumulators), which ``OnlineExpectationMaximization(normalized_update=True)``
            normalizes; ``None`` for statistics that are not counts of outcomes (leaf moments).
    """
    setattr(variable, _FLAG, True)
    setattr(variable, _AXIS, outcome_axis)


def is_em_statistic(variable: Any) -> bool:
    """Whether ``variable`` was marked with ``mark_em_statistic``."""
    return bool(getattr(variable, _FLAG, False))


def em_outcome_axis(variable: Any) -> int | None:
    """The ``outcome_axis`` ``variable`` was marked with (``None`` if none or unmarked)."""
    axis = getattr(variable, _AXIS, None)
    return None if axis is None else int(axis)
