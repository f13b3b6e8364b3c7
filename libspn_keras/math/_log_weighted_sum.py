"""The one log-space weighted-sum kernel shared by every sum layer and sum op."""

from __future__ import annotations

import string

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
        return tf.nn.softmax(accumulators, axis=-2)
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
        return tf.nn.log_softmax(accumulators, axis=-2)
    return tf.math.log(accumulators) - tf.math.log(tf.reduce_sum(accumulators, axis=-2, keepdims=True))


def _contract(x: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """``out[b, *m, o] = sum_i x[b, *m, i] * weights[*m, i, o]`` (``weights`` may omit the ``*m`` axes)."""
    if weights.shape.rank == 2:
        num_in = tf.shape(x)[-1]
        flat = tf.reshape(x, [-1, num_in])
        out = tf.matmul(flat, weights)
        return tf.reshape(out, tf.concat([tf.shape(x)[:-1], tf.shape(weights)[-1:]], axis=0))
    middle = string.ascii_lowercase[: x.shape.rank - 2]
    if weights.shape.rank != len(middle) + 2:
        raise ValueError(
            f"Weights of rank {weights.shape.rank} cannot be contracted with inputs of rank {x.shape.rank}."
        )
    equation = f"z{middle}x,{middle}xy->z{middle}y"
    return tf.einsum(equation, x, weights)


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
    """
    x_max = tf.stop_gradient(tf.reduce_max(x, axis=-1, keepdims=True))
    x_max = tf.where(tf.math.is_finite(x_max), x_max, tf.zeros_like(x_max))
    linear = _contract(tf.exp(x - x_max), weights)
    positive = linear > 0
    safe = tf.where(positive, linear, tf.ones_like(linear))
    out = tf.math.log(safe) + x_max
    return tf.where(positive, out, tf.constant(-float("inf"), dtype=out.dtype))
