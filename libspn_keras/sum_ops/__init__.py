"""Sum ops: how the weighted sums of sum layers propagate backward (gradients, EM signals, samples)."""

from libspn_keras.sum_ops._base import SumOpBase
from libspn_keras.sum_ops._em import (
    BaseSelectionSumOp,
    SumOpEMBackprop,
    SumOpHardEMBackprop,
    SumOpSampleBackprop,
    SumOpUnweightedHardEMBackprop,
)
from libspn_keras.sum_ops._grad import SumOpGradBackprop

__all__ = [
    "BaseSelectionSumOp",
    "SumOpBase",
    "SumOpEMBackprop",
    "SumOpGradBackprop",
    "SumOpHardEMBackprop",
    "SumOpSampleBackprop",
    "SumOpUnweightedHardEMBackprop",
]
