"""LearnSPN (Gens & Domingos, 2013): recursive splits of rows by clustering and of variables by independence tests."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
from scipy import stats
from scipy.sparse import csgraph

from libspn_keras.layers import DenseSum, FlatToRegions, GatherScopes, IndicatorLeaf, RootSum, SumProductTree
from libspn_keras.layers._validation import check_positive_int, is_integer, is_number
from libspn_keras.models import SequentialSumProductNetwork
from libspn_keras.structure._chow_liu import (
    _check_alpha,
    _check_data,
    _check_sample_weight,
    mutual_information_matrix,
    smoothed_marginals,
)
from libspn_keras.sum_ops import SumOpBase

_OWNER = "learn_spn"
_KMEANS_ITERATIONS = 100


@dataclasses.dataclass(frozen=True, eq=False)
class LearnedSPN:
    """The structure and parameters learned by LearnSPN (``learn_spn_structure``), in ``SumProductTree`` form.

    Node ``n`` is leaf ``n`` for ``n < num_leaves``, else inner node ``n - num_leaves``; children come first.

    Attributes:
        num_vars: Number of variables.
        num_states: Number of states of every variable.
        leaf_variables: ``[num_leaves]`` the variable of each leaf.
        leaf_probabilities: ``[num_leaves, num_states]`` the (smoothed) categorical of each leaf.
        nodes: ``(kind, children)`` of each inner node, ``kind`` ``"product"`` or ``"sum"``.
        sum_weights: ``[num_sums, num_clusters]`` the weights of the sums (cluster proportions), in the order of
            the sums in ``nodes`` and of their children.
        root: The root node.
    """

    num_vars: int
    num_states: int
    leaf_variables: np.ndarray
    leaf_probabilities: np.ndarray
    nodes: list[tuple[str, tuple[int, ...]]]
    sum_weights: np.ndarray
    root: int

    @property
    def num_leaves(self) -> int:
        """Number of leaves."""
        return len(self.leaf_variables)

    def log_likelihood(self, data: Any) -> np.ndarray:
        """``[num_rows]`` log-probabilities of complete ``data`` (integer states), by evaluating the nodes in NumPy.

        Raises:
            ValueError: If ``data`` has the wrong number of variables or invalid states.
        """
        states, _ = _check_data("LearnedSPN.log_likelihood", data, self.num_states)
        if states.shape[1] != self.num_vars:
            raise ValueError(
                f"LearnedSPN.log_likelihood expects {self.num_vars} variables. Received: data.shape={states.shape}"
            )
        values = list(np.log(self.leaf_probabilities[np.arange(self.num_leaves), states[:, self.leaf_variables]].T))
        sums = iter(np.log(self.sum_weights))
        for kind, children in self.nodes:
            stacked = np.stack([values[child] for child in children])
            if kind == "product":
                values.append(stacked.sum(axis=0))
            else:
                values.append(np.logaddexp.reduce(stacked + next(sums)[:, np.newaxis], axis=0))
        return values[self.root]


class _Builder:
    """The recursion of LearnSPN over slices ``(rows, variables)`` of the data."""

    def __init__(
        self,
        states: np.ndarray,
        weights: np.ndarray,
        num_states: int,
        alpha: float,
        min_instances_slice: int,
        independence_threshold: float,
        num_clusters: int,
        max_depth: int | None,
        seed: int,
    ) -> None:
        self.states, self.weights, self.num_states, self.alpha = states, weights, num_states, alpha
        self.min_instances_slice, self.threshold = min_instances_slice, independence_threshold
        self.num_clusters, self.max_depth = num_clusters, max_depth
        self.rng = np.random.default_rng(seed)
        self.leaves: list[tuple[int, np.ndarray]] = []
        self.inner: list[tuple[str, list[Any], np.ndarray | None]] = []  # children: ("leaf", i) or ("node", i)

    def learn(self, rows: np.ndarray, variables: np.ndarray) -> tuple[str, int]:
        """Learn the SPN of the slice ``(rows, variables)``; return its root as ``("leaf" | "node", index)``.

        Depth first with an explicit stack (no Python recursion, so no recursion limit however deep the splits
        go): a slice is split when it is taken from the stack, its node is made once all its children are, so
        nodes come children first and in the order of a recursive LearnSPN.
        """
        done: dict[int, tuple[str, int]] = {}
        stack: list[tuple[Any, ...]] = [("split", 0, rows, variables, 0)]
        num_tasks = 1
        while stack:
            task = stack.pop()
            if task[0] == "make":
                _, task_id, kind, child_ids, weights = task
                done[task_id] = self._node(kind, [done.pop(child) for child in child_ids], weights)
                continue
            _, task_id, rows, variables, depth = task
            split = self._split(rows, variables, depth)
            if split is None:
                done[task_id] = self._factorize(rows, variables)
                continue
            kind, slices, weights = split
            child_ids = list(range(num_tasks, num_tasks + len(slices)))
            num_tasks += len(slices)
            stack.append(("make", task_id, kind, child_ids, weights))
            stack.extend(
                ("split", child, part_rows, part_variables, depth + 1)
                for child, (part_rows, part_variables) in reversed(list(zip(child_ids, slices, strict=True)))
            )
        return done[0]

    def _split(
        self, rows: np.ndarray, variables: np.ndarray, depth: int
    ) -> tuple[str, list[tuple[np.ndarray, np.ndarray]], np.ndarray | None] | None:
        """How LearnSPN splits a slice ``depth`` splits below the root, or ``None`` to factorize it.

        Returns ``("product", slices, None)`` over independent groups of variables, or ``("sum", slices,
        proportions)`` over clusters of rows.
        """
        if len(variables) == 1 or len(rows) < self.min_instances_slice:
            return None
        if self.max_depth is not None and depth >= self.max_depth:
            return None
        components = self._independent_components(rows, variables)
        if len(components) > 1:
            return "product", [(rows, part) for part in components], None
        clusters = self._clusters(rows, variables)
        if clusters is None:
            return None
        proportions = np.array([self.weights[cluster].sum() for cluster in clusters])
        return "sum", [(cluster, variables) for cluster in clusters], proportions / proportions.sum()

    def _node(self, kind: str, children: list[Any], weights: np.ndarray | None = None) -> tuple[str, int]:
        self.inner.append((kind, children, weights))
        return ("node", len(self.inner) - 1)

    def _factorize(self, rows: np.ndarray, variables: np.ndarray) -> tuple[str, int]:
        """A product of one smoothed categorical per variable (the leaf itself for one variable)."""
        p_single, _ = smoothed_marginals(
            self.states[np.ix_(rows, variables)], self.num_states, self.alpha, self.weights[rows]
        )
        first = len(self.leaves)
        self.leaves.extend(zip(variables.tolist(), p_single, strict=True))
        if len(variables) == 1:
            return ("leaf", first)
        return self._node("product", [("leaf", first + i) for i in range(len(variables))])

    def _independent_components(self, rows: np.ndarray, variables: np.ndarray) -> list[np.ndarray]:
        """The connected components of the pairwise dependency graph (``dependence_p_values`` below threshold)."""
        p_values = dependence_p_values(
            self.states[np.ix_(rows, variables)], self.num_states, self.alpha, self.weights[rows]
        )
        dependent = p_values < self.threshold
        np.fill_diagonal(dependent, False)
        count, labels = csgraph.connected_components(dependent, directed=False)
        return [variables[labels == label] for label in range(count)]

    def _clusters(self, rows: np.ndarray, variables: np.ndarray) -> list[np.ndarray] | None:
        """``num_clusters`` non-empty clusters of ``rows`` (k-means of the one-hot rows), or ``None``."""
        states = self.states[np.ix_(rows, variables)]
        points = (states[:, :, np.newaxis] == np.arange(self.num_states)).reshape(len(rows), -1).astype(np.float64)
        labels = weighted_kmeans(points, self.weights[rows], self.num_clusters, self.rng)
        if labels is None:
            return None
        clusters = [rows[labels == cluster] for cluster in range(self.num_clusters)]
        if any(self.weights[cluster].sum() <= 0 for cluster in clusters):
            return None
        return clusters

    def result(self, root: tuple[str, int], num_vars: int) -> LearnedSPN:
        num_leaves = len(self.leaves)

        def index(child: tuple[str, int]) -> int:
            return child[1] if child[0] == "leaf" else num_leaves + child[1]

        nodes = [(kind, tuple(index(child) for child in children)) for kind, children, _ in self.inner]
        sum_weights = [weights for kind, _, weights in self.inner if kind == "sum"]
        return LearnedSPN(
            num_vars=num_vars,
            num_states=self.num_states,
            leaf_variables=np.array([variable for variable, _ in self.leaves], dtype=np.int64),
            leaf_probabilities=np.array([p for _, p in self.leaves]),
            nodes=nodes,
            sum_weights=np.array(sum_weights).reshape(len(sum_weights), self.num_clusters),
            root=index(root),
        )


def dependence_p_values(states: np.ndarray, num_states: int, alpha: float, weights: np.ndarray) -> np.ndarray:
    """Pairwise G-test p-values of independence, from the Laplace-smoothed contingency tables of all pairs.

    The smoothed tables (``alpha`` pseudo-counts per pair, ``smoothed_marginals``) give ``G = 2 N I`` with ``N``
    the smoothed total and ``I`` the mutual information (nats), against a chi-squared distribution of
    ``(num_states - 1) ** 2`` degrees of freedom; the table of a pair is that of
    ``scipy.stats.chi2_contingency(counts + alpha / num_states**2, lambda_="log-likelihood")``.

    Args:
        states: ``[num_rows, num_vars]`` integers in ``[0, num_states)``.
        num_states: Number of states of every variable.
        alpha: Total pseudo-count per pair.
        weights: ``[num_rows]`` non-negative row weights.

    Returns:
        ``[num_vars, num_vars]`` p-values (1 on the diagonal): small values mean dependent.
    """
    p_single, p_pair = smoothed_marginals(states, num_states, alpha, weights)
    g_statistics = 2.0 * (weights.sum() + alpha) * mutual_information_matrix(p_single, p_pair)
    return stats.chi2.sf(g_statistics, (num_states - 1) ** 2)


def weighted_kmeans(
    points: np.ndarray, weights: np.ndarray, num_clusters: int, rng: np.random.Generator
) -> np.ndarray | None:
    """Weighted k-means (k-means++ seeding, Lloyd's iterations); ``None`` unless all clusters stay non-empty.

    Args:
        points: ``[num_rows, num_features]``.
        weights: ``[num_rows]`` non-negative row weights.
        num_clusters: Number of clusters.
        rng: Random generator of the seeding.

    Returns:
        ``[num_rows]`` cluster labels, or ``None`` if fewer than ``num_clusters`` clusters are non-empty.
    """
    candidates = np.flatnonzero(weights > 0)
    if len(candidates) < num_clusters:
        return None
    centers = [points[rng.choice(candidates)]]
    for _ in range(1, num_clusters):
        distances = np.min([np.sum((points - c) ** 2, axis=1) for c in centers], axis=0) * weights
        if distances.sum() <= 0:
            return None  # fewer distinct rows than clusters
        centers.append(points[rng.choice(len(points), p=distances / distances.sum())])
    center_array = np.array(centers)
    labels = np.full(len(points), -1)
    for _ in range(_KMEANS_ITERATIONS):
        distances = (
            np.sum(points**2, axis=1, keepdims=True) - 2 * points @ center_array.T + np.sum(center_array**2, axis=1)
        )
        new_labels = np.argmin(distances, axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for cluster in range(num_clusters):
            members = labels == cluster
            total = weights[members].sum()
            if total <= 0:
                return None
            center_array[cluster] = weights[members] @ points[members] / total
    return labels


def _check_unit_interval(name: str, value: Any) -> float:
    if not is_number(value) or not 0 < value < 1:
        raise ValueError(f"{_OWNER} expects {name} to be a number in (0, 1). Received: {name}={value!r}")
    return float(value)


def learn_spn_structure(
    data: Any,
    min_instances_slice: int = 200,
    independence_threshold: float = 0.001,
    num_clusters: int = 2,
    alpha: float = 1.0,
    num_states: int | None = None,
    sample_weight: Any = None,
    max_depth: int | None = None,
    seed: int = 0,
) -> LearnedSPN:
    """Learn an SPN's structure and parameters with LearnSPN, as a ``LearnedSPN``: ``learn_spn`` without the model.

    The arguments are those of ``learn_spn`` (which calls it and builds the model from its result).

    Returns:
        A ``LearnedSPN``: the leaves (variable and categorical), the inner nodes children first, the sums' weights.

    Raises:
        TypeError: If ``data`` is not numeric.
        ValueError: If ``data`` is invalid (see ``chow_liu_tree``) or an argument is out of range.

    Example:
        ``x_0`` and ``x_1`` are equal, ``x_2`` is independent of them: a product of ``x_2``'s leaf and a mixture of
        two clusters (``x_0 = x_1 = 0`` and ``= 1``), each a product of two leaves:

        >>> import numpy as np
        >>> data = np.array([[0, 0, 1], [1, 1, 1], [1, 1, 0], [0, 0, 0]] * 50)
        >>> learned = learn_spn_structure(data, min_instances_slice=100)
        >>> learned.nodes
        [('product', (0, 1)), ('product', (2, 3)), ('sum', (5, 6)), ('product', (7, 4))]
        >>> learned.leaf_variables.tolist(), learned.sum_weights.tolist(), learned.root
        ([0, 1, 0, 1, 2], [[0.5, 0.5]], 8)
        >>> np.round(learned.log_likelihood(data[:2]), 3)  # log(1/4) = -1.386 but for the smoothing
        array([-1.396, -1.396])
    """
    states, num_states = _check_data(_OWNER, data, num_states)
    min_instances_slice = check_positive_int(_OWNER, "min_instances_slice", min_instances_slice)
    independence_threshold = _check_unit_interval("independence_threshold", independence_threshold)
    num_clusters = check_positive_int(_OWNER, "num_clusters", num_clusters)
    if num_clusters < 2:
        raise ValueError(f"{_OWNER} expects num_clusters >= 2. Received: num_clusters={num_clusters}")
    alpha = _check_alpha(_OWNER, alpha)
    weights = _check_sample_weight(_OWNER, sample_weight, len(states))
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"{_OWNER} expects seed to be a non-negative integer. Received: seed={seed!r}")
    builder = _Builder(
        states,
        weights,
        num_states,
        alpha,
        min_instances_slice,
        independence_threshold,
        num_clusters,
        None if max_depth is None else check_positive_int(_OWNER, "max_depth", max_depth),
        int(seed),
    )
    root = builder.learn(np.arange(len(states)), np.arange(states.shape[1]))
    return builder.result(root, states.shape[1])


def learn_spn(
    data: Any,
    min_instances_slice: int = 200,
    independence_threshold: float = 0.001,
    num_clusters: int = 2,
    alpha: float = 1.0,
    num_states: int | None = None,
    sample_weight: Any = None,
    max_depth: int | None = None,
    seed: int = 0,
    sum_op: SumOpBase | None = None,
    logspace_accumulators: bool | None = None,
    name: str | None = None,
) -> SequentialSumProductNetwork:
    """Learn an SPN of discrete data with LearnSPN: a ready-to-use, normalized, trainable density model.

    LearnSPN (Gens & Domingos, 2013; SPFlow's ``learn_parametric`` for categorical leaves) splits a slice of the
    data (rows, variables) recursively, starting from all of it:

    * one variable: a leaf, the categorical of its values in the slice (``alpha`` pseudo-counts spread evenly);
    * fewer than ``min_instances_slice`` rows: a product of one such leaf per variable (full factorization);
    * else, if the pairwise G-tests of independence (``dependence_p_values``: one one-hot matmul for all pairs)
      split the variables into several connected components of dependent pairs (p-value below
      ``independence_threshold``): a product over the components;
    * else k-means (seeded by ``seed``) of the one-hot rows into ``num_clusters`` clusters: a sum over them,
      weighted by their proportions; if a cluster comes out empty, a full factorization instead.

    Every sum has exactly ``num_clusters`` children. The result is an ordinary model of this library:

    ``keras.Input -> FlatToRegions -> IndicatorLeaf(num_states) -> GatherScopes(leaf variables) -> DenseSum(1)
    -> SumProductTree(nodes) -> RootSum``

    The ``DenseSum`` holds one categorical per leaf, the ``SumProductTree`` the inner products and sums (computed
    one height at a time) and the ``RootSum`` the root's weights (one child if the root is a product). All
    accumulators start at LearnSPN's estimates, so the model *is* the learned SPN; train it further with ``fit``
    (EM with ``OnlineExpectationMaximization`` and an EM sum op, or gradients). ``NaN`` inputs are marginalized,
    and ``mpe``, ``sample`` and ``.keras`` files work as for every ``SequentialSumProductNetwork``.

    Args:
        data: ``[num_rows, num_vars]`` complete training data of integer states.
        min_instances_slice: Slices with fewer rows are fully factorized.
        independence_threshold: Significance level of the G-tests: a pair is dependent if its p-value is below.
            Smaller values split variables more often.
        num_clusters: Number of clusters of every row split (at least 2).
        alpha: Laplace smoothing: total pseudo-count of every leaf and of every pair's table in the tests.
        num_states: Number of states of every variable; inferred from ``data`` if ``None``.
        sample_weight: Optional ``[num_rows]`` non-negative row weights (counts, tests, clustering, proportions).
        max_depth: Slices this many splits (products and sums) below the root are factorized; ``None``: no limit.
        seed: Seed of the k-means initializations: the same seed learns the same SPN.
        sum_op: Sum op of all sums. Defaults to ``get_default_sum_op()``.
        logspace_accumulators: See ``BaseSum`` (``None``: the sum op's default).
        name: Name of the model.

    Returns:
        A ``SequentialSumProductNetwork``: input ``[batch, num_vars]`` floats (``NaN`` = missing), output
        ``[batch, 1]`` ``log p(x)``.

    Raises:
        TypeError: If ``data`` is not numeric.
        ValueError: If ``data`` is invalid (see ``chow_liu_tree``) or an argument is out of range.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> hidden = rng.integers(0, 2, (600, 1))
        >>> data = np.concatenate([hidden ^ (rng.random((600, 3)) < 0.1), rng.integers(0, 2, (600, 2))], axis=1)
        >>> spn = learn_spn(data, min_instances_slice=100)
        >>> [type(layer).__name__ for layer in spn.layers]
        ['FlatToRegions', 'IndicatorLeaf', 'GatherScopes', 'DenseSum', 'SumProductTree', 'RootSum']
        >>> x = np.array([[0, 0, 0, 1, np.nan]], "float32")
        >>> round(float(np.exp(np.asarray(spn(x))[0, 0])), 2)  # p(x_0..3 = 0, 0, 0, 1), x_4 marginalized
        0.17
    """
    learned = learn_spn_structure(
        data,
        min_instances_slice,
        independence_threshold,
        num_clusters,
        alpha,
        num_states,
        sample_weight,
        max_depth,
        seed,
    )
    root_is_sum = learned.root >= learned.num_leaves and learned.nodes[learned.root - learned.num_leaves][0] == "sum"
    nodes, sum_weights = learned.nodes, learned.sum_weights
    if root_is_sum:  # the RootSum holds the root's weights: the layer outputs its children
        outputs, root_weights = list(nodes[-1][1]), sum_weights[-1]
        nodes, sum_weights = nodes[:-1], sum_weights[:-1]
    else:
        outputs, root_weights = [learned.root], np.ones(1)
    sums: dict[str, Any] = {"sum_op": sum_op, "logspace_accumulators": logspace_accumulators}
    spn = SequentialSumProductNetwork(
        [
            keras.Input(shape=(learned.num_vars,)),
            FlatToRegions(num_decomps=1),
            IndicatorLeaf(num_components=learned.num_states, dtype=keras.config.floatx()),
            GatherScopes(indices=learned.leaf_variables.tolist()),
            DenseSum(num_sums=1, **sums),
            SumProductTree(num_leaves=learned.num_leaves, nodes=nodes, outputs=outputs, **sums),
            RootSum(return_weighted_child_logits=False, **sums),
        ],
        name=name,
    )
    leaf_sum, tree, root = spn.layers[3:]
    sum_of_node = {node: row for row, node in enumerate(i for i, (kind, _) in enumerate(nodes) if kind == "sum")}
    sum_weights = sum_weights[[sum_of_node[node] for node in tree.sum_nodes]]  # the layer's order: by height
    for layer, weights in (
        (leaf_sum, learned.leaf_probabilities[:, np.newaxis, :, np.newaxis]),
        (tree, sum_weights.reshape(len(sum_weights), 1, -1, 1) if len(sum_weights) else np.ones((0, 1, 1, 1))),
        (root, root_weights.reshape(1, 1, -1, 1)),
    ):
        value = np.log(weights) if layer.logspace_accumulators else weights
        layer.accumulators.assign(value.astype(layer.accumulators.dtype))
    return spn
