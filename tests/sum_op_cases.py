"""The trainable sum ops by name, as factories, for tests that run every op through the same network."""

from __future__ import annotations

from collections.abc import Callable

from libspn_keras import sum_ops

OPS: dict[str, Callable[[], sum_ops.SumOpBase]] = {
    "grad": lambda: sum_ops.SumOpGradBackprop(),
    "em": lambda: sum_ops.SumOpEMBackprop(),
    "hard_em": lambda: sum_ops.SumOpHardEMBackprop(),
    "unweighted_hard_em": lambda: sum_ops.SumOpUnweightedHardEMBackprop(),
}
