"""Losses for generative (supervised and unsupervised) training."""

from libspn_keras.losses._losses import NegativeLogJoint, NegativeLogLikelihood

__all__ = ["NegativeLogJoint", "NegativeLogLikelihood"]
