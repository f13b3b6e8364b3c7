"""Indicator leaves as table lookups: the leaf's log-indicators and the weighted sums over them.

An ``IndicatorLeaf`` output is one of ``num_states + 2`` rows per variable: the one-hot indicator of an observed
state, all zeros (log 1) for a marginalized variable, or all ``-inf`` for an impossible one. The leaf keeps that
row's *index* (``indicator_index``) and attaches it to its output the way Keras attaches masks
(``attach_indicator_index``). A sum over such indicators is then a lookup of its log-weights
(``log_weighted_sum_of_indicators_rows``) instead of an ``exp``, a matmul and a ``log`` over every output.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import keras
from keras import ops

from libspn_keras.math._backend import Tensor, attach, attached

#: Attribute under which an indicator leaf's output ``[batch, *variables, num_states]`` carries its row indices.
_INDEX_ATTRIBUTE = "_libspn_keras_indicator_index"


def indicator_index(states: Tensor, observed: Tensor | None, num_states: int) -> Tensor:
    """The row of ``indicator_log_table`` of each variable.

    Args:
        states: Integer states ``[batch, *variables]``.
        observed: Boolean ``[batch, *variables]``, ``False`` where the variable is marginalized, or ``None``.
        num_states: Number of states ``K``.

    Returns:
        int32 ``[batch, *variables]``: the state where it is in ``[0, K)``, ``K`` where the variable is not
        observed, ``K + 1`` where an observed state is out of range.

    Example:
        >>> import numpy as np
        >>> index = indicator_index(np.array([0, 1, 5]), np.array([True, False, True]), 2)
        >>> ops.convert_to_numpy(index).tolist()
        [0, 2, 3]
    """
    states = ops.cast(states, "int32")
    index = ops.where((states >= 0) & (states < num_states), states, ops.full_like(states, num_states + 1))
    if observed is None:
        return index
    return ops.where(observed, index, ops.full_like(index, num_states))


def indicator_log_table(num_states: int, dtype: Any) -> Tensor:
    """``[K + 2, K]`` log-indicators: ``log(one_hot(k))`` for ``k < K``, then zeros (missing), then ``-inf``."""
    dtype = keras.backend.standardize_dtype(dtype)
    one_hot = ops.eye(num_states, dtype=dtype)
    rows = ops.concatenate([one_hot, ops.ones([1, num_states], dtype), ops.zeros([1, num_states], dtype)], axis=0)
    return ops.log(rows)


class IndicatorRows(NamedTuple):
    """Children of a weighted sum that are log-indicators, in the rows layout.

    Attributes:
        index_rows: Their ``indicator_index`` in the rows layout, int32 ``[num_groups, num_rows]`` (``index_rows``).
        num_states: Number of states ``K``: each row is a row of the ``[K + 2, K]`` ``indicator_log_table``.
    """

    index_rows: Tensor
    num_states: int


def attach_indicator_index(x: Tensor, index: Tensor) -> Tensor:
    """Attach the ``indicator_index`` ``[batch, *variables]`` of the log-indicators ``x`` to ``x``; return ``x``.

    (``libspn_keras.math.attach``: also on JAX tracers.) Where nothing is attached (``x`` was copied or transformed
    on its way up), the sums above compute the same values from ``x`` itself.
    """
    return attach(x, _INDEX_ATTRIBUTE, index)


def attached_indicator_index(x: Tensor) -> Tensor | None:
    """The ``indicator_index`` attached to ``x`` by an indicator leaf, if any (and if it still fits ``x``)."""
    index = attached(x, _INDEX_ATTRIBUTE)
    if index is None or keras.backend.standardize_dtype(index.dtype) != "int32":
        return None
    if len(index.shape) != len(x.shape) - 1:
        return None
    compatible = all(a is None or b is None or a == b for a, b in zip(index.shape[1:], x.shape[1:-1], strict=True))
    return index if compatible else None


def index_rows(index: Tensor, shared: bool) -> Tensor:
    """``[batch, *middle]`` row indices in the rows layout of ``to_rows``: ``[prod(middle), batch]`` or ``[1, -1]``."""
    if shared:
        return ops.reshape(index, [1, -1])
    rank = len(index.shape)
    moved = ops.transpose(index, [*range(1, rank), 0])
    return ops.reshape(moved, [math.prod(index.shape[1:]), -1])


def log_weighted_sum_of_indicators_rows(index_rows: Tensor, log_weights_rows: Tensor) -> Tensor:
    """Weighted sums of log-indicators, looked up: equals ``log_weighted_sum_rows`` of their log-indicators.

    With one-hot children the sum ``o`` of an observed state ``k`` is ``log w_ko``; over a marginalized variable
    (all indicators 1) it is ``log sum_k w_ko``; over an impossible one it is ``-inf``.

    Args:
        index_rows: ``indicator_index`` in the rows layout, int32 ``[num_groups, num_rows]`` (``index_rows``).
        log_weights_rows: Log of the normalized weights, ``[num_groups, num_states, num_out]``.

    Returns:
        Log-sums ``[num_groups, num_rows, num_out]``.

    Example:
        >>> import numpy as np
        >>> log_w = np.log(np.array([[[0.25], [0.75]]], "float32"))
        >>> sums = log_weighted_sum_of_indicators_rows(np.array([[1, 2, 3]], "int32"), log_w)
        >>> [round(float(p), 4) for p in ops.convert_to_numpy(ops.exp(sums))[0, :, 0]]
        [0.75, 1.0, 0.0]
    """
    table = indicator_sums_table(log_weights_rows)  # [groups, states + 2, out]
    num_groups, num_table_rows, num_out = ops.shape(table)
    if isinstance(num_groups, int) and num_groups == 1:  # shared weights: one group, a plain gather of its table rows
        return ops.take(table[0], index_rows, axis=0)
    # A gather with one batch axis (what tf.gather(batch_dims=1) does): one gather from the flattened table, at
    # index + group * (states + 2).
    offsets = ops.arange(num_groups, dtype="int32")[:, None] * num_table_rows
    flat = ops.reshape(table, [-1, num_out])
    return ops.take(flat, ops.cast(index_rows, "int32") + offsets, axis=0)


def indicator_sums_table(log_weights_rows: Tensor) -> Tensor:
    """The weighted sums over each row of ``indicator_log_table``: ``[num_groups, num_states + 2, num_out]``.

    Args:
        log_weights_rows: Log of the normalized weights, ``[num_groups, num_states, num_out]``.

    Returns:
        ``log w_ko`` for state ``k``, then ``log sum_k w_ko`` (marginalized), then ``-inf`` (impossible).
    """
    log_weights_rows = ops.convert_to_tensor(log_weights_rows)
    marginal = ops.logsumexp(log_weights_rows, axis=-2, keepdims=True)
    impossible = ops.full_like(marginal, -math.inf)
    return ops.concatenate([log_weights_rows, marginal, impossible], axis=-2)
