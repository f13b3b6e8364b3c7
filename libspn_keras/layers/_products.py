"""Product layers of region SPNs: dense (outer) products and reductions over scopes."""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import numpy as np
from keras import ops

from libspn_keras.layers._scope_tracking import REGION_CELLS, Scopes, ScopeTracking, as_region, check_decomposable
from libspn_keras.layers._validation import Shape, check_float_dtype, check_positive_int, check_rank
from libspn_keras.math import attach_rows, attached_row_sums, attached_rows, factor_rows, from_rows, log_outer_product
from libspn_keras.math._backend import Tensor, attach, attached, in_traced_function

REGION_LAYOUT = "[batch, num_scopes, num_decomps, num_nodes]"

# Key under which a DenseProduct output (and an Undecompose of it) carries its factors (``attach``), so that a sum on
# top can contract the products without forming them in log-space (Keras attaches masks to tensors the same way).
_FACTORS_KEY = "product_factors"


class ProductFactors(NamedTuple):
    """The factors of the products that make up the nodes of a region tensor.

    Attributes:
        rows: Factor rows ``[num_factors, num_regions * num_mixed, batch, num_nodes]``
            (``libspn_keras.math.factor_rows``), regions in the order ``scope * num_decomps + decomp``.
        num_mixed: Number of consecutive factor groups whose products, concatenated, are the nodes of one region:
            1 for a ``DenseProduct``, ``num_decomps_in // num_decomps`` times that for an ``Undecompose`` of it.
    """

    rows: Tensor
    num_mixed: int


def attach_product_factors(x: Tensor, factors: ProductFactors) -> Tensor:
    """Attach the ``ProductFactors`` of the region tensor ``x`` to it (where its backend allows); return ``x``."""
    return attach(x, _FACTORS_KEY, factors)


def product_factors(x: Tensor) -> ProductFactors | None:
    """The ``ProductFactors`` of a ``DenseProduct`` output (or an ``Undecompose`` of one), if any.

    ``None`` where nothing is attached (``x`` came through another op): the layers above then read the products.
    """
    factors = attached(x, _FACTORS_KEY)
    return factors if factors is not None and factors.rows.dtype == x.dtype else None


def _check_scopes(layer: keras.layers.Layer, input_shape: Shape, num_factors: int) -> None:
    check_rank(layer.name, input_shape, 4, REGION_LAYOUT)
    num_scopes = input_shape[1]
    if num_scopes is None or num_scopes % num_factors:
        raise ValueError(
            f"Layer '{layer.name}' merges groups of num_factors={num_factors} consecutive scopes, so num_scopes "
            f"must be a known multiple of {num_factors} (pad scopes with PermuteAndPadScopes). "
            f"Received: input_shape={tuple(input_shape)}"
        )


def _merged_scopes(layer: keras.layers.Layer, scopes: Scopes | None, num_factors: int) -> Scopes | None:
    """Scopes of products of groups of ``num_factors`` consecutive scopes; raise unless they are decomposable."""
    scopes = as_region(scopes)
    if scopes is None:
        return None
    num_scopes, num_decomps, num_vars = scopes.counts.shape
    merged = scopes.counts.reshape(num_scopes // num_factors, num_factors, num_decomps, num_vars).sum(axis=1)
    check_decomposable(layer.name, merged, REGION_CELLS)
    return scopes.with_counts(merged)


@keras.saving.register_keras_serializable(package="libspn_keras")
class DenseProduct(ScopeTracking, keras.layers.Layer):
    """Computes products per decomposition and scope by an 'n-order' outer product.

    Scopes ``f * s, ..., f * s + f - 1`` (``f = num_factors``) are merged into output scope ``s``; every
    combination of one node per merged scope becomes a product node. The node index of the output is the
    row-major index of the combination (the node of the first factor varies slowest).

    Args:
        num_factors: Number of factors per product.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, num_scopes, num_decomps, num_nodes]`` log-probabilities.

    Output shape:
        ``[batch, num_scopes // num_factors, num_decomps, num_nodes ** num_factors]``.

    Example:
        >>> import numpy as np
        >>> tuple(DenseProduct(num_factors=2)(np.zeros((3, 4, 2, 5), "float32")).shape)
        (3, 2, 2, 25)
    """

    def __init__(self, num_factors: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_factors = check_positive_int("DenseProduct", "num_factors", num_factors)

    def build(self, input_shape: Shape) -> None:
        """Check the input shape."""
        _check_scopes(self, tuple(input_shape), self.num_factors)

    def call(self, x: Tensor) -> Tensor:
        """Sum (log-space product) every combination of nodes of the merged scopes."""
        check_float_dtype(self.name, x.dtype)
        _check_scopes(self, tuple(x.shape), self.num_factors)
        _, num_scopes, num_decomps, num_nodes = x.shape
        grouped = ops.reshape(x, [-1, num_scopes // self.num_factors, self.num_factors, num_decomps, num_nodes])
        out = log_outer_product(grouped, factor_axis=2)
        # What the next layer may read instead: the factors (a DenseSum contracts them without forming the
        # products) and, inside tf.function (where only what is read is computed), the products' rows.
        factors = factor_rows(x, self.num_factors)
        if in_traced_function(out):
            attach_rows(out, log_outer_product(factors, factor_axis=0))
        return attach_product_factors(out, ProductFactors(factors, 1))

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Merge groups of ``num_factors`` scopes, which must be disjoint (decomposability)."""
        return _merged_scopes(self, scopes, self.num_factors)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, num_scopes // num_factors, num_decomps, num_nodes ** num_factors]``."""
        batch, num_scopes, num_decomps, num_nodes = input_shape
        return (batch, num_scopes // self.num_factors, num_decomps, num_nodes**self.num_factors)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {"num_factors": self.num_factors, **super().get_config()}


@keras.saving.register_keras_serializable(package="libspn_keras")
class ReduceProduct(ScopeTracking, keras.layers.Layer):
    """Computes products per decomposition and scope by reduction.

    Node ``n`` of output scope ``s`` is the product of node ``n`` of scopes ``f * s, ..., f * s + f - 1``.

    Args:
        num_factors: Number of factors per product.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, num_scopes, num_decomps, num_nodes]`` log-probabilities.

    Output shape:
        ``[batch, num_scopes // num_factors, num_decomps, num_nodes]``.

    Example:
        >>> import numpy as np
        >>> tuple(ReduceProduct(num_factors=4)(np.zeros((3, 4, 2, 5), "float32")).shape)
        (3, 1, 2, 5)
    """

    def __init__(self, num_factors: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_factors = check_positive_int("ReduceProduct", "num_factors", num_factors)

    def build(self, input_shape: Shape) -> None:
        """Check the input shape."""
        _check_scopes(self, tuple(input_shape), self.num_factors)

    def call(self, x: Tensor) -> Tensor:
        """Sum (log-space product) groups of ``num_factors`` consecutive scopes."""
        check_float_dtype(self.name, x.dtype)
        _check_scopes(self, tuple(x.shape), self.num_factors)
        _, num_scopes, num_decomps, num_nodes = x.shape
        num_groups = num_scopes // self.num_factors
        row_sums = attached_row_sums(x)
        if row_sums is not None:  # the sums of rows, without the rows (e.g. over indicators: one lookup)
            factors = np.arange(self.num_factors)[np.newaxis, np.newaxis, :]
            sources = (np.arange(num_groups)[:, np.newaxis, np.newaxis] * self.num_factors + factors) * num_decomps
            sources = (sources + np.arange(num_decomps)[np.newaxis, :, np.newaxis]).reshape(-1, self.num_factors)
            return from_rows(row_sums(sources), (num_groups, num_decomps), shared=False)
        rows = attached_rows(x)
        if rows is not None:  # [groups, factors, decomps, batch, nodes]
            grouped_rows = ops.reshape(rows, [num_groups, self.num_factors, num_decomps, -1, num_nodes])
            out_rows = ops.reshape(ops.sum(grouped_rows, axis=1), [num_groups * num_decomps, -1, num_nodes])
            return from_rows(out_rows, (num_groups, num_decomps), shared=False)
        grouped = ops.reshape(x, [-1, num_groups, self.num_factors, num_decomps, num_nodes])
        return ops.sum(grouped, axis=2)

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Merge groups of ``num_factors`` scopes, which must be disjoint (decomposability)."""
        return _merged_scopes(self, scopes, self.num_factors)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, num_scopes // num_factors, num_decomps, num_nodes]``."""
        batch, num_scopes, num_decomps, num_nodes = input_shape
        return (batch, num_scopes // self.num_factors, num_decomps, num_nodes)

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {"num_factors": self.num_factors, **super().get_config()}
