"""Sum op whose backward pass is the ordinary gradient."""

from __future__ import annotations

from typing import Any, ClassVar

import keras

from libspn_keras.sum_ops._base import SumOpBase


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpGradBackprop(SumOpBase):
    """Sum op primitive with gradient in backpropagation when computed through TensorFlow's autograd engine.

    Internally, weighted sums are computed with default gradients for all ops being used.

    Args:
        logspace_accumulators: If provided overrides default log-space choice. For a ``SumOpGradBackprop`` the
            default is ``True``.

    Example:
        >>> op = SumOpGradBackprop()
        >>> op.resolve_logspace_accumulators(None, "dense_sum")
        True
    """

    default_logspace_accumulators: ClassVar[bool] = True

    def __init__(self, logspace_accumulators: bool | None = None) -> None:
        self.logspace_accumulators = logspace_accumulators

    def resolve_logspace_accumulators(self, logspace_accumulators: bool | None, layer_name: str) -> bool:
        """Resolve the layer's choice, falling back on this op's ``logspace_accumulators``, then on ``True``."""
        if logspace_accumulators is None and self.logspace_accumulators is not None:
            return bool(self.logspace_accumulators)
        return super().resolve_logspace_accumulators(logspace_accumulators, layer_name)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"logspace_accumulators": self.logspace_accumulators}
