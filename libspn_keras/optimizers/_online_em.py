"""Online expectation maximization as a Keras optimizer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from libspn_keras.optimizers._em_statistics import em_outcome_axis, is_em_statistic

#: Variables with at least this many entries are updated by one XLA-compiled computation (``jit_compile=True``):
#: XLA fuses the per-sum reductions and the multiply-add into about two passes over the variable instead of five
#: (the update of the 31.7M accumulators of ``benchmarks/ratspn_em.py`` takes 13 instead of 40 ms on 2 CPU
#: cores); smaller ones, where compiling would cost more than it saves, run the same function uncompiled.
XLA_UPDATE_MIN_SIZE = 1 << 16


def _updated_value(variable: Any, gradient: Any, lr: Any, rule: str, axis: int | None) -> Any:
    """The new value of ``variable`` under ``rule``.

    ``"normalized"``: the normalized update along ``axis``; ``"gliding"``: the gliding average of the counts
    ``-gradient``; ``"step"``: ``variable - lr * gradient`` (cumulative counts, or SGD for other variables).
    """
    if rule == "normalized":
        # (1 - lr) a / sum(a) + lr n / sum(n) with n = -gradient, as one multiply-add over the variable: the
        # per-sum factors are small. A sum with no counts keeps a / sum(a).
        total = -ops.sum(gradient, axis=axis, keepdims=True)
        reached = total > 0
        keep = ops.where(reached, 1.0 - lr, ops.ones_like(total)) / ops.sum(variable, axis=axis, keepdims=True)
        take = ops.where(reached, -lr / ops.where(reached, total, ops.ones_like(total)), ops.zeros_like(total))
        return variable * keep + gradient * take
    if rule == "gliding":
        return (1.0 - lr) * variable - lr * gradient
    return variable - lr * gradient


@keras.saving.register_keras_serializable(package="libspn_keras")
class OnlineExpectationMaximization(keras.optimizers.Optimizer):
    r"""Online expectation maximization which requires sum layers to use any of the EM-based ``SumOpBase`` instances.

    With an EM sum op (``SumOpEMBackprop``, ``SumOpHardEMBackprop``, ``SumOpUnweightedHardEMBackprop``) the
    "gradient" of the loss with respect to a linear accumulator is the negated count of its edge in the batch
    (averaged over the batch by the loss), :math:`-\bar n`. Leaves with ``use_accumulators=True`` likewise
    receive their negated sufficient statistics. Each step applies, with :math:`\eta` = ``learning_rate``:

    * ``gliding_average=True``: :math:`a \leftarrow (1 - \eta)\, a + \eta\, \bar n` (an exponential moving
      average of the per-sample statistics);
    * ``gliding_average=False``: :math:`a \leftarrow a + \eta\, \bar n` (cumulative counts);
    * ``normalized_update=True`` (sum accumulators): :math:`w \leftarrow (1 - \eta)\, w + \eta\,
      \bar n / \textstyle\sum_i \bar n_i` with :math:`w = a / \sum_i a_i`, the online EM of Einsum Networks
      (Peharz et al., 2020): the weights of every sum move by :math:`\eta` towards the batch's estimate however
      few samples reached the sum. A sum that no sample of the batch reached keeps its weights. Leaf statistics
      (``use_accumulators=True``) keep the gliding average.

    The gliding average of counts weighs every sample alike, so a sum that few samples reach learns slowly, all
    the more while its initial accumulators (mass about ``num_in`` with the default ``TruncatedNormal(1, 0.5)``)
    have not decayed; on the Einsum Networks benchmark (``benchmarks/ratspn_em.py``) ``normalized_update=True``
    reaches a much better likelihood in the first epochs.

    Weights are the accumulators normalized per sum, so with ``EpsilonInverseFanIn(epsilon)`` accumulators and
    ``gliding_average=False`` they equal the additively smoothed weights of the DGC-SPN paper,
    :math:`w_i = (c_i + \epsilon / K) / (\sum_j c_j + \epsilon)` with :math:`c = \eta \sum_t \bar n_t`.

    Variables that do not hold EM statistics (e.g. log-space accumulators of a gradient-trained layer, or
    leaf locations without accumulators) receive a plain SGD step :math:`v \leftarrow v - \eta g`.

    Each variable of at least ``XLA_UPDATE_MIN_SIZE`` (65,536) entries is updated by one XLA-compiled computation
    (compiled on the first step, once per variable), the others by the same computation as plain TF ops; both give
    the same values up to float rounding.

    Args:
        learning_rate: The step size :math:`\eta` (in ``(0, 1]`` with ``gliding_average``).
        gliding_average: Whether to keep an exponential moving average instead of cumulative counts.
        normalized_update: Whether to interpolate the normalized weights of sums towards the batch's normalized
            counts instead of averaging the counts (requires ``gliding_average``).
        name: Name of the optimizer.
        **kwargs: Passed on to ``keras.optimizers.Optimizer``.

    Raises:
        ValueError: If ``learning_rate`` is not positive (or above 1 with ``gliding_average``), or
            ``normalized_update`` is used without ``gliding_average``.

    Example:
        >>> opt = OnlineExpectationMaximization(learning_rate=0.05)
        >>> opt.gliding_average, opt.normalized_update
        (True, False)
    """

    def __init__(
        self,
        learning_rate: float = 0.05,
        gliding_average: bool = True,
        normalized_update: bool = False,
        name: str = "online_expectation_maximization",
        **kwargs: Any,
    ) -> None:
        if isinstance(learning_rate, int | float) and not learning_rate > 0.0:
            raise ValueError(f"OnlineExpectationMaximization expects learning_rate > 0. Received: {learning_rate}")
        if gliding_average and isinstance(learning_rate, int | float) and learning_rate > 1.0:
            raise ValueError(
                "OnlineExpectationMaximization with gliding_average=True expects learning_rate <= 1. "
                f"Received: {learning_rate}"
            )
        if normalized_update and not gliding_average:
            raise ValueError(
                "OnlineExpectationMaximization with normalized_update=True interpolates weights and needs "
                "gliding_average=True. Received: gliding_average=False"
            )
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.gliding_average = bool(gliding_average)
        self.normalized_update = bool(normalized_update)

    def build(self, variables: list[Any]) -> None:
        """Record which variables hold EM statistics (the backend hands ``update_step`` raw variables)."""
        super().build(variables)
        self._em_statistics = [is_em_statistic(variable) for variable in variables]
        self._outcome_axes = [em_outcome_axis(variable) for variable in variables]
        # One compiled function per large variable, so that no function is retraced for another shape.
        self._compiled_updates: dict[int, Callable[..., Any]] = {
            index: tf.function(_updated_value, jit_compile=True)
            for index, variable in enumerate(variables)
            if None not in variable.shape and math.prod(variable.shape) >= XLA_UPDATE_MIN_SIZE
        }

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Apply one online EM (or, for non-EM variables, SGD) step."""
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        axis = self._outcome_axes[index]
        if not self._em_statistics[index]:
            rule = "step"
        elif self.normalized_update and axis is not None:
            rule = "normalized"
        else:
            rule = "gliding" if self.gliding_average else "step"
        update = self._compiled_updates.get(index, _updated_value)
        self.assign(variable, update(ops.convert_to_tensor(variable), gradient, lr, rule, axis))

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {
            **super().get_config(),
            "gliding_average": self.gliding_average,
            "normalized_update": self.normalized_update,
        }
