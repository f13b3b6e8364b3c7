"""Densely connected sums per scope and decomposition."""

from __future__ import annotations

import keras

from libspn_keras.layers._base_sum import BaseWeightedSums
from libspn_keras.layers._products import product_factors
from libspn_keras.layers._scope_tracking import Scopes, ScopeTracking
from libspn_keras.layers._validation import Shape, check_float_dtype, check_rank
from libspn_keras.math._backend import Tensor

REGION_LAYOUT = "[batch, num_scopes, num_decomps, num_nodes]"


@keras.saving.register_keras_serializable(package="libspn_keras")
class DenseSum(ScopeTracking, BaseWeightedSums):
    """Computes densely connected sums per scope and decomposition.

    Every sum of a region (scope, decomposition) is connected to every node of that region. Weights are the
    accumulators normalized over the input nodes, so the SPN stays normalized.

    Args:
        num_sums: Number of sums per scope (and decomposition).
        logspace_accumulators: See ``BaseSum``. ``None`` selects the sum op's default.
        accumulator_initializer: Initializer for the accumulators (linear space; converted to log-space values if
            ``logspace_accumulators`` is enabled).
        sum_op: ``SumOpBase`` instance which determines how to compute the forward and backward pass of the
            weighted sums. Defaults to ``get_default_sum_op()``.
        accumulator_regularizer: Regularizer for the accumulators (experimental).
        logspace_accumulator_constraint: Constraint for log-space accumulators.
        linear_accumulator_constraint: Constraint for linear accumulators; defaults to a constraint that keeps a
            small positive constant at minimum. Ignored if accumulators are log-space.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, num_scopes, num_decomps, num_in]`` log-probabilities.

    Output shape:
        ``[batch, num_scopes, num_decomps, num_sums]`` log-probabilities. Accumulators have shape
        ``[num_scopes, num_decomps, num_in, num_sums]``. If all inputs of a region are ``-inf`` its sums are
        ``-inf`` (with zero gradient).

    Applied to the output of a ``DenseProduct`` (or of an ``Undecompose`` of one), the sums are computed from the
    product's factors without forming the ``num_nodes ** num_factors`` products in log-space, when the sum op
    allows (``SumOpBase.fuses_products``): one exponential per factor node and one batched matmul (after an
    ``Undecompose``: per decomposition, then added in log-space). The values are the same.

    Example:
        >>> import numpy as np
        >>> layer = DenseSum(num_sums=3)
        >>> tuple(layer(np.zeros((2, 4, 1, 5), "float32")).shape)
        (2, 4, 1, 3)
    """

    def build(self, input_shape: Shape) -> None:
        """Create accumulators of shape ``[num_scopes, num_decomps, num_in, num_sums]``."""
        check_rank(self.name, input_shape, 4, REGION_LAYOUT)
        _, num_scopes, num_decomps, num_in = input_shape
        if None in (num_scopes, num_decomps, num_in):
            raise ValueError(
                f"Layer '{self.name}' needs known num_scopes, num_decomps and num_nodes. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self._add_accumulators((num_scopes, num_decomps, num_in, self.num_sums))

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """The sums of a region mix its nodes, which share the region's scope: complete by construction."""
        return scopes

    def call(self, x: Tensor) -> Tensor:
        """Compute the weighted sums of ``x``, from the factors of a ``DenseProduct`` output where possible."""
        check_float_dtype(self.name, x.dtype)
        factors = product_factors(x)
        if factors is not None and self.sum_op.fuses_products:
            return self.sum_op.weighted_sum_of_products(
                factors.rows, self.accumulators, self.logspace_accumulators, factors.num_mixed
            )
        return self.sum_op.weighted_sum(x, self.accumulators, self.logspace_accumulators)
