"""The one log-space weighted-sum kernel shared by every sum layer and sum op."""

from __future__ import annotations

import string
from typing import NamedTuple

import tensorflow as tf


def normalized_weights(accumulators: tf.Tensor, logspace_accumulators: bool) -> tf.Tensor:
    """Turn accumulators into linear weights that sum to one over the input axis (``-2``).

    Args:
        accumulators: Accumulators of shape ``[..., num_in, num_out]``; positive if linear.
        logspace_accumulators: Whether ``accumulators`` hold log-space values.

    Returns:
        Weights of the same shape, normalized along axis ``-2``.
    """
    if logspace_accumulators:
        # Not tf.nn.softmax(axis=-2): softmax over a non-last axis transposes with a run-time permutation, which
        # XLA cannot compile inside the gradient of a tf.while_loop (dynamic SPNs).
        return tf.exp(accumulators - tf.reduce_logsumexp(accumulators, axis=-2, keepdims=True))
    return accumulators / tf.reduce_sum(accumulators, axis=-2, keepdims=True)


def log_normalized_weights(accumulators: tf.Tensor, logspace_accumulators: bool) -> tf.Tensor:
    """Log of ``normalized_weights``, computed stably.

    Args:
        accumulators: Accumulators of shape ``[..., num_in, num_out]``.
        logspace_accumulators: Whether ``accumulators`` hold log-space values.

    Returns:
        Log-weights of the same shape whose ``logsumexp`` along axis ``-2`` is zero.
    """
    if logspace_accumulators:
        return accumulators - tf.reduce_logsumexp(accumulators, axis=-2, keepdims=True)
    return tf.math.log(accumulators) - tf.math.log(tf.reduce_sum(accumulators, axis=-2, keepdims=True))


def weight_equation(x_rank: int, weights_rank: int, pattern: str) -> str:
    """Build an einsum equation over ``x``-like (``z{m}x``), output-like (``z{m}y``) and weight terms.

    Args:
        x_rank: Rank of the child tensor ``[batch, *middle, num_in]``.
        weights_rank: Rank of the weights: ``len(middle) + 2`` (one weight matrix per middle position) or 2
            (shared across middle positions).
        pattern: Equation with placeholders ``X`` (child term), ``Y`` (sum term) and ``W`` (weight term).

    Returns:
        The einsum equation.

    Raises:
        ValueError: If the ranks are incompatible.
    """
    middle = string.ascii_lowercase[: x_rank - 2]
    if weights_rank == 2:
        weight_term = "xy"
    elif weights_rank == len(middle) + 2:
        weight_term = f"{middle}xy"
    else:
        raise ValueError(f"Weights of rank {weights_rank} cannot be contracted with inputs of rank {x_rank}.")
    return pattern.replace("X", f"z{middle}x").replace("Y", f"z{middle}y").replace("W", weight_term)


def _contract(x: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """``out[b, *m, o] = sum_i x[b, *m, i] * weights[*m, i, o]`` (``weights`` may omit the ``*m`` axes)."""
    if weights.shape.rank == 2:
        num_in = tf.shape(x)[-1]
        flat = tf.reshape(x, [-1, num_in])
        out = tf.matmul(flat, weights)
        return tf.reshape(out, tf.concat([tf.shape(x)[:-1], tf.shape(weights)[-1:]], axis=0))
    return tf.einsum(weight_equation(x.shape.rank, weights.shape.rank, "X,W->Y"), x, weights)


class WeightedSumParts(NamedTuple):
    """Intermediates of ``log_weighted_sum`` that backward passes reuse.

    Attributes:
        log_sums: The result, ``[batch, *middle, num_out]``.
        scaled_children: ``exp(x - x_max)``, ``[batch, *middle, num_in]``.
        linear_sums: ``scaled_children @ weights`` (``exp(log_sums - x_max)``), ``[batch, *middle, num_out]``.
    """

    log_sums: tf.Tensor
    scaled_children: tf.Tensor
    linear_sums: tf.Tensor


def log_weighted_sum_parts(x: tf.Tensor, weights: tf.Tensor) -> WeightedSumParts:
    """``log_weighted_sum`` that also returns the intermediates a backward pass can reuse."""
    x = tf.convert_to_tensor(x)
    weights = tf.convert_to_tensor(weights, dtype=x.dtype)
    x_max = tf.stop_gradient(tf.reduce_max(x, axis=-1, keepdims=True))
    x_max = tf.where(tf.math.is_finite(x_max), x_max, tf.zeros_like(x_max))
    scaled = tf.exp(x - x_max)
    linear = _contract(scaled, weights)
    positive = linear > 0
    safe = tf.where(positive, linear, tf.ones_like(linear))
    out = tf.where(positive, tf.math.log(safe) + x_max, tf.constant(-float("inf"), dtype=x.dtype))
    return WeightedSumParts(out, scaled, linear)


def log_weighted_sum(x: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Compute ``log(sum_i exp(x_i) * w_io)`` over the last axis of ``x`` as one (batched) matmul.

    The maximum over the children is subtracted before exponentiation (and added back after the logarithm),
    so arbitrarily small log-probabilities do not underflow.

    Args:
        x: Log-probabilities of children, shape ``[batch, *middle, num_in]``.
        weights: Linear, normalized weights, shape ``[*middle, num_in, num_out]`` or ``[num_in, num_out]``
            (shared across the middle axes).

    Returns:
        Log-probabilities of the sums, shape ``[batch, *middle, num_out]``. Where all children are ``-inf`` the
        output is ``-inf`` and the gradient is zero (never NaN).

    Example:
        >>> import numpy as np
        >>> x = np.log(np.array([[0.2, 0.4]], "float32"))
        >>> w = np.array([[0.5], [0.5]], "float32")
        >>> round(float(np.exp(log_weighted_sum(x, w))[0, 0]), 4)
        0.3
    """
    return log_weighted_sum_parts(x, weights).log_sums
