"""Sums and products over leaf nodes in any acyclic arrangement: the inner layer of LearnSPN models."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from libspn_keras.layers._base_sum import BaseSum
from libspn_keras.layers._scope_tracking import Scopes, ScopeTracking, as_region, check_decomposable, scope_difference
from libspn_keras.layers._validation import Shape, check_float_dtype, check_positive_int, check_rank, is_integer
from libspn_keras.math._backend import Tensor
from libspn_keras.sum_ops import SumOpBase

LEAF_LAYOUT = "[batch, num_leaves, 1, 1]"
KINDS = ("product", "sum")


@dataclasses.dataclass(frozen=True)
class _Gather:
    """Values taken from the nodes of one lower height.

    Attributes:
        source_height: Height of the nodes they come from.
        positions: Position of each value among the nodes of ``source_height``.
        targets: Where each value goes: a product's position (a segment) or the position of a sum's child slot.
    """

    source_height: int
    positions: tuple[int, ...]
    targets: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Height:
    """The inner nodes of one height (products first, then sums) and the values they read.

    Attributes:
        num_products: Number of products of this height.
        product_children: Children of the products, their ``targets`` the product's position.
        sum_children: Children of the sums, their ``targets`` ``j * k + c`` (child ``c`` of the ``j``-th sum).
        sum_order: Reorders the concatenated ``sum_children`` by target (``None``: already in order).
        num_sums: Number of sums of this height (their accumulators follow those of the heights below).
    """

    num_products: int
    product_children: tuple[_Gather, ...]
    sum_children: tuple[_Gather, ...]
    sum_order: tuple[int, ...] | None
    num_sums: int


def _gathers(edges: list[tuple[int, int]], height: list[int], position: list[int]) -> tuple[_Gather, ...]:
    """Group ``(node, target)`` edges by the height of ``node``."""
    sources = sorted({height[node] for node, _ in edges})
    return tuple(
        _Gather(
            source,
            tuple(position[node] for node, _ in edges if height[node] == source),
            tuple(target for node, target in edges if height[node] == source),
        )
        for source in sources
    )


def _order(gathers: tuple[_Gather, ...]) -> tuple[int, ...] | None:
    targets = [target for part in gathers for target in part.targets]
    order = tuple(int(i) for i in np.argsort(targets, kind="stable"))
    return None if order == tuple(range(len(order))) else order


def _check_nodes(num_leaves: int, nodes: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    owner = "SumProductTree"
    if isinstance(nodes, str | bytes) or not isinstance(nodes, Sequence | np.ndarray):
        raise TypeError(f"{owner} expects nodes to be a sequence of (kind, children) pairs. Received: nodes={nodes!r}")
    checked = []
    for index, node in enumerate(nodes):
        if isinstance(node, str | bytes) or not isinstance(node, Sequence) or len(node) != 2:
            raise ValueError(f"{owner} expects node {index} to be a (kind, children) pair. Received: {node!r}")
        kind, children = node
        if kind not in KINDS:
            raise ValueError(f"{owner} expects node {index} to be a 'product' or a 'sum'. Received: kind={kind!r}")
        if isinstance(children, str | bytes) or not isinstance(children, Sequence | np.ndarray) or not len(children):
            raise ValueError(
                f"{owner} expects node {index} to have a non-empty sequence of children. Received: {children!r}"
            )
        limit = num_leaves + index  # leaves, then the nodes listed before this one
        for child in children:
            if not is_integer(child) or not 0 <= int(child) < limit:
                raise ValueError(
                    f"{owner} expects the children of node {index} in [0, {limit}): leaves 0..{num_leaves - 1}, "
                    f"then the nodes listed before it (children first). Received: children={list(children)!r}"
                )
        if len(set(children)) != len(children):
            raise ValueError(f"{owner}: node {index} has a repeated child. Received: children={list(children)!r}")
        checked.append((str(kind), tuple(int(child) for child in children)))
    sizes = {len(children) for kind, children in checked if kind == "sum"}
    if len(sizes) > 1:
        raise ValueError(
            f"{owner} expects every sum to have the same number of children (one batched weighted sum per "
            f"height). Received: sums with {sorted(sizes)} children"
        )
    return tuple(checked)


def _check_outputs(num_nodes: int, outputs: Any) -> tuple[int, ...]:
    owner = "SumProductTree"
    if outputs is None:
        return (num_nodes - 1,)
    if isinstance(outputs, str | bytes) or not isinstance(outputs, Sequence | np.ndarray) or not len(outputs):
        raise ValueError(f"{owner} expects outputs to be a non-empty sequence of node indices. Received: {outputs!r}")
    values = list(outputs)
    for value in values:
        if not is_integer(value) or not 0 <= int(value) < num_nodes:
            raise ValueError(
                f"{owner} expects outputs in [0, {num_nodes}) (leaves, then nodes). Received: outputs={values!r}"
            )
    if len(set(values)) != len(values):
        raise ValueError(f"{owner} expects distinct outputs. Received: outputs={values!r}")
    return tuple(int(value) for value in values)


@keras.saving.register_keras_serializable(package="libspn_keras")
class SumProductTree(ScopeTracking, BaseSum):
    """Sums and products over leaf nodes in any acyclic arrangement, computed bottom-up one height at a time.

    The nodes of an SPN learned by ``libspn_keras.structure.learn_spn``: its input holds ``num_leaves`` leaf nodes
    (e.g. one categorical per node, a ``DenseSum`` over a ``GatherScopes`` of an ``IndicatorLeaf``), and ``nodes``
    lists the inner nodes, children first: node ``i`` is ``(kind, children)`` with ``kind`` ``"product"`` or
    ``"sum"`` and ``children`` indices into ``[leaf 0, ..., leaf num_leaves - 1, node 0, ..., node i - 1]``. A
    product adds its children's log-values; a sum is a weighted sum of its children with its own weights, through
    the layer's sum op (``weighted_sum``), so gradient, EM, hard EM, sampling and the MPE queries all apply. Every
    sum has the same number ``k`` of children.

    **Layering.** Nodes are computed by height (0 for the leaves, else one more than the highest child), one step
    per height: the products of a height are one segment sum of their gathered children, its sums one batched
    weighted sum ``[batch, J_h, 1, k]`` with the weights ``[J_h, 1, k, 1]`` of those sums. Nothing is padded.

    Args:
        num_leaves: Number of leaf nodes of the input.
        nodes: The inner nodes, children first: ``(kind, children)`` pairs (see above). A product needs at least
            one child, a sum exactly ``k`` (the same for all sums); no node repeats a child.
        outputs: The nodes (indices into leaves, then ``nodes``) whose log-values are the output, e.g. the children
            of a ``RootSum`` above; they must have equal scopes. ``None``: the last one (of leaves, then nodes).
        logspace_accumulators: See ``BaseSum``. ``None`` selects the sum op's default.
        accumulator_initializer: Initializer for the accumulators (linear space).
        sum_op: ``SumOpBase`` instance computing the weighted sums. Defaults to ``get_default_sum_op()``.
        accumulator_regularizer: Regularizer for the accumulators.
        logspace_accumulator_constraint: Constraint for log-space accumulators.
        linear_accumulator_constraint: Constraint for linear accumulators.
        **kwargs: kwargs to pass on to ``keras.layers.Layer``.

    Input shape:
        ``[batch, num_leaves, 1, 1]``: the log-value of each leaf node (region layout, one node per scope).

    Output shape:
        ``[batch, 1, 1, len(outputs)]``: the log-values of the outputs. Accumulators have shape
        ``[num_sums, 1, k, 1]``: the weights of sum node ``sum_nodes[j]`` at ``[j, 0, :, 0]``, in the order of its
        children (``[0, 1, 1, 1]`` and not trainable without sums); the sums are ordered by height, so that each
        height's weights are one slice.

    Raises:
        TypeError: If ``nodes`` is not a sequence.
        ValueError: If ``num_leaves``, ``nodes`` or ``outputs`` are invalid (a child not listed before its parent,
            sums of different sizes, ...), the input does not match them, or (in a model) a product's children
            overlap, a sum's children or the outputs have different scopes.

    Example:
        A mixture of two factorizations of variables 0 and 1 (leaves 0, 1 of one cluster, 2, 3 of the other):

        >>> import numpy as np
        >>> layer = SumProductTree(
        ...     num_leaves=4, nodes=[("product", [0, 1]), ("product", [2, 3]), ("sum", [4, 5])]
        ... )
        >>> tuple(layer(np.zeros((2, 4, 1, 1), "float32")).shape)
        (2, 1, 1, 1)
        >>> tuple(layer.accumulators.shape)  # one sum of two children
        (1, 1, 2, 1)
        >>> layer.height
        2
    """

    def __init__(
        self,
        num_leaves: int,
        nodes: Sequence[tuple[str, Sequence[int]]],
        outputs: Sequence[int] | None = None,
        logspace_accumulators: bool | None = None,
        accumulator_initializer: keras.initializers.Initializer | None = None,
        sum_op: SumOpBase | None = None,
        accumulator_regularizer: keras.regularizers.Regularizer | None = None,
        logspace_accumulator_constraint: keras.constraints.Constraint | None = None,
        linear_accumulator_constraint: keras.constraints.Constraint | None = None,
        **kwargs: Any,
    ) -> None:
        self.num_leaves = check_positive_int("SumProductTree", "num_leaves", num_leaves)
        self.nodes = _check_nodes(self.num_leaves, nodes)
        self.outputs = _check_outputs(self.num_leaves + len(self.nodes), outputs)
        self._schedule, self._sum_nodes, self._output_gathers = self._plan()
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
    def num_sums(self) -> int:
        """Number of sums (the accumulators' first axis)."""
        return sum(kind == "sum" for kind, _ in self.nodes)

    @property
    def num_sum_children(self) -> int:
        """Number ``k`` of children of every sum (1 without sums)."""
        return next((len(children) for kind, children in self.nodes if kind == "sum"), 1)

    @property
    def sum_nodes(self) -> tuple[int, ...]:
        """The node (index into ``nodes``) of each row of the accumulators: sums ordered by height."""
        return self._sum_nodes

    @property
    def height(self) -> int:
        """Height of the highest node: the number of steps per call."""
        return len(self._schedule)

    def _plan(self) -> tuple[tuple[_Height, ...], tuple[int, ...], tuple[_Gather, ...]]:
        """The steps of each height, the sums in the order of the accumulators, and the gathers of the outputs."""
        height = [0] * self.num_leaves
        for _, children in self.nodes:
            height.append(1 + max(height[child] for child in children))
        position = list(range(self.num_leaves)) + [0] * len(self.nodes)
        k = self.num_sum_children
        schedule, sum_nodes = [], []
        for level in range(1, max(height) + 1):
            at_level = [i for i in range(len(self.nodes)) if height[self.num_leaves + i] == level]
            products = [i for i in at_level if self.nodes[i][0] == "product"]
            sums = [i for i in at_level if self.nodes[i][0] == "sum"]
            product_edges = [(child, j) for j, i in enumerate(products) for child in self.nodes[i][1]]
            sum_edges = [(child, j * k + c) for j, i in enumerate(sums) for c, child in enumerate(self.nodes[i][1])]
            product_children, sum_children = (
                _gathers(product_edges, height, position),
                _gathers(sum_edges, height, position),
            )
            schedule.append(_Height(len(products), product_children, sum_children, _order(sum_children), len(sums)))
            sum_nodes.extend(sums)
            for place, i in enumerate(products + sums):
                position[self.num_leaves + i] = place
        output_gathers = _gathers([(node, j) for j, node in enumerate(self.outputs)], height, position)
        return tuple(schedule), tuple(sum_nodes), output_gathers

    def build(self, input_shape: Shape) -> None:
        """Create accumulators ``[num_sums, 1, k, 1]``."""
        check_rank(self.name, input_shape, 4, LEAF_LAYOUT)
        if tuple(input_shape[1:]) != (self.num_leaves, 1, 1):
            raise ValueError(
                f"Layer '{self.name}' expects inputs {LEAF_LAYOUT} with num_leaves={self.num_leaves}. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        spec = keras.InputSpec(ndim=4, axes={1: self.num_leaves, 2: 1, 3: 1})
        self._add_accumulators((self.num_sums, 1, self.num_sum_children, 1), input_spec=spec)
        if not self.num_sums and self.accumulators is not None:  # nothing to train, no "no gradients" warning
            self.accumulators.trainable = False

    def _propagate_scopes(self, scopes: Scopes | None, input_shape: Shape) -> Scopes | None:
        """Products must be decomposable, sums and the outputs complete; the output has the outputs' scope."""
        scopes = as_region(scopes)
        if scopes is None or scopes.counts.ndim != 3 or scopes.counts.shape[:2] != (self.num_leaves, 1):
            return None
        counts = list(scopes.counts[:, 0])
        merged = np.zeros((len(self.nodes), scopes.counts.shape[-1]), dtype=scopes.counts.dtype)
        for index, (kind, children) in enumerate(self.nodes):
            if kind == "product":
                merged[index] = np.sum([counts[child] for child in children], axis=0)
                if merged[index].max() > 1:  # named by its index among the nodes
                    check_decomposable(self.name, merged[: index + 1], ("node",))
            else:
                self._check_complete(counts, children, f"the children of sum node {index}")
                merged[index] = counts[children[0]]
            counts.append(merged[index])
        self._check_complete(counts, self.outputs, "the outputs (the children of the sum above)")
        return scopes.with_counts(counts[self.outputs[0]][np.newaxis, np.newaxis])

    def _check_complete(self, counts: list[np.ndarray], members: Sequence[int], what: str) -> None:
        for other in members[1:]:
            difference = scope_difference(np.stack([counts[members[0]], counts[other]]), (0,), (1,))
            if difference is not None:
                raise ValueError(
                    f"Layer '{self.name}': {what} have different scopes ({difference} of nodes {members[0]} and "
                    f"{other}), which breaks completeness: the children of a sum need equal scopes."
                )

    def call(self, x: Tensor) -> Tensor:
        """Compute the nodes bottom-up, one segment sum and one batched weighted sum per height."""
        check_float_dtype(self.name, x.dtype)
        values = [ops.transpose(ops.reshape(x, (-1, self.num_leaves)))]  # per height: [n_h, batch]
        accumulators = ops.convert_to_tensor(self.accumulators)
        k = self.num_sum_children
        first_sum = 0
        for step in self._schedule:
            parts = []
            if step.num_products:
                received = self._gather(values, step.product_children)
                segments = np.concatenate([part.targets for part in step.product_children]).astype(np.int32)
                parts.append(ops.segment_sum(received, segments, num_segments=step.num_products))
            if step.num_sums:
                children = self._gather(values, step.sum_children, step.sum_order)
                children = ops.transpose(ops.reshape(children, (step.num_sums, k, -1)), (2, 0, 1))[:, :, np.newaxis]
                weights = accumulators[first_sum : first_sum + step.num_sums]  # a slice: dense gradients
                first_sum += step.num_sums
                sums = self.sum_op.weighted_sum(children, weights, self.logspace_accumulators)
                parts.append(ops.transpose(ops.reshape(sums, (-1, step.num_sums))))
            values.append(parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0))
        out = self._gather(values, self._output_gathers, _order(self._output_gathers))
        return ops.transpose(out)[:, np.newaxis, np.newaxis, :]

    @staticmethod
    def _gather(values: list[Tensor], gathers: tuple[_Gather, ...], order: tuple[int, ...] | None = None) -> Tensor:
        taken = [ops.take(values[part.source_height], np.asarray(part.positions, np.int32), axis=0) for part in gathers]
        joined = taken[0] if len(taken) == 1 else ops.concatenate(taken, axis=0)
        return joined if order is None else ops.take(joined, np.asarray(order, np.int32), axis=0)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Return ``[batch, 1, 1, len(outputs)]``."""
        return (input_shape[0], 1, 1, len(self.outputs))

    def get_config(self) -> dict[str, Any]:
        """Return every constructor argument."""
        return {
            "num_leaves": self.num_leaves,
            "nodes": [[kind, list(children)] for kind, children in self.nodes],
            "outputs": list(self.outputs),
            **super().get_config(),
        }
