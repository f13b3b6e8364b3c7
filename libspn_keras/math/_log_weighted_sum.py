"""The one log-space weighted-sum kernel shared by every sum layer and sum op.

Sums are contracted in a *rows* layout: children ``[num_groups, num_rows, num_in]`` times weights
``[num_groups, num_in, num_out]`` as one batched matmul. With one weight matrix per middle position (dense and
local sums) a group is a middle position (a region or cell) and its rows are the batch; with weights shared
across the middle axes (convolutional and root sums) there is one group whose rows are every (batch, position)
pair. ``to_rows`` / ``from_rows`` convert between this layout and the layers' ``[batch, *middle, nodes]``.

Inside ``tf.function``, layers that work per position (sums with per-position weights, scope permutations,
products) also pass their output's *position rows* ``[prod(middle), batch, nodes]`` on, attached to the output
tensor (``attach_rows``, the way Keras attaches masks). The next such layer takes its input from them, so a chain
of region layers needs no transposes between the layout of the layers and that of the matmuls, and the transposed
outputs nobody reads are pruned. A tensor made by any other op, or eagerly, carries no rows and is transposed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from keras import ops

from libspn_keras.math._backend import Tensor, attach, attached, custom_gradient, in_traced_function, reduce_max


def normalized_weights(accumulators: Tensor, logspace_accumulators: bool) -> Tensor:
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
        return ops.exp(accumulators - ops.logsumexp(accumulators, axis=-2, keepdims=True))
    return accumulators / ops.sum(accumulators, axis=-2, keepdims=True)


def log_normalized_weights(accumulators: Tensor, logspace_accumulators: bool) -> Tensor:
    """Log of ``normalized_weights``, computed stably.

    Args:
        accumulators: Accumulators of shape ``[..., num_in, num_out]``.
        logspace_accumulators: Whether ``accumulators`` hold log-space values.

    Returns:
        Log-weights of the same shape whose ``logsumexp`` along axis ``-2`` is zero.
    """
    if logspace_accumulators:
        return accumulators - ops.logsumexp(accumulators, axis=-2, keepdims=True)
    return ops.log(accumulators) - ops.log(ops.sum(accumulators, axis=-2, keepdims=True))


#: Sums with at least this many children per sum contract unnormalized weights (see ``contraction_weights``).
NORMALIZE_OUTPUT_MIN_CHILDREN = 256


def contraction_weights(accumulators: Tensor, logspace_accumulators: bool) -> tuple[Tensor, Tensor | None]:
    """The linear weights a sum layer contracts its children with, and the log of their normalizer.

    Normalizing ``[..., num_in, num_out]`` accumulators costs a pass over them (read and write) before the matmul
    reads them again. With many children per sum (the products of a ``DenseProduct``, the root) the weights are
    larger than the ``[batch, ..., num_out]`` sums, so the layers contract unnormalized weights and subtract the
    log of the normalizer from the sums instead: ``log(x @ (w / z)) = log(x @ w) - log z``.

    Args:
        accumulators: Accumulators of shape ``[..., num_in, num_out]``; positive if linear.
        logspace_accumulators: Whether ``accumulators`` hold log-space values.

    Returns:
        ``(weights, log_norm)``. With fewer than ``NORMALIZE_OUTPUT_MIN_CHILDREN`` children per sum these are
        ``normalized_weights(accumulators, ...)`` and ``None``. Otherwise ``weights / exp(log_norm)`` are the
        normalized weights: linear accumulators as they are, log-space ones as ``exp(a - max_in a)`` (at most 1,
        so they cannot overflow), and ``log_norm`` has shape ``[..., 1, num_out]``.

    Example:
        >>> w, log_norm = contraction_weights(ops.full([256, 1], 2.0), logspace_accumulators=False)
        >>> float(w[0, 0]), float(ops.exp(log_norm)[0, 0])
        (2.0, 512.0)
    """
    num_in = accumulators.shape[-2]
    if num_in is None or num_in < NORMALIZE_OUTPUT_MIN_CHILDREN:
        return normalized_weights(accumulators, logspace_accumulators), None
    if logspace_accumulators:
        # The maximum cancels in weights / sum(weights), so no gradient needs to flow through it.
        weights = ops.exp(accumulators - _finite_or_zero(reduce_max(accumulators, axis=-2, keepdims=True)))
    else:
        weights = accumulators
    return weights, ops.log(ops.sum(weights, axis=-2, keepdims=True))


def _check_weights_rank(middle_rank: int, weights_rank: int) -> bool:
    """Return whether weights of ``weights_rank`` are shared across ``middle_rank`` middle axes."""
    if weights_rank == 2:
        return True
    if weights_rank == middle_rank + 2:
        return False
    raise ValueError(
        f"Weights of rank {weights_rank} cannot be contracted with children that have {middle_rank} middle axes "
        f"(expected rank 2 or {middle_rank + 2})."
    )


#: Attribute under which a tensor ``[batch, *middle, nodes]`` carries its position rows.
_ROWS_ATTRIBUTE = "_libspn_keras_position_rows"


def attach_rows(x: Tensor, rows: Tensor) -> Tensor:
    """Attach the position rows ``[prod(middle), batch, nodes]`` of ``x`` (same values) to ``x``; return ``x``.

    Only inside a traced function (``in_traced_function``: ``tf.function``, ``jax.jit``), where whichever layout
    nobody reads is pruned: eagerly, both layouts would stay alive as long as ``x`` and double the memory of the
    activations (the layers above transpose instead).
    """
    if in_traced_function(x):
        attach(x, _ROWS_ATTRIBUTE, rows)
    return x


def attached_rows(x: Tensor) -> Tensor | None:
    """The position rows ``[prod(middle), batch, nodes]`` attached to ``x`` by the layer that made it, if any."""
    rows = attached(x, _ROWS_ATTRIBUTE)
    middle = x.shape[1:-1]
    if rows is None or rows.dtype != x.dtype or len(rows.shape) != 3 or None in middle:
        return None
    return rows if rows.shape[0] == math.prod(middle) else None


#: Attribute under which a tensor carries a function that sums groups of its position rows (``attach_row_sums``).
_ROW_SUMS_ATTRIBUTE = "_libspn_keras_row_sums"

#: ``row_sums(sources)``: ``[len(sources), batch, nodes]``, row ``i`` the sum of the position rows
#: ``sources[i, :]`` of the tensor it is attached to; a source ``>=`` the number of rows adds nothing (padding).
RowSums = Callable[[np.ndarray], Tensor]


def attach_row_sums(x: Tensor, row_sums: RowSums) -> Tensor:
    """Attach to ``x`` a function that sums groups of its position rows without forming them; return ``x``.

    ``row_sums(sources)`` takes a static int array ``[num_out_rows, num_terms]`` and returns
    ``[num_out_rows, batch, nodes]``: row ``i`` is the sum of the position rows ``sources[i, :]`` of ``x``, where a
    source ``>=`` the number of rows adds nothing (padding). Every row may appear in at most one group.

    A layer whose rows are cheap to sum in groups (sums over an ``IndicatorLeaf``: a lookup) attaches one, a
    permutation of the rows composes it with its own, and a ``ReduceProduct`` on top calls it instead of summing
    formed rows. Only inside ``tf.function``, like ``attach_rows``: the rows nobody reads are pruned there.
    """
    if in_traced_function(x):
        attach(x, _ROW_SUMS_ATTRIBUTE, row_sums)
    return x


def attached_row_sums(x: Tensor) -> RowSums | None:
    """The ``row_sums`` attached to ``x`` by the layer that made it, if any (only where rows are attached too)."""
    row_sums = attached(x, _ROW_SUMS_ATTRIBUTE)
    return row_sums if row_sums is not None and attached_rows(x) is not None else None


def gather_or_zero(x: Tensor, index: Any) -> Tensor:
    """``x[index]`` along the first axis, where an index equal to ``len(x)`` yields zeros (padding).

    Example:
        >>> ops.convert_to_numpy(gather_or_zero(np.array([[1.0], [2.0]]), [1, 2, 0])).ravel().tolist()
        [2.0, 0.0, 1.0]
    """
    x = ops.convert_to_tensor(x)
    return ops.take(ops.concatenate([x, ops.zeros_like(x[:1])], axis=0), index, axis=0)


def inverse_gather_index(index: np.ndarray, num_rows: int) -> np.ndarray:
    """For each of ``num_rows`` rows, the position along the first axis of ``index`` that takes it.

    ``index`` (static, 1-D or 2-D) takes every row at most once, and values ``>= num_rows`` are padding; a row that
    no position takes gets ``len(index)``, so that ``gather_or_zero(signal, inverse)`` gives it a zero signal. It
    turns the gradient of a gather that takes no row twice into a gather.

    Example:
        >>> inverse_gather_index(np.array([2, 5, 0]), 4).tolist()
        [2, 3, 0, 3]
    """
    inverse = np.full(num_rows, len(index), np.int32)
    taken = index < num_rows
    assert len(np.unique(index[taken])) == taken.sum(), "a row is taken twice"
    inverse[index[taken]] = np.nonzero(taken)[0]
    return inverse


def to_rows(x: Tensor, weights_rank: int) -> Tensor:
    """Move ``x`` (``[batch, *middle, n]``) to the rows layout ``[num_groups, num_rows, n]``.

    Args:
        x: Tensor with known middle axes.
        weights_rank: Rank of the weights ``x`` is contracted with (2 = shared across the middle axes).

    Returns:
        ``[prod(middle), batch, n]`` for per-position weights (the attached rows of ``x`` when it has them),
        ``[1, batch * prod(middle), n]`` for shared ones.
    """
    middle = x.shape[1:-1]
    num_nodes = ops.shape(x)[-1]
    if _check_weights_rank(len(middle), weights_rank):
        return ops.reshape(x, [1, -1, num_nodes])
    rows = attached_rows(x)
    if rows is not None:
        return rows
    rank = len(x.shape)
    moved = ops.transpose(x, [*range(1, rank - 1), 0, rank - 1])
    return ops.reshape(moved, [math.prod(middle), -1, num_nodes])


def from_rows(rows: Tensor, middle: Sequence[int], shared: bool) -> Tensor:
    """Inverse of ``to_rows``: ``[num_groups, num_rows, n]`` back to ``[batch, *middle, n]``.

    Args:
        rows: Tensor in the rows layout.
        middle: The middle axes of the layer layout.
        shared: Whether the rows came from weights shared across the middle axes.

    Returns:
        The tensor in the layer layout; per-position rows are attached to it (``attach_rows``).
    """
    num_nodes = ops.shape(rows)[-1]
    if shared:
        return ops.reshape(rows, [-1, *middle, num_nodes])
    grouped = ops.reshape(rows, [*middle, -1, num_nodes])
    rank = len(middle) + 2
    return attach_rows(ops.transpose(grouped, [len(middle), *range(len(middle)), rank - 1]), rows)


def weights_to_rows(weights: Tensor) -> Tensor:
    """``[*middle, num_in, num_out]`` (or ``[num_in, num_out]``) weights as ``[num_groups, num_in, num_out]``."""
    return ops.reshape(weights, [-1, *weights.shape[-2:]])


class WeightedSumParts(NamedTuple):
    """Intermediates of a weighted sum, in the rows layout, that backward passes reuse.

    The weights may be the normalized weights times any positive factor per output (``contraction_weights``):
    every backward rule uses them only in ratios with ``linear_sums`` or in comparisons between the children of
    one sum, where that factor cancels.

    Attributes:
        log_sums: The log-space sums, ``[num_groups, num_rows, num_out]``.
        weights: Linear weights, proportional per output to the normalized ones, ``[num_groups, num_in, num_out]``.
        log_children: Log-space children ``[num_groups, num_rows, num_in]`` (``None`` where they were never
            formed, as in ``log_product_weighted_sum_parts``).
        scaled_children: ``exp(children - max)``, ``[num_groups, num_rows + extra_rows, num_in]``.
        linear_sums: ``scaled_children @ weights``, ``[num_groups, num_rows + extra_rows, num_out]``.
        extra_rows: Rows of ``scaled_children`` and ``linear_sums`` after the ``num_rows`` rows of the sums, which
            the forward pass added for itself (``log_product_weighted_sum_parts(normalize=True)`` appends a row of
            ones, whose sums are the normalizer). A backward rule is given a zero signal for them.
    """

    log_sums: Tensor
    weights: Tensor
    log_children: Tensor | None = None
    scaled_children: Tensor | None = None
    linear_sums: Tensor | None = None
    extra_rows: int = 0


def _finite_or_zero(x_max: Tensor) -> Tensor:
    x_max = ops.stop_gradient(x_max)
    return ops.where(ops.isfinite(x_max), x_max, ops.zeros_like(x_max))


def _masked_signal(linear: Tensor, dy: Tensor) -> tuple[Tensor, Tensor]:
    """``dy`` where ``linear > 0`` (else 0), and its gradient ``dy / linear`` with respect to ``log(linear)``."""
    positive = linear > 0
    dy = ops.where(positive, dy, ops.zeros_like(dy))
    return dy, dy / ops.where(positive, linear, ops.ones_like(linear))


def _log_of_nonnegative(linear: Tensor) -> Tensor:
    """``log(linear)`` for ``linear >= 0`` (``-inf`` at 0, NaN stays NaN), whose own derivative is finite at 0.

    The custom gradients below replace the derivative of ``log``; but where a second derivative is taken, JAX
    differentiates the forward pass of a custom gradient as written, and ``0 * d log(0)`` would make it NaN.
    """
    zero = linear == 0
    return ops.where(zero, -np.inf, ops.log(ops.where(zero, ops.ones_like(linear), linear)))


@custom_gradient
def _log_sums(linear: Tensor, offset: Tensor) -> tuple[Tensor, Any]:
    """``log(linear) + offset`` for ``linear >= 0`` (``offset`` finite, without gradient).

    Where ``linear`` is 0 the result is ``-inf`` with a zero (not NaN) gradient.
    """

    def grad(dy: Tensor) -> tuple[Tensor, Tensor]:
        return _masked_signal(linear, dy)[1], ops.zeros_like(offset)

    return _log_of_nonnegative(linear) + offset, grad


@custom_gradient
def _log_normalized_sums(linear: Tensor, offset: Tensor, log_norm: Tensor) -> tuple[Tensor, Any]:
    """``log(linear) + offset - log_norm`` (``log_norm``: ``[groups, 1, out]``), as ``_log_sums``.

    Where ``linear`` is 0 nothing flows back to ``log_norm`` either: an impossible sum does not move its weights.
    """

    def grad(dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dy, d_linear = _masked_signal(linear, dy)
        return d_linear, ops.zeros_like(offset), -ops.sum(dy, axis=-2, keepdims=True)

    return _log_of_nonnegative(linear) + (offset - log_norm), grad


def _log_of_linear(linear: Tensor, offset: Tensor, log_norm: Tensor | None) -> Tensor:
    """``log(linear) + offset - log_norm``; ``log_norm`` ``[groups, 1, out]`` or ``None`` (normalized weights)."""
    return _log_sums(linear, offset) if log_norm is None else _log_normalized_sums(linear, offset, log_norm)


def log_weighted_sum_rows(x_rows: Tensor, weights_rows: Tensor, log_norm: Tensor | None = None) -> WeightedSumParts:
    """Weighted sums of log-space children in the rows layout (see the module docstring).

    Args:
        x_rows: Log-probabilities ``[num_groups, num_rows, num_in]``.
        weights_rows: Linear weights ``[num_groups, num_in, num_out]``: normalized, or proportional to the
            normalized ones with ``log_norm`` (``contraction_weights``).
        log_norm: ``[num_groups, 1, num_out]``, subtracted from the log-sums; ``None`` for normalized weights.

    Returns:
        The sums and the intermediates.
    """
    x_max = _finite_or_zero(reduce_max(x_rows, axis=-1, keepdims=True))
    scaled = ops.exp(x_rows - x_max)
    linear = ops.matmul(scaled, weights_rows)
    log_sums = _log_of_linear(linear, x_max, log_norm)
    return WeightedSumParts(log_sums, weights_rows, x_rows, scaled, linear)


def log_weighted_sum_parts(x: Tensor, weights: Tensor) -> WeightedSumParts:
    """``log_weighted_sum`` that also returns the intermediates (rows layout) a backward pass can reuse."""
    x = ops.convert_to_tensor(x)
    weights = ops.convert_to_tensor(weights, dtype=x.dtype)
    return log_weighted_sum_rows(to_rows(x, len(weights.shape)), weights_to_rows(weights))


def log_weighted_sum(x: Tensor, weights: Tensor) -> Tensor:
    """Compute ``log(sum_i exp(x_i) * w_io)`` over the last axis of ``x`` as one batched matmul.

    The maximum over the children is subtracted before exponentiation (and added back after the logarithm),
    so arbitrarily small log-probabilities do not underflow.

    Args:
        x: Log-probabilities of children, shape ``[batch, *middle, num_in]`` (middle axes known).
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
    x = ops.convert_to_tensor(x)
    weights = ops.convert_to_tensor(weights, dtype=x.dtype)
    parts = log_weighted_sum_parts(x, weights)
    return from_rows(parts.log_sums, x.shape[1:-1], len(weights.shape) == 2)


def factor_rows(x: Tensor, num_factors: int) -> Tensor:
    """The factors of a product layer in the rows layout ``[num_factors, num_groups * num_decomps, batch, nodes]``.

    Factor-major, so that each factor ``factors[f]`` is a contiguous block (taking it copies nothing).

    Args:
        x: Region tensor ``[batch, num_scopes, num_decomps, num_nodes]``; scopes ``f * g, ..., f * g + f - 1``
            (``f = num_factors``) are the factors of group ``g``. Taken from its attached rows when it has them.
        num_factors: Number of factors per product.

    Returns:
        ``[num_factors, num_groups * num_decomps, batch, num_nodes]``.
    """
    _, num_scopes, num_decomps, num_nodes = x.shape
    num_groups = num_scopes // num_factors
    rows = attached_rows(x)
    if rows is not None:  # [groups, factors, decomps, batch, nodes]: only whole [batch, nodes] blocks move
        grouped = ops.reshape(rows, [num_groups, num_factors, num_decomps, -1, num_nodes])
        moved = ops.transpose(grouped, [1, 0, 2, 3, 4])
    else:
        grouped = ops.reshape(x, [-1, num_groups, num_factors, num_decomps, num_nodes])
        moved = ops.transpose(grouped, [2, 1, 3, 0, 4])
    return ops.reshape(moved, [num_factors, num_groups * num_decomps, -1, num_nodes])


def log_outer_product(factors: Tensor, factor_axis: int = 0) -> Tensor:
    """All combinations of one node per factor, summed in log-space (a product of probabilities).

    Args:
        factors: Log-probabilities with the factors along ``factor_axis`` and the nodes along the last axis, e.g.
            factor rows ``[num_factors, num_groups, num_rows, num_nodes]`` (``factor_rows``, ``factor_axis=0``) or
            grouped region tensors ``[batch, num_groups, num_factors, num_decomps, num_nodes]`` (``2``).
        factor_axis: The (non-negative) axis of the factors.

    Returns:
        ``factors`` without ``factor_axis`` and with ``num_nodes ** num_factors`` products along the last axis;
        the node of the first factor varies slowest.
    """
    num_factors, num_nodes = factors.shape[factor_axis], factors.shape[-1]
    out = ops.take(factors, 0, axis=factor_axis)
    leading = [-1 if size is None else size for size in out.shape[:-1]]
    for factor in range(1, num_factors):
        out = out[..., :, None] + ops.take(factors, factor, axis=factor_axis)[..., None, :]
        out = ops.reshape(out, [*leading, num_nodes ** (factor + 1)])
    return out


def log_product_weighted_sum_parts(
    factors: Tensor, weights: Tensor, log_norm: Tensor | None = None, normalize: bool = False
) -> WeightedSumParts:
    """Weighted sums over the outer products of ``factors`` without forming the products in log-space.

    Equals ``log_weighted_sum_rows(log_outer_product(factors), weights, log_norm)``, but exponentiates the
    ``num_nodes`` values of each factor (after subtracting each factor's maximum) instead of the
    ``num_nodes ** num_factors`` products, forms the linear outer product and contracts it with one batched
    matmul: one pass over the products instead of several. With few sums per group (``2 * num_out * num_nodes <=
    num_nodes ** num_factors``, e.g. a root over products) the sums are contracted without the products: the
    products of all factors but the last times the weights (``[rows, num_nodes ** (num_factors - 1)] x
    [num_nodes ** (num_factors - 1), num_nodes * num_out]``), then a sum over the last factor's nodes. The linear
    products are still returned for backward rules that read them; inside ``tf.function`` nothing computes them
    when nothing reads them.

    Args:
        factors: Factor rows ``[num_factors, num_groups, num_rows, num_nodes]`` (``factor_rows``).
        weights: Linear weights ``[num_groups, num_nodes ** num_factors, num_out]``: normalized, or proportional
            to the normalized ones with ``log_norm`` or ``normalize`` (``contraction_weights``).
        log_norm: ``[num_groups, 1, num_out]``, subtracted from the log-sums; ``None`` for normalized weights.
        normalize: Normalize unnormalized ``weights`` in the same matmul (``log_norm`` must be ``None``): a row of
            ones is appended to every factor, so the matmul yields the sums of the weights over the products in
            one more row (``extra_rows`` of the parts) instead of a separate pass over the weights.

    Returns:
        The parts in the rows layout; ``log_children`` is ``None``.
    """
    factors = ops.convert_to_tensor(factors)
    weights = ops.convert_to_tensor(weights, dtype=factors.dtype)
    if normalize and log_norm is not None:
        raise ValueError("log_product_weighted_sum_parts: pass log_norm or normalize=True, not both.")
    num_factors, num_groups, _, num_nodes = factors.shape
    num_out = weights.shape[-1]
    f_max = _finite_or_zero(reduce_max(factors, axis=-1, keepdims=True))
    shifted = factors - f_max
    if normalize:  # exp(0) = 1: a row of ones, whose products are all 1
        shifted = ops.concatenate([shifted, ops.zeros_like(shifted[:, :, :1])], axis=2)
    scaled = ops.exp(shifted)
    products = leading = scaled[0]
    for factor in range(1, num_factors):
        leading = products
        # The outer product of each row as a matmul `[n^f, 1] x [1, n]` with one batch axis: on CPU several times
        # faster than broadcasting, and ~30% faster than the same as `einsum("gbi,gbj->gbij")`.
        by_row = ops.reshape(products, [-1, num_nodes**factor, 1])
        products = ops.matmul(by_row, ops.reshape(scaled[factor], [-1, 1, num_nodes]))
        products = ops.reshape(products, [num_groups, -1, num_nodes ** (factor + 1)])
    if num_factors > 1 and 2 * num_out * num_nodes <= num_nodes**num_factors:
        last = scaled[num_factors - 1, :, :, :, None]  # [groups, rows, nodes, 1]
        by_last = ops.matmul(leading, ops.reshape(weights, [num_groups, -1, num_nodes * num_out]))
        linear = ops.sum(ops.reshape(by_last, [num_groups, -1, num_nodes, num_out]) * last, axis=-2)
    else:
        linear = ops.matmul(products, weights)
    offset = ops.sum(f_max, axis=0)  # [groups, rows, 1]
    if not normalize:
        return WeightedSumParts(_log_of_linear(linear, offset, log_norm), weights, None, products, linear)
    log_sums = _log_of_linear(linear[:, :-1], offset, ops.log(linear[:, -1:]))
    return WeightedSumParts(log_sums, weights, None, products, linear, extra_rows=1)


def log_sum_exp(x: Tensor, axis: int) -> Tensor:
    """``log(sum(exp(x)))`` along ``axis`` (removed), stably.

    Unlike ``keras.ops.logsumexp``, where every term is ``-inf`` the result is ``-inf`` with a zero gradient (not
    NaN).

    Args:
        x: Log-space values.
        axis: The (static) axis to sum over.

    Returns:
        ``x`` without ``axis``.

    Example:
        >>> float(log_sum_exp(ops.log(np.array([[0.25, 0.5]], "float32")), axis=1)[0])
        -0.2876820...
    """
    x_max = _finite_or_zero(reduce_max(x, axis=axis, keepdims=True))
    return ops.squeeze(_log_sums(ops.sum(ops.exp(x - x_max), axis=axis, keepdims=True), x_max), axis=axis)


def mixed_product_rows(products: Tensor, num_mixed: int) -> Tensor:
    """Concatenate the products of ``num_mixed`` consecutive groups along the node axis (rows layout).

    Args:
        products: ``[num_regions * num_mixed, num_rows, num_products]``.
        num_mixed: Number of consecutive groups whose products are the nodes of one region (``Undecompose``).

    Returns:
        ``[num_regions, num_rows, num_mixed * num_products]``; group ``t`` of a region gives its nodes
        ``t * num_products, ..., (t + 1) * num_products - 1``.
    """
    _, _, num_products = products.shape
    num_rows = ops.shape(products)[1]
    grouped = ops.reshape(products, [-1, num_mixed, num_rows, num_products])
    return ops.reshape(ops.transpose(grouped, [0, 2, 1, 3]), [-1, num_rows, num_mixed * num_products])


def product_signal_to_factors(signal: Tensor, num_factors: int) -> Tensor:
    """Sum a signal on the products (rows layout) onto the factors it came from.

    Args:
        signal: ``[num_groups, num_rows, num_nodes ** num_factors]``.
        num_factors: Number of factors of each product.

    Returns:
        The signal of every factor node, ``[num_factors, num_groups, num_rows, num_nodes]`` (factor rows).
    """
    num_groups, _, num_products = signal.shape
    num_nodes = round(num_products ** (1.0 / num_factors))
    per_node = ops.reshape(signal, [num_groups, -1, *([num_nodes] * num_factors)])
    node_axes = list(range(2, 2 + num_factors))
    return ops.stack([ops.sum(per_node, axis=tuple(a for a in node_axes if a != axis)) for axis in node_axes])
