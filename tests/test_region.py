"""Region graphs: validation, conversion to dense SPNs (validity, scopes, saving) and random RAT-SPN graphs."""

import collections
import itertools

import keras
import numpy as np
import pytest
from scipy.special import logsumexp

import libspn_keras
from libspn_keras import RegionNode, RegionVariable, layers, region_graph_to_dense_spn
from libspn_keras.region import (
    MAX_DENSE_SCOPES,
    dense_layout,
    dense_spn_scopes,
    random_region_graph,
    ratspn,
)
from tests.backend_utils import function, tensor


def v(*indices):
    return [RegionVariable(i) for i in indices]


def balanced4():
    return RegionNode([RegionNode(v(0, 1)), RegionNode(v(2, 3))])


def unbalanced5():
    x = v(0, 1, 2, 3, 4)
    return RegionNode([RegionNode([x[0], x[3]]), RegionNode([x[1], RegionNode([x[2], x[4]])])])


def unbalanced6():
    """Different numbers of children per level, a variable directly under the root and a single-child region."""
    x = v(0, 1, 2, 3, 4, 5)
    return RegionNode([x[5], RegionNode([x[0], x[2], x[4]]), RegionNode([RegionNode([x[1]]), x[3]])])


def two_roots5():
    """Two decompositions of the same five variables with different shapes."""
    return [unbalanced5(), RegionNode([RegionNode(v(4, 1)), RegionNode(v(0, 2, 3))])]


GRAPHS = {"balanced4": balanced4, "unbalanced5": unbalanced5, "unbalanced6": unbalanced6, "two_roots5": two_roots5}


def roots_of(graph):
    return graph if isinstance(graph, list) else [graph]


def num_vars_of(graph):
    return len(roots_of(graph)[0].scope)


def randomize_accumulators(model, rng):
    for layer in model.layers:
        if isinstance(layer, layers.BaseSum):
            shape = tuple(layer.accumulators.shape)
            values = rng.normal(scale=1.5, size=shape) if layer.logspace_accumulators else rng.gamma(0.5, size=shape)
            layer.accumulators.assign(np.maximum(values, 1e-3).astype(layer.accumulators.dtype))


def build(graph, product_first=True, num_classes=None, logspace=False, num_states=2):
    model = region_graph_to_dense_spn(
        graph,
        layers.IndicatorLeaf(num_components=num_states),
        itertools.cycle([2, 3]),
        return_weighted_child_logits=num_classes is not None,
        logspace_accumulators=logspace,
        product_first=product_first,
        num_classes=num_classes,
    )
    randomize_accumulators(model, np.random.default_rng(0))
    return model


def all_states(num_vars, num_states=2):
    return np.array(list(itertools.product(range(num_states), repeat=num_vars)), "float32")


def log_joint(model, x):
    return logsumexp(np.asarray(model(x), np.float64), axis=-1)


# --- Region classes ---------------------------------------------------------------------------------------------


def test_top_level_exports():
    assert libspn_keras.RegionNode is RegionNode
    assert libspn_keras.RegionVariable is RegionVariable
    assert libspn_keras.region_graph_to_dense_spn is region_graph_to_dense_spn
    assert {"RegionNode", "RegionVariable", "region_graph_to_dense_spn"} <= set(libspn_keras.__all__)


def test_scope_is_union_of_children():
    graph = unbalanced6()
    assert graph.scope == frozenset(range(6))
    assert [sorted(child.scope) for child in graph.children] == [[5], [0, 2, 4], [1, 3]]
    assert RegionVariable(4).children == ()
    assert repr(RegionNode(v(1, 0))) == "RegionNode([RegionVariable(1), RegionVariable(0)])"


def test_overlapping_children_are_rejected_naming_the_variables():
    with pytest.raises(ValueError, match=r"children 0 and 1 both contain variables \[1, 3\]"):
        RegionNode([RegionNode(v(0, 1, 3)), RegionNode(v(3, 2, 1))])


def test_duplicate_variables_are_rejected():
    with pytest.raises(ValueError, match=r"children 0 and 2 both contain variables \[0\]"):
        RegionNode([RegionVariable(0), RegionVariable(1), RegionVariable(0)])
    shared = RegionNode(v(0, 1))
    with pytest.raises(ValueError, match="pairwise disjoint"):
        RegionNode([shared, shared])


@pytest.mark.parametrize(
    ("children", "error", "match"),
    [
        ([], ValueError, "at least one child"),
        ([RegionVariable(0), 1], TypeError, r"children\[1\]=1"),
        (RegionVariable(0), TypeError, "sequence"),
        ("x0", TypeError, "sequence"),
    ],
)
def test_invalid_children(children, error, match):
    with pytest.raises(error, match=match):
        RegionNode(children)


@pytest.mark.parametrize(("index", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("0", TypeError)])
def test_invalid_variable_index(index, error):
    with pytest.raises(error, match="index"):
        RegionVariable(index)


def test_numpy_integer_index_is_accepted():
    assert RegionVariable(np.int64(2)).index == 2


# --- Conversion: structure and layout ---------------------------------------------------------------------------


def test_layout_of_unbalanced_graph():
    layout = dense_layout(unbalanced5())
    # Level 0 and 1 regions have two children; {X2, X4} is one level deeper, so X0, X3 and X1 get a padding scope.
    assert layout.permutations.tolist() == [[0, -1, 3, -1, 1, -1, 2, 4]]
    assert layout.factors == (2, 2, 2)


def test_layout_pads_missing_children_and_shallow_variables():
    layout = dense_layout(unbalanced6())
    # Three children at the root and at level 1, a single child ({X1} of [{X1}, X3]) at level 2.
    assert layout.factors == (1, 3, 3)
    assert layout.permutations.tolist() == [[5, -1, -1, 0, 2, 4, 1, 3, -1]]
    layout = dense_layout(RegionNode([RegionNode(v(0, 1, 2)), RegionNode([RegionNode(v(3, 4)), RegionVariable(5)])]))
    assert layout.factors == (2, 3, 2)
    assert layout.permutations.tolist() == [[0, -1, 1, -1, 2, -1, 3, 4, 5, -1, -1, -1]]


def expected_scopes_per_level(root, num_levels):
    """Independently of the layout: the non-empty region scopes at each level, counted from the root.

    At level ``t`` the dense SPN holds every region node of depth ``t`` and, as a singleton, every variable of
    depth at most ``t`` (it is lifted through the lower levels with padding).
    """
    regions, variables = collections.defaultdict(list), []

    def walk(node, depth):
        if isinstance(node, RegionVariable):
            variables.append((node.index, depth))
            return
        regions[depth].append(node.scope)
        for child in node.children:
            walk(child, depth + 1)

    walk(root, 0)
    return [
        collections.Counter(regions[t] + [frozenset({i}) for i, depth in variables if depth <= t])
        for t in range(num_levels + 1)
    ]


def max_depth(root):
    return 0 if isinstance(root, RegionVariable) else 1 + max(max_depth(child) for child in root.children)


@pytest.mark.parametrize("product_first", [True, False])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_model_scopes_equal_graph_scopes(name, product_first):
    graph = GRAPHS[name]()
    model = build(graph, product_first=product_first, num_classes=2)
    scopes = dense_spn_scopes(model)
    products = [s for layer, s in scopes if isinstance(layer, layers.DenseProduct)][::-1]  # root level first
    leaf_level = next(s for layer, s in scopes if isinstance(layer, layers.PermuteAndPadScopes))
    assert len(products) == max(max_depth(root) for root in roots_of(graph))
    for decomp, root in enumerate(roots_of(graph)):
        expected = expected_scopes_per_level(root, len(products))
        for level, layer_scopes in enumerate([*products, leaf_level]):
            got = collections.Counter(row[decomp] for row in layer_scopes if row[decomp])
            assert got == expected[level], (level, got, expected[level])
    # Sums keep the scopes of the products below them; the root covers every variable.
    for (below, below_scopes), (layer, layer_scopes) in itertools.pairwise(scopes):
        if isinstance(layer, layers.DenseSum) and not isinstance(below, layers.Undecompose):
            assert layer_scopes == below_scopes
    assert scopes[-1].scopes == ((frozenset(range(num_vars_of(graph))),),)


def test_layer_stack():
    model = build(two_roots5(), product_first=False, num_classes=3)
    names = [type(layer).__name__ for layer in model.layers]
    assert names == [
        "FlatToRegions",
        "IndicatorLeaf",
        "PermuteAndPadScopes",
        "DenseSum",
        "DenseProduct",
        "DenseSum",
        "DenseProduct",
        "DenseSum",
        "DenseProduct",
        "Undecompose",
        "DenseSum",
        "RootSum",
    ]
    assert [layer.num_sums for layer in model.layers if isinstance(layer, layers.DenseSum)] == [2, 3, 2, 3]
    assert model.layers[0].num_decomps == 2
    assert model.input_shape == (None, 5) and model.output_shape == (None, 3)


def test_without_root_and_classes():
    model = region_graph_to_dense_spn(balanced4(), layers.NormalLeaf(3), [4], False, with_root=False)
    assert type(model.layers[-1]).__name__ == "DenseProduct"
    assert model.output_shape == (None, 1, 1, 16)


# --- Conversion: validity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [None, 2])
@pytest.mark.parametrize("product_first", [True, False])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_dense_spn_sums_to_one(name, product_first, num_classes):
    graph = GRAPHS[name]()
    model = build(graph, product_first=product_first, num_classes=num_classes)
    states = all_states(num_vars_of(graph))

    log_p = log_joint(model, states)

    assert np.all(log_p <= 1e-5)
    assert np.ptp(log_p) > 0.5  # not a constant
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["unbalanced5", "unbalanced6", "two_roots5"])
def test_marginalizing_a_variable_equals_summing_it_out(name, float64):
    graph = GRAPHS[name]()
    model = build(graph, product_first=False, logspace=True, num_states=3)
    num_vars = num_vars_of(graph)
    states = all_states(num_vars, 3).astype("float64")
    joint = log_joint(model, states).reshape((3,) * num_vars)
    np.testing.assert_allclose(np.exp(joint).sum(), 1.0, atol=1e-10)
    for var in range(num_vars):
        rows = states[states[:, var] == 0]
        mask = np.ones(rows.shape, bool)
        mask[:, var] = False
        marginal = np.asarray(model.log_marginal(rows, mask), np.float64)
        np.testing.assert_allclose(marginal, logsumexp(joint, axis=var).reshape(-1), atol=1e-10)


@pytest.mark.parametrize("mode", ["function", "jit"])
def test_validity_in_graph_mode(mode):
    model = build(unbalanced6(), num_classes=2)
    states = tensor(all_states(6))
    out = function(model, jit_compile=mode == "jit")(states)
    np.testing.assert_allclose(np.exp(logsumexp(np.asarray(out, np.float64))), 1.0, atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    model = build(two_roots5(), product_first=False, num_classes=2)
    states = all_states(5)
    path = tmp_path / "m.keras"

    model.save(path)
    loaded = keras.models.load_model(path)

    assert type(loaded) is type(model)
    np.testing.assert_array_equal(np.asarray(loaded(states)), np.asarray(model(states)))
    assert [s.scopes for s in dense_spn_scopes(loaded)] == [s.scopes for s in dense_spn_scopes(model)]


# --- Invalid conversions ----------------------------------------------------------------------------------------


def test_invalid_conversions():
    leaf = layers.IndicatorLeaf(2)
    with pytest.raises(TypeError, match="RegionNode"):
        region_graph_to_dense_spn(RegionVariable(0), leaf, [2], False)
    with pytest.raises(TypeError, match="RegionNode"):
        region_graph_to_dense_spn([balanced4(), "root"], leaf, [2], False)
    with pytest.raises(ValueError, match=r"lacks variables \[1\]"):
        region_graph_to_dense_spn(RegionNode(v(0, 2)), leaf, [2], False)
    with pytest.raises(ValueError, match=r"Root 1 lacks variables \[3\]"):
        region_graph_to_dense_spn([balanced4(), RegionNode(v(0, 1, 2))], leaf, [2], False)
    with pytest.raises(TypeError, match="BaseLeaf"):
        region_graph_to_dense_spn(balanced4(), keras.layers.Dense(2), [2], False)
    with pytest.raises(ValueError, match=r"2 DenseSum layers .* Received: 1 values \[2\]"):
        region_graph_to_dense_spn(balanced4(), leaf, [2], False, product_first=False)
    with pytest.raises(ValueError, match="num_classes=0"):
        region_graph_to_dense_spn(balanced4(), leaf, [2], False, num_classes=0)
    with pytest.raises(ValueError, match="num_sums=0"):
        region_graph_to_dense_spn(balanced4(), leaf, [0], False)


def test_too_deep_unbalanced_graph_is_rejected():
    chain = RegionNode(v(0, 1))
    for index in range(2, 23):  # every level adds one variable: 2**21 padded leaf scopes
        chain = RegionNode([chain, RegionVariable(index)])
    with pytest.raises(ValueError, match=f"more than MAX_DENSE_SCOPES={MAX_DENSE_SCOPES}"):
        dense_layout(chain)


def test_dense_spn_scopes_rejects_invalid_and_unsupported_models(monkeypatch):
    def incomplete_model() -> libspn_keras.models.SequentialSumProductNetwork:
        return libspn_keras.models.SequentialSumProductNetwork(
            [
                keras.Input(shape=(2,)),
                layers.FlatToRegions(num_decomps=2),
                layers.IndicatorLeaf(2),
                layers.PermuteAndPadScopes([[0, 1], [1, 0]]),
                layers.DenseProduct(num_factors=1),
                layers.Undecompose(),
            ]
        )

    # Building the model checks its scopes already.
    with pytest.raises(ValueError, match=r"Layer 'undecompose\w*' merges regions .* \(completeness\)"):
        incomplete_model()
    monkeypatch.setattr(layers.Undecompose, "_propagate_scopes", lambda self, scopes, input_shape: None)
    incomplete = incomplete_model()  # built without the build-time check: dense_spn_scopes checks on its own
    with pytest.raises(ValueError, match="not complete"):
        dense_spn_scopes(incomplete)
    unsupported = keras.Sequential([keras.Input(shape=(4,)), layers.FlatToRegions(), keras.layers.Identity()])
    with pytest.raises(ValueError, match="Identity.*not supported"):
        dense_spn_scopes(unsupported)
    with pytest.raises(ValueError, match="input shape"):
        dense_spn_scopes(keras.Sequential([layers.FlatToRegions()]))


# --- Random region graphs and RAT-SPNs --------------------------------------------------------------------------


def variable_depths(node, depth=0):
    if isinstance(node, RegionVariable):
        return [(node.index, depth)]
    return [pair for child in node.children for pair in variable_depths(child, depth + 1)]


def check_balanced(node):
    if isinstance(node, RegionNode) and any(isinstance(child, RegionNode) for child in node.children):
        sizes = [len(child.scope) for child in node.children]
        assert len(sizes) == 2 and abs(sizes[0] - sizes[1]) <= 1
        for child in node.children:
            check_balanced(child)


@pytest.mark.parametrize(("num_vars", "depth", "reps"), [(16, 3, 2), (7, 2, 3), (5, 0, 1), (9, 3, 1), (8, 3, 2)])
def test_random_region_graph_is_valid(num_vars, depth, reps):
    roots = random_region_graph(num_vars, depth, reps, seed=1)
    assert len(roots) == reps
    for root in roots:
        pairs = variable_depths(root)
        assert sorted(index for index, _ in pairs) == list(range(num_vars))  # every variable exactly once
        assert {d for _, d in pairs} == {depth + 1}  # input regions at level depth, their variables one below
        check_balanced(root)
    assert repr(roots) == repr(random_region_graph(num_vars, depth, reps, seed=1))  # seeded


def test_random_repetitions_differ():
    first, second = random_region_graph(16, 2, 2, seed=0)
    assert repr(first) != repr(second)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((4, 3, 1), "num_vars >= 2\\*\\*depth"),
        ((4, -1, 1), "depth"),
        ((4, 1, 0), "num_repetitions"),
        ((0, 0, 1), "num_vars"),
    ],
)
def test_random_region_graph_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        random_region_graph(*args)


def test_ratspn_with_indicators_sums_to_one_and_has_rat_structure():
    model = ratspn(
        num_vars=6,
        depth=2,
        num_repetitions=3,
        num_input_distributions=3,
        num_sums=2,
        leaf=layers.IndicatorLeaf(2),
        num_classes=2,
        seed=0,
    )
    names = [type(layer).__name__ for layer in model.layers]
    assert names == [
        "FlatToRegions", "IndicatorLeaf", "PermuteAndPadScopes", "DenseSum", "ReduceProduct", "DenseProduct",
        "DenseSum", "DenseProduct", "Undecompose", "DenseSum", "RootSum",
    ]  # fmt: skip
    assert model.layers[0].num_decomps == 3
    assert model.layers[3].num_sums == 3  # categorical input distributions from the indicators
    assert model.output_shape == (None, 2)
    randomize_accumulators(model, np.random.default_rng(1))
    log_p = log_joint(model, all_states(6))
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, atol=1e-5)
    # Each repetition is one decomposition with its own random graph: the root level merges the 3 * 3 * 3 products.
    assert dense_spn_scopes(model)[-1].scopes == ((frozenset(range(6)),),)


def test_ratspn_with_normal_leaves_trains():
    model = ratspn(num_vars=8, depth=2, num_repetitions=2, num_input_distributions=3, num_sums=4, seed=0)
    assert not any(isinstance(layer, layers.DenseSum) for layer in model.layers[:4])  # no input sums
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=libspn_keras.losses.NegativeLogLikelihood())
    data = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    before = float(np.mean(model(data)))
    model.fit(data, epochs=5, batch_size=32, verbose=0)
    assert float(np.mean(model(data))) > before
