"""Sum ops with EM and sampling signals in the backward pass."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import keras
import tensorflow as tf

from libspn_keras.math import WeightedSumParts, weight_equation
from libspn_keras.sum_ops._base import SumOpBase


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpEMBackprop(SumOpBase):
    r"""Sum op primitive with EM signals in backpropagation.

    These are dense EM signals as opposed to the other EM based instances of ``SumOpBase``: the count of edge
    :math:`(i, o)` is its expected usage :math:`n_{io} = r_o\, w_{io} e^{x_i - y_o}` given the count
    :math:`r_o` of the sum (the exact posterior of each child, i.e. the soft E-step), and each child receives
    :math:`\sum_o n_{io}`. Accumulators are linear (log-space accumulators are rejected).

    Example:
        >>> op = SumOpEMBackprop()
        >>> op.resolve_logspace_accumulators(None, "dense_sum")
        False
    """

    default_logspace_accumulators: ClassVar[bool] = False
    supports_logspace_accumulators: ClassVar[bool] = False
    has_custom_backward: ClassVar[bool] = True

    def backward(
        self, x: tf.Tensor, weights: tf.Tensor, parts: WeightedSumParts, dy: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Dense (soft) EM signals, computed without materializing per-edge tensors."""
        positive = parts.linear_sums > 0
        ratio = tf.where(positive, dy / tf.where(positive, parts.linear_sums, tf.ones_like(dy)), tf.zeros_like(dy))
        rank = x.shape.rank
        child_mass = tf.einsum(weight_equation(rank, weights.shape.rank, "Y,W->X"), ratio, weights)
        edge_mass = tf.einsum(weight_equation(rank, weights.shape.rank, "X,Y->W"), parts.scaled_children, ratio)
        return parts.scaled_children * child_mass, weights * edge_mass

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (none)."""
        return {}


class BaseSelectionSumOp(SumOpBase):
    """Base of ops that send each sum's count to one selected child (hard EM, unweighted hard EM, sampling).

    The selected child of sum ``o`` maximizes the selection logits (``argmax`` takes the first index on ties);
    with probability ``sample_prob`` it is instead drawn from the softmax of the selection logits (Gumbel-max).

    Args:
        sample_prob: Sampling probability in the range of [0, 1], or ``None`` (never sample).

    Raises:
        ValueError: If ``sample_prob`` is outside ``[0, 1]``.
    """

    default_logspace_accumulators: ClassVar[bool] = False
    supports_logspace_accumulators: ClassVar[bool] = False
    has_custom_backward: ClassVar[bool] = True

    def __init__(self, sample_prob: float | None = None) -> None:
        if sample_prob is not None and not 0.0 <= float(sample_prob) <= 1.0:
            raise ValueError(
                f"{type(self).__name__} expects sample_prob in [0, 1] or None. Received: sample_prob={sample_prob}"
            )
        self.sample_prob = None if sample_prob is None else float(sample_prob)

    @abc.abstractmethod
    def selection_logits(self, x: tf.Tensor, log_weights: tf.Tensor) -> tf.Tensor:
        """Logits ``[batch, *middle, num_out, num_in]`` from which each sum selects a child."""

    def backward(
        self, x: tf.Tensor, weights: tf.Tensor, parts: WeightedSumParts, dy: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Send each sum's count to its selected child."""
        logits = self.selection_logits(x, tf.math.log(weights))
        winners = tf.argmax(logits, axis=-1, output_type=tf.int32)
        if self.sample_prob:
            uniform = tf.random.uniform(tf.shape(logits), minval=1e-20, maxval=1.0, dtype=logits.dtype)
            sampled = tf.argmax(logits - tf.math.log(-tf.math.log(uniform)), axis=-1, output_type=tf.int32)
            if self.sample_prob < 1.0:
                use_sample = tf.random.uniform(tf.shape(winners), dtype=logits.dtype) < self.sample_prob
                sampled = tf.where(use_sample, sampled, winners)
            winners = sampled
        one_hot = tf.one_hot(winners, tf.shape(x)[-1], dtype=dy.dtype)  # [batch, *middle, num_out, num_in]
        rank = x.shape.rank
        child_counts = tf.einsum(weight_equation(rank, weights.shape.rank, "Yx,Y->X"), one_hot, dy)
        edge_counts = tf.einsum(weight_equation(rank, weights.shape.rank, "Yx,Y->W"), one_hot, dy)
        return child_counts, edge_counts

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"sample_prob": self.sample_prob}


def _weighted_logits(x: tf.Tensor, log_weights: tf.Tensor) -> tf.Tensor:
    # [batch, *middle, num_in, 1] + [*middle, num_in, num_out] -> [batch, *middle, num_out, num_in]
    return tf.linalg.matrix_transpose(x[..., tf.newaxis] + log_weights)


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpHardEMBackprop(BaseSelectionSumOp):
    """Sum op with hard EM signals in backpropagation when computed through TensorFlow's autograd engine.

    Each sum selects the child with the maximum weighted value ``x_i + log w_io`` (computed in the forward
    pass); the winner receives the sum's count, its siblings nothing.

    Args:
        sample_prob: Sampling probability in the range of [0, 1]. Sampling logits are taken from the normalized
            log probability of the children of each sum.

    Example:
        >>> SumOpHardEMBackprop(sample_prob=0.5)
        SumOpHardEMBackprop(sample_prob=0.5)
    """

    def selection_logits(self, x: tf.Tensor, log_weights: tf.Tensor) -> tf.Tensor:
        """Weighted child log-probabilities."""
        return _weighted_logits(x, log_weights)


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpUnweightedHardEMBackprop(BaseSelectionSumOp):
    """Sum op with hard EM signals in backpropagation when computed through TensorFlow's autograd engine.

    Instead of using weighted sum inputs to select the maximum child, it relies on unweighted child inputs,
    which has the advantage of alleviating a self-amplifying chain of hard EM signals in deep SPNs.

    Args:
        sample_prob: Sampling probability in the range of [0, 1]. Sampling logits are taken from the normalized
            log probability of the (unweighted) children of each sum.

    Example:
        >>> SumOpUnweightedHardEMBackprop()
        SumOpUnweightedHardEMBackprop(sample_prob=None)
    """

    def selection_logits(self, x: tf.Tensor, log_weights: tf.Tensor) -> tf.Tensor:
        """Unweighted child log-probabilities, the same for every sum of a region."""
        shape = tf.concat([tf.shape(x)[:-1], tf.shape(log_weights)[-1:], tf.shape(x)[-1:]], axis=0)
        return tf.broadcast_to(x[..., tf.newaxis, :], shape)


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpSampleBackprop(BaseSelectionSumOp):
    """Sum op with sampling signals in backpropagation.

    Each sum draws one child from its posterior ``softmax(x_i + log w_io)``, so that the backward pass from a
    root (count 1 per sample) selects a random induced tree: the leaves it reaches define a sample of the SPN,
    conditioned on the evidence of the forward pass. Used by the sampling queries of
    ``SequentialSumProductNetwork``.

    Example:
        >>> SumOpSampleBackprop()
        SumOpSampleBackprop()
    """

    def __init__(self) -> None:
        super().__init__(sample_prob=1.0)

    def selection_logits(self, x: tf.Tensor, log_weights: tf.Tensor) -> tf.Tensor:
        """Weighted child log-probabilities."""
        return _weighted_logits(x, log_weights)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (none)."""
        return {}
