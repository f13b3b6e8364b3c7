"""Base class of sum ops: one forward pass, each op contributes its backward rule."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import tensorflow as tf

from libspn_keras.math import (
    WeightedSumParts,
    log_normalized_weights,
    log_weighted_sum,
    log_weighted_sum_parts,
    normalized_weights,
)


class SumOpBase(abc.ABC):
    """Defines how the weighted sums of sum layers are computed forward and backward.

    Every sum layer (``DenseSum``, ``RootSum`` and the spatial sums) delegates its weighted sum to a sum op.
    All sum ops share one forward pass (a log-space weighted sum computed as one batched matmul with
    max-subtraction, ``libspn_keras.math.log_weighted_sum``); they differ only in what flows backward:
    gradients for ``SumOpGradBackprop``, (hard) EM signals or sampling signals for the others.

    Subclasses set ``default_logspace_accumulators`` (the choice when a layer passes ``None``) and
    ``supports_logspace_accumulators``; ops with a custom backward pass override ``backward``.

    **Backward signals of custom ops.** For a custom op, the "gradient" that reaches the accumulators is the
    (negated, batch-averaged when the loss averages) *count* of each edge: how often, in expectation (soft EM) or
    along the selected path (hard EM, sampling), the edge is used. ``OnlineExpectationMaximization`` turns these
    counts into accumulator updates. The signal that reaches the children is the count of each child.
    """

    #: Whether ``backward`` replaces the autodiff gradient.
    has_custom_backward: ClassVar[bool] = False

    default_logspace_accumulators: ClassVar[bool] = True
    supports_logspace_accumulators: ClassVar[bool] = True

    def resolve_logspace_accumulators(self, logspace_accumulators: bool | None, layer_name: str) -> bool:
        """Resolve a layer's ``logspace_accumulators`` argument against this op.

        Args:
            logspace_accumulators: The layer's argument; ``None`` selects this op's default.
            layer_name: Name of the layer, quoted in errors.

        Returns:
            Whether the layer represents its accumulators in log-space.

        Raises:
            ValueError: If log-space accumulators are requested from an op that does not support them.
        """
        if logspace_accumulators is None:
            return self.default_logspace_accumulators
        if logspace_accumulators and not self.supports_logspace_accumulators:
            raise ValueError(
                f"Layer '{layer_name}': {type(self).__name__} updates linear accumulators with EM counts and "
                "cannot be used with log-space accumulators. Received: logspace_accumulators=True; "
                "use logspace_accumulators=False (or None)."
            )
        return bool(logspace_accumulators)

    def weighted_sum(self, x: tf.Tensor, accumulators: tf.Tensor, logspace_accumulators: bool) -> tf.Tensor:
        """Compute log-space weighted sums over the last axis of ``x``.

        Args:
            x: Log-probabilities of the children, ``[batch, *middle, num_in]``.
            accumulators: Unnormalized weights, ``[*middle, num_in, num_out]`` or ``[num_in, num_out]``.
            logspace_accumulators: Whether ``accumulators`` are log-space values.

        Returns:
            Log-probabilities of the sums, ``[batch, *middle, num_out]``.
        """
        if not self.has_custom_backward:
            return log_weighted_sum(x, normalized_weights(accumulators, logspace_accumulators))
        return self._custom_weighted_sum(x, tf.convert_to_tensor(accumulators), logspace_accumulators)

    def _custom_weighted_sum(self, x: tf.Tensor, accumulators: tf.Tensor, logspace_accumulators: bool) -> tf.Tensor:
        @tf.custom_gradient
        def forward(x: tf.Tensor, accumulators: tf.Tensor) -> tuple[tf.Tensor, Any]:
            weights = normalized_weights(accumulators, logspace_accumulators)
            parts = log_weighted_sum_parts(x, weights)

            def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                return self.backward(x, weights, parts, dy)

            return parts.log_sums, grad

        return forward(x, accumulators)

    def backward(
        self, x: tf.Tensor, weights: tf.Tensor, parts: WeightedSumParts, dy: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Backward rule of ops with ``has_custom_backward``.

        Args:
            x: Children, ``[batch, *middle, num_in]``.
            weights: Normalized linear weights, ``[*middle, num_in, num_out]`` or ``[num_in, num_out]``.
            parts: Forward intermediates.
            dy: Signal arriving at the sums, ``[batch, *middle, num_out]``.

        Returns:
            The signal for the children (shaped like ``x``) and the edge counts (shaped like ``weights``).
        """
        raise NotImplementedError(f"{type(self).__name__} uses autodiff and has no custom backward rule.")

    def weighted_children(self, x: tf.Tensor, accumulators: tf.Tensor, logspace_accumulators: bool) -> tf.Tensor:
        """Compute the weighted children ``x_i + log w_i`` of a single root sum (e.g. class logits).

        Args:
            x: Log-probabilities of the children, ``[batch, num_in]``.
            accumulators: Unnormalized weights, ``[num_in, 1]``.
            logspace_accumulators: Whether ``accumulators`` are log-space values.

        Returns:
            The weighted child log-probabilities, ``[batch, num_in]``.
        """
        if not self.has_custom_backward:
            return x + tf.transpose(log_normalized_weights(accumulators, logspace_accumulators))

        @tf.custom_gradient
        def forward(x: tf.Tensor, accumulators: tf.Tensor) -> tuple[tf.Tensor, Any]:
            def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                # The signal of each child is its own count; the edge counts are summed over the batch.
                return dy, tf.transpose(tf.reduce_sum(dy, axis=0, keepdims=True))

            return x + tf.transpose(log_normalized_weights(accumulators, logspace_accumulators)), grad

        return forward(x, tf.convert_to_tensor(accumulators))

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SumOpBase:
        """Create an instance from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))
