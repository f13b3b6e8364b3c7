"""chow_liu_tree against brute-force mutual information, spanning trees and densities written independently."""

import itertools

import numpy as np
import pytest
import scipy.stats

from libspn_keras import RegionNode, RegionVariable
from libspn_keras.structure import ChowLiuTree, chow_liu_tree


def brute_force_mutual_information(data, num_states, alpha, weights=None):
    """Per-pair smoothed joint table by a loop over rows, MI = H(X) + H(Y) - H(X, Y) with scipy."""
    num_rows, num_vars = data.shape
    weights = np.ones(num_rows) if weights is None else weights
    information = np.zeros((num_vars, num_vars))
    for i in range(num_vars):
        for j in range(num_vars):
            if i == j:
                continue
            table = np.full((num_states, num_states), alpha / num_states**2)
            for row, weight in zip(data, weights, strict=True):
                table[row[i], row[j]] += weight
            table /= table.sum()
            joint = scipy.stats.entropy(table.ravel())
            information[i, j] = scipy.stats.entropy(table.sum(1)) + scipy.stats.entropy(table.sum(0)) - joint
    return information


def kruskal_maximum_spanning_tree(weights):
    """Maximum spanning tree by Kruskal with a plain union-find; returns undirected edges as frozensets."""
    num_vars = len(weights)
    parent = list(range(num_vars))

    def find(v):
        while parent[v] != v:
            v = parent[v]
        return v

    edges = set()
    for _, i, j in sorted(((weights[i, j], i, j) for i, j in itertools.combinations(range(num_vars), 2)), reverse=True):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj
            edges.add(frozenset((i, j)))
    return edges


def undirected(tree):
    return {frozenset(edge) for edge in tree.edges}


def height_from(root, edges, num_vars):
    neighbours = {v: set() for v in range(num_vars)}
    for edge in edges:
        i, j = tuple(edge)
        neighbours[i].add(j)
        neighbours[j].add(i)
    depth, frontier, seen = 0, {root}, {root}
    while True:
        frontier = {n for v in frontier for n in neighbours[v]} - seen
        if not frontier:
            return depth
        seen |= frontier
        depth += 1


def sample_tree_model(rng, num_vars, num_states, num_rows, strength=6.0):
    """Rows of a random tree-shaped Bayesian network with strongly dependent conditionals; returns data, edges."""
    parents = [-1] + [int(rng.integers(0, v)) for v in range(1, num_vars)]
    order = rng.permutation(num_vars)  # relabel so that the root is not always variable 0
    data = np.zeros((num_rows, num_vars), dtype=np.int64)
    data[:, 0] = rng.integers(0, num_states, num_rows)
    for v in range(1, num_vars):
        table = rng.dirichlet(np.ones(num_states), num_states) + strength * np.eye(num_states)
        table /= table.sum(1, keepdims=True)
        cumulative = table[data[:, parents[v]]].cumsum(1)
        data[:, v] = (rng.random(num_rows)[:, None] > cumulative).sum(1)
    edges = {frozenset((int(order[p]), int(order[v]))) for v, p in enumerate(parents) if p >= 0}
    relabelled = np.empty_like(data)
    relabelled[:, order] = data
    return relabelled, edges


@pytest.mark.parametrize(("num_states", "alpha"), [(2, 1.0), (3, 0.1), (4, 2.5)])
def test_mutual_information_and_tree_match_brute_force(num_states, alpha):
    rng = np.random.default_rng(num_states)
    data = rng.integers(0, num_states, (60, 7))
    data[:, 3] = (data[:, 1] + (rng.random(60) < 0.2)) % num_states  # some structure
    tree = chow_liu_tree(data, alpha=alpha, num_states=num_states)
    expected = brute_force_mutual_information(data, num_states, alpha)
    np.testing.assert_allclose(tree.mutual_information, expected, rtol=1e-10, atol=1e-12)
    assert undirected(tree) == kruskal_maximum_spanning_tree(expected)
    assert tree.num_vars == 7 and tree.num_states == num_states and len(tree.edges) == 6


def test_tree_is_rooted_at_a_center_and_edges_are_oriented_from_it():
    rng = np.random.default_rng(3)
    data, _ = sample_tree_model(rng, num_vars=12, num_states=2, num_rows=400)
    tree = chow_liu_tree(data)
    edges = undirected(tree)
    best = min(height_from(root, edges, 12) for root in range(12))
    assert height_from(tree.root, edges, 12) == best == tree.heights().max()
    assert tree.parents[tree.root] == -1 and np.sum(tree.parents < 0) == 1
    seen = {tree.root}
    for parent, child in tree.edges:  # breadth-first: every parent appears before its children
        assert parent in seen and tree.parents[child] == parent
        seen.add(child)
    assert seen == set(range(12))


@pytest.mark.parametrize("num_states", [2, 3])
def test_data_sampled_from_a_tree_recovers_it(num_states):
    rng = np.random.default_rng(10 + num_states)
    data, edges = sample_tree_model(rng, num_vars=10, num_states=num_states, num_rows=20000)
    assert undirected(chow_liu_tree(data, alpha=0.5)) == edges


def test_sample_weight_equals_repeated_rows():
    rng = np.random.default_rng(5)
    data = rng.integers(0, 3, (40, 6))
    weights = rng.integers(0, 4, 40)
    weighted = chow_liu_tree(data, alpha=0.3, sample_weight=weights.astype(float), num_states=3)
    repeated = chow_liu_tree(np.repeat(data, weights, axis=0), alpha=0.3, num_states=3)
    np.testing.assert_allclose(weighted.mutual_information, repeated.mutual_information, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(weighted.log_conditionals, repeated.log_conditionals, rtol=1e-12)
    assert weighted.edges == repeated.edges and weighted.root == repeated.root
    np.testing.assert_allclose(
        weighted.mutual_information, brute_force_mutual_information(data, 3, 0.3, weights), rtol=1e-10, atol=1e-12
    )


def test_log_likelihood_is_the_smoothed_tree_density_and_normalized():
    rng = np.random.default_rng(7)
    num_states, alpha = 3, 0.7
    data = rng.integers(0, num_states, (50, 4))
    tree = chow_liu_tree(data, alpha=alpha)
    everything = np.array(list(itertools.product(range(num_states), repeat=4)))
    log_p = tree.log_likelihood(everything)
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, rtol=1e-12)
    expected = np.zeros(len(everything))
    for v in range(4):  # p(x_v | x_parent) = (N(x_p, x_v) + alpha / S**2) / (N(x_p) + alpha / S)
        p = tree.parents[v]
        for row, states in enumerate(everything):
            if p < 0:
                count = np.sum(data[:, v] == states[v]) + alpha / num_states
                expected[row] += np.log(count / (len(data) + alpha))
            else:
                both = np.sum((data[:, p] == states[p]) & (data[:, v] == states[v])) + alpha / num_states**2
                expected[row] += np.log(both / (np.sum(data[:, p] == states[p]) + alpha / num_states))
    np.testing.assert_allclose(log_p, expected, rtol=1e-10)


def test_region_graph_follows_the_tree():
    rng = np.random.default_rng(8)
    data, _ = sample_tree_model(rng, num_vars=9, num_states=2, num_rows=300)
    tree = chow_liu_tree(data)
    root = tree.to_region_graph()
    assert isinstance(root, RegionNode) and root.scope == frozenset(range(9))
    children = tree.children()

    def subtree(v):
        return frozenset({v}).union(*(subtree(c) for c in children[v]))

    def check(region, variable):
        assert region.scope == subtree(variable)
        if isinstance(region, RegionVariable):
            assert not children[variable]
            return
        head, *rest = region.children
        assert head.scope == frozenset({variable}) and len(rest) == len(children[variable])
        for child_region, child in zip(rest, children[variable], strict=True):
            check(child_region, child)

    check(root, tree.root)


def test_single_variable_and_constant_columns():
    tree = chow_liu_tree(np.array([[0], [1], [1]]))
    assert tree.edges == [] and tree.root == 0 and tree.to_region_graph().scope == frozenset({0})
    constant = chow_liu_tree(np.zeros((5, 4), dtype=int))  # zero information everywhere: still a spanning tree
    assert len(constant.edges) == 3 and constant.num_states == 2
    assert isinstance(chow_liu_tree(np.array([[True, False], [False, False]])), ChowLiuTree)


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "message"),
    [
        (np.array([[0, 0.5]]), {}, ValueError, "fractional"),
        (np.array([[0, -1]]), {}, ValueError, "non-negative"),
        (np.array([[0, np.nan]]), {}, ValueError, "NaN"),
        (np.array([0, 1]), {}, ValueError, r"shape \[num_rows, num_vars\].*\(2,\)"),
        (np.zeros((2, 2, 2)), {}, ValueError, r"data.shape=\(2, 2, 2\)"),
        (np.zeros((0, 3)), {}, ValueError, r"data.shape=\(0, 3\)"),
        (np.array([["a", "b"]]), {}, TypeError, "data.dtype=<U1"),
        (np.array([[0, 3]]), {"num_states": 3}, ValueError, "num_states=3 and a value of 3"),
        (np.array([[0, 1]]), {"num_states": 0}, ValueError, "num_states=0"),
        (np.array([[0, 1]]), {"num_states": 2.5}, ValueError, "num_states=2.5"),
        (np.array([[0, 1]]), {"alpha": 0.0}, ValueError, "alpha=0.0"),
        (np.array([[0, 1]]), {"alpha": float("nan")}, ValueError, "alpha=nan"),
        (np.array([[0, 1]]), {"sample_weight": [1.0, 2.0]}, ValueError, r"\(1,\).*shape \(2,\)"),
        (np.array([[0, 1]]), {"sample_weight": [-1.0]}, ValueError, "non-negative"),
    ],
)
def test_bad_input_is_rejected_with_the_received_value(data, kwargs, error, message):
    with pytest.raises(error, match=f"chow_liu_tree.*{message}"):
        chow_liu_tree(data, **kwargs)


def test_log_likelihood_rejects_other_variables():
    tree = chow_liu_tree(np.array([[0, 1], [1, 1]]))
    with pytest.raises(ValueError, match=r"ChowLiuTree.log_likelihood expects 2 variables.*\(1, 3\)"):
        tree.log_likelihood(np.zeros((1, 3), dtype=int))
