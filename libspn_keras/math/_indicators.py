"""Indicator leaves as table lookups: the leaf's log-indicators and the weighted sums over them.

An ``IndicatorLeaf`` output is one of ``num_states + 2`` rows per variable: the one-hot indicator of an observed
state, all zeros (log 1) for a marginalized variable, or all ``-inf`` for an impossible one. The leaf keeps that
row's *index* (``indicator_index``) and attaches it to its output the way Keras attaches masks
(``attach_indicator_index``). A sum over such indicators is then a lookup of its log-weights
(``log_weighted_sum_of_indicators_rows``) instead of an ``exp``, a matmul and a ``log`` over every output.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

#: Attribute under which an indicator leaf's output ``[batch, *variables, num_states]`` carries its row indices.
_INDEX_ATTRIBUTE = "_libspn_keras_indicator_index"


def indicator_index(states: tf.Tensor, observed: tf.Tensor | None, num_states: int) -> tf.Tensor:
    """The row of ``indicator_log_table`` of each variable.

    Args:
        states: Integer states ``[batch, *variables]``.
        observed: Boolean ``[batch, *variables]``, ``False`` where the variable is marginalized, or ``None``.
        num_states: Number of states ``K``.

    Returns:
        int32 ``[batch, *variables]``: the state where it is in ``[0, K)``, ``K`` where the variable is not
        observed, ``K + 1`` where an observed state is out of range.

    Example:
        >>> indicator_index(tf.constant([0, 1, 5]), tf.constant([True, False, True]), 2).numpy().tolist()
        [0, 2, 3]
    """
    states = tf.cast(states, tf.int32)
    index = tf.where((states >= 0) & (states < num_states), states, tf.fill(tf.shape(states), num_states + 1))
    if observed is None:
        return index
    return tf.where(observed, index, tf.fill(tf.shape(index), num_states))


def indicator_log_table(num_states: int, dtype: tf.DType) -> tf.Tensor:
    """``[K + 2, K]`` log-indicators: ``log(one_hot(k))`` for ``k < K``, then zeros (missing), then ``-inf``."""
    one_hot = tf.eye(num_states, dtype=dtype)
    rows = tf.concat([one_hot, tf.ones([1, num_states], dtype), tf.zeros([1, num_states], dtype)], axis=0)
    return tf.math.log(rows)


class IndicatorRows(NamedTuple):
    """Children of a weighted sum that are log-indicators, in the rows layout.

    Attributes:
        index_rows: Their ``indicator_index`` in the rows layout, int32 ``[num_groups, num_rows]`` (``index_rows``).
        num_states: Number of states ``K``: each row is a row of the ``[K + 2, K]`` ``indicator_log_table``.
    """

    index_rows: tf.Tensor
    num_states: int


def attach_indicator_index(x: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Attach the ``indicator_index`` ``[batch, *variables]`` of the log-indicators ``x`` to ``x``; return ``x``."""
    setattr(x, _INDEX_ATTRIBUTE, index)
    return x


def attached_indicator_index(x: tf.Tensor) -> tf.Tensor | None:
    """The ``indicator_index`` attached to ``x`` by an indicator leaf, if any (and if it still fits ``x``)."""
    index = getattr(x, _INDEX_ATTRIBUTE, None)
    if index is None or index.dtype != tf.int32 or index.shape.rank != x.shape.rank - 1:
        return None
    return index if index.shape[1:].is_compatible_with(x.shape[1:-1]) else None


def index_rows(index: tf.Tensor, shared: bool) -> tf.Tensor:
    """``[batch, *middle]`` row indices in the rows layout of ``to_rows``: ``[prod(middle), batch]`` or ``[1, -1]``."""
    if shared:
        return tf.reshape(index, [1, -1])
    rank = index.shape.rank
    moved = tf.transpose(index, [*range(1, rank), 0])
    return tf.reshape(moved, [math.prod(index.shape[1:]), -1])


def log_weighted_sum_of_indicators_rows(index_rows: tf.Tensor, log_weights_rows: tf.Tensor) -> tf.Tensor:
    """Weighted sums of log-indicators, looked up: equals ``log_weighted_sum_rows`` of their log-indicators.

    With one-hot children the sum ``o`` of an observed state ``k`` is ``log w_ko``; over a marginalized variable
    (all indicators 1) it is ``log sum_k w_ko``; over an impossible one it is ``-inf``.

    Args:
        index_rows: ``indicator_index`` in the rows layout, int32 ``[num_groups, num_rows]`` (``index_rows``).
        log_weights_rows: Log of the normalized weights, ``[num_groups, num_states, num_out]``.

    Returns:
        Log-sums ``[num_groups, num_rows, num_out]``.

    Example:
        >>> log_w = tf.math.log([[[0.25], [0.75]]])
        >>> sums = log_weighted_sum_of_indicators_rows(tf.constant([[1, 2, 3]]), log_w)
        >>> [round(float(p), 4) for p in tf.exp(sums)[0, :, 0]]
        [0.75, 1.0, 0.0]
    """
    return tf.gather(indicator_sums_table(log_weights_rows), index_rows, batch_dims=1)


def indicator_sums_table(log_weights_rows: tf.Tensor) -> tf.Tensor:
    """The weighted sums over each row of ``indicator_log_table``: ``[num_groups, num_states + 2, num_out]``.

    Args:
        log_weights_rows: Log of the normalized weights, ``[num_groups, num_states, num_out]``.

    Returns:
        ``log w_ko`` for state ``k``, then ``log sum_k w_ko`` (marginalized), then ``-inf`` (impossible).
    """
    marginal = tf.reduce_logsumexp(log_weights_rows, axis=-2, keepdims=True)
    impossible = tf.fill(tf.shape(marginal), tf.constant(-math.inf, log_weights_rows.dtype))
    return tf.concat([log_weights_rows, marginal, impossible], axis=-2)
