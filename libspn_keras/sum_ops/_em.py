"""Sum ops with EM and sampling signals in the backward pass."""

from __future__ import annotations

import abc
import numbers
from typing import Any, ClassVar

import keras
from keras import ops

from libspn_keras.math import WeightedSumParts
from libspn_keras.math._argmax import weighted_argmax
from libspn_keras.math._backend import Tensor, stateless_uniform
from libspn_keras.math._random import Seed, derived_seeds, resolve_seed, stateless_seed
from libspn_keras.sum_ops._base import SumOpBase


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpEMBackprop(SumOpBase):
    r"""Sum op primitive with EM signals in backpropagation.

    These are dense EM signals as opposed to the other EM based instances of ``SumOpBase``: the count of edge
    :math:`(i, o)` is its expected usage :math:`n_{io} = r_o\, w_{io} e^{x_i - y_o}` given the count
    :math:`r_o` of the sum (the exact posterior of each child, i.e. the soft E-step), and each child receives
    :math:`\sum_o n_{io}`. Accumulators are linear (log-space accumulators are rejected).
    ``OnlineExpectationMaximization`` normalizes each sum's counts before its update (``normalizes_counts``), as
    the original LibSPN Keras did.

    Example:
        >>> op = SumOpEMBackprop()
        >>> op.resolve_logspace_accumulators(None, "dense_sum")
        False
    """

    default_logspace_accumulators: ClassVar[bool] = False
    supports_logspace_accumulators: ClassVar[bool] = False
    has_custom_backward: ClassVar[bool] = True
    normalizes_counts: ClassVar[bool] = True

    def backward(self, parts: WeightedSumParts, dy: Tensor, seed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Dense (soft) EM signals as two batched matmuls, without per-edge tensors of the batch."""
        linear, scaled = parts.linear_sums, parts.scaled_children
        assert linear is not None and scaled is not None, "the forward pass keeps the linear sums"
        positive = linear > 0
        ratio = ops.where(positive, dy / ops.where(positive, linear, ops.ones_like(dy)), ops.zeros_like(dy))
        # Explicit transposes; Grappler (and XLA) fold them into the matmuls (`transpose_b=True` instead: the same
        # time at the widest level of the benchmark RAT-SPN, see benchmarks/README.md).
        child_mass = ops.matmul(ratio, ops.swapaxes(parts.weights, -1, -2))
        edge_mass = ops.matmul(ops.swapaxes(scaled, -1, -2), ratio)
        return scaled * child_mass, parts.weights * edge_mass

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (none)."""
        return {}


class BaseSelectionSumOp(SumOpBase):
    """Base of ops that send each sum's count to one selected child (hard EM, unweighted hard EM, sampling).

    The selected child of sum ``o`` maximizes the selection logits ``x_i + selection_log_weights(log w)_io`` (the
    first index on ties); with probability ``sample_prob`` it is instead drawn from the softmax of the selection
    logits (Gumbel-max). ``libspn_keras.math._argmax.weighted_argmax`` finds it without forming the logits of all
    children at once.

    Args:
        sample_prob: Sampling probability in the range of [0, 1], or ``None`` (never sample).

    Raises:
        ValueError: If ``sample_prob`` is outside ``[0, 1]``.
    """

    default_logspace_accumulators: ClassVar[bool] = False
    supports_logspace_accumulators: ClassVar[bool] = False
    has_custom_backward: ClassVar[bool] = True

    def __init__(self, sample_prob: float | None = None) -> None:
        is_number = isinstance(sample_prob, numbers.Real) and not isinstance(sample_prob, bool)
        if sample_prob is not None and not (is_number and 0.0 <= float(sample_prob) <= 1.0):
            raise ValueError(
                f"{type(self).__name__} expects sample_prob in [0, 1] or None. Received: sample_prob={sample_prob!r}"
            )
        self.sample_prob = None if sample_prob is None else float(sample_prob)

    fuses_products: ClassVar[bool] = False

    seed: Seed = None
    """Where the draws of ``sample_prob`` take their seeds (``libspn_keras.math.stateless_seed``): ``None``, Keras'
    global generator (reset by ``keras.utils.set_random_seed``), or a ``keras.random.SeedGenerator`` that a query
    sets on its own copy of the op."""

    @abc.abstractmethod
    def selection_log_weights(self, log_weights: Tensor) -> Tensor:
        """The log-weights added to the children's values to select a child.

        Args:
            log_weights: Log-weights ``[groups, in, out]``.

        Returns:
            ``[groups, in, out]``, or ``[groups, in, 1]`` when every sum of a row selects by the same logits.
        """

    def backward(self, parts: WeightedSumParts, dy: Tensor, seed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Send each sum's count to its selected child (segment sums; no one-hot edge tensors).

        With sampling, the seeds of the draws come from ``self.seed`` (``_draw_seeds``), or, given ``seed``
        (``backward_seed``, drawn in the forward pass where backward rules are traced), are derived from it.
        """
        x = parts.log_children
        assert x is not None, "selection ops do not fuse products, so the log-space children exist"
        log_weights = ops.log(parts.weights)  # [groups or 1, in, out]
        winners = self._select(x, log_weights, self._draw_seeds() if seed is None else self._derive(seed))
        num_in = _dim(x, -1)
        if winners.shape[-1] == 1 and log_weights.shape[-1] != 1:  # one child per row for all its sums
            return shared_selection_counts(winners, dy, num_in)
        return selection_counts(ops.broadcast_to(winners, ops.shape(dy)), dy, num_in)

    def _draw_seeds(self) -> Tensor | None:
        """The seeds (int32 ``[1 or 2, 2]``) of one ``_select`` with sampling, drawn from ``self.seed``.

        One seed for the Gumbel noise, and one for the choice between sample and winner if ``sample_prob < 1``;
        each is one ``keras.random.randint`` draw (``libspn_keras.math.stateless_seed``): the same for an int seed,
        advancing a ``keras.random.SeedGenerator`` (or Keras' global generator for ``None``).
        """
        if not self.sample_prob:
            return None
        count = 1 if self.sample_prob >= 1.0 else 2
        seed = resolve_seed(self.seed, several=True)
        return ops.stack([keras.random.randint([2], 0, 2**31 - 1, dtype="int32", seed=seed) for _ in range(count)])

    def backward_seed(self) -> Tensor | None:
        """With sampling, one seed (int32 ``[2]``, ``libspn_keras.math.stateless_seed``) drawn from ``self.seed``.

        Inside a traced JAX function ``seed=None`` draws from the generator of ``unseeded_draws_from`` (a model's)
        where there is one (``libspn_keras.math._random.resolve_seed``).
        """
        if not self.sample_prob:
            return None
        return stateless_seed(resolve_seed(self.seed))

    def _derive(self, seed: Tensor) -> Tensor | None:
        """The seeds (int32 ``[1 or 2, 2]``) of one ``_select`` with sampling, derived from ``seed``."""
        if not self.sample_prob:
            return None
        return derived_seeds(seed, 1 if self.sample_prob >= 1.0 else 2)

    def _select(self, x: Tensor, log_weights: Tensor, seeds: Tensor | None) -> Tensor:
        """Selected child of each sum of ``log_weights`` (``[groups or 1, in, out]``): ``[groups, rows, out or 1]``.

        ``seeds`` (``_draw_seeds``) are those of the draws when sampling.
        """
        selection = self.selection_log_weights(log_weights)
        if not self.sample_prob or seeds is None:
            return weighted_argmax(x, selection)
        # Every sum draws its own child, from stateless draws of the seeds: no new random kernel per eager call.
        sampled = weighted_argmax(x, selection, gumbel_seed=seeds[0], num_out=log_weights.shape[-1])
        if self.sample_prob < 1.0:
            use_sample = stateless_uniform(ops.shape(sampled), seeds[1], dtype=x.dtype) < self.sample_prob
            winners = ops.broadcast_to(weighted_argmax(x, selection), ops.shape(sampled))
            sampled = ops.where(use_sample, sampled, winners)
        return sampled

    @property
    def merges_equal_rows(self) -> bool:
        """Whether the selection is deterministic (no ``sample_prob``): equal rows then select alike."""
        return not self.sample_prob

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"sample_prob": self.sample_prob}


def selection_counts(winners: Tensor, dy: Tensor, num_in: Tensor) -> tuple[Tensor, Tensor]:
    """Counts of children and edges when sum ``o`` of row ``r`` sends ``dy[g, r, o]`` to child ``winners[g, r, o]``.

    Args:
        winners: Selected child per sum, ``[groups, rows, out]`` (int32).
        dy: Count of each sum, ``[groups, rows, out]``.
        num_in: Number of children per sum.

    Returns:
        Child counts ``[groups, rows, in]`` and edge counts ``[groups, in, out]``.
    """
    num_groups, num_rows, num_out = (_dim(dy, axis) for axis in range(3))
    row_index = ops.reshape(ops.arange(0, num_groups * num_rows, 1, dtype="int32"), [num_groups, num_rows, 1])
    flat_dy = ops.reshape(dy, [-1])
    child_ids = ops.reshape(row_index * num_in + winners, [-1])
    child_counts = ops.segment_sum(flat_dy, child_ids, num_segments=num_groups * num_rows * num_in)
    group_index = ops.reshape(ops.arange(0, num_groups, 1, dtype="int32"), [num_groups, 1, 1])
    edge_ids = (group_index * num_in + winners) * num_out + ops.arange(0, num_out, 1, dtype="int32")
    edge_counts = ops.segment_sum(flat_dy, ops.reshape(edge_ids, [-1]), num_segments=num_groups * num_in * num_out)
    return (
        ops.reshape(child_counts, [num_groups, num_rows, num_in]),
        ops.reshape(edge_counts, [num_groups, num_in, num_out]),
    )


def shared_selection_counts(winners: Tensor, dy: Tensor, num_in: Tensor) -> tuple[Tensor, Tensor]:
    """``selection_counts`` when all sums of a row select the same child ``winners[g, r, 0]``.

    The child receives the row's total count, and the edge counts of a group are one matmul of the rows' one-hot
    selections with their counts (``[in, rows] x [rows, out]``) instead of segment sums over every sum of every row.

    Args:
        winners: Selected child per row, ``[groups, rows, 1]`` (int32).
        dy: Count of each sum, ``[groups, rows, out]``.
        num_in: Number of children per sum.

    Returns:
        Child counts ``[groups, rows, in]`` and edge counts ``[groups, in, out]``.
    """
    one_hot = ops.one_hot(winners[..., 0], num_in, dtype=dy.dtype)  # [groups, rows, in]
    child_counts = one_hot * ops.sum(dy, axis=-1, keepdims=True)
    return child_counts, ops.matmul(ops.swapaxes(one_hot, -1, -2), dy)


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpHardEMBackprop(BaseSelectionSumOp):
    """Sum op with hard EM signals in backpropagation when computed through TensorFlow's autograd engine.

    Each sum selects the child with the maximum weighted value ``x_i + log w_io`` (computed in the forward
    pass); the winner receives the sum's count, its siblings nothing.

    Args:
        sample_prob: Sampling probability in the range of [0, 1]. Sampling logits are taken from the normalized
            log probability of the children of each sum.

    Example:
        >>> SumOpHardEMBackprop(sample_prob=0.5)
        SumOpHardEMBackprop(sample_prob=0.5)
    """

    def selection_log_weights(self, log_weights: Tensor) -> Tensor:
        """The log-weights themselves: children are selected by their weighted log-probabilities."""
        return log_weights


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpUnweightedHardEMBackprop(BaseSelectionSumOp):
    """Sum op with hard EM signals in backpropagation when computed through TensorFlow's autograd engine.

    Instead of using weighted sum inputs to select the maximum child, it relies on unweighted child inputs,
    which has the advantage of alleviating a self-amplifying chain of hard EM signals in deep SPNs.

    Args:
        sample_prob: Sampling probability in the range of [0, 1]. Sampling logits are taken from the normalized
            log probability of the (unweighted) children of each sum.

    Example:
        >>> SumOpUnweightedHardEMBackprop()
        SumOpUnweightedHardEMBackprop(sample_prob=None)
    """

    shares_logits: ClassVar[bool] = True

    def selection_log_weights(self, log_weights: Tensor) -> Tensor:
        """Zeros ``[groups, in, 1]``: the unweighted child log-probabilities, the same for every sum of a region."""
        return ops.zeros_like(log_weights[..., :1])


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumOpSampleBackprop(BaseSelectionSumOp):
    """Sum op with sampling signals in backpropagation.

    Each sum draws one child from its posterior ``softmax(x_i + log w_io)``, so that the backward pass from a
    root (count 1 per sample) selects a random induced tree: the leaves it reaches define a sample of the SPN,
    conditioned on the evidence of the forward pass. Used by the sampling queries of
    ``SequentialSumProductNetwork``.

    Example:
        >>> SumOpSampleBackprop()
        SumOpSampleBackprop()
    """

    def __init__(self) -> None:
        super().__init__(sample_prob=1.0)

    def selection_log_weights(self, log_weights: Tensor) -> Tensor:
        """The log-weights themselves: children are selected by their weighted log-probabilities."""
        return log_weights

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (none)."""
        return {}


def _dim(x: Tensor, axis: int) -> Any:
    """The size of ``x`` along ``axis``: an int where the static shape knows it, else a scalar tensor."""
    size = x.shape[axis]
    return ops.shape(x)[axis] if size is None else size
