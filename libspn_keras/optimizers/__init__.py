"""Optimizers specific to SPNs. Any ``keras.optimizers`` optimizer can be used for gradient training."""

from libspn_keras.optimizers._em_statistics import (
    allow_gradient_optimizers_with_em_statistics,
    check_optimizer_for_em_statistics,
    em_outcome_axis,
    is_em_statistic,
    mark_em_statistic,
)
from libspn_keras.optimizers._online_em import OnlineExpectationMaximization

__all__ = [
    "OnlineExpectationMaximization",
    "allow_gradient_optimizers_with_em_statistics",
    "check_optimizer_for_em_statistics",
    "em_outcome_axis",
    "is_em_statistic",
    "mark_em_statistic",
]
