"""Global defaults read once when a layer is constructed."""

from libspn_keras.config import accumulator_constraint, accumulator_initializer, sum_op
from libspn_keras.config.accumulator_constraint import (
    get_default_linear_accumulator_constraint,
    get_default_linear_accumulators_constraint,
    get_default_logspace_accumulator_constraint,
    get_default_logspace_accumulators_constraint,
    set_default_linear_accumulator_constraint,
    set_default_linear_accumulators_constraint,
    set_default_logspace_accumulator_constraint,
    set_default_logspace_accumulators_constraint,
)
from libspn_keras.config.accumulator_initializer import (
    get_default_accumulator_initializer,
    set_default_accumulator_initializer,
)
from libspn_keras.config.sum_op import get_default_sum_op, set_default_sum_op

__all__ = [
    "accumulator_constraint",
    "accumulator_initializer",
    "get_default_accumulator_initializer",
    "get_default_linear_accumulator_constraint",
    "get_default_linear_accumulators_constraint",
    "get_default_logspace_accumulator_constraint",
    "get_default_logspace_accumulators_constraint",
    "get_default_sum_op",
    "set_default_accumulator_initializer",
    "set_default_linear_accumulator_constraint",
    "set_default_linear_accumulators_constraint",
    "set_default_logspace_accumulator_constraint",
    "set_default_logspace_accumulators_constraint",
    "set_default_sum_op",
    "sum_op",
]
