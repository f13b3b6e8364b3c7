"""Log-space kernels shared by layers and sum ops."""

from libspn_keras.math._log_weighted_sum import log_normalized_weights, log_weighted_sum, normalized_weights

__all__ = ["log_normalized_weights", "log_weighted_sum", "normalized_weights"]
