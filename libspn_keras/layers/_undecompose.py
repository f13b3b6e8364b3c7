"""Merge decompositions into the node axis."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers._products import ProductFactors, attach_product_factors, product_factors
from libspn_keras.layers._scope_tracking import (
    REGION_CELLS,
    Scopes,
    ScopeTracking,
    as_region,
    describe_cell,
    scope_difference,
)
from libspn_keras.layers._validation import Shape, check_positive_int, check_rank
from libspn_keras.math._backend import Tensor

REGION_LAYOUT = "[batch, num_scopes, num_decomps, num_nodes]"


@keras.saving.register_keras_serializable(package="libspn_keras")
class Undecompose(ScopeTracking, keras.layers.Layer):
    """Moves decompositions into the node axis, e.g. to mix all decompositions of a RAT-SPN in one sum.

    Decompositions ``g * k, ..., g * k + g - 1`` (``g = num_decomps_in // num_decomps``) of output decomposition
    ``k`` are concatenated along the node axis.

    Args:
        num_decomps: Number of decompositions left in the output.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Applied to the output of a ``DenseProduct``, the output carries the product's factors on, so that a
    ``DenseSum`` or ``RootSum`` on top can compute its sums from them, per decomposition, without forming the
    products in log-space (when the sum op allows, ``SumOpBase.fuses_products``).

    Input shape:
        ``[batch, num_scopes, num_decomps_in, num_nodes]``.

    Output shape:
        ``[batch, num_scopes, num_decomps, num_nodes * num_decomps_in // num_decomps]``.

    Example:
        >>> import numpy as np
        >>> tuple(Undecompose()(np.zeros((2, 1, 3, 4), "float32")).shape)
        (2, 1, 1, 12)
    """

    def __init__(self, num_decomps: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_decomps = check_positive_int("Undecompose", "num_decomps", num_decomps)

    def build(self, input_shape: Shape) -> None:
        """Check that the decompositions split evenly."""
        self._check_decomps(input_shape)

    def _check_decomps(self, input_shape: Shape) -> None:
        check_rank(self.name, input_shape, 4, REGION_LAYOUT)
        if input_shape[2] is None or input_shape[2] % self.num_decomps:
            raise ValueError(
                f"Layer '{self.name}' expects num_decomps_in to be a multiple of num_decomps={self.num_decomps}. "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Decompositions merged into one must have equal scopes, since sums above mix them (completeness)."""
        scopes = as_region(scopes)
        if scopes is None:
            return None
        num_scopes, num_decomps_in, num_vars = scopes.counts.shape
        group = num_decomps_in // self.num_decomps
        for scope, decomp in np.ndindex(num_scopes, num_decomps_in):
            first = (scope, decomp - decomp % group)
            difference = scope_difference(scopes.counts, first, (scope, decomp))
            if difference is not None:
                raise ValueError(
                    f"Layer '{self.name}' merges regions ({describe_cell(first, REGION_CELLS)}) and "
                    f"({describe_cell((scope, decomp), REGION_CELLS)}) with different scopes ({difference}); the "
                    "sums above mix their nodes, so they need equal scopes (completeness)."
                )
        return scopes.with_counts(scopes.counts[:, ::group])

    def call(self, x: Tensor) -> Tensor:
        """Reshape decompositions into nodes."""
        if x.shape[2] is not None:  # the layer has no weights, so it may see other shapes than in build
            self._check_decomps(tuple(x.shape))
        _, num_scopes, num_decomps_in, num_nodes = x.shape
        out = ops.reshape(x, [-1, num_scopes, self.num_decomps, num_nodes * num_decomps_in // self.num_decomps])
        factors = product_factors(x)
        if factors is not None:  # the products of num_mixed consecutive regions become the nodes of one region
            num_mixed = factors.num_mixed * num_decomps_in // self.num_decomps
            attach_product_factors(out, ProductFactors(factors.rows, num_mixed))
        return out

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, num_scopes, num_decomps, num_nodes * num_decomps_in // num_decomps]``."""
        batch, num_scopes, num_decomps_in, num_nodes = input_shape
        return (batch, num_scopes, self.num_decomps, num_nodes * num_decomps_in // self.num_decomps)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {"num_decomps": self.num_decomps, **super().get_config()}
