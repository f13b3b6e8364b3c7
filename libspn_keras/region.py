"""Region graphs: explicit scope structures turned into dense (region) SPNs, and random RAT-SPN region graphs.

A region graph says which sets of variables (regions) an SPN models and how each region is split into smaller
ones; it holds no sums or products itself. ``region_graph_to_dense_spn`` turns it into a stack of the library's
region layers, ``dense_spn_scopes`` reads the scope of every region back from such a stack, and
``random_region_graph`` / ``ratspn`` build the random binary trees of RAT-SPNs (Peharz et al., 2019), the
benchmark architecture of Einsum Networks (Peharz et al., 2020).
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, final

import keras
import numpy as np

from libspn_keras.layers import (
    BaseLeaf,
    BasePermuteAndPadScopes,
    DenseProduct,
    DenseSum,
    FlatToRegions,
    IndicatorLeaf,
    LogDropout,
    NormalLeaf,
    PermuteAndPadScopes,
    ReduceProduct,
    RootSum,
    Undecompose,
)
from libspn_keras.layers._validation import check_positive_int, is_integer
from libspn_keras.models import SequentialSumProductNetwork
from libspn_keras.sum_ops import SumOpBase

#: Largest number of (padded) leaf scopes ``region_graph_to_dense_spn`` builds; a deeper or more unbalanced graph
#: is rejected instead of exhausting memory.
MAX_DENSE_SCOPES = 2**20


class OverlappingScopesException(ValueError):
    """Raised by ``RegionNode`` when the scopes of two of its children overlap (LibSPN Keras 0.6's name).

    A ``ValueError``, so code catching either catches it.
    """


class BaseRegion(abc.ABC):
    """A region of a region graph: a set of variables (its scope) and how it is split (its children).

    Region graphs are DAGs just like SPNs, but they do not represent sums and products. They are merely used for
    defining the scope structure of the SPN.
    """

    @property
    @abc.abstractmethod
    def scope(self) -> frozenset[int]:
        """The indices of the variables of this region."""

    @property
    @abc.abstractmethod
    def children(self) -> tuple[BaseRegion, ...]:
        """The regions this region is split into (empty for a variable)."""


@final
class RegionVariable(BaseRegion):
    """Represents a region in the SPN: a single variable.

    Regions graphs are DAGs just like SPNs, but they do not represent sums and products. They are merely used for
    defining the scope structure of the SPN.

    A RegionVariable is a leaf node without children, as opposed to a RegionNode which is a node with children.

    Args:
        index: Index of the variable: its column in the data ``[batch, num_vars]``.

    Raises:
        TypeError: If ``index`` is not an integer.
        ValueError: If ``index`` is negative.

    Example:
        >>> x = RegionVariable(3)
        >>> x, x.scope, x.children
        (RegionVariable(3), frozenset({3}), ())
        >>> print(x)
        x3
    """

    def __init__(self, index: int) -> None:
        if not is_integer(index):
            raise TypeError(f"RegionVariable expects an integer index. Received: index={index!r}")
        if index < 0:
            raise ValueError(f"RegionVariable expects a non-negative index. Received: index={index!r}")
        self._index: int = int(index)

    @property
    def index(self) -> int:
        """Index of the variable."""
        return self._index

    @property
    def scope(self) -> frozenset[int]:
        """``{index}``."""
        return frozenset((self._index,))

    @property
    def children(self) -> tuple[BaseRegion, ...]:
        """A variable has no children."""
        return ()

    def __repr__(self) -> str:
        return f"RegionVariable({self._index})"

    def __str__(self) -> str:
        """``x{index}``, as LibSPN Keras prints variables."""
        return f"x{self._index}"


@final
class RegionNode(BaseRegion):
    """Represents a region in the SPN: the union of its children, which split it into disjoint parts.

    Regions graphs are DAGs just like SPNs, but they do not represent sums and products. They are merely used for
    defining the scope structure of the SPN.

    A RegionNode is a node with children, as opposed to a RegionVariable, which is a leaf node. In the dense SPN a
    region node becomes products over all combinations of its children's nodes, followed by sums.

    Args:
        children: Children of this node (``RegionNode`` or ``RegionVariable``). Scope of the resulting node is the
            union of the scopes of its children. The scopes of these children must not overlap (pairwise
            disjoint), so that the products built from them are decomposable.

    Raises:
        TypeError: If ``children`` is not a sequence of regions.
        ValueError: If ``children`` is empty.
        OverlappingScopesException: A ``ValueError``, if two children share a variable (the message names them).

    Example:
        >>> x0, x1, x2 = (RegionVariable(i) for i in range(3))
        >>> root = RegionNode([RegionNode([x0, x1]), x2])
        >>> sorted(root.scope), len(root.children)
        ([0, 1, 2], 2)
        >>> print(root)
        {{x0, x1}, x2}
        >>> RegionNode([RegionNode([x0, x1]), RegionNode([x1, x2])])
        Traceback (most recent call last):
        ...
        libspn_keras.region.OverlappingScopesException: Children {x0, x1} and {x1, x2} have overlapping scopes: ...
    """

    def __init__(self, children: Sequence[BaseRegion]) -> None:
        if isinstance(children, BaseRegion | str | bytes) or not isinstance(children, Iterable):
            raise TypeError(
                f"RegionNode expects a sequence of RegionNode / RegionVariable children. Received: {children!r}"
            )
        children = tuple(children)
        if not children:
            raise ValueError("RegionNode expects at least one child. Received: children=[]")
        for position, child in enumerate(children):
            if not isinstance(child, BaseRegion):
                raise TypeError(
                    "RegionNode expects every child to be a RegionNode or RegionVariable. "
                    f"Received: children[{position}]={child!r} ({type(child).__name__})"
                )
        for (i, first), (j, second) in itertools.combinations(enumerate(children), 2):
            common = first.scope & second.scope
            if common:
                raise OverlappingScopesException(
                    f"Children {first} and {second} have overlapping scopes: RegionNode expects children with "
                    "pairwise disjoint scopes (a product of overlapping scopes is not decomposable); children "
                    f"{i} and {j} both contain variables {sorted(common)}."
                )
        self._children = children
        self._scope = frozenset().union(*(child.scope for child in children))

    @property
    def scope(self) -> frozenset[int]:
        """Union of the children's scopes."""
        return self._scope

    @property
    def children(self) -> tuple[BaseRegion, ...]:
        """The children, in the order given."""
        return self._children

    def __repr__(self) -> str:
        return f"RegionNode([{', '.join(repr(child) for child in self._children)}])"

    def __str__(self) -> str:
        """The children in braces, e.g. ``{{x0, x1}, x2}``, as LibSPN Keras prints regions."""
        return "{" + ", ".join(str(child) for child in self._children) + "}"


#: LibSPN Keras 0.6's name of the abstract region base class.
Region = BaseRegion


class DenseLayout(NamedTuple):
    """Where the variables of region graphs sit in a dense SPN (see ``region_graph_to_dense_spn``).

    Attributes:
        permutations: ``[num_decomps, num_scopes]`` integer array for ``PermuteAndPadScopes``: leaf scope ``s`` of
            decomposition ``d`` is variable ``permutations[d, s]``, or padding if ``-1``.
        factors: Number of factors of each product layer, bottom (leaves) to top (root).
    """

    permutations: np.ndarray
    factors: tuple[int, ...]


def _as_roots(region_graph_root: Any) -> tuple[RegionNode, ...]:
    roots = (region_graph_root,) if isinstance(region_graph_root, BaseRegion) else region_graph_root
    if isinstance(roots, str | bytes) or not isinstance(roots, Iterable):
        raise TypeError(
            "Expected region_graph_root to be a RegionNode or a sequence of RegionNodes. "
            f"Received: {region_graph_root!r}"
        )
    roots = tuple(roots)
    if not roots:
        raise ValueError("Expected at least one region graph root. Received: an empty sequence")
    for position, root in enumerate(roots):
        if not isinstance(root, RegionNode):
            raise TypeError(
                "Expected every region graph root to be a RegionNode (a single RegionVariable is not an SPN). "
                f"Received: root {position} = {root!r}"
            )
    num_vars = max(max(root.scope) for root in roots) + 1
    for position, root in enumerate(roots):
        missing = sorted(set(range(num_vars)) - root.scope)
        if missing:
            raise ValueError(
                "Every region graph root must cover the variables 0, ..., num_vars - 1 (the data columns), so "
                f"that the decompositions can be mixed. Root {position} lacks variables {missing} "
                f"(num_vars={num_vars})."
            )
    return roots


def dense_layout(region_graph_root: RegionNode | Sequence[RegionNode]) -> DenseLayout:
    """Compute the padded leaf permutations and the product factors of the dense SPN of one or more region graphs.

    Levels are counted from the root (level 0); ``D`` is the deepest level of a variable. Product layer ``l``
    (counted from the top) has ``f_l`` factors, the largest number of children of a region at level ``l`` over
    all roots. A region slot at level ``l`` covers ``B_l = f_l * ... * f_{D-1}`` consecutive leaf scopes; the
    ``i``-th child of a region gets the ``i``-th sub-block of ``B_{l+1}`` scopes, missing children get padding
    (``-1``) and a variable at level ``l < D`` sits at the first scope of its block with ``B_l - 1`` padding
    scopes after it.

    Args:
        region_graph_root: A ``RegionNode`` or a sequence of them (one decomposition each).

    Returns:
        A ``DenseLayout``.

    Raises:
        TypeError: If a root is not a ``RegionNode``.
        ValueError: If the roots do not all cover the variables ``0, ..., num_vars - 1``, or the layout would
            need more than ``MAX_DENSE_SCOPES`` leaf scopes.

    Example:
        >>> x = [RegionVariable(i) for i in range(3)]
        >>> layout = dense_layout(RegionNode([RegionNode([x[2], x[0]]), x[1]]))
        >>> layout.permutations.tolist(), layout.factors
        ([[2, 0, 1, -1]], (2, 2))
    """
    roots = _as_roots(region_graph_root)
    arity: dict[int, int] = {}
    deepest = 0

    def measure(node: BaseRegion, level: int) -> None:
        nonlocal deepest
        if isinstance(node, RegionVariable):
            deepest = max(deepest, level)
            return
        arity[level] = max(arity.get(level, 1), len(node.children))
        for child in node.children:
            measure(child, level + 1)

    for root in roots:
        measure(root, 0)
    factors_top_down = [arity.get(level, 1) for level in range(deepest)]
    block = [math.prod(factors_top_down[level:]) for level in range(deepest + 1)]
    if block[0] > MAX_DENSE_SCOPES:
        raise ValueError(
            f"The dense layout of this region graph needs {block[0]} padded leaf scopes (product factors per level, "
            f"root first: {factors_top_down}), more than MAX_DENSE_SCOPES={MAX_DENSE_SCOPES}. Deep, unbalanced "
            "graphs pad every shallow variable up to the deepest level; rebalance the graph."
        )
    permutations = np.full((len(roots), block[0]), -1, dtype=np.int64)

    def place(node: BaseRegion, level: int, offset: int, row: np.ndarray) -> None:
        if isinstance(node, RegionVariable):
            row[offset] = node.index
            return
        for position, child in enumerate(node.children):
            place(child, level + 1, offset + position * block[level + 1], row)

    for decomp, root in enumerate(roots):
        place(root, 0, 0, permutations[decomp])
    return DenseLayout(permutations, tuple(reversed(factors_top_down)))


def _num_sums_list(num_sums_iterable: Iterable[int] | int, needed: int) -> list[int]:
    if not isinstance(num_sums_iterable, Iterable):
        return [check_positive_int("region_graph_to_dense_spn", "num_sums_iterable", num_sums_iterable)] * needed
    values = list(itertools.islice(iter(num_sums_iterable), needed))
    if len(values) < needed:
        raise ValueError(
            f"num_sums_iterable must give the number of sums of each of the {needed} DenseSum layers below the root "
            f"(bottom to top). Received: {len(values)} values {values}"
        )
    return values


def region_graph_to_dense_spn(
    region_graph_root: RegionNode | Sequence[RegionNode],
    leaf_node: BaseLeaf,
    num_sums_iterable: Iterable[int] | int,
    return_weighted_child_logits: bool,
    logspace_accumulators: bool | None = False,
    accumulator_initializer: keras.initializers.Initializer | None = None,
    linear_accumulator_constraint: keras.constraints.Constraint | None = None,
    product_first: bool = True,
    num_classes: int | None = None,
    with_root: bool = True,
    sum_op: SumOpBase | None = None,
    *,
    factorized_leaf_regions: bool = False,
    name: str | None = None,
) -> SequentialSumProductNetwork:
    """Convert a region graph (built from ``RegionNode`` and ``RegionVariable``) to a dense SPN.

    The model is ``FlatToRegions -> leaf_node -> PermuteAndPadScopes`` followed by one product layer per level
    of the graph, bottom to top, with a ``DenseSum`` after each product layer except the top one; then, for
    several roots, ``Undecompose``; then ``DenseSum(num_classes)`` if ``num_classes`` is given and a ``RootSum``
    if ``with_root``. The input is ``[batch, num_vars]`` with ``num_vars = max variable index + 1``.

    **Unbalanced graphs.** Dense layers need the same number of factors in every product of a layer, so the graph
    is padded to a uniform tree with scopes of log-probability 0 (``-1`` in ``PermuteAndPadScopes``), which
    leave the distribution unchanged. Levels are counted from the root (level 0, the top product layer); ``D`` is
    the deepest level of a variable, so there are ``D`` product layers. Product layer ``l`` has ``f_l`` factors,
    the largest number of children of a region at level ``l``. A region with fewer children is completed with
    padding regions, and a variable above level ``D`` is multiplied with padding in every product layer below
    its parent's, so it reaches its parent's level as a mixture of its own leaf components. ``dense_layout``
    computes the resulting permutation; ``dense_spn_scopes`` reads the scope of every region back from the model.

    **Several roots.** A sequence of roots (with the same variables) becomes one decomposition per root
    (``FlatToRegions(num_decomps=len(roots))``), each with its own leaf and sum parameters; ``Undecompose``
    then merges them so that the last sums mix all decompositions (the repetitions of a RAT-SPN).

    Args:
        region_graph_root: Root of the region graph, or a sequence of roots (one decomposition each).
        leaf_node: Node to insert at the leaf of the SPN (an unbuilt ``BaseLeaf`` layer).
        num_sums_iterable: Number of sums for all but the last root sum layer from bottom to top (any iterable,
            e.g. a list or ``itertools.repeat(4)``; extra values are ignored), or one int for all of them. Does
            not include the ``num_classes`` sums.
        return_weighted_child_logits: Whether the ``RootSum`` returns weighted child logits
            (``[batch, num_children]``, e.g. ``log p(x, y)`` per class) instead of ``log p(x)`` (``[batch, 1]``).
        logspace_accumulators: Whether to represent accumulators of weights in logspace or not (``None``: the
            default of the sum op).
        accumulator_initializer: Initializer for the accumulators of the ``DenseSum`` layers (the ``RootSum``
            starts uniform). ``None``: the library default.
        linear_accumulator_constraint: Constraint for linear accumulators, default ``GreaterEqualEpsilon``.
        product_first: Whether to start with a product layer; if ``False``, a ``DenseSum`` mixes the leaf
            components of every scope first (e.g. to turn indicators into categorical distributions).
        num_classes: Number of classes at output. If ``None``, will not use 'latent' sums at the end but will
            instead directly connect the root to the final layer of the dense stack. This means if set to ``None``
            the SPN cannot be used for classification.
        with_root: If ``True``, sets a ``RootSum`` as the final layer.
        sum_op: Sum op of every sum layer (``None``: ``get_default_sum_op()``, read once per layer).
        factorized_leaf_regions: If ``True``, the bottom product layer is a ``ReduceProduct`` without a sum after
            it: a region whose children are variables gets ``num_components`` fully factorized distributions
            (component ``k`` of every variable multiplied), as the input regions of RAT-SPNs and Einsum Networks.
        name: Name of the model.

    Returns:
        A Sum-Product Network as a ``SequentialSumProductNetwork`` (a ``keras.Sequential``).

    Raises:
        TypeError: If a root is not a ``RegionNode`` or ``leaf_node`` is not a ``BaseLeaf``.
        ValueError: If the roots do not cover the variables ``0, ..., num_vars - 1``, ``num_sums_iterable`` has
            too few values, ``num_classes`` is not a positive integer, or the dense layout would be too large.

    Example:
        >>> import numpy as np
        >>> from libspn_keras.layers import IndicatorLeaf
        >>> x = [RegionVariable(i) for i in range(3)]
        >>> graph = RegionNode([RegionNode([x[0], x[1]]), x[2]])
        >>> spn = region_graph_to_dense_spn(graph, IndicatorLeaf(num_components=2), [3], False)
        >>> [type(layer).__name__ for layer in spn.layers]  # doctest: +NORMALIZE_WHITESPACE
        ['FlatToRegions', 'IndicatorLeaf', 'PermuteAndPadScopes', 'DenseProduct', 'DenseSum', 'DenseProduct',
         'RootSum']
        >>> states = np.array(list(np.ndindex(2, 2, 2)), "float32")
        >>> round(float(np.exp(spn(states)).sum()), 5)
        1.0
    """
    roots = _as_roots(region_graph_root)
    if not isinstance(leaf_node, BaseLeaf):
        raise TypeError(f"Expected leaf_node to be a BaseLeaf layer instance. Received: {leaf_node!r}")
    if num_classes is not None:
        num_classes = check_positive_int("region_graph_to_dense_spn", "num_classes", num_classes)
    layout = dense_layout(roots)
    num_vars = layout.permutations.max() + 1
    num_levels = len(layout.factors)
    num_inner_sums = max(num_levels - 1 - int(factorized_leaf_regions), 0) + int(not product_first)
    num_sums = iter(_num_sums_list(num_sums_iterable, num_inner_sums))
    sum_kwargs: dict[str, Any] = {
        "logspace_accumulators": logspace_accumulators,
        "linear_accumulator_constraint": linear_accumulator_constraint,
        "sum_op": sum_op,
    }

    def dense_sum(size: int) -> DenseSum:
        return DenseSum(num_sums=size, accumulator_initializer=accumulator_initializer, **sum_kwargs)

    stack: list[Any] = [
        keras.Input(shape=(int(num_vars),)),
        FlatToRegions(num_decomps=len(roots)),
        leaf_node,
        PermuteAndPadScopes(permutations=layout.permutations),
    ]
    if not product_first:
        stack.append(dense_sum(next(num_sums)))
    for level, factors in enumerate(layout.factors):
        if level == 0 and factorized_leaf_regions:
            stack.append(ReduceProduct(num_factors=factors))
            continue
        stack.append(DenseProduct(num_factors=factors))
        if level < num_levels - 1:
            stack.append(dense_sum(next(num_sums)))
    if len(roots) > 1:
        stack.append(Undecompose(num_decomps=1))
    if num_classes is not None:
        stack.append(dense_sum(num_classes))
    if with_root:
        stack.append(RootSum(return_weighted_child_logits=return_weighted_child_logits, **sum_kwargs))
    return SequentialSumProductNetwork(stack, name=name)


def random_region_graph(
    num_vars: int, depth: int, num_repetitions: int = 1, seed: int | None = None
) -> list[RegionNode]:
    """Random binary region graphs as in RAT-SPNs: each repetition splits the variables ``depth`` times.

    Every repetition starts from the region of all variables and splits each region into two halves of a random
    permutation of its variables (sizes differ by at most one), ``depth`` times. The regions at the bottom (the
    input regions, ``num_vars / 2**depth`` variables each) are ``RegionNode`` objects whose children are their
    variables in increasing order. Pass the result to ``region_graph_to_dense_spn`` (one decomposition per
    repetition) or use ``ratspn``.

    Args:
        num_vars: Number of variables; must be at least ``2**depth``.
        depth: Number of binary splits (0 gives a single input region).
        num_repetitions: Number of independent random trees.
        seed: Seed of the random splits (``None``: random).

    Returns:
        One root ``RegionNode`` per repetition; each contains every variable exactly once.

    Raises:
        ValueError: If an argument is not a positive integer (``depth`` non-negative) or ``num_vars < 2**depth``.

    Example:
        >>> roots = random_region_graph(num_vars=6, depth=2, num_repetitions=2, seed=0)
        >>> len(roots), [sorted(root.scope) for root in roots]
        (2, [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]])
        >>> [len(child.scope) for child in roots[0].children]
        [3, 3]
    """
    num_vars = check_positive_int("random_region_graph", "num_vars", num_vars)
    num_repetitions = check_positive_int("random_region_graph", "num_repetitions", num_repetitions)
    if not is_integer(depth) or depth < 0:
        raise ValueError(f"random_region_graph expects depth to be a non-negative integer. Received: depth={depth!r}")
    if num_vars < 2**depth:
        raise ValueError(
            f"random_region_graph needs num_vars >= 2**depth so that every input region holds a variable. "
            f"Received: num_vars={num_vars}, depth={depth}"
        )
    rng = np.random.default_rng(seed)

    def split(variables: np.ndarray, remaining: int) -> RegionNode:
        if remaining == 0:
            return RegionNode([RegionVariable(int(index)) for index in np.sort(variables)])
        halves = np.array_split(rng.permutation(variables), 2)
        return RegionNode([split(half, remaining - 1) for half in halves])

    return [split(np.arange(num_vars), int(depth)) for _ in range(num_repetitions)]


def ratspn(
    num_vars: int,
    depth: int,
    num_repetitions: int,
    num_input_distributions: int,
    num_sums: int,
    leaf: BaseLeaf | None = None,
    num_classes: int | None = None,
    return_weighted_child_logits: bool | None = None,
    seed: int | None = None,
    logspace_accumulators: bool | None = None,
    accumulator_initializer: keras.initializers.Initializer | None = None,
    linear_accumulator_constraint: keras.constraints.Constraint | None = None,
    input_sums: bool | None = None,
    name: str | None = None,
) -> SequentialSumProductNetwork:
    """Build a RAT-SPN (random binary region graphs, as benchmarked with Einsum Networks) in one call.

    The repetitions of ``random_region_graph(num_vars, depth, num_repetitions, seed)`` become the
    decompositions of one dense SPN. Every input region gets ``num_input_distributions`` fully factorized
    distributions (``ReduceProduct`` of the leaf components); every region between the input regions and the
    root gets ``num_sums`` sums over the outer product of its two children; ``Undecompose`` puts the products of
    all repetitions' root partitions side by side, and the root (``RootSum``, or ``num_classes`` class sums
    followed by a ``RootSum``) mixes them:

    ``FlatToRegions -> leaf [-> DenseSum] -> PermuteAndPadScopes -> ReduceProduct -> (DenseProduct(2) ->
    DenseSum(num_sums)) x (depth - 1) -> DenseProduct(2) -> Undecompose -> [DenseSum(num_classes) ->] RootSum``.

    Args:
        num_vars: Number of variables (data columns).
        depth: Number of binary splits; ``num_vars >= 2**depth``.
        num_repetitions: Number of random region graphs (decompositions).
        num_input_distributions: Number of distributions per input region.
        num_sums: Number of sums per inner region.
        leaf: Leaf layer (unbuilt). Defaults to ``NormalLeaf(num_components=num_input_distributions)``.
        num_classes: If given, the root has one child per class (a classifier / class-conditional model).
        return_weighted_child_logits: Passed to the ``RootSum``; defaults to ``num_classes is not None``.
        seed: Seed of the random region graphs.
        logspace_accumulators: See ``region_graph_to_dense_spn`` (``None``: the default of the sum op).
        accumulator_initializer: Initializer for the accumulators of the ``DenseSum`` layers.
        linear_accumulator_constraint: Constraint for linear accumulators.
        input_sums: Whether a ``DenseSum(num_input_distributions)`` per variable mixes the leaf components into
            the input distributions before they are factorized. ``None`` (default): only if the leaf is an
            ``IndicatorLeaf`` (its components are states, so the input distributions become categoricals) or has
            a number of components other than ``num_input_distributions``.
        name: Name of the model.

    Returns:
        A ``SequentialSumProductNetwork``: input ``[batch, num_vars]``, output ``[batch, 1]`` (``log p(x)``) or
        ``[batch, num_classes]`` weighted class logits.

    Raises:
        ValueError: If an argument is out of range (see ``random_region_graph``).

    Example:
        >>> import numpy as np
        >>> spn = ratspn(num_vars=8, depth=2, num_repetitions=3, num_input_distributions=4, num_sums=5, seed=0)
        >>> [type(layer).__name__ for layer in spn.layers]  # doctest: +NORMALIZE_WHITESPACE
        ['FlatToRegions', 'NormalLeaf', 'PermuteAndPadScopes', 'ReduceProduct', 'DenseProduct', 'DenseSum',
         'DenseProduct', 'Undecompose', 'RootSum']
        >>> tuple(spn(np.zeros((2, 8), "float32")).shape)
        (2, 1)
    """
    num_input_distributions = check_positive_int("ratspn", "num_input_distributions", num_input_distributions)
    num_sums = check_positive_int("ratspn", "num_sums", num_sums)
    roots = random_region_graph(num_vars, depth, num_repetitions, seed)
    leaf = NormalLeaf(num_components=num_input_distributions) if leaf is None else leaf
    if input_sums is None:
        input_sums = isinstance(leaf, IndicatorLeaf) or getattr(leaf, "num_components", None) != (
            num_input_distributions
        )
    if return_weighted_child_logits is None:
        return_weighted_child_logits = num_classes is not None
    sums = [num_input_distributions] * int(input_sums) + [num_sums] * max(depth - 1, 0)
    return region_graph_to_dense_spn(
        roots,
        leaf,
        sums,
        return_weighted_child_logits,
        logspace_accumulators=logspace_accumulators,
        accumulator_initializer=accumulator_initializer,
        linear_accumulator_constraint=linear_accumulator_constraint,
        product_first=not input_sums,
        num_classes=num_classes,
        factorized_leaf_regions=True,
        name=name,
    )


Scopes = tuple[tuple[frozenset[int], ...], ...]
"""Scopes of a region-layer output, indexed ``[scope][decomposition]`` like its tensor; ``frozenset()`` = padding."""


class LayerScopes(NamedTuple):
    """The scope of every region in the output of one layer of a dense SPN.

    Attributes:
        layer: The layer.
        scopes: Scopes indexed ``[scope][decomposition]`` as the layer's output
            ``[batch, num_scopes, num_decomps, num_nodes]``; the empty set marks padding. A ``RootSum`` has one
            region.
    """

    layer: keras.layers.Layer
    scopes: Scopes


def _initial_scopes(dense_spn: keras.Model) -> tuple[Scopes | None, tuple[Any, ...]]:
    if not getattr(dense_spn, "inputs", None):
        raise ValueError(
            f"Model '{dense_spn.name}' needs a known input shape: start it with keras.Input(...) or call it once."
        )
    input_shape = tuple(dense_spn.inputs[0].shape)
    if len(input_shape) == 4 and None not in input_shape[1:3]:
        return tuple(tuple(frozenset({s}) for _ in range(input_shape[2])) for s in range(input_shape[1])), input_shape
    return None, input_shape


def dense_spn_scopes(dense_spn: keras.Model) -> list[LayerScopes]:
    """Compute, from a built dense SPN, the scope of every region after every layer, checking validity.

    Scopes start as the variables (data columns; for region-layout inputs ``[batch, num_scopes, num_decomps,
    dim]`` the scope indices). ``PermuteAndPadScopes`` reorders them (``-1`` gives the empty padding scope),
    products take unions of the merged scopes, sums, leaves and ``LogDropout`` keep them, and ``Undecompose``
    merges decompositions.

    Args:
        dense_spn: A built model (``keras.Sequential``) of ``FlatToRegions``, leaf, ``PermuteAndPadScopes``,
            ``DenseProduct``, ``ReduceProduct``, ``DenseSum``, ``LogDropout``, ``Undecompose`` and ``RootSum``
            layers.

    Returns:
        One ``LayerScopes`` per layer of ``dense_spn.layers``.

    Raises:
        ValueError: If the model is not built, contains another layer, or is not valid: a product over
            overlapping scopes (not decomposable) or decompositions with different scopes merged by
            ``Undecompose`` (not complete).

    Example:
        >>> x = [RegionVariable(i) for i in range(3)]
        >>> spn = region_graph_to_dense_spn(RegionNode([RegionNode([x[0], x[2]]), x[1]]), NormalLeaf(2), [2], False)
        >>> for layer, scopes in dense_spn_scopes(spn)[2:]:
        ...     print(type(layer).__name__, [sorted(s[0]) for s in scopes])
        PermuteAndPadScopes [[0], [2], [1], []]
        DenseProduct [[0, 2], [1]]
        DenseSum [[0, 2], [1]]
        DenseProduct [[0, 1, 2]]
        RootSum [[0, 1, 2]]
    """
    current, input_shape = _initial_scopes(dense_spn)
    result: list[LayerScopes] = []
    for layer in dense_spn.layers:
        where = f"Layer '{layer.name}' ({type(layer).__name__})"
        if isinstance(layer, FlatToRegions):
            if len(input_shape) not in (2, 3) or input_shape[1] is None:
                raise ValueError(f"{where} expects a model input [batch, num_vars]. Received: {input_shape}")
            current = tuple(tuple(frozenset({v}) for _ in range(layer.num_decomps)) for v in range(input_shape[1]))
        elif current is None:
            raise ValueError(
                f"{where} comes before the data is in the region layout [batch, num_scopes, num_decomps, "
                "num_nodes]; start the model with FlatToRegions."
            )
        elif isinstance(layer, BasePermuteAndPadScopes):
            if layer.permutations is None:
                raise ValueError(f"{where} has no permutations yet; build the model first.")
            perms = np.asarray(layer.permutations)
            current = tuple(
                tuple(frozenset() if perms[d, s] < 0 else current[perms[d, s]][d] for d in range(perms.shape[0]))
                for s in range(perms.shape[1])
            )
        elif isinstance(layer, DenseProduct | ReduceProduct):
            f = layer.num_factors
            merged = []
            for s in range(len(current) // f):
                row = []
                for d in range(len(current[0])):
                    factors = [current[f * s + j][d] for j in range(f)]
                    union = frozenset().union(*factors)
                    if len(union) != sum(len(factor) for factor in factors):
                        raise ValueError(
                            f"{where} is not decomposable: output scope {s} of decomposition {d} multiplies "
                            f"overlapping scopes {[sorted(factor) for factor in factors]}."
                        )
                    row.append(union)
                merged.append(tuple(row))
            current = tuple(merged)
        elif isinstance(layer, Undecompose):
            group = len(current[0]) // layer.num_decomps
            merged = []
            for s, decomps in enumerate(current):
                out = []
                for k in range(layer.num_decomps):
                    parts = decomps[group * k : group * (k + 1)]
                    if len(set(parts)) != 1:
                        raise ValueError(
                            f"{where} is not complete: it mixes decompositions with different scopes "
                            f"{[sorted(part) for part in parts]} in output scope {s}."
                        )
                    out.append(parts[0])
                merged.append(tuple(out))
            current = tuple(merged)
        elif isinstance(layer, RootSum):
            if len(current) != 1:
                raise ValueError(f"{where} needs a single scope. Received: {len(current)} scopes.")
            if len(set(current[0])) != 1:  # its children are every decomposition's nodes
                raise ValueError(
                    f"{where} is not complete: it mixes decompositions with different scopes "
                    f"{[sorted(part) for part in current[0]]}."
                )
            current = ((current[0][0],),)
        elif not isinstance(layer, BaseLeaf | DenseSum | LogDropout):
            raise ValueError(
                f"{where} is not supported: dense SPNs here consist of FlatToRegions, leaf, PermuteAndPadScopes, "
                "DenseProduct, ReduceProduct, DenseSum, LogDropout, Undecompose and RootSum layers."
            )
        result.append(LayerScopes(layer, current))
    return result


__all__ = [
    "MAX_DENSE_SCOPES",
    "BaseRegion",
    "DenseLayout",
    "LayerScopes",
    "OverlappingScopesException",
    "Region",
    "RegionNode",
    "RegionVariable",
    "dense_layout",
    "dense_spn_scopes",
    "random_region_graph",
    "ratspn",
    "region_graph_to_dense_spn",
]
