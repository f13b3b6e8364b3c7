"""Marks variables whose 'gradients' are EM statistics rather than derivatives, and checks who updates them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_FLAG = "_libspn_keras_em_statistic"
_AXIS = "_libspn_keras_em_outcome_axis"
_NORMALIZED = "_libspn_keras_em_normalized_counts"
_GRADIENT_SUM = "_libspn_keras_gradient_sum_accumulators"

_ALLOW_GRADIENT_OPTIMIZERS = False


def mark_em_statistic(variable: Any, outcome_axis: int | None = None, normalized_counts: bool = False) -> None:
    """Mark ``variable`` as an accumulator of EM statistics (updated by ``OnlineExpectationMaximization``).

    Args:
        variable: The variable.
        outcome_axis: The axis along which the statistics count mutually exclusive outcomes (the children of a
            sum: ``-2`` for sum accumulators), along which counts may be normalized; ``None`` for statistics that
            are not counts of outcomes (leaf moments).
        normalized_counts: Whether the original LibSPN Keras normalized the counts of each sum along
            ``outcome_axis`` before its online EM update (its soft EM op did, its hard EM ops did not).
    """
    setattr(variable, _FLAG, True)
    setattr(variable, _AXIS, outcome_axis)
    setattr(variable, _NORMALIZED, bool(normalized_counts and outcome_axis is not None))


def mark_gradient_sum_accumulators(variable: Any) -> None:
    """Mark ``variable`` as the accumulators of a sum layer whose sum op back-propagates gradients."""
    setattr(variable, _GRADIENT_SUM, True)


def is_em_statistic(variable: Any) -> bool:
    """Whether ``variable`` was marked with ``mark_em_statistic``."""
    return bool(getattr(variable, _FLAG, False))


def em_outcome_axis(variable: Any) -> int | None:
    """The ``outcome_axis`` ``variable`` was marked with (``None`` if none or unmarked)."""
    axis = getattr(variable, _AXIS, None)
    return None if axis is None else int(axis)


def has_normalized_counts(variable: Any) -> bool:
    """Whether ``variable`` was marked with ``normalized_counts=True`` (and an ``outcome_axis``)."""
    return bool(getattr(variable, _NORMALIZED, False))


def is_gradient_sum_accumulators(variable: Any) -> bool:
    """Whether ``variable`` was marked with ``mark_gradient_sum_accumulators``."""
    return bool(getattr(variable, _GRADIENT_SUM, False))


def variable_names(variables: Iterable[Any]) -> str:
    """The paths (``layer/variable``) of ``variables``, comma-separated, for messages."""
    return ", ".join(str(getattr(variable, "path", getattr(variable, "name", variable))) for variable in variables)


def allow_gradient_optimizers_with_em_statistics(allow: bool = True) -> None:
    """Let gradient optimizers (``Adam``, ``SGD``, ...) update EM statistics without an error.

    An EM sum op (``SumOpEMBackprop``, ``SumOpHardEMBackprop``, ``SumOpUnweightedHardEMBackprop``,
    ``SumOpSampleBackprop``) and a leaf with ``use_accumulators=True`` send counts, not derivatives, to their
    variables. A gradient optimizer would take those counts for gradients, so the first train step of a
    ``SumProductNetwork`` or ``SequentialSumProductNetwork`` compiled with one raises a ``ValueError``. Call this
    to train such a model with a gradient optimizer anyway, knowingly.

    Args:
        allow: Whether to allow it (``False`` restores the check).

    Raises:
        TypeError: If ``allow`` is not a ``bool``.

    Example:
        >>> from libspn_keras import optimizers
        >>> optimizers.allow_gradient_optimizers_with_em_statistics(True)
        >>> optimizers.allow_gradient_optimizers_with_em_statistics(False)
    """
    global _ALLOW_GRADIENT_OPTIMIZERS
    if not isinstance(allow, bool):
        raise TypeError(f"allow_gradient_optimizers_with_em_statistics expects a bool. Received: allow={allow!r}")
    _ALLOW_GRADIENT_OPTIMIZERS = allow


def check_optimizer_for_em_statistics(optimizer: Any, variables: Iterable[Any]) -> None:
    """Raise if a gradient optimizer would update EM statistics among ``variables``.

    ``SumProductNetwork``, ``SequentialSumProductNetwork`` and ``DynamicSumProductNetwork`` call it at their first
    train step. Keras has no public hook that sees both a model's optimizer and its variables, so a plain Keras model
    (``keras.Sequential``, ``keras.Model``) of SPN layers does not: call it after ``compile`` and before ``fit``.

    Args:
        optimizer: The model's optimizer (``None`` if not compiled).
        variables: The variables it updates, e.g. ``model.trainable_variables``.

    Raises:
        ValueError: If ``optimizer`` is not an ``OnlineExpectationMaximization`` and some of ``variables`` hold EM
            statistics, unless ``allow_gradient_optimizers_with_em_statistics()`` was called.

    Example:
        >>> import keras
        >>> from libspn_keras import layers, losses, optimizers, sum_ops
        >>> model = keras.Sequential([
        ...     keras.Input((2,)),
        ...     layers.FlatToRegions(num_decomps=1),
        ...     layers.IndicatorLeaf(num_components=2),
        ...     layers.ReduceProduct(num_factors=2),
        ...     layers.RootSum(return_weighted_child_logits=False, sum_op=sum_ops.SumOpEMBackprop(), name="root"),
        ... ])
        >>> model.compile(optimizer=keras.optimizers.Adam(), loss=losses.NegativeLogLikelihood())
        >>> optimizers.check_optimizer_for_em_statistics(model.optimizer, model.trainable_variables)
        Traceback (most recent call last):
        ...
        ValueError: Adam is a gradient optimizer, but these variables receive EM counts instead of gradients ...
        >>> model.compile(optimizer=optimizers.OnlineExpectationMaximization(), loss=losses.NegativeLogLikelihood())
        >>> optimizers.check_optimizer_for_em_statistics(model.optimizer, model.trainable_variables)
    """
    from libspn_keras.optimizers._online_em import OnlineExpectationMaximization

    if optimizer is None or isinstance(optimizer, OnlineExpectationMaximization) or _ALLOW_GRADIENT_OPTIMIZERS:
        return
    counted = [variable for variable in variables if is_em_statistic(variable)]
    if counted:
        raise ValueError(
            f"{type(optimizer).__name__} is a gradient optimizer, but these variables receive EM counts instead of "
            f"gradients (from an EM sum op or a leaf with use_accumulators=True): {variable_names(counted)}. "
            "Compile with libspn_keras.optimizers.OnlineExpectationMaximization(), or train by gradient with "
            "sum_op=SumOpGradBackprop() (and use_accumulators=False in leaves). To use the counts as gradients "
            "anyway, call libspn_keras.optimizers.allow_gradient_optimizers_with_em_statistics()."
        )
