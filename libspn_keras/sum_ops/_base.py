"""Base class of sum ops: one forward pass, each op contributes its backward rule."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from keras import ops

from libspn_keras.math import (
    IndicatorRows,
    WeightedSumParts,
    attach_row_sums,
    attached_indicator_index,
    contraction_weights,
    from_rows,
    gather_or_zero,
    index_rows,
    indicator_log_table,
    indicator_sums_table,
    inverse_gather_index,
    log_normalized_weights,
    log_outer_product,
    log_product_weighted_sum_parts,
    log_sum_exp,
    log_weighted_sum_of_indicators_rows,
    log_weighted_sum_rows,
    mixed_product_rows,
    product_signal_to_factors,
    to_rows,
    weights_to_rows,
)
from libspn_keras.math._backend import Tensor, as_tensor, backward_rules_traced, custom_gradient, vjp


class SumOpBase(abc.ABC):
    """Defines how the weighted sums of sum layers are computed forward and backward.

    Every sum layer (``DenseSum``, ``RootSum`` and the spatial sums) delegates its weighted sum to a sum op.
    All sum ops share one forward pass (a log-space weighted sum computed as one batched matmul with
    max-subtraction, ``libspn_keras.math.log_weighted_sum``); they differ only in what flows backward:
    gradients for ``SumOpGradBackprop``, (hard) EM signals or sampling signals for the others.

    Subclasses set ``default_logspace_accumulators`` (the choice when a layer passes ``None``) and
    ``supports_logspace_accumulators``; ops with a custom backward pass override ``backward``, which works in
    the rows layout of ``libspn_keras.math`` (children ``[groups, rows, in]``, weights ``[groups, in, out]``).
    ``fuses_products`` says whether the op can contract a ``DenseProduct``'s products without forming them in
    log-space (``weighted_sum_of_products``, used by ``SequentialSumProductNetwork``); ops whose backward rule
    needs the log-space children (hard EM, sampling) set it to ``False``.

    **Backward signals of custom ops.** For a custom op, the "gradient" that reaches the accumulators is the
    (negated, batch-averaged when the loss averages) *count* of each edge: how often, in expectation (soft EM) or
    along the selected path (hard EM, sampling), the edge is used. ``OnlineExpectationMaximization`` turns these
    counts into accumulator updates (``normalizes_counts`` says whether it normalizes each sum's counts first). The
    signal that reaches the children is the count of each child.
    """

    #: Whether ``backward`` replaces the autodiff gradient.
    has_custom_backward: ClassVar[bool] = False
    #: Whether ``weighted_sum_of_products`` contracts products without forming them in log-space.
    fuses_products: ClassVar[bool] = True
    #: Whether ``OnlineExpectationMaximization`` (by default) normalizes each sum's edge counts before mixing them
    #: into its weights, as the original LibSPN Keras did for this op (its soft EM op, Einsum-style).
    normalizes_counts: ClassVar[bool] = False

    default_logspace_accumulators: ClassVar[bool] = True
    supports_logspace_accumulators: ClassVar[bool] = True

    @property
    def merges_equal_rows(self) -> bool:
        """Whether the edge signals of rows with equal children may be computed once, from their summed signal.

        True when the backward rule is linear in the signal arriving at the sums and depends on each row only
        through its children (no per-row randomness): the edge signals of sums over an ``IndicatorLeaf`` are then
        computed per indicator row instead of per sample (``_apply``).
        """
        return True

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

    def weighted_sum(self, x: Tensor, accumulators: Tensor, logspace_accumulators: bool) -> Tensor:
        """Compute log-space weighted sums over the last axis of ``x``.

        Over the output of an ``IndicatorLeaf`` (which attaches its ``libspn_keras.math.indicator_index``) the sums
        are looked up from the log-weights (``libspn_keras.math.log_weighted_sum_of_indicators_rows``), the same
        values without an ``exp``, a matmul and a ``log`` per output. The backward pass is this op's; its edge
        signals are computed once per indicator row (observed state, marginalized, impossible) from the summed
        signals of the samples in that row, unless the op draws per sample (``merges_equal_rows``).

        Args:
            x: Log-probabilities of the children, ``[batch, *middle, num_in]``.
            accumulators: Unnormalized weights, ``[*middle, num_in, num_out]`` or ``[num_in, num_out]``.
            logspace_accumulators: Whether ``accumulators`` are log-space values.

        Returns:
            Log-probabilities of the sums, ``[batch, *middle, num_out]``.
        """
        x = as_tensor(x)
        accumulators = as_tensor(accumulators)
        middle, shared = tuple(x.shape[1:-1]), len(accumulators.shape) == 2

        def forward(x: Tensor, weights_rows: Tensor, log_norm_rows: Tensor | None) -> WeightedSumParts:
            return self.forward_rows(to_rows(x, len(accumulators.shape)), weights_rows, log_norm_rows)

        def to_children(child_rows: Tensor) -> Tensor:
            return from_rows(child_rows, middle, shared)

        index = attached_indicator_index(x)
        indicators = None if index is None else IndicatorRows(index_rows(index, shared), x.shape[-1])
        log_sums = self._apply(forward, to_children, x, accumulators, logspace_accumulators, indicators)
        out = from_rows(log_sums, middle, shared)
        if indicators is not None and not shared:

            def row_sums(sources: np.ndarray) -> Tensor:
                return self._apply(forward, to_children, x, accumulators, logspace_accumulators, indicators, sources)

            attach_row_sums(out, row_sums)
        return out

    def weighted_sum_of_products(
        self, factors: Tensor, accumulators: Tensor, logspace_accumulators: bool, num_mixed: int = 1
    ) -> Tensor:
        """Weighted sums over the outer products of ``factors`` (the output of a ``DenseProduct``).

        Equals ``weighted_sum`` of the products. Ops with ``fuses_products`` never form the products in
        log-space (``libspn_keras.math.log_product_weighted_sum_parts``); the others form them and take the
        ordinary path.

        With ``num_mixed > 1`` the children of each sum are the products of ``num_mixed`` consecutive factor
        groups, concatenated along the node axis (``Undecompose`` of a ``DenseProduct``, e.g. the root of a
        RAT-SPN): the sums are computed per group and added in log-space (``libspn_keras.math.log_sum_exp``). The
        signal of a custom op splits between the groups in proportion to their partial sums, which is how every
        op with ``fuses_products`` (gradient, soft EM) splits the signal of a sum between its children.

        Args:
            factors: Factor rows ``[num_factors, num_groups * num_decomps * num_mixed, batch, num_nodes]``
                (``libspn_keras.math.factor_rows``).
            accumulators: Unnormalized weights
                ``[num_groups, num_decomps, num_mixed * num_nodes ** num_factors, num_out]``.
            logspace_accumulators: Whether ``accumulators`` are log-space values.
            num_mixed: Number of factor groups whose products are the children of one region's sums.

        Returns:
            Log-probabilities of the sums, ``[batch, num_groups, num_decomps, num_out]``.
        """
        factors = as_tensor(factors)
        accumulators = as_tensor(accumulators)
        middle = tuple(accumulators.shape[:2])
        if not self.fuses_products:
            products = mixed_product_rows(log_outer_product(factors), num_mixed)
            return self.weighted_sum(from_rows(products, middle, shared=False), accumulators, logspace_accumulators)
        num_factors, num_rows = factors.shape[0], ops.shape(factors)[2]

        def to_children(child_rows: Tensor) -> Tensor:
            # Without the signal of the normalizer's row (``WeightedSumParts.extra_rows``), if there is one.
            return product_signal_to_factors(child_rows, num_factors)[:, :, :num_rows]

        def forward(factors: Tensor, weights_rows: Tensor, log_norm_rows: Tensor | None) -> WeightedSumParts:
            if num_mixed == 1:
                # Unnormalized weights are normalized by the same matmul (one more row); the log_norm of
                # contraction_weights is then not read, and inside tf.function not computed.
                normalize = log_norm_rows is not None
                return log_product_weighted_sum_parts(factors, weights_rows, normalize=normalize)
            # One row of weights per group: [regions, mixed * products, out] -> [regions * mixed, products, out].
            num_out = weights_rows.shape[-1]
            weights_rows = ops.reshape(weights_rows, [-1, weights_rows.shape[1] // num_mixed, num_out])
            if log_norm_rows is not None:
                log_norm_rows = ops.repeat(log_norm_rows, num_mixed, axis=0)
            return log_product_weighted_sum_parts(factors, weights_rows, log_norm_rows)

        log_sums = self._apply(forward, to_children, factors, accumulators, logspace_accumulators)
        if num_mixed > 1:
            log_sums = log_sum_exp(ops.reshape(log_sums, [-1, num_mixed, num_rows, log_sums.shape[-1]]), axis=1)
        return from_rows(log_sums, middle, shared=False)

    def _apply(
        self,
        forward: Callable[[Tensor, Tensor, Tensor | None], WeightedSumParts],
        to_children: Callable[[Tensor], Tensor],
        children: Tensor,
        accumulators: Tensor,
        logspace_accumulators: bool,
        indicators: IndicatorRows | None = None,
        sources: np.ndarray | None = None,
    ) -> Tensor:
        """Run ``forward`` with this op's backward rule; return the sums in the rows layout.

        ``forward`` maps the children and the weights and log-normalizer in the rows layout
        (``libspn_keras.math.contraction_weights``) to the ``WeightedSumParts``.

        ``indicators``, if given, says that the children are log-indicators (``IndicatorRows``). The sums are then
        looked up from the log-weights. The edge signals are computed once per indicator row rather than per
        sample when ``merges_equal_rows``: the signals of the samples that share a row are summed first (a
        one-hot matmul), and the backward rule runs on the ``num_states + 2`` rows of
        ``libspn_keras.math.indicator_log_table``. The children's signal is computed per sample, from ``forward``,
        and only if something reads it (a leaf below with weights, or a query): in a ``tf.function`` nothing else
        of that is run. Autodiff ops take these backward passes with ``libspn_keras.math.vjp``, whose gradient is
        itself differentiable: second-order gradients are those of ``forward``.

        ``sources`` (with ``indicators``; static int ``[num_out_rows, num_terms]``, see
        ``libspn_keras.math.attach_row_sums``) returns instead the sums of those groups of rows, as one gather from
        the flattened lookup table and a sum over the terms; backward, the signal of each group goes to the rows it
        sums (every row is in at most one group) and then takes the path above.
        """

        def parts_of(
            forward: Callable[[Tensor, Tensor, Tensor | None], WeightedSumParts],
        ) -> Callable[[Tensor, Tensor], WeightedSumParts]:
            def parts(children: Tensor, accumulators: Tensor) -> WeightedSumParts:
                weights, log_norm = contraction_weights(accumulators, logspace_accumulators)
                log_norm_rows = None if log_norm is None else weights_to_rows(log_norm)
                return forward(children, weights_to_rows(weights), log_norm_rows)

            return parts

        weighted_parts = parts_of(forward)
        if indicators is None and not self.has_custom_backward:
            return weighted_parts(children, accumulators).log_sums

        # Where the backward rule is traced (JAX), its random draws take their seed from one drawn here, in the
        # forward pass; elsewhere the backward rule draws them itself (``backward``).
        seed = self.backward_seed() if backward_rules_traced() else None

        def backward(parts: WeightedSumParts, dy: Tensor) -> tuple[Tensor, Tensor]:
            if parts.extra_rows:  # rows the forward pass added for itself get no signal
                dy = ops.pad(dy, [[0, 0], [0, parts.extra_rows], [0, 0]])
            child_rows, edge_rows = self.backward(parts, dy, seed)
            return to_children(child_rows), ops.reshape(edge_rows, ops.shape(accumulators))

        def recomputed_backward(
            parts_of: Callable[[Tensor, Tensor], WeightedSumParts],
            children: Tensor,
            accumulators: Tensor,
            dy: Tensor,
        ) -> Any:
            if self.has_custom_backward:
                child_rows, edge_rows = self.backward(parts_of(children, accumulators), dy, seed)
                return child_rows, ops.reshape(edge_rows, ops.shape(accumulators))
            _, (child_grad, edge_grad) = vjp(lambda c, a: parts_of(c, a).log_sums, [children, accumulators], dy)
            return child_grad, edge_grad

        def indicator_backward(children: Tensor, accumulators: Tensor, dy: Tensor) -> Any:
            assert indicators is not None
            child_rows, edge_grad = recomputed_backward(weighted_parts, children, accumulators, dy)
            child_grad = child_rows if not self.has_custom_backward else to_children(child_rows)
            if not self.merges_equal_rows:
                return child_grad, edge_grad
            num_rows = indicators.num_states + 2
            one_hot = ops.one_hot(indicators.index_rows, num_rows, dtype=dy.dtype)  # [groups, rows, states + 2]
            state_dy = ops.matmul(ops.swapaxes(one_hot, -1, -2), dy)  # [groups, states + 2, out]
            table = indicator_log_table(indicators.num_states, dy.dtype)
            table_rows = ops.broadcast_to(table, [ops.shape(state_dy)[0], *table.shape])
            return child_grad, recomputed_backward(parts_of(self.forward_rows), table_rows, accumulators, state_dy)[1]

        @custom_gradient
        def apply(children: Tensor, accumulators: Tensor) -> tuple[Tensor, Any]:
            if indicators is not None:
                log_weights = weights_to_rows(log_normalized_weights(accumulators, logspace_accumulators))
                if sources is not None:
                    num_rows = log_weights.shape[0]

                    def summed_backward(dy: Tensor) -> Any:
                        return indicator_backward(children, accumulators, spread_to_sources(dy, sources, num_rows))

                    return summed_lookup(indicators, indicator_sums_table(log_weights), sources), summed_backward
                log_sums = log_weighted_sum_of_indicators_rows(indicators.index_rows, log_weights)
                return log_sums, lambda dy: indicator_backward(children, accumulators, dy)
            parts = weighted_parts(children, accumulators)
            return parts.log_sums, lambda dy: backward(parts, dy)

        return apply(children, accumulators)

    def forward_rows(self, x_rows: Tensor, weights_rows: Tensor, log_norm: Tensor | None) -> WeightedSumParts:
        """The forward pass in the rows layout (``libspn_keras.math.log_weighted_sum_rows``).

        Args:
            x_rows: Log-probabilities ``[num_groups, num_rows, num_in]``.
            weights_rows: Linear weights ``[num_groups, num_in, num_out]``: normalized, or proportional per output
                to the normalized weights (``libspn_keras.math.contraction_weights``).
            log_norm: Log of that proportion, ``[num_groups, 1, num_out]``; ``None`` for normalized weights.

        Returns:
            The sums and the intermediates the backward rule uses.
        """
        return log_weighted_sum_rows(x_rows, weights_rows, log_norm)

    def backward_seed(self) -> Tensor | None:
        """The seed (int32 ``[2]``) of the random draws of one backward pass, or ``None`` for ops that draw nothing.

        Drawn in the forward pass where backward rules are traced (JAX, ``libspn_keras.math.backward_rules_traced``),
        and passed to ``backward``.
        """
        return None

    def backward(self, parts: WeightedSumParts, dy: Tensor, seed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Backward rule of ops with ``has_custom_backward``, in the rows layout.

        Args:
            parts: Forward intermediates (``WeightedSumParts``).
            dy: Signal arriving at the sums, ``[num_groups, num_rows, num_out]``.
            seed: ``backward_seed()``, drawn in the forward pass; ``None``: an op that draws draws its own seeds.

        Returns:
            The signal of the children ``[num_groups, num_rows, num_in]`` and the edge counts
            ``[num_groups, num_in, num_out]``.
        """
        raise NotImplementedError(f"{type(self).__name__} uses autodiff and has no custom backward rule.")

    def weighted_children(self, x: Tensor, accumulators: Tensor, logspace_accumulators: bool) -> Tensor:
        """Compute the weighted children ``x_i + log w_i`` of a single root sum (e.g. class logits).

        Args:
            x: Log-probabilities of the children, ``[batch, num_in]``.
            accumulators: Unnormalized weights, ``[num_in, 1]``.
            logspace_accumulators: Whether ``accumulators`` are log-space values.

        Returns:
            The weighted child log-probabilities, ``[batch, num_in]``.
        """
        if not self.has_custom_backward:
            return x + ops.transpose(log_normalized_weights(accumulators, logspace_accumulators))

        @custom_gradient
        def forward(x: Tensor, accumulators: Tensor) -> tuple[Tensor, Any]:
            def grad(dy: Tensor) -> tuple[Tensor, Tensor]:
                # The signal of each child is its own count; the edge counts are summed over the batch.
                return dy, ops.transpose(ops.sum(dy, axis=0, keepdims=True))

            return x + ops.transpose(log_normalized_weights(accumulators, logspace_accumulators)), grad

        return forward(as_tensor(x), as_tensor(accumulators))

    def weighted_conv(
        self, x: Tensor, accumulators: Tensor, logspace_accumulators: bool, normalize_in_forward_pass: bool = True
    ) -> Tensor:
        """Compute the 1x1 convolutional sums of ``Conv2DSum`` (LibSPN Keras 0.6's entry point): ``weighted_sum``.

        Args:
            x: Log-probabilities of the children, ``[batch, height, width, channels]``.
            accumulators: Unnormalized weights shared by all cells, ``[channels, num_sums]`` or the original's
                ``[1, 1, channels, num_sums]``.
            logspace_accumulators: Whether ``accumulators`` are log-space values.
            normalize_in_forward_pass: If ``False``, the accumulators are the weights as they are (their log-total
                is added back; for EM ops the counts are those of the normalized weights).

        Returns:
            Log-probabilities of the sums, ``[batch, height, width, num_sums]``.

        Example:
            >>> import numpy as np
            >>> from libspn_keras.sum_ops import SumOpGradBackprop
            >>> x = np.log(np.full((1, 2, 2, 3), 0.5, "float32"))
            >>> out = SumOpGradBackprop().weighted_conv(x, np.ones((1, 1, 3, 2), "float32"), False)
            >>> tuple(out.shape), round(float(out[0, 0, 0, 0]), 4)
            ((1, 2, 2, 2), -0.6931)
        """
        accumulators = as_tensor(accumulators)
        accumulators = ops.reshape(accumulators, tuple(accumulators.shape[-2:]))
        out = self.weighted_sum(x, accumulators, logspace_accumulators)
        if normalize_in_forward_pass:
            return out
        totals = accumulators if logspace_accumulators else ops.log(accumulators)
        log_total = ops.cast(ops.logsumexp(totals, axis=0), out.dtype)
        return out + (ops.stop_gradient(log_total) if self.has_custom_backward else log_total)

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


def summed_lookup(indicators: IndicatorRows, table: Tensor, sources: np.ndarray) -> Tensor:
    """Sums of groups of looked-up rows: row ``i`` is ``sum_t lookup[sources[i, t]]``, ``sources >= G`` add nothing.

    Args:
        indicators: The children's ``IndicatorRows`` (``[G, batch]`` row indices).
        table: ``indicator_sums_table`` of the weights, ``[G, num_states + 2, num_out]``.
        sources: Static int ``[num_out_rows, num_terms]``.

    Returns:
        ``[num_out_rows, batch, num_out]``.
    """
    num_groups, num_table_rows, num_out = table.shape
    clipped = np.minimum(sources, num_groups).astype(np.int32)
    states = gather_or_zero(indicators.index_rows, clipped)  # [out_rows, terms, batch]
    offsets = (clipped * num_table_rows)[..., np.newaxis]
    padding = num_groups * num_table_rows  # the zero row after the flattened table
    flat_index = ops.where(offsets < padding, states + offsets, padding)
    rows = gather_or_zero(ops.reshape(table, [-1, num_out]), ops.transpose(flat_index, [0, 2, 1]))
    return ops.sum(rows, axis=2)


def spread_to_sources(dy: Tensor, sources: np.ndarray, num_rows: int) -> Tensor:
    """The signal ``[num_rows, batch, num_out]`` of the rows that ``summed_lookup`` summed, from that of the sums."""
    return gather_or_zero(dy, inverse_gather_index(sources, num_rows))
