"""The drawing of a dense SPN: its nodes and edges match the model's layers exactly; the figure shows them."""

import math

import keras
import numpy as np
import plotly.graph_objects as go
import pytest

from libspn_keras import RegionNode, RegionVariable, layers, models, region_graph_to_dense_spn
from libspn_keras.region import dense_spn_scopes, ratspn
from libspn_keras.visualize import NODE_SYMBOLS, dense_spn_graph, visualize_dense_spn


def unbalanced_spn():
    x = [RegionVariable(i) for i in range(5)]
    graph = RegionNode([RegionNode([x[0], x[3]]), RegionNode([x[1], RegionNode([x[2], x[4]])])])
    return region_graph_to_dense_spn(graph, layers.NormalLeaf(2), [2, 3, 2], True, product_first=False, num_classes=2)


def rat_spn():
    return ratspn(num_vars=6, depth=2, num_repetitions=2, num_input_distributions=2, num_sums=3, seed=0)


def mixing_spn():
    """Random permutations, reduce products and decompositions merged in two steps."""
    return models.SequentialSumProductNetwork(
        [
            keras.Input(shape=(5,)),
            layers.FlatToRegions(num_decomps=4),
            layers.NormalLeaf(num_components=2),
            layers.PermuteAndPadScopesRandom(seed=3),
            layers.DenseProduct(num_factors=2),
            layers.DenseSum(num_sums=2),
            layers.ReduceProduct(num_factors=2),
            layers.DenseProduct(num_factors=2),
            layers.Undecompose(num_decomps=2),
            layers.DenseSum(num_sums=3),
            layers.Undecompose(),
            layers.RootSum(return_weighted_child_logits=False),
        ]
    )


MODELS = {"unbalanced": unbalanced_spn, "ratspn": rat_spn, "mixing": mixing_spn}
NODE_LAYERS = (layers.BaseLeaf, layers.DenseProduct, layers.ReduceProduct, layers.DenseSum, layers.RootSum)


def layer_outputs(model, x):
    outputs, h = [], x
    for layer in model.layers:
        h = layer(h)
        outputs.append(np.asarray(h, np.float64))
    return outputs


def node_values(node, outputs):
    """Values of a node over the batch, read from the output of the layer that holds it."""
    out = outputs[node.layer_index]
    return out[:, node.scope_index, node.decomp, node.index] if out.ndim == 4 else None


@pytest.fixture(params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


def test_nodes_per_row_match_layer_outputs(model):
    graph = dense_spn_graph(model)
    row_layers = [model.layers[i] for i in graph.row_layers]
    assert [type(layer) for layer in row_layers] == [
        type(layer) for layer in model.layers if isinstance(layer, NODE_LAYERS)
    ]
    assert graph.row_labels == tuple(type(layer).__name__ for layer in row_layers)
    perm = next(layer for layer in model.layers if isinstance(layer, layers.BasePermuteAndPadScopes))
    for row, layer in enumerate(row_layers):
        in_row = [node for node in graph.nodes if node.row == row]
        if isinstance(layer, layers.BaseLeaf):  # the leaf components in permuted order, plus padding nodes
            expected = perm.permutations.size * layer.num_components
            padding = int((perm.permutations < 0).sum()) * layer.num_components
            assert sum(node.kind == "padding" for node in in_row) == padding
        elif isinstance(layer, layers.RootSum):
            expected = 1
        else:
            expected = math.prod(layer.output.shape[1:])
        assert len(in_row) == expected, (row, layer.name)
        assert len({node.x for node in in_row}) == len(in_row)  # no two nodes of a row on top of each other
        assert all(0 < node.x < 1 for node in in_row)
    assert [node.id for node in graph.nodes] == list(range(len(graph.nodes)))


def test_edges_match_products_and_sums(model):
    graph = dense_spn_graph(model)
    x = np.random.default_rng(0).normal(size=(3, model.input_shape[1])).astype("float32")
    outputs = layer_outputs(model, x)
    scopes = dense_spn_scopes(model)
    children = {node.id: [] for node in graph.nodes}
    for parent, child in graph.edges:
        children[parent].append(graph.nodes[child])
        assert graph.nodes[parent].row == graph.nodes[child].row + 1  # edges join adjacent rows
    expected_edges = 0
    for node in graph.nodes:
        layer = model.layers[node.layer_index]
        kids = children[node.id]
        assert node.scope == scopes[node.layer_index].scopes[node.scope_index][node.decomp]
        if node.kind in ("leaf", "padding"):
            assert kids == []
            if node.kind == "padding":
                assert isinstance(layer, layers.BasePermuteAndPadScopes) and not node.scope
                np.testing.assert_array_equal(node_values(node, outputs), 0.0)
            continue
        layer_input = outputs[node.layer_index - 1]  # the tensor the layer reads (after permutations etc.)
        if node.kind == "product":
            f, n = layer.num_factors, layer_input.shape[-1]
            assert len(kids) == f
            for j, kid in enumerate(kids):
                i = (node.index // n ** (f - 1 - j)) % n if isinstance(layer, layers.DenseProduct) else node.index
                np.testing.assert_allclose(
                    node_values(kid, outputs), layer_input[:, f * node.scope_index + j, node.decomp, i]
                )
                assert kid.scope == scopes[node.layer_index - 1].scopes[f * node.scope_index + j][node.decomp]
            np.testing.assert_allclose(
                sum(node_values(kid, outputs) for kid in kids), node_values(node, outputs), rtol=1e-6, atol=1e-5
            )
        else:  # a sum reads every node of its region, in order
            region = layer_input[:, node.scope_index, node.decomp] if node.kind == "sum" else layer_input[:, 0, 0]
            assert len(kids) == region.shape[-1]
            np.testing.assert_allclose(np.stack([node_values(kid, outputs) for kid in kids], axis=-1), region)
        expected_edges += len(kids)
    assert len(graph.edges) == expected_edges == len(set(graph.edges))


def test_unbalanced_graph_counts():
    graph = dense_spn_graph(unbalanced_spn())
    rows = [sum(node.row == r for node in graph.nodes) for r in range(len(graph.row_labels))]
    # 5 variables x 2 components + 3 padding scopes x 2; 2 sums on each of the 8 scopes; 2 x 2 products on 4
    # scopes; 3 sums each; 3 x 3 products on 2 scopes; 2 sums each; 2 x 2 products; 2 class sums; the root.
    assert rows == [16, 16, 16, 12, 18, 4, 4, 2, 1]
    assert sum(node.is_padding for node in graph.nodes) == 6 + 3 * 2  # padding nodes and the sums over them
    assert len(graph.edges) == 16 * 2 + 16 * 2 + 12 * 4 + 18 * 2 + 4 * 9 + 4 * 2 + 2 * 4 + 2


@pytest.mark.parametrize("show_padding", [True, False])
def test_figure_shows_the_graph(show_padding):
    model = unbalanced_spn()
    graph = dense_spn_graph(model)

    fig = visualize_dense_spn(model, show_legend=True, show_padding=show_padding, node_size=17)

    assert isinstance(fig, go.Figure)
    shown = [node for node in graph.nodes if show_padding or not node.is_padding]
    ids = {node.id for node in shown}
    node_traces = [trace for trace in fig.data if trace.legendgroup == "scopes"]
    assert sum(len(trace.x) for trace in node_traces) == len(shown)
    assert {trace.name for trace in node_traces} == {
        "{" + ", ".join(f"X{v}" for v in sorted(s)) + "}" if s else "∅ (padding)" for s in {n.scope for n in shown}
    }
    assert all(trace.marker.size == 17 for trace in node_traces)
    markers = sorted((round(x, 9), y) for trace in node_traces for x, y in zip(trace.x, trace.y, strict=True))
    assert markers == sorted((round(node.x, 9), node.row) for node in shown)
    edge_trace = next(trace for trace in fig.data if trace.name == "edges")
    assert len(edge_trace.x) == 3 * sum(p in ids and c in ids for p, c in graph.edges)
    symbols = {s for trace in node_traces for s in trace.marker.symbol}
    assert symbols == {NODE_SYMBOLS[n.kind] for n in shown}
    assert fig.layout.showlegend is True
    assert list(fig.layout.yaxis.ticktext) == [f"<b>{label}</b>" for label in graph.row_labels]


def test_figure_options():
    model = rat_spn()
    fig = visualize_dense_spn(model, transparent=True)
    assert fig.layout.paper_bgcolor == fig.layout.plot_bgcolor == "rgba(0,0,0,0)"
    assert fig.layout.showlegend is False
    assert visualize_dense_spn(model).layout.paper_bgcolor == "white"


def test_unsupported_layers_raise():
    with_identity = keras.Sequential(
        [keras.Input(shape=(4,)), layers.FlatToRegions(), layers.NormalLeaf(2), keras.layers.Identity()]
    )
    with pytest.raises(ValueError, match="Identity.*not supported"):
        visualize_dense_spn(with_identity)
    spatial = keras.Sequential(
        [
            keras.Input(shape=(4, 4, 1)),
            layers.NormalLeaf(2),
            layers.Conv2DProduct(strides=2, dilations=1, kernel_size=2),
        ]
    )
    with pytest.raises(ValueError, match="Conv2DProduct.*not supported"):
        visualize_dense_spn(spatial)
    with pytest.raises(ValueError, match="input shape"):
        visualize_dense_spn(keras.Sequential([layers.FlatToRegions(), layers.NormalLeaf(2)]))
