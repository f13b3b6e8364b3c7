"""Sums over the latent variables of a tree: the inner layer of hidden Chow-Liu trees (HCLT)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers._base_sum import BaseSum
from libspn_keras.layers._scope_tracking import REGION_CELLS, Scopes, ScopeTracking, as_region, check_decomposable
from libspn_keras.layers._validation import Shape, check_float_dtype, check_rank, is_integer
from libspn_keras.math._backend import Tensor
from libspn_keras.sum_ops import SumOpBase

REGION_LAYOUT = "[batch, num_vars, num_decomps, num_latents]"


@dataclasses.dataclass(frozen=True)
class _Incoming:
    """The messages that reach the nodes of one height from the nodes of a lower height.

    Attributes:
        source_height: Height of the children that send them.
        positions: Position of each child among the nodes of ``source_height``.
        segments: Position of each child's parent among the nodes of the receiving height.
    """

    source_height: int
    positions: tuple[int, ...]
    segments: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Height:
    """The nodes of one height of the tree and the messages they receive (sorted by source height)."""

    nodes: tuple[int, ...]
    incoming: tuple[_Incoming, ...]


def _check_parents(parents: Any) -> tuple[int, ...]:
    owner = "LatentTreeSum"
    if isinstance(parents, str | bytes) or not isinstance(parents, Sequence | np.ndarray):
        raise TypeError(f"{owner} expects parents to be a sequence of integers. Received: parents={parents!r}")
    values = list(parents)
    if len(values) < 2:
        raise ValueError(f"{owner} expects a tree over at least two variables. Received: parents={values!r}")
    for value in values:
        if not is_integer(value) or not -1 <= int(value) < len(values):
            raise ValueError(
                f"{owner} expects every parent to be a variable index in [0, {len(values)}) or -1 for the root. "
                f"Received: parents={values!r}"
            )
    roots = [index for index, value in enumerate(values) if value == -1]
    if len(roots) != 1:
        raise ValueError(f"{owner} expects exactly one root (parent -1). Received: parents={values!r}")
    reached, frontier = {roots[0]}, [roots[0]]
    while frontier:
        frontier = [child for child, parent in enumerate(values) if parent in frontier]
        reached.update(frontier)
    if len(reached) != len(values):
        raise ValueError(
            f"{owner} expects parents to form a tree (every variable reaches the root). Variables "
            f"{sorted(set(range(len(values))) - reached)} lie on a cycle. Received: parents={values!r}"
        )
    return tuple(int(value) for value in values)


def _schedule(parents: tuple[int, ...]) -> tuple[_Height, ...]:
    """Group the variables by height (0: leaves of the tree) and index the messages each height receives."""
    num_vars = len(parents)
    heights = [0] * num_vars
    order = [parents.index(-1)]
    for node in order:  # breadth-first from the root
        order.extend(child for child in range(num_vars) if parents[child] == node)
    for node in reversed(order[1:]):
        heights[parents[node]] = max(heights[parents[node]], heights[node] + 1)
    levels = [[node for node in range(num_vars) if heights[node] == height] for height in range(max(heights) + 1)]
    position = {node: index for level in levels for index, node in enumerate(level)}
    schedule = []
    for height, nodes in enumerate(levels):
        children = sorted(
            (heights[child], position[child], position[parent])
            for child, parent in enumerate(parents)
            if parent >= 0 and heights[parent] == height
        )
        incoming = tuple(
            _Incoming(
                source,
                tuple(p for h, p, _ in children if h == source),
                tuple(s for h, _, s in children if h == source),
            )
            for source in sorted({h for h, _, _ in children})
        )
        schedule.append(_Height(tuple(nodes), incoming))
    return tuple(schedule)


@keras.saving.register_keras_serializable(package="libspn_keras")
class LatentTreeSum(ScopeTracking, BaseSum):
    """Sums over the latent variables of a tree, bottom-up: the inner layer of a hidden Chow-Liu tree (HCLT).

    Every variable ``i`` has a latent ``Z_i`` with ``num_latents`` states and an input ``log p(x_i | Z_i = k)``
    (e.g. ``DenseSum`` over an ``IndicatorLeaf``). The tree (``parents``) over the latents gives, for the subtree
    below ``i``:

    ``p(x_sub(i) | Z_i = k) = p(x_i | Z_i = k) * prod_{c child of i} sum_{k'} w_c[k', k] p(x_sub(c) | Z_c = k')``

    where ``w_c[:, k]`` are the normalized weights of edge ``(parent(c), c)``: each edge holds ``num_latents``
    sums (one per parent state) over the ``num_latents`` states of the child. The output is the root's
    ``log p(x | Z_root = k)``; a ``RootSum`` mixes over ``Z_root``. The products are additions in log-space and
    the sums are the layer's sum op (``weighted_sum``), so gradient, EM, hard EM and sampling ops all apply.

    **Decompositions.** An input with ``num_decomps > 1`` holds that many independent trees over the same
    ``parents`` (each with its own weights): e.g. a mixture of HCLTs, whose ``RootSum`` mixes all
    ``num_decomps * num_latents`` root states (``libspn_keras.structure.hclt(..., num_components=...)``).

    **Layering.** Nodes are processed by height (0 for the tree's leaves, else one more than the highest child),
    not by depth: the messages of all nodes of one height are one batched weighted sum ``[n_h, K, K]``, and each
    height gathers the messages of its children from the heights below and adds them per parent with one
    segment sum. Every edge is computed once and nothing is padded, so the work is proportional to the number of
    edges; the number of steps is the height of the tree (rooted at its center by ``chow_liu_tree``).

    Args:
        parents: The parent of each variable, ``-1`` for the root (e.g. ``ChowLiuTree.parents``); at least two
            variables.
        logspace_accumulators: See ``BaseSum``. ``None`` selects the sum op's default.
        accumulator_initializer: Initializer for the accumulators (linear space).
        sum_op: ``SumOpBase`` instance computing the weighted sums. Defaults to ``get_default_sum_op()``.
        accumulator_regularizer: Regularizer for the accumulators.
        logspace_accumulator_constraint: Constraint for log-space accumulators.
        linear_accumulator_constraint: Constraint for linear accumulators.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, num_vars, num_decomps, num_latents]``: ``log p(x_i | Z_i = k)`` per tree (region layout).

    Output shape:
        ``[batch, 1, num_decomps, num_latents]``: ``log p(x | Z_root = k)`` per tree. Accumulators have shape
        ``[num_vars - 1, num_latents, num_latents]`` (edge, child state, parent state) for one decomposition and
        ``[num_vars - 1, num_decomps, num_latents, num_latents]`` for more, edges ordered by the height of their
        child.

    Raises:
        TypeError: If ``parents`` is not a sequence.
        ValueError: If ``parents`` is not a tree over at least two variables, the input does not match it, or
            (in a model) the scopes of the input's variables overlap.

    Example:
        >>> import numpy as np
        >>> layer = LatentTreeSum(parents=[-1, 0, 1, 0])
        >>> tuple(layer(np.zeros((2, 4, 1, 3), "float32")).shape)
        (2, 1, 1, 3)
        >>> np.allclose(np.asarray(layer(np.zeros((2, 4, 1, 3), "float32"))), 0.0, atol=1e-6)  # normalized
        True
    """

    def __init__(
        self,
        parents: Sequence[int],
        logspace_accumulators: bool | None = None,
        accumulator_initializer: keras.initializers.Initializer | None = None,
        sum_op: SumOpBase | None = None,
        accumulator_regularizer: keras.regularizers.Regularizer | None = None,
        logspace_accumulator_constraint: keras.constraints.Constraint | None = None,
        linear_accumulator_constraint: keras.constraints.Constraint | None = None,
        **kwargs: Any,
    ) -> None:
        self.parents = _check_parents(parents)
        self._schedule = _schedule(self.parents)
        super().__init__(
            logspace_accumulators=logspace_accumulators,
            accumulator_initializer=accumulator_initializer,
            sum_op=sum_op,
            accumulator_regularizer=accumulator_regularizer,
            logspace_accumulator_constraint=logspace_accumulator_constraint,
            linear_accumulator_constraint=linear_accumulator_constraint,
            **kwargs,
        )

    @property
    def num_vars(self) -> int:
        """Number of variables (and latents) of the tree."""
        return len(self.parents)

    @property
    def height(self) -> int:
        """Height of the tree: the number of batched weighted sums per call."""
        return len(self._schedule) - 1

    @property
    def edge_children(self) -> tuple[int, ...]:
        """The child variable of each edge, in the order of the accumulators' first axis (by height of the child)."""
        return tuple(node for height in self._schedule[:-1] for node in height.nodes)

    def build(self, input_shape: Shape) -> None:
        """Create accumulators ``[num_vars - 1, (num_decomps,) num_latents, num_latents]``."""
        check_rank(self.name, input_shape, 4, REGION_LAYOUT)
        _, num_vars, num_decomps, num_latents = input_shape
        if num_vars != self.num_vars or num_decomps is None or num_latents is None:
            raise ValueError(
                f"Layer '{self.name}' expects inputs {REGION_LAYOUT} with num_vars={self.num_vars} (the length of "
                f"parents) and known num_decomps and num_latents. Received: input_shape={tuple(input_shape)}"
            )
        decomps = () if num_decomps == 1 else (num_decomps,)
        self._add_accumulators((self.num_vars - 1, *decomps, num_latents, num_latents))
        self.input_spec = keras.InputSpec(ndim=4, axes={1: self.num_vars, 2: num_decomps, 3: num_latents})

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Each tree is a product of its variables' scopes, which must be disjoint: one scope per decomposition."""
        scopes = as_region(scopes)
        if scopes is None or scopes.counts.ndim != 3:
            return None
        merged = scopes.counts.sum(axis=0, keepdims=True)
        check_decomposable(self.name, merged, REGION_CELLS)
        return scopes.with_counts(merged)

    def call(self, x: Tensor) -> Tensor:
        """Compute ``log p(x | Z_root = k)`` bottom-up, one batched weighted sum per height of the tree."""
        check_float_dtype(self.name, x.dtype)
        leaves = ops.transpose(x, (1, 0, 2, 3))  # [num_vars, batch, num_decomps, K]: gathers along the first axis
        accumulators = ops.convert_to_tensor(self.accumulators)  # one read; each height takes its edges' slice
        num_decomps, num_latents = x.shape[2], x.shape[3]
        accumulators = ops.reshape(accumulators, (self.num_vars - 1, num_decomps, num_latents, num_latents))
        messages: list[Tensor] = []  # per height: [n_h, batch, num_decomps, K], to the parents of its nodes
        first_edge = 0
        for height in self._schedule:
            value = ops.take(leaves, np.asarray(height.nodes), axis=0)
            if height.incoming:
                received = ops.concatenate(
                    [
                        ops.take(messages[part.source_height], np.asarray(part.positions), axis=0)
                        for part in height.incoming
                    ],
                    axis=0,
                )
                segments = np.concatenate([part.segments for part in height.incoming])
                value = value + ops.segment_sum(received, segments, num_segments=len(height.nodes))
            if height is self._schedule[-1]:
                return ops.transpose(value, (1, 0, 2, 3))
            weights = accumulators[first_edge : first_edge + len(height.nodes)]
            first_edge += len(height.nodes)
            sums = self.sum_op.weighted_sum(ops.transpose(value, (1, 0, 2, 3)), weights, self.logspace_accumulators)
            messages.append(ops.transpose(sums, (1, 0, 2, 3)))
        raise AssertionError("unreachable: the schedule ends at the root")

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, 1, num_decomps, num_latents]``."""
        return (input_shape[0], 1, input_shape[2], input_shape[3])

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {"parents": list(self.parents), **super().get_config()}
