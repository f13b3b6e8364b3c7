"""Global default constraints of linear and log-space sum accumulators."""

from __future__ import annotations

import keras

from libspn_keras.constraints._greater_equal_epsilon import GreaterEqualEpsilonNormalized
from libspn_keras.constraints._log_normalized import LogNormalized

# The original LibSPN Keras' defaults: accumulators are kept normalized per sum (axis -2).
_DEFAULT_LINEAR: keras.constraints.Constraint | None = GreaterEqualEpsilonNormalized(epsilon=1e-10, axis=-2)
_DEFAULT_LOGSPACE: keras.constraints.Constraint | None = LogNormalized(axis=-2)


def _check(constraint: keras.constraints.Constraint | None, fn: str) -> None:
    if constraint is not None and not isinstance(constraint, keras.constraints.Constraint):
        raise TypeError(f"{fn} expects a keras.constraints.Constraint or None. Received: {constraint!r}")


def set_default_linear_accumulator_constraint(constraint: keras.constraints.Constraint | None) -> None:
    """Set the constraint applied to linear accumulators after each update.

    Args:
        constraint: A Keras constraint, or ``None`` for no constraint. The factory default is the original LibSPN
            Keras' ``GreaterEqualEpsilonNormalized(1e-10)``, which keeps weights strictly positive and the
            accumulators normalized per sum. ``GreaterEqualEpsilon()`` keeps unnormalized accumulators instead
            (needed for cumulative counts, ``OnlineExpectationMaximization(gliding_average=False)``).

    Example:
        >>> import libspn_keras as spnk
        >>> spnk.set_default_linear_accumulator_constraint(spnk.constraints.GreaterEqualEpsilon(1e-6))
        >>> spnk.get_default_linear_accumulator_constraint().epsilon
        1e-06
        >>> spnk.set_default_linear_accumulator_constraint(spnk.constraints.GreaterEqualEpsilonNormalized(1e-10))
    """
    global _DEFAULT_LINEAR
    _check(constraint, "set_default_linear_accumulator_constraint")
    _DEFAULT_LINEAR = constraint


def get_default_linear_accumulator_constraint() -> keras.constraints.Constraint | None:
    """Get the default constraint of linear accumulators.

    Returns:
        The constraint set with ``set_default_linear_accumulator_constraint``.
    """
    return _DEFAULT_LINEAR


def set_default_logspace_accumulator_constraint(constraint: keras.constraints.Constraint | None) -> None:
    """Set the constraint applied to log-space accumulators after each update.

    Args:
        constraint: A Keras constraint, or ``None`` for no constraint (log-space accumulators are normalized by a
            log-softmax in the forward pass either way). The factory default is the original LibSPN Keras'
            ``LogNormalized()``.

    Example:
        >>> import libspn_keras as spnk
        >>> spnk.set_default_logspace_accumulator_constraint(None)
        >>> spnk.get_default_logspace_accumulator_constraint() is None
        True
        >>> spnk.set_default_logspace_accumulator_constraint(spnk.constraints.LogNormalized())
    """
    global _DEFAULT_LOGSPACE
    _check(constraint, "set_default_logspace_accumulator_constraint")
    _DEFAULT_LOGSPACE = constraint


def get_default_logspace_accumulator_constraint() -> keras.constraints.Constraint | None:
    """Get the default constraint of log-space accumulators.

    Returns:
        The constraint set with ``set_default_logspace_accumulator_constraint``.
    """
    return _DEFAULT_LOGSPACE


def set_default_linear_accumulators_constraint(op: keras.constraints.Constraint | None) -> None:
    """Set the default constraint of linear accumulators (LibSPN Keras 0.6 name and argument).

    Same as ``set_default_linear_accumulator_constraint(op)``.

    Args:
        op: A Keras constraint, or ``None`` for no constraint.

    Raises:
        TypeError: If ``op`` is neither a Keras constraint nor ``None``.

    Example:
        >>> import libspn_keras as spnk
        >>> before = spnk.get_default_linear_accumulators_constraint()
        >>> spnk.set_default_linear_accumulators_constraint(op=None)
        >>> spnk.get_default_linear_accumulator_constraint() is None
        True
        >>> spnk.set_default_linear_accumulators_constraint(before)
    """
    set_default_linear_accumulator_constraint(op)


def get_default_linear_accumulators_constraint() -> keras.constraints.Constraint | None:
    """Get the default constraint of linear accumulators (LibSPN Keras 0.6 name).

    Returns:
        The same as ``get_default_linear_accumulator_constraint()``.
    """
    return get_default_linear_accumulator_constraint()


def set_default_logspace_accumulators_constraint(op: keras.constraints.Constraint | None) -> None:
    """Set the default constraint of log-space accumulators (LibSPN Keras 0.6 name and argument).

    Same as ``set_default_logspace_accumulator_constraint(op)``.

    Args:
        op: A Keras constraint, or ``None`` for no constraint.

    Raises:
        TypeError: If ``op`` is neither a Keras constraint nor ``None``.

    Example:
        >>> import libspn_keras as spnk
        >>> before = spnk.get_default_logspace_accumulators_constraint()
        >>> spnk.set_default_logspace_accumulators_constraint(op=spnk.constraints.LogNormalized())
        >>> type(spnk.get_default_logspace_accumulator_constraint()).__name__
        'LogNormalized'
        >>> spnk.set_default_logspace_accumulators_constraint(before)
    """
    set_default_logspace_accumulator_constraint(op)


def get_default_logspace_accumulators_constraint() -> keras.constraints.Constraint | None:
    """Get the default constraint of log-space accumulators (LibSPN Keras 0.6 name).

    Returns:
        The same as ``get_default_logspace_accumulator_constraint()``.
    """
    return get_default_logspace_accumulator_constraint()
