"""Online expectation maximization as a Keras optimizer."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from libspn_keras.math._backend import jit_compiled
from libspn_keras.optimizers._em_statistics import (
    em_outcome_axis,
    has_normalized_counts,
    is_em_statistic,
    is_gradient_sum_accumulators,
    variable_names,
)

#: Variables with at least this many entries are updated by one XLA-compiled computation (``jit_compile=True``):
#: XLA fuses the per-sum reductions and the multiply-add into about two passes over the variable instead of five
#: (the update of the 31.7M accumulators of ``benchmarks/ratspn_em.py`` takes 13 instead of 40 ms on 2 CPU
#: cores); smaller ones, where compiling would cost more than it saves, run the same function uncompiled.
XLA_UPDATE_MIN_SIZE = 1 << 16


def normalized_count_gradient(gradient: Any, axis: int) -> Any:
    """The negated counts ``-gradient`` of each sum (along ``axis``) divided by their total, negated again.

    What the original LibSPN Keras' soft EM op sent to the accumulators (its counts divided by their sum, with
    ``divide_no_nan``): a sum that no sample reached gets zeros.
    """
    total = -ops.sum(gradient, axis=axis, keepdims=True)
    reached = total > 0
    return ops.where(reached, gradient / ops.where(reached, total, ops.ones_like(total)), ops.zeros_like(gradient))


def with_pseudocount(gradient: Any, axis: int, pseudocount: float) -> Any:
    """The negated counts ``gradient`` with ``pseudocount`` more counts per sum, spread evenly over its children.

    The children of a sum lie along ``axis``. This is the symmetric Dirichlet prior (Laplace smoothing) that
    PyJuice's and Juice.jl's EM updates add.
    """
    if not pseudocount:
        return gradient
    return gradient - pseudocount / gradient.shape[axis]


def _updated_value(
    variable: Any,
    gradient: Any,
    lr: Any,
    rule: str,
    axis: int | None,
    normalize_counts: bool = False,
    pseudocount: float = 0.0,
) -> Any:
    """The new value of ``variable`` under ``rule`` (``gradient`` already averaged over accumulated batches).

    ``pseudocount``: added to the counts of each sum along ``axis`` first (``with_pseudocount``; none without an
    ``axis``). ``normalize_counts``: ``gradient`` holds sums' counts, normalized per sum
    (``normalized_count_gradient``) next.
    ``"normalized"``: the normalized update along ``axis``; ``"gliding"``: the gliding average
    ``(1 - lr) variable - lr * gradient``; ``"step"``: ``variable - lr * gradient`` (cumulative counts, or SGD).
    """
    if axis is not None:
        gradient = with_pseudocount(gradient, axis, pseudocount)
    if normalize_counts and axis is not None:
        gradient = normalized_count_gradient(gradient, axis)
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


def _check_accumulate_batches(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"OnlineExpectationMaximization expects accumulate_batches to be a positive integer. Received: {value!r}"
        )
    return int(value)


@keras.saving.register_keras_serializable(package="libspn_keras")
class OnlineExpectationMaximization(keras.optimizers.Optimizer):
    r"""Online expectation maximization which requires sum layers to use any of the EM-based ``SumOpBase`` instances.

    With an EM sum op (``SumOpEMBackprop``, ``SumOpHardEMBackprop``, ``SumOpUnweightedHardEMBackprop``) the
    "gradient" of the loss with respect to a linear accumulator is the negated count of its edge in the batch
    (averaged over the batch by the loss), :math:`-\bar n`. Leaves with ``use_accumulators=True`` likewise
    receive their negated sufficient statistics. Each step applies, with :math:`\eta` = ``learning_rate``, the
    update of the original LibSPN Keras (``normalized_update=None``, the default):

    * sum accumulators: :math:`a \leftarrow (1 - \eta)\, a + \eta\, \tilde n`, where :math:`\tilde n` are the
      counts normalized per sum, :math:`\bar n / \sum_i \bar n_i` (zero for a sum no sample reached), for ops
      with ``normalizes_counts`` (``SumOpEMBackprop``: the online EM of Einsum Networks, Peharz et al., 2020),
      and the counts :math:`\bar n` themselves for the hard EM ops. The layer's accumulator constraint then
      applies (by default ``GreaterEqualEpsilonNormalized``, which renormalizes each sum);
    * leaf statistics (``use_accumulators=True``): :math:`s \leftarrow (1 - \eta)\, s + \eta\, \bar s`;
    * every other variable (e.g. leaf locations and scales without accumulators, or the accumulators of a
      gradient sum op), with gradient :math:`g`: :math:`v \leftarrow (1 - \eta)\, v - \eta\, g`, the original's
      update of all variables.

    With ``gliding_average=False`` the terms :math:`(1 - \eta)\, a` become :math:`a` (cumulative counts, and a
    plain SGD step :math:`v - \eta g` for other variables); with ``EpsilonInverseFanIn(epsilon)`` accumulators and
    a non-normalizing constraint (``GreaterEqualEpsilon()``) the weights then equal the additively smoothed weights
    of the DGC-SPN paper, :math:`w_i = (c_i + \epsilon / K) / (\sum_j c_j + \epsilon)`, :math:`c = \eta \sum_t
    \bar n_t`.

    ``normalized_update`` selects one rule for all sum accumulators instead: ``True`` interpolates the normalized
    weights towards the normalized counts for every EM op, :math:`w \leftarrow (1 - \eta)\, a / \sum_i a_i +
    \eta\, \bar n / \sum_i \bar n_i` (a sum that no sample reached keeps its weights); ``False`` takes the counts
    :math:`\bar n` unnormalized for every op. With either, other variables get the SGD step :math:`v - \eta g`.

    ``accumulate_batches=k`` sums the (normalized, where the rule normalizes) counts and gradients of ``k``
    consecutive batches and applies their mean every ``k``-th step, as the original did.

    ``pseudocount=c`` adds :math:`c / K` to each of the :math:`K` counts of every sum before they are used
    (normalized or not): a symmetric Dirichlet prior on the weights, the Laplace smoothing of PyJuice's
    ``mini_batch_em(step_size, pseudocount)``. It keeps weights away from zero, and pulls a sum that no sample
    reached towards uniform weights. The counts are averages over the batch (a sum that every sample reaches has
    counts that sum to 1), so :math:`c = \alpha / B` at batch size :math:`B` adds :math:`\alpha` samples' worth
    to every batch's counts, and :math:`c = \alpha / (k B)` with ``accumulate_batches=k`` (full-batch EM over
    :math:`N = k B` samples: :math:`\alpha / N`) adds :math:`\alpha` to every update. Leaf statistics (moments,
    not counts of outcomes) and gradients get none.

    Each variable of at least ``XLA_UPDATE_MIN_SIZE`` (65,536) entries is updated by one XLA-compiled computation
    (``tf.function(jit_compile=True)`` on TensorFlow, ``jax.jit`` on JAX; compiled on the first step, once per
    variable), the others by the same computation as plain ops; both give the same values up to float rounding. (On
    JAX, ``fit`` compiles the whole training step anyway.)

    Sum layers whose sum op back-propagates gradients (``SumOpGradBackprop``) receive no counts; the first step
    warns once, naming their accumulators.

    Args:
        learning_rate: The step size :math:`\eta` (in ``(0, 1]`` with ``gliding_average``).
        gliding_average: Whether to keep an exponential moving average instead of cumulative counts.
        accumulate_batches: The number of batches whose statistics are accumulated before an update.
        normalized_update: ``None`` for the original's rule (above), ``True`` to interpolate the normalized weights
            of every sum towards the batch's normalized counts (requires ``gliding_average``), ``False`` to use
            the unnormalized counts of every sum.
        name: Name of the optimizer.
        pseudocount: Counts added to every sum's counts in each batch, spread evenly over its children (``0``:
            none). Keyword-only, so that ``name`` keeps its position.
        **kwargs: Passed on to ``keras.optimizers.Optimizer``.

    Raises:
        ValueError: If ``learning_rate`` is not positive (or above 1 with ``gliding_average``),
            ``accumulate_batches`` is not a positive integer, ``normalized_update`` is not ``None`` or a bool,
            ``normalized_update=True`` is used without ``gliding_average``, or ``pseudocount`` is not a finite,
            non-negative number.

    Example:
        >>> opt = OnlineExpectationMaximization(learning_rate=0.05, accumulate_batches=2)
        >>> opt.gliding_average, opt.accumulate_batches, opt.normalized_update, opt.pseudocount
        (True, 2, None, 0.0)
        >>> smoothed = OnlineExpectationMaximization(learning_rate=0.1, normalized_update=True, pseudocount=0.1 / 512)
    """

    def __init__(
        self,
        learning_rate: float = 0.05,
        gliding_average: bool = True,
        accumulate_batches: int = 1,
        normalized_update: bool | None = None,
        name: str = "OnlineEM",
        *,
        pseudocount: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(learning_rate, int | float) and not learning_rate > 0.0:
            raise ValueError(f"OnlineExpectationMaximization expects learning_rate > 0. Received: {learning_rate}")
        if gliding_average and isinstance(learning_rate, int | float) and learning_rate > 1.0:
            raise ValueError(
                "OnlineExpectationMaximization with gliding_average=True expects learning_rate <= 1. "
                f"Received: {learning_rate}"
            )
        if normalized_update is not None and not isinstance(normalized_update, bool):
            raise ValueError(
                "OnlineExpectationMaximization expects normalized_update to be None, True or False. "
                f"Received: {normalized_update!r}"
            )
        if normalized_update and not gliding_average:
            raise ValueError(
                "OnlineExpectationMaximization with normalized_update=True interpolates weights and needs "
                "gliding_average=True. Received: gliding_average=False"
            )
        accumulate_batches = _check_accumulate_batches(accumulate_batches)
        if (
            isinstance(pseudocount, bool)
            or not isinstance(pseudocount, numbers.Real)
            or not math.isfinite(pseudocount)
            or pseudocount < 0
        ):
            raise ValueError(
                "OnlineExpectationMaximization expects pseudocount to be a finite number >= 0. "
                f"Received: pseudocount={pseudocount!r}"
            )
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.accumulate_batches: int = accumulate_batches
        self.gliding_average: bool = bool(gliding_average)
        self.normalized_update: bool | None = normalized_update
        self.pseudocount: float = float(pseudocount)

    def build(self, variables: list[Any]) -> None:
        """Record which variables hold EM statistics and how each is updated (the backend hands raw variables)."""
        super().build(variables)
        self._rules: list[tuple[str, int | None, bool]] = [self._rule(variable) for variable in variables]
        self._batch_sums = (
            [self.add_variable_from_reference(variable, "batch_sum") for variable in variables]
            if self.accumulate_batches > 1
            else []
        )
        # One compiled function per large variable, so that no function is retraced for another shape.
        self._compiled_updates: dict[int, Callable[..., Any]] = {
            index: jit_compiled(_updated_value, static_argnums=(3, 4, 5, 6))
            for index, variable in enumerate(variables)
            if None not in variable.shape and math.prod(variable.shape) >= XLA_UPDATE_MIN_SIZE
        }
        gradient_sums = [variable for variable in variables if is_gradient_sum_accumulators(variable)]
        if gradient_sums:
            warnings.warn(
                "OnlineExpectationMaximization requires EM sum ops (SumOpEMBackprop, SumOpHardEMBackprop, "
                "SumOpUnweightedHardEMBackprop), but these sum accumulators receive gradients, not counts, and get "
                f"a gradient step instead: {variable_names(gradient_sums)}. Use sum_op=SumOpEMBackprop() (or "
                "another EM op) in their layers, or train them with a gradient optimizer such as keras.optimizers."
                "Adam.",
                UserWarning,
                stacklevel=2,
            )

    def _rule(self, variable: Any) -> tuple[str, int | None, bool]:
        """``(rule, axis, normalize_counts)`` of ``_updated_value`` for ``variable``."""
        axis = em_outcome_axis(variable)
        plain = "gliding" if self.gliding_average else "step"
        if not is_em_statistic(variable):
            return (plain if self.normalized_update is None else "step"), None, False
        if self.normalized_update and axis is not None:
            return "normalized", axis, False
        return plain, axis, self.normalized_update is None and has_normalized_counts(variable)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Apply one online EM (or, for non-EM variables, gradient) step, or accumulate this batch's statistics."""
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        rule, axis, normalize_counts = self._rules[index]
        update = self._compiled_updates.get(index, _updated_value)
        pseudocount = self.pseudocount
        if self.accumulate_batches == 1:
            self.assign(
                variable,
                update(ops.convert_to_tensor(variable), gradient, lr, rule, axis, normalize_counts, pseudocount),
            )
            return
        if normalize_counts:  # per batch, as the original's op normalized each batch's counts
            gradient = normalized_count_gradient(with_pseudocount(gradient, axis, pseudocount), axis)
            pseudocount = 0.0
        batch_sum = self._batch_sums[index]
        total = ops.convert_to_tensor(batch_sum) + gradient
        last = ops.equal((self.iterations + 1) % self.accumulate_batches, 0)
        current = ops.convert_to_tensor(variable)
        self.assign(
            variable,
            ops.cond(
                last,
                lambda: update(current, total / self.accumulate_batches, lr, rule, axis, False, pseudocount),
                lambda: current,
            ),
        )
        self.assign(batch_sum, ops.where(last, ops.zeros_like(total), total))

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {
            **super().get_config(),
            "gliding_average": self.gliding_average,
            "accumulate_batches": self.accumulate_batches,
            "normalized_update": self.normalized_update,
            "pseudocount": self.pseudocount,
        }
