"""Log-space kernels shared by layers and sum ops."""

from libspn_keras.math._log_weighted_sum import (
    WeightedSumParts,
    attach_rows,
    attached_rows,
    contraction_weights,
    factor_rows,
    from_rows,
    log_normalized_weights,
    log_outer_product,
    log_product_weighted_sum_parts,
    log_weighted_sum,
    log_weighted_sum_parts,
    log_weighted_sum_rows,
    normalized_weights,
    product_signal_to_factors,
    to_rows,
    weights_to_rows,
)

__all__ = [
    "WeightedSumParts",
    "attach_rows",
    "attached_rows",
    "contraction_weights",
    "factor_rows",
    "from_rows",
    "log_normalized_weights",
    "log_outer_product",
    "log_product_weighted_sum_parts",
    "log_weighted_sum",
    "log_weighted_sum_parts",
    "log_weighted_sum_rows",
    "normalized_weights",
    "product_signal_to_factors",
    "to_rows",
    "weights_to_rows",
]
