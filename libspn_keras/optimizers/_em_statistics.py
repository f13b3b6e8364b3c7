"""Marks variables whose 'gradients' are EM statistics rather than derivatives."""

from __future__ import annotations

from typing import Any

_FLAG = "_libspn_keras_em_statistic"


def mark_em_statistic(variable: Any) -> None:
    """Mark ``variable`` as an accumulator of EM statistics (updated by ``OnlineExpectationMaximization``)."""
    setattr(variable, _FLAG, True)


def is_em_statistic(variable: Any) -> bool:
    """Whether ``variable`` was marked with ``mark_em_statistic``."""
    return bool(getattr(variable, _FLAG, False))
