"""LibSPN Keras: Sum-Product Networks as Keras 3 layers."""

from importlib.metadata import PackageNotFoundError, version

from libspn_keras import (
    config,
    constraints,
    datasets,
    initializers,
    layers,
    losses,
    math,
    metrics,
    models,
    optimizers,
    structure,
    sum_ops,
)
from libspn_keras.config import (
    get_default_accumulator_initializer,
    get_default_linear_accumulator_constraint,
    get_default_linear_accumulators_constraint,
    get_default_logspace_accumulator_constraint,
    get_default_logspace_accumulators_constraint,
    get_default_sum_op,
    set_default_accumulator_initializer,
    set_default_linear_accumulator_constraint,
    set_default_linear_accumulators_constraint,
    set_default_logspace_accumulator_constraint,
    set_default_logspace_accumulators_constraint,
    set_default_sum_op,
)
from libspn_keras.logspace import logspace_wrapper_initializer
from libspn_keras.region import RegionNode, RegionVariable, region_graph_to_dense_spn
from libspn_keras.sum_ops import (
    SumOpBase,
    SumOpEMBackprop,
    SumOpGradBackprop,
    SumOpHardEMBackprop,
    SumOpSampleBackprop,
    SumOpUnweightedHardEMBackprop,
)
from libspn_keras.visualize import visualize_dense_spn

try:
    __version__ = version("libspn-keras")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "RegionNode",
    "RegionVariable",
    "SumOpBase",
    "SumOpEMBackprop",
    "SumOpGradBackprop",
    "SumOpHardEMBackprop",
    "SumOpSampleBackprop",
    "SumOpUnweightedHardEMBackprop",
    "__version__",
    "config",
    "constraints",
    "datasets",
    "get_default_accumulator_initializer",
    "get_default_linear_accumulator_constraint",
    "get_default_linear_accumulators_constraint",
    "get_default_logspace_accumulator_constraint",
    "get_default_logspace_accumulators_constraint",
    "get_default_sum_op",
    "initializers",
    "layers",
    "logspace_wrapper_initializer",
    "losses",
    "math",
    "metrics",
    "models",
    "optimizers",
    "region_graph_to_dense_spn",
    "set_default_accumulator_initializer",
    "set_default_linear_accumulator_constraint",
    "set_default_linear_accumulators_constraint",
    "set_default_logspace_accumulator_constraint",
    "set_default_logspace_accumulators_constraint",
    "set_default_sum_op",
    "structure",
    "sum_ops",
    "visualize_dense_spn",
]
