"""Chow-Liu trees: the maximum-mutual-information spanning tree of discrete data (Chow and Liu, 1968)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.sparse import csgraph

from libspn_keras.layers._validation import check_positive_int, is_integer, is_number
from libspn_keras.region import BaseRegion, RegionNode, RegionVariable


def _check_data(owner: str, data: Any, num_states: int | None) -> tuple[np.ndarray, int]:
    """Return ``data`` as an ``int64 [num_rows, num_vars]`` array and the number of states, or raise."""
    array = np.asarray(data)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(
            f"{owner} expects data of shape [num_rows, num_vars] with at least one row and one variable. "
            f"Received: data.shape={array.shape}"
        )
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{owner} expects integer states (0, 1, ...). Received: data.dtype={array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError(
                f"{owner} expects complete data: structure learning does not marginalize missing values. "
                f"Received: {int(np.sum(~np.isfinite(array)))} NaN or infinite entries"
            )
        if not np.all(array == np.round(array)):
            raise ValueError(f"{owner} expects integer states (0, 1, ...). Received: fractional values in data")
    if array.min() < 0:
        raise ValueError(f"{owner} expects non-negative integer states. Received: a value of {array.min()}")
    states = array.astype(np.int64)
    largest = int(states.max())
    if num_states is None:
        return states, max(largest + 1, 2)
    num_states = check_positive_int(owner, "num_states", num_states)
    if largest >= num_states:
        raise ValueError(
            f"{owner} expects states in [0, num_states). Received: num_states={num_states} and a value of {largest}"
        )
    return states, num_states


def _check_alpha(owner: str, alpha: Any) -> float:
    if not is_number(alpha) or not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"{owner} expects alpha to be a positive finite number. Received: alpha={alpha!r}")
    return float(alpha)


def _check_sample_weight(owner: str, sample_weight: Any, num_rows: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(num_rows)
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (num_rows,):
        raise ValueError(
            f"{owner} expects sample_weight of shape [num_rows] = ({num_rows},). Received: shape {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or weights.min() < 0 or weights.sum() <= 0:
        raise ValueError(
            f"{owner} expects finite, non-negative sample weights with a positive total. "
            f"Received: min={weights.min()}, total={weights.sum()}"
        )
    return weights


def smoothed_marginals(
    states: np.ndarray, num_states: int, alpha: float, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Laplace-smoothed single and pairwise marginals of integer data, from one one-hot matmul.

    ``alpha`` pseudo-counts are spread evenly over the states of each variable (``alpha / S`` each) and over
    the joint states of each pair (``alpha / S**2`` each), so the pairwise marginals sum to the single ones.

    Args:
        states: ``[num_rows, num_vars]`` integers in ``[0, num_states)``.
        num_states: Number of states ``S`` of every variable.
        alpha: Total pseudo-count.
        weights: ``[num_rows]`` non-negative row weights.

    Returns:
        ``p_single [num_vars, S]`` and ``p_pair [num_vars, num_vars, S, S]`` (``p_pair[i, j, a, b] = p(x_i=a,
        x_j=b)``).
    """
    num_vars = states.shape[1]
    one_hot = (states[:, :, np.newaxis] == np.arange(num_states)).reshape(len(states), -1).astype(np.float64)
    pair_counts = (one_hot * weights[:, np.newaxis]).T @ one_hot
    pair_counts = pair_counts.reshape(num_vars, num_states, num_vars, num_states).transpose(0, 2, 1, 3)
    total = weights.sum() + alpha
    p_pair = (pair_counts + alpha / num_states**2) / total
    p_single = (np.einsum("iiab->ia", pair_counts) + alpha / num_states) / total
    return p_single, p_pair


def mutual_information_matrix(p_single: np.ndarray, p_pair: np.ndarray) -> np.ndarray:
    """Pairwise mutual information (nats) of the smoothed marginals; the diagonal is 0 (no self-edges)."""
    ratio = p_pair / (p_single[:, np.newaxis, :, np.newaxis] * p_single[np.newaxis, :, np.newaxis, :])
    information = np.sum(p_pair * np.log(ratio), axis=(2, 3))
    np.fill_diagonal(information, 0.0)
    return np.maximum(information, 0.0)


def _tree_center(adjacency: Any) -> int:
    """A vertex of smallest eccentricity (the smallest such index): rooting there minimizes the height."""
    hops = csgraph.shortest_path(abs(adjacency), directed=False, unweighted=True)
    return int(np.argmin(hops.max(axis=1)))


@dataclasses.dataclass(frozen=True, eq=False)
class ChowLiuTree:
    """A Chow-Liu tree: a tree-shaped Bayesian network over discrete variables, learned by ``chow_liu_tree``.

    Attributes:
        edges: ``(parent, child)`` variable indices, parents before children (breadth-first from the root).
        root: The variable the tree is rooted at: a center of the tree, so that its height is smallest.
        parents: ``[num_vars]`` integer array: the parent of each variable, ``-1`` for the root.
        mutual_information: ``[num_vars, num_vars]`` pairwise mutual information (nats) of the smoothed
            marginals, symmetric with a zero diagonal.
        log_conditionals: ``[num_vars, num_states, num_states]``: ``log p(x_i = b | x_parent(i) = a)`` at
            ``[i, a, b]`` (the root's rows all hold ``log p(x_root = b)``), from the same smoothed marginals.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x0 = rng.integers(0, 2, 500)
        >>> x1 = x0 ^ (rng.random(500) < 0.1)  # a chain x0 - x1 - x2: its center is x1
        >>> data = np.stack([x0, x1, x1 ^ (rng.random(500) < 0.2)], axis=1)
        >>> tree = chow_liu_tree(data, alpha=1.0)
        >>> tree.root, sorted(tree.edges), tree.heights().tolist()
        (1, [(1, 0), (1, 2)], [0, 1, 0])
        >>> tree.to_region_graph()
        RegionNode([RegionVariable(1), RegionVariable(2), RegionVariable(0)])
    """

    edges: list[tuple[int, int]]
    root: int
    parents: np.ndarray
    mutual_information: np.ndarray
    log_conditionals: np.ndarray

    @property
    def num_vars(self) -> int:
        """Number of variables."""
        return len(self.parents)

    @property
    def num_states(self) -> int:
        """Number of states of every variable."""
        return int(self.log_conditionals.shape[-1])

    def children(self) -> list[list[int]]:
        """The children of each variable, in the order of ``edges``."""
        children: list[list[int]] = [[] for _ in range(self.num_vars)]
        for parent, child in self.edges:
            children[parent].append(child)
        return children

    def heights(self) -> np.ndarray:
        """``[num_vars]`` height of each variable: 0 for a leaf of the tree, else 1 + its children's largest."""
        heights = np.zeros(self.num_vars, dtype=np.int64)
        for parent, child in reversed(self.edges):
            heights[parent] = max(heights[parent], heights[child] + 1)
        return heights

    def log_likelihood(self, data: Any) -> np.ndarray:
        """Log-probability of each row of complete ``data`` under the tree's smoothed conditionals.

        Args:
            data: ``[num_rows, num_vars]`` integer states in ``[0, num_states)``.

        Returns:
            ``[num_rows]`` log-probabilities (nats).

        Raises:
            ValueError: If ``data`` has the wrong shape, missing or out-of-range values.
        """
        states, _ = _check_data("ChowLiuTree.log_likelihood", data, self.num_states)
        if states.shape[1] != self.num_vars:
            raise ValueError(
                f"ChowLiuTree.log_likelihood expects {self.num_vars} variables. Received: data.shape={states.shape}"
            )
        parent_states = states[:, np.maximum(self.parents, 0)]
        variables = np.arange(self.num_vars)
        return self.log_conditionals[variables, parent_states, states].sum(axis=1)

    def to_region_graph(self) -> RegionNode:
        """The tree as a region graph: the region of variable ``i`` splits into ``i`` and its children's regions.

        Returns:
            The root ``RegionNode`` (its first child is the root variable).
        """
        regions: dict[int, BaseRegion] = {}
        children = self.children()
        for variable in [self.root, *(child for _, child in self.edges)][::-1]:
            below = [regions.pop(child) for child in children[variable]]
            regions[variable] = RegionNode([RegionVariable(variable), *below]) if below else RegionVariable(variable)
        root = regions[self.root]
        return root if isinstance(root, RegionNode) else RegionNode([root])


def chow_liu_tree(
    data: Any, alpha: float = 1.0, sample_weight: Any = None, num_states: int | None = None
) -> ChowLiuTree:
    """Learn the Chow-Liu tree of discrete data: the spanning tree of largest total pairwise mutual information.

    The pairwise joint counts come from one matmul of the one-hot data with itself (no loop over pairs); they are
    Laplace-smoothed (``alpha`` pseudo-counts per variable and per pair, spread evenly over the states), and the
    maximum spanning tree of their mutual information is ``scipy.sparse.csgraph.minimum_spanning_tree`` of the
    negated information. The tree is rooted at a center (smallest height) and its conditionals are those of
    the same smoothed marginals, so that ``ChowLiuTree.log_likelihood`` is the tree's density.

    Args:
        data: ``[num_rows, num_vars]`` complete data of integer states ``0, 1, ...`` (bool, integer or
            integral float arrays).
        alpha: Laplace smoothing: the total pseudo-count added to every variable's and every pair's counts.
        sample_weight: Optional ``[num_rows]`` non-negative weight of each row (a row of weight 2 counts as two).
        num_states: Number of states of every variable; inferred as ``max(data) + 1`` (at least 2) if ``None``.

    Returns:
        A ``ChowLiuTree``.

    Raises:
        TypeError: If ``data`` is not numeric.
        ValueError: If ``data`` is not a non-empty 2-D array of non-negative integers below ``num_states`` (NaN
            included), or ``alpha`` / ``sample_weight`` / ``num_states`` are out of range.

    Example:
        >>> import numpy as np
        >>> data = np.array([[0, 0, 1], [1, 1, 1], [1, 1, 0], [0, 0, 0]])
        >>> tree = chow_liu_tree(data, alpha=0.1)
        >>> tree.edges, tree.parents.tolist()
        ([(0, 1), (0, 2)], [-1, 0, 0])
        >>> np.round(tree.mutual_information[0, 1], 3)
        np.float64(0.627)
    """
    owner = "chow_liu_tree"
    if num_states is not None and (not is_integer(num_states)):
        raise ValueError(f"{owner} expects num_states to be a positive integer. Received: num_states={num_states!r}")
    states, num_states = _check_data(owner, data, num_states)
    alpha = _check_alpha(owner, alpha)
    weights = _check_sample_weight(owner, sample_weight, len(states))
    p_single, p_pair = smoothed_marginals(states, num_states, alpha, weights)
    information = mutual_information_matrix(p_single, p_pair)
    num_vars = states.shape[1]
    # Every spanning tree has num_vars - 1 edges, so shifting all costs by 1 keeps the optimum and keeps pairs of
    # zero information as edges (scipy reads a zero entry as "no edge").
    costs = np.triu(-information - 1.0, k=1)
    tree = csgraph.minimum_spanning_tree(costs)
    root = _tree_center(tree) if num_vars > 1 else 0
    order, predecessors = csgraph.breadth_first_order(tree, root, directed=False, return_predecessors=True)
    parents = np.where(predecessors < 0, -1, predecessors).astype(np.int64)
    edges = [(int(parents[child]), int(child)) for child in order[1:]]
    conditionals = p_pair / p_single[:, np.newaxis, :, np.newaxis]  # [i, j, a, b] = p(x_j = b | x_i = a)
    log_conditionals = np.log(
        np.stack(
            [
                np.broadcast_to(p_single[i], (num_states, num_states))
                if parents[i] < 0
                else conditionals[parents[i], i]
                for i in range(num_vars)
            ]
        )
    )
    return ChowLiuTree(edges, root, parents, information, log_conditionals)
