"""Global default sum op used by sum layers that are not given one explicitly."""

from __future__ import annotations

from libspn_keras.sum_ops._base import SumOpBase
from libspn_keras.sum_ops._grad import SumOpGradBackprop

_DEFAULT_SUM_OP: SumOpBase = SumOpGradBackprop()


def set_default_sum_op(op: SumOpBase) -> None:
    """Set default sum op to conveniently use it throughout an SPN architecture.

    The default is read once, when a sum layer is constructed, and stored in the layer (and its config), so a
    saved model never depends on the default of the process that loads it.

    Args:
        op: Implementation of sum op with corresponding backward pass definitions.

    Raises:
        TypeError: If ``op`` is not a ``SumOpBase`` instance.

    Example:
        >>> import libspn_keras as spnk
        >>> spnk.set_default_sum_op(spnk.sum_ops.SumOpGradBackprop())
        >>> type(spnk.get_default_sum_op()).__name__
        'SumOpGradBackprop'
    """
    global _DEFAULT_SUM_OP
    if not isinstance(op, SumOpBase):
        raise TypeError(f"set_default_sum_op expects a SumOpBase instance. Received: op={op!r}")
    _DEFAULT_SUM_OP = op


def get_default_sum_op() -> SumOpBase:
    """Get default sum op.

    Returns:
        A ``SumOpBase`` instance that was set with ``set_default_sum_op`` (``SumOpGradBackprop()`` if never set).
    """
    return _DEFAULT_SUM_OP
