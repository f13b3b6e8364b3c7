"""SumProductTree and GatherScopes against an independent top-down NumPy evaluation of the same nodes."""

import functools

import keras
import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from libspn_keras import layers
from libspn_keras.layers._scope_tracking import Scopes
from libspn_keras.math import attached_indicator_index
from tests.backend_utils import grad, jit, to_numpy
from tests.sum_op_cases import OPS


def random_tree(rng, variables, depth, k):
    """A random valid SPN over ``variables`` as nested tuples: sums of ``k`` children, products of 1-3 parts."""
    if len(variables) == 1:
        return ("leaf", int(variables[0]))
    if depth == 0:
        return ("product", [("leaf", int(v)) for v in variables])
    if rng.random() < 0.5:
        return ("sum", [random_tree(rng, variables, depth - 1, k) for _ in range(k)])
    num_parts = int(rng.integers(1, min(3, len(variables)) + 1))
    cuts = np.sort(rng.choice(np.arange(1, len(variables)), num_parts - 1, replace=False))
    parts = np.split(rng.permutation(variables), cuts)
    return ("product", [random_tree(rng, part, int(rng.integers(0, depth)), k) for part in parts])


def flatten(tree):
    """(leaf variables, nodes children first, root index) of a nested tree."""
    leaves, nodes = [], []

    def visit(node):
        kind, children = node
        if kind == "leaf":
            leaves.append(children)
            return ("leaf", len(leaves) - 1)
        refs = [visit(child) for child in children]
        nodes.append((kind, refs))
        return ("node", len(nodes) - 1)

    root = visit(tree)

    def index(ref):
        return ref[1] if ref[0] == "leaf" else len(leaves) + ref[1]

    return leaves, [(kind, [index(ref) for ref in refs]) for kind, refs in nodes], index(root)


def reference(leaf_values, nodes, weights, outputs):
    """Top-down recursive evaluation: ``leaf_values [batch, L]``, ``weights[node]`` the normalized weights of a
    sum node."""
    num_leaves = leaf_values.shape[1]

    @functools.cache
    def value(n):
        if n < num_leaves:
            return leaf_values[:, n]
        kind, children = nodes[n - num_leaves]
        child_values = np.stack([value(c) for c in children], axis=1)
        if kind == "product":
            return child_values.sum(axis=1)
        return logsumexp(child_values + np.log(weights[n - num_leaves]), axis=1)

    return np.stack([value(n) for n in outputs], axis=1)


def normalized(layer, accumulators=None):
    """The normalized weights of each sum node (by node index), read from the accumulators."""
    values = np.asarray(layer.accumulators if accumulators is None else accumulators, dtype=np.float64)[:, 0, :, 0]
    rows = softmax(values, axis=1) if layer.logspace_accumulators else values / values.sum(axis=1, keepdims=True)
    return dict(zip(layer.sum_nodes, rows, strict=True))


def randomize(layer, rng):
    shape = tuple(layer.accumulators.shape)
    value = rng.normal(size=shape) if layer.logspace_accumulators else rng.uniform(0.05, 2.0, shape)
    layer.accumulators.assign(value.astype(layer.accumulators.dtype))


STRUCTURES = [(seed, k) for seed in range(6) for k in (2, 3)]


@pytest.mark.parametrize(("seed", "k"), STRUCTURES)
def test_log_value_matches_a_top_down_numpy_evaluation(seed, k, floatx):
    rng = np.random.default_rng(seed)
    leaves, nodes, root = flatten(random_tree(rng, np.arange(6), depth=5, k=k))
    if root < len(leaves):
        pytest.skip("the random tree is a single leaf")
    op = "grad" if seed % 2 else "em"  # log-space and linear accumulators
    layer = layers.SumProductTree(num_leaves=len(leaves), nodes=nodes, outputs=[root], sum_op=OPS[op]())
    layer.build((None, len(leaves), 1, 1))
    randomize(layer, rng)
    x = rng.normal(size=(5, len(leaves), 1, 1)).astype(floatx)
    expected = reference(x[:, :, 0, 0].astype(np.float64), nodes, normalized(layer), [root])
    tolerance = 1e-5 if floatx == "float32" else 1e-12
    out = np.asarray(layer(x))
    assert out.shape == (5, 1, 1, 1)
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(np.asarray(jit(layer)(x))[:, 0, 0], expected, rtol=tolerance, atol=tolerance)


def test_structures_are_varied():
    """The random structures hold nested sums, products of 1, 2 and 3 children and unbalanced depths."""
    sizes, nested, depths = set(), False, set()
    for seed, k in STRUCTURES:
        leaves, nodes, _ = flatten(random_tree(np.random.default_rng(seed), np.arange(6), depth=5, k=k))
        num_leaves = len(leaves)
        layer = layers.SumProductTree(num_leaves=num_leaves, nodes=nodes)
        sizes |= {len(children) for kind, children in nodes if kind == "product"}
        nested |= any(
            kind == "sum" and any(c >= num_leaves and nodes[c - num_leaves][0] == "sum" for c in children)
            for kind, children in nodes
        )
        depths.add(layer.height)
    assert {1, 2, 3} <= sizes and nested and len(depths) > 2


def test_outputs_are_several_nodes_in_their_order(float64):
    nodes = [("product", [0, 1]), ("product", [2, 3]), ("sum", [4, 5]), ("product", [0, 3])]
    layer = layers.SumProductTree(num_leaves=4, nodes=nodes, outputs=[6, 4, 7, 5], sum_op=OPS["em"]())
    x = np.random.default_rng(1).normal(size=(3, 4, 1, 1))
    layer.build(x.shape)
    randomize(layer, np.random.default_rng(2))
    expected = reference(x[:, :, 0, 0], nodes, normalized(layer), [6, 4, 7, 5])
    np.testing.assert_allclose(np.asarray(layer(x))[:, 0, 0], expected, rtol=1e-12)
    assert layer.compute_output_shape((None, 4, 1, 1)) == (None, 1, 1, 4)


@pytest.mark.parametrize("seed", [1, 5])
def test_gradients_match_finite_differences(seed, float64):
    rng = np.random.default_rng(seed)
    leaves, nodes, root = flatten(random_tree(rng, np.arange(5), depth=4, k=2))
    layer = layers.SumProductTree(num_leaves=len(leaves), nodes=nodes, outputs=[root], sum_op=OPS["grad"]())
    assert layer.num_sums >= 2
    x = rng.normal(size=(4, len(leaves), 1, 1))
    layer.build(x.shape)
    randomize(layer, rng)
    x_grad, w_grad = to_numpy(grad(layer, x, variables=[layer.accumulators]))
    base = np.asarray(layer.accumulators)

    def total(leaf_values, accumulators):
        return reference(leaf_values[:, :, 0, 0], nodes, normalized(layer, accumulators), [root]).sum()

    step = 1e-6
    for array, gradient in ((x, x_grad), (base, w_grad)):
        expected = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            shift = np.zeros_like(array)
            shift[index] = step
            if array is x:
                up, down = total(x + shift, base), total(x - shift, base)
            else:
                up, down = total(x, base + shift), total(x, base - shift)
            expected[index] = (up - down) / (2 * step)
        np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=1e-8)


def test_hard_em_signal_follows_the_winning_child(float64):
    """Hard EM counts: each sample adds 1 to the weight of the child with the largest weighted value."""
    nodes = [("product", [0, 1]), ("product", [2, 3]), ("sum", [4, 5])]
    layer = layers.SumProductTree(num_leaves=4, nodes=nodes, sum_op=OPS["hard_em"]())
    x = np.random.default_rng(4).normal(size=(6, 4, 1, 1))
    layer.build(x.shape)
    layer.accumulators.assign(np.array([0.3, 0.7]).reshape(1, 1, 2, 1))
    (_, counts) = to_numpy(grad(layer, x, variables=[layer.accumulators]))
    children = np.stack([x[:, 0, 0, 0] + x[:, 1, 0, 0], x[:, 2, 0, 0] + x[:, 3, 0, 0]], axis=1) + np.log([0.3, 0.7])
    winners = np.bincount(np.argmax(children, axis=1), minlength=2)
    np.testing.assert_allclose(np.abs(counts[0, 0, :, 0]), winners, atol=1e-9)


def test_a_tree_without_sums_has_empty_accumulators():
    layer = layers.SumProductTree(num_leaves=3, nodes=[("product", [0, 1]), ("product", [3, 2])])
    x = np.random.default_rng(5).normal(size=(2, 3, 1, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(layer(x))[:, 0, 0, 0], x.sum(axis=(1, 2, 3)), rtol=1e-6)
    assert tuple(layer.accumulators.shape) == (0, 1, 1, 1) and layer.num_sums == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_leaves": 0, "nodes": []}, ValueError, "num_leaves to be a positive integer. Received: num_leaves=0"),
        ({"num_leaves": 2, "nodes": "ab"}, TypeError, "nodes to be a sequence"),
        ({"num_leaves": 2, "nodes": [("max", [0, 1])]}, ValueError, "'product' or a 'sum'. Received: kind='max'"),
        ({"num_leaves": 2, "nodes": [("product", [])]}, ValueError, "node 0 to have a non-empty sequence"),
        ({"num_leaves": 2, "nodes": [("product", [0, 2])]}, ValueError, r"children of node 0 in \[0, 2\)"),
        ({"num_leaves": 2, "nodes": [("product", [0, 1]), ("sum", [2, 3])]}, ValueError, r"node 1 in \[0, 3\)"),
        ({"num_leaves": 2, "nodes": [("product", [0, 0])]}, ValueError, "node 0 has a repeated child"),
        ({"num_leaves": 2, "nodes": [("sum", [0, 1]), ("sum", [0, 1, 2])]}, ValueError, r"sums with \[2, 3\]"),
        ({"num_leaves": 2, "nodes": [("product", [0, 1])], "outputs": [3]}, ValueError, r"outputs in \[0, 3\)"),
        ({"num_leaves": 2, "nodes": [("product", [0, 1])], "outputs": [2, 2]}, ValueError, "distinct outputs"),
        ({"num_leaves": 2, "nodes": [["product", [0, 1.5]]]}, ValueError, "children of node 0"),
        ({"num_leaves": 2, "nodes": [("product",)]}, ValueError, "node 0 to be a .kind, children. pair"),
    ],
)
def test_rejects_bad_node_lists(kwargs, error, message):
    with pytest.raises(error, match=f"SumProductTree.*{message}"):
        layers.SumProductTree(**kwargs)


def test_rejects_inputs_that_do_not_match():
    layer = layers.SumProductTree(num_leaves=2, nodes=[("product", [0, 1])], name="tree")
    with pytest.raises(ValueError, match=r"Layer 'tree' expects inputs .* num_leaves=2.*\(2, 3, 1, 1\)"):
        layer(np.zeros((2, 3, 1, 1), "float32"))
    with pytest.raises(ValueError, match=r"Layer 'tree' expects inputs of rank 4"):
        layers.SumProductTree(num_leaves=2, nodes=[("product", [0, 1])], name="tree")(np.zeros((2, 2), "float32"))


def leaf_scopes(variables, num_vars):
    counts = np.zeros((len(variables), 1, num_vars), dtype=int)
    counts[np.arange(len(variables)), 0, variables] = 1
    return Scopes(counts, True, origin=0, layout="region")


def test_scopes_products_decomposable_sums_and_outputs_complete():
    scopes = leaf_scopes([0, 1, 0, 1], 2)
    valid = layers.SumProductTree(num_leaves=4, nodes=[("product", [0, 1]), ("product", [2, 3]), ("sum", [4, 5])])
    np.testing.assert_array_equal(valid._propagate_scopes(scopes, (None, 4, 1, 1)).counts, [[[1, 1]]])
    overlapping = layers.SumProductTree(
        num_leaves=4, nodes=[("product", [0, 1]), ("product", [1, 2, 3])], outputs=[4], name="tree"
    )
    with pytest.raises(ValueError, match=r"Layer 'tree': the products at node 1 .*variables \[1\]"):
        overlapping._propagate_scopes(scopes, (None, 4, 1, 1))
    incomplete = layers.SumProductTree(num_leaves=4, nodes=[("product", [0, 1]), ("sum", [4, 2])], name="tree")
    with pytest.raises(ValueError, match=r"Layer 'tree': the children of sum node 1 have different scopes"):
        incomplete._propagate_scopes(scopes, (None, 4, 1, 1))
    outputs = layers.SumProductTree(num_leaves=4, nodes=[("product", [0, 1])], outputs=[4, 2], name="tree")
    with pytest.raises(ValueError, match=r"Layer 'tree': the outputs .* different scopes"):
        outputs._propagate_scopes(scopes, (None, 4, 1, 1))


def test_an_invalid_structure_fails_when_the_model_is_built():
    with pytest.raises(ValueError, match=r"Layer 'tree': the children of sum node 0 have different scopes"):
        keras.Sequential(
            [
                keras.Input((2,)),
                layers.FlatToRegions(),
                layers.IndicatorLeaf(num_components=2),
                layers.GatherScopes([0, 1, 0]),
                layers.DenseSum(num_sums=1),
                layers.SumProductTree(num_leaves=3, nodes=[("sum", [0, 1]), ("product", [3, 2])], name="tree"),
                layers.RootSum(return_weighted_child_logits=False),
            ]
        )
    with pytest.raises(ValueError, match=r"Layer 'root' is the root of the SPN.*variables \[1\] are not covered"):
        keras.Sequential(
            [
                keras.Input((2,)),
                layers.FlatToRegions(),
                layers.IndicatorLeaf(num_components=2),
                layers.GatherScopes([0, 0]),
                layers.DenseSum(num_sums=1),
                layers.SumProductTree(num_leaves=2, nodes=[("sum", [0, 1])]),
                layers.RootSum(return_weighted_child_logits=False, name="root"),
            ]
        )


def test_gather_scopes_repeats_scopes_and_adds_their_gradients():
    x = np.random.default_rng(6).normal(size=(2, 3, 2, 4)).astype("float32")
    layer = layers.GatherScopes([2, 0, 2, 2])
    np.testing.assert_array_equal(np.asarray(layer(x)), x[:, [2, 0, 2, 2]])
    (dx,) = to_numpy(grad(layer, x))
    np.testing.assert_allclose(dx[0, :, 0, 0], [1.0, 0.0, 3.0])
    counts = layer._propagate_scopes(leaf_scopes([0, 1, 2], 3), (None, 3, 1, 4)).counts
    np.testing.assert_array_equal(counts[:, 0], np.eye(3, dtype=int)[[2, 0, 2, 2]])


def test_gather_scopes_rejects_bad_indices():
    with pytest.raises(TypeError, match="GatherScopes expects indices to be a sequence"):
        layers.GatherScopes("ab")
    with pytest.raises(ValueError, match=r"GatherScopes expects indices .* Received: indices=\[0, -1\]"):
        layers.GatherScopes([0, -1])
    with pytest.raises(ValueError, match=r"Received: indices=\[\]"):
        layers.GatherScopes([])
    with pytest.raises(ValueError, match=r"Layer 'gather' expects indices in \[0, num_scopes=3\)"):
        layers.GatherScopes([3], name="gather")(np.zeros((1, 3, 1, 2), "float32"))


def test_gather_scopes_keeps_the_indicator_index_for_the_sums_above():
    """Over an IndicatorLeaf the gathered states travel along, and the DenseSum above looks its sums up."""
    x = np.array([[0.0, 1.0, np.nan], [1.0, np.nan, 0.0]], "float32")
    leaf = layers.IndicatorLeaf(num_components=2, dtype="float32")
    indicators = leaf(layers.FlatToRegions()(x))
    gathered = layers.GatherScopes([2, 0, 2, 1])(indicators)
    index = attached_indicator_index(gathered)
    assert index is not None
    np.testing.assert_array_equal(np.asarray(index)[:, :, 0], [[2, 0, 2, 1], [0, 1, 0, 2]])  # 2: marginalized
    dense = layers.DenseSum(num_sums=1, logspace_accumulators=False)
    looked_up = np.asarray(dense(gathered))
    computed = np.asarray(dense(np.asarray(gathered)))  # a copy carries no index: the matmul path
    np.testing.assert_allclose(looked_up, computed, rtol=1e-6, atol=1e-7)
