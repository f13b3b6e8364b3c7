"""Log-space kernels shared by layers and sum ops."""

from libspn_keras.math._log_weighted_sum import (
    WeightedSumParts,
    log_normalized_weights,
    log_weighted_sum,
    log_weighted_sum_parts,
    normalized_weights,
    weight_equation,
)

__all__ = [
    "WeightedSumParts",
    "log_normalized_weights",
    "log_weighted_sum",
    "log_weighted_sum_parts",
    "normalized_weights",
    "weight_equation",
]
