"""Constraints for linear accumulators, log-space accumulators and leaf scales."""

from libspn_keras.constraints._clip import Clip
from libspn_keras.constraints._greater_equal_epsilon import GreaterEqualEpsilon, GreaterEqualEpsilonNormalized
from libspn_keras.constraints._log_normalized import LogNormalized

__all__ = ["Clip", "GreaterEqualEpsilon", "GreaterEqualEpsilonNormalized", "LogNormalized"]
