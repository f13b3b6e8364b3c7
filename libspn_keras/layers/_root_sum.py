"""The final sum of an SPN."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers._base_sum import BaseSum
from libspn_keras.layers._products import product_factors
from libspn_keras.layers._scope_tracking import REGION_CELLS, Scopes, ScopeTracking, as_region, check_root
from libspn_keras.layers._validation import Shape, check_bool, check_float_dtype
from libspn_keras.math._backend import Tensor
from libspn_keras.sum_ops import SumOpBase


@keras.saving.register_keras_serializable(package="libspn_keras")
class RootSum(ScopeTracking, BaseSum):
    """Final sum of an SPN. Expects input to be in log-space and produces log-space output.

    Args:
        return_weighted_child_logits: If ``True``, returns the weighted child log-probabilities
            ``log w_c + log p(x | c)``, i.e. ``log p(x, Y=c)`` when the children are class sub-SPNs, which can be
            used with e.g. ``SparseCategoricalCrossentropy(from_logits=True)`` or ``NegativeLogJoint``. If
            ``False``, computes the weighted sum of the input, the log-probability of the distribution defined
            by the SPN.
        logspace_accumulators: See ``BaseSum``.
        accumulator_initializer: Initializer for accumulator. If ``None``, defaults to ``Constant(1.0)``
            (uniform class priors).
        accumulator_regularizer: Regularizer for accumulator.
        linear_accumulator_constraint: Constraint for linear accumulators.
        logspace_accumulator_constraint: Constraint for log-space accumulators.
        sum_op: ``SumOpBase`` instance which determines how to compute the forward and backward pass.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, 1, num_decomps, num_nodes]`` (a region-layer output with a single scope and any number of
        decompositions) or ``[batch, num_in]``. The children of the root are all decompositions x nodes, in the
        order ``decomp * num_nodes + node`` (``num_in = num_decomps * num_nodes``), as in the original library: a
        RAT-SPN may end in ``DenseSum(num_sums=1) -> RootSum`` or ``DenseProduct -> RootSum`` over several
        decompositions, without an ``Undecompose``.

    Over the output of a ``DenseProduct``, or of an ``Undecompose`` of one (the root of a RAT-SPN), the sum is
    computed from the product's factors when the sum op allows (``SumOpBase.fuses_products``) and
    ``return_weighted_child_logits`` is ``False``: per decomposition, the products of all factors but the last
    times the weights, then the last factor, added in log-space; the ``num_in`` products are never formed in
    log-space. The values are the same.

    Output shape:
        ``[batch, num_in]`` if ``return_weighted_child_logits`` else ``[batch, 1]``. Accumulators have the
        original's shape ``[1, 1, num_in, 1]``.

    Example:
        >>> import numpy as np
        >>> root = RootSum(return_weighted_child_logits=False)
        >>> out = root(np.log(np.full((2, 1, 1, 4), 0.5, "float32")))
        >>> np.round(np.exp(np.asarray(out)), 5).ravel().tolist()
        [0.5, 0.5]
    """

    def __init__(
        self,
        return_weighted_child_logits: bool = True,
        logspace_accumulators: bool | None = None,
        accumulator_initializer: keras.initializers.Initializer | None = None,
        accumulator_regularizer: keras.regularizers.Regularizer | None = None,
        linear_accumulator_constraint: keras.constraints.Constraint | None = None,
        sum_op: SumOpBase | None = None,
        logspace_accumulator_constraint: keras.constraints.Constraint | None = None,
        **kwargs: Any,
    ) -> None:
        self.return_weighted_child_logits = check_bool(
            "RootSum", "return_weighted_child_logits", return_weighted_child_logits
        )
        super().__init__(
            logspace_accumulators=logspace_accumulators,
            accumulator_initializer=accumulator_initializer or keras.initializers.Constant(1.0),
            sum_op=sum_op,
            accumulator_regularizer=accumulator_regularizer,
            logspace_accumulator_constraint=logspace_accumulator_constraint,
            linear_accumulator_constraint=linear_accumulator_constraint,
            **kwargs,
        )

    def build(self, input_shape: Shape) -> None:
        """Create accumulators of shape ``[1, 1, num_decomps * num_nodes, 1]``."""
        input_shape = tuple(input_shape)
        # Later calls may pass the same children as [batch, 1, num_decomps, num_nodes] or [batch, num_in] (``call``
        # checks that their number matches).
        spec = keras.InputSpec(axes={-1: input_shape[-1]})
        self._add_accumulators((1, 1, self._num_in(input_shape), 1), input_spec=spec)

    def _num_in(self, input_shape: tuple[Any, ...]) -> int:
        """The number of children, ``num_decomps * num_nodes``, of an input of ``input_shape``."""
        if len(input_shape) == 4 and input_shape[1] != 1 or len(input_shape) not in (2, 4):
            raise ValueError(
                f"Layer '{self.name}' expects inputs of shape [batch, 1, num_decomps, num_nodes] or "
                "[batch, num_in]; use ReduceProduct/DenseProduct to reach a single scope. "
                f"Received: input_shape={input_shape}"
            )
        if None in input_shape[1:]:
            raise ValueError(
                f"Layer '{self.name}' needs known num_decomps and num_nodes. Received: input_shape={input_shape}"
            )
        return int(np.prod(input_shape[1:]))

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """The root's children must cover every variable exactly once; the output is final (no scopes)."""
        scopes = as_region(scopes)
        if scopes is not None and scopes.counts.ndim == 3:
            check_root(self.name, scopes, REGION_CELLS)
        return None

    def call(self, x: Tensor) -> Tensor:
        """Compute the root (or the weighted children) in log-space."""
        check_float_dtype(self.name, x.dtype)
        num_in = self._num_in(tuple(x.shape))
        assert self.accumulators is not None, "build() creates the accumulators"
        if num_in != self.accumulators.shape[2]:
            raise ValueError(
                f"Layer '{self.name}' was built for {self.accumulators.shape[2]} children (num_decomps * num_nodes). "
                f"Received: input_shape={tuple(x.shape)}"
            )
        factors = product_factors(x)
        if factors is not None and not self.return_weighted_child_logits and self.sum_op.fuses_products:
            # The products of every decomposition are children of the one sum: num_decomps more groups to mix.
            num_mixed = factors.num_mixed * x.shape[2]
            out = self.sum_op.weighted_sum_of_products(
                factors.rows, self.accumulators, self.logspace_accumulators, num_mixed
            )
            return ops.reshape(out, [-1, 1])
        x = ops.reshape(x, [-1, num_in])  # decomposition-major: child d * num_nodes + n
        accumulators = ops.reshape(self.accumulators, [num_in, 1])
        if self.return_weighted_child_logits:
            return self.sum_op.weighted_children(x, accumulators, self.logspace_accumulators)
        return self.sum_op.weighted_sum(x, accumulators, self.logspace_accumulators)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, num_decomps * num_nodes]`` or ``[batch, 1]``."""
        input_shape = tuple(input_shape)
        return (input_shape[0], self._num_in(input_shape) if self.return_weighted_child_logits else 1)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {"return_weighted_child_logits": self.return_weighted_child_logits, **super().get_config()}
