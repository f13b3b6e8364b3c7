"""Metrics for SPNs."""

from libspn_keras.metrics._metrics import LogJoint, LogLikelihood

__all__ = ["LogJoint", "LogLikelihood"]
