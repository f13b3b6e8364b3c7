"""Interactive drawings of dense SPNs: one marker per leaf component, product and sum node, colored by scope.

``dense_spn_graph`` computes the nodes and edges of a dense SPN (the structure a figure shows, for tests and
other renderers); ``visualize_dense_spn`` draws them with plotly.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import keras
import numpy as np
import plotly.colors
import plotly.graph_objects as go

from libspn_keras.layers import (
    BaseLeaf,
    BasePermuteAndPadScopes,
    DenseProduct,
    DenseSum,
    FlatToRegions,
    LogDropout,
    ReduceProduct,
    RootSum,
    Undecompose,
)
from libspn_keras.region import dense_spn_scopes

#: Node kinds, in legend order, with their marker symbols.
NODE_SYMBOLS: dict[str, str] = {
    "leaf": "circle",
    "padding": "circle-open",
    "product": "circle-x",
    "sum": "circle-cross",
    "root": "diamond-cross",
}
_PADDING_COLOR = "#b4b4b4"
_SLOT_MARGIN = 0.06  # fraction of a region's horizontal interval left empty on each side


@dataclasses.dataclass(frozen=True)
class DenseSpnNode:
    """One node of a dense SPN.

    Attributes:
        id: Index of the node in ``DenseSpnGraph.nodes``.
        kind: ``"leaf"`` (a leaf component), ``"padding"`` (a padding scope of ``PermuteAndPadScopes``, constant
            probability 1), ``"product"``, ``"sum"`` or ``"root"``.
        row: Drawing row, 0 for the leaves, one row per layer that creates nodes.
        layer_index: Index in ``dense_spn.layers`` of the layer whose output holds the node.
        scope_index: Scope axis position in that output ``[batch, num_scopes, num_decomps, num_nodes]``.
        decomp: Decomposition axis position in that output.
        index: Node axis position in that output.
        scope: Variables of the node; empty for padding and for products and sums over padding only.
        x: Horizontal position in ``[0, 1]``.
    """

    id: int
    kind: str
    row: int
    layer_index: int
    scope_index: int
    decomp: int
    index: int
    scope: frozenset[int]
    x: float = float("nan")

    @property
    def is_padding(self) -> bool:
        """Whether the node covers no variable (``show_padding=False`` hides it)."""
        return not self.scope


@dataclasses.dataclass(frozen=True)
class DenseSpnGraph:
    """Nodes and edges of a dense SPN, as drawn by ``visualize_dense_spn``.

    Attributes:
        nodes: All nodes that the output depends on (leaf components of variables that ``PermuteAndPadScopes``
            drops are left out), bottom row first.
        edges: ``(parent id, child id)`` pairs: a product to each of its factors, a sum to each of its children.
        row_labels: Name of the layer type drawn in each row.
        row_layers: Index in ``dense_spn.layers`` of the layer of each row.
    """

    nodes: tuple[DenseSpnNode, ...]
    edges: tuple[tuple[int, int], ...]
    row_labels: tuple[str, ...]
    row_layers: tuple[int, ...]


_Frontier = list[list[list[int]]]  # node ids indexed [scope][decomp][node] of the current layer output


def dense_spn_graph(dense_spn: keras.Model) -> DenseSpnGraph:
    """Compute the nodes and edges of a dense SPN.

    Every leaf component, padding node, product, sum and the root is a node. Nodes of one row are placed by
    region: decompositions side by side, the scopes of a decomposition side by side within it and the nodes of a
    region within its scope, in the order the next layer reads them, so that every region lies above the regions
    it is built from.

    Args:
        dense_spn: A built ``keras.Sequential`` of ``FlatToRegions``, a leaf layer, ``PermuteAndPadScopes``,
            ``DenseProduct``, ``ReduceProduct``, ``DenseSum``, ``LogDropout``, ``Undecompose`` and ``RootSum``
            layers.

    Returns:
        A ``DenseSpnGraph``.

    Raises:
        ValueError: If the model holds another layer (e.g. spatial layers), is not built, or is not a valid SPN
            (see ``libspn_keras.region.dense_spn_scopes``).

    Example:
        >>> from libspn_keras import RegionNode, RegionVariable, region_graph_to_dense_spn
        >>> from libspn_keras.layers import IndicatorLeaf
        >>> x = [RegionVariable(i) for i in range(3)]
        >>> spn = region_graph_to_dense_spn(RegionNode([RegionNode([x[0], x[1]]), x[2]]), IndicatorLeaf(2), [2], False)
        >>> graph = dense_spn_graph(spn)
        >>> graph.row_labels
        ('IndicatorLeaf', 'DenseProduct', 'DenseSum', 'DenseProduct', 'RootSum')
        >>> [sum(n.row == r for n in graph.nodes) for r in range(5)]  # 6 leaf + 2 padding, 8 products, ...
        [8, 8, 4, 4, 1]
        >>> len(graph.edges)  # 8 products x 2 factors + 4 sums x 4 children + 4 products x 2 + 4 root children
        44
    """
    layer_scopes = dense_spn_scopes(dense_spn)
    nodes: list[dict[str, Any]] = []
    edges: list[tuple[int, int]] = []
    row_labels: list[str] = []
    row_layers: list[int] = []
    frontier: _Frontier | None = None

    def new_node(kind: str, layer_index: int, s: int, d: int, i: int, scope: frozenset[int]) -> int:
        nodes.append(
            {
                "id": len(nodes),
                "kind": kind,
                "row": len(row_labels) - 1,
                "layer_index": layer_index,
                "scope_index": s,
                "decomp": d,
                "index": i,
                "scope": scope,
            }
        )
        return len(nodes) - 1

    def place(front: _Frontier) -> None:
        """Give the nodes of ``front`` (one row) their horizontal positions, in the order the next layer reads."""
        num_scopes, num_decomps = len(front), len(front[0])
        num_slots = num_scopes * num_decomps
        for s, d in itertools.product(range(num_scopes), range(num_decomps)):
            slot = d * num_scopes + s
            ids = front[s][d]
            for i, node_id in enumerate(ids):
                offset = _SLOT_MARGIN + (i + 0.5) * (1 - 2 * _SLOT_MARGIN) / len(ids)
                nodes[node_id].setdefault("x", (slot + offset) / num_slots)

    def new_row(layer: keras.layers.Layer, layer_index: int) -> None:
        if frontier is not None:
            place(frontier)
        row_labels.append(type(layer).__name__)
        row_layers.append(layer_index)

    for layer_index, (layer, scopes) in enumerate(layer_scopes):
        where = f"Layer '{layer.name}' ({type(layer).__name__})"
        num_scopes, num_decomps = len(scopes), len(scopes[0])
        if isinstance(layer, FlatToRegions | LogDropout):
            continue
        if isinstance(layer, BaseLeaf):
            if frontier is not None:
                raise ValueError(f"{where}: visualize_dense_spn expects a single leaf layer.")
            new_row(layer, layer_index)
            frontier = [
                [
                    [new_node("leaf", layer_index, s, d, k, scopes[s][d]) for k in range(layer.num_components)]
                    for d in range(num_decomps)
                ]
                for s in range(num_scopes)
            ]
            continue
        if frontier is None:
            raise ValueError(f"{where} comes before the leaf layer; visualize_dense_spn cannot draw it.")
        num_nodes = len(frontier[0][0])
        if isinstance(layer, BasePermuteAndPadScopes):
            perms = np.asarray(layer.permutations)
            previous = frontier
            frontier = [
                [
                    [new_node("padding", layer_index, s, d, i, frozenset()) for i in range(num_nodes)]
                    if perms[d, s] < 0
                    else previous[perms[d, s]][d]
                    for d in range(num_decomps)
                ]
                for s in range(num_scopes)
            ]
        elif isinstance(layer, Undecompose):
            group = len(frontier[0]) // layer.num_decomps
            frontier = [
                [list(itertools.chain.from_iterable(row[group * k : group * (k + 1)])) for k in range(num_decomps)]
                for row in frontier
            ]
        elif isinstance(layer, DenseProduct | ReduceProduct):
            new_row(layer, layer_index)
            f = layer.num_factors
            dense = isinstance(layer, DenseProduct)
            out: _Frontier = []
            for s in range(num_scopes):
                out.append([])
                for d in range(num_decomps):
                    factors = [frontier[f * s + j][d] for j in range(f)]
                    combos = itertools.product(*factors) if dense else zip(*factors, strict=True)
                    ids = []
                    for i, children in enumerate(combos):
                        node_id = new_node("product", layer_index, s, d, i, scopes[s][d])
                        edges.extend((node_id, child) for child in children)
                        ids.append(node_id)
                    out[-1].append(ids)
            frontier = out
        elif isinstance(layer, DenseSum | RootSum):
            if isinstance(layer, RootSum):  # the root's children are every decomposition's nodes
                frontier = [[list(itertools.chain.from_iterable(row))] for row in frontier]
            new_row(layer, layer_index)
            num_out = layer.num_sums if isinstance(layer, DenseSum) else 1
            kind = "sum" if isinstance(layer, DenseSum) else "root"
            out = []
            for s in range(num_scopes):
                out.append([])
                for d in range(num_decomps):
                    ids = []
                    for i in range(num_out):
                        node_id = new_node(kind, layer_index, s, d, i, scopes[s][d])
                        edges.extend((node_id, child) for child in frontier[s][d])
                        ids.append(node_id)
                    out[-1].append(ids)
            frontier = out
        else:  # pragma: no cover - dense_spn_scopes rejects other layers first
            raise ValueError(f"{where} is not supported by visualize_dense_spn.")
    if frontier is None:
        raise ValueError(f"Model '{dense_spn.name}' has no leaf layer to draw.")
    place(frontier)
    return _prune(nodes, edges, frontier, row_labels, row_layers)


def _prune(
    nodes: list[dict[str, Any]],
    edges: list[tuple[int, int]],
    frontier: _Frontier,
    row_labels: list[str],
    row_layers: list[int],
) -> DenseSpnGraph:
    """Keep the nodes that the output depends on, renumbered bottom row first."""
    children: dict[int, list[int]] = {}
    for parent, child in edges:
        children.setdefault(parent, []).append(child)
    stack = [node_id for row in frontier for slot in row for node_id in slot]
    reachable = set(stack)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in reachable:
                reachable.add(child)
                stack.append(child)
    kept = sorted(reachable, key=lambda node_id: (nodes[node_id]["row"], nodes[node_id]["x"], node_id))
    new_id = {old: new for new, old in enumerate(kept)}
    graph_nodes = tuple(DenseSpnNode(**{**nodes[old], "id": new_id[old]}) for old in kept)
    graph_edges = tuple(
        (new_id[parent], new_id[child]) for parent, child in edges if parent in new_id and child in new_id
    )
    return DenseSpnGraph(graph_nodes, graph_edges, tuple(row_labels), tuple(row_layers))


def _scope_label(scope: frozenset[int]) -> str:
    return "{" + ", ".join(f"X{v}" for v in sorted(scope)) + "}" if scope else "∅ (padding)"


def _scope_colors(scopes: list[frozenset[int]]) -> dict[frozenset[int], str]:
    palette = plotly.colors.qualitative.Plotly + plotly.colors.qualitative.Dark24 + plotly.colors.qualitative.Light24
    colors = {scope: color for scope, color in zip(scopes, itertools.cycle(palette)) if scope}
    colors[frozenset()] = _PADDING_COLOR
    return colors


def visualize_dense_spn(
    dense_spn: keras.Model,
    show_legend: bool = False,
    show_padding: bool = True,
    transparent: bool = False,
    node_size: int = 30,
) -> go.Figure:
    """Visualize a dense SPN, consisting of ``DenseSum``, ``DenseProduct``, ``RootSum`` and leaf layers.

    Rows are layers (leaves at the bottom, the root at the top, labelled on the left); every leaf component,
    product and sum is a marker, colored by its scope (hover for details) and shaped by its kind: ``○`` padding,
    ``●`` leaf, ``⊗`` product, ``⊕`` sum, ``◇`` root. ``PermuteAndPadScopes`` and ``Undecompose`` only reorder the
    nodes and have no row; padding nodes sit in the leaf row. ``ReduceProduct``, ``Undecompose``, ``LogDropout``
    and ``PermuteAndPadScopesRandom`` layers are drawn too. See ``dense_spn_graph`` for the structure drawn.

    Args:
        dense_spn: An SPN of type ``keras.Sequential`` (built, e.g. by ``region_graph_to_dense_spn``).
        show_legend: Whether to show legend of scopes and layers on the right.
        show_padding: Whether to show padded nodes (and products / sums over padding only).
        transparent: If ``True``, the background is transparent.
        node_size: Size of the nodes drawn in the graph. Adjust to avoid clutter.

    Returns:
        A ``plotly.graph_objects.Figure`` instance. Use ``.show()`` to render the visualization or
        ``.write_html(path, include_plotlyjs=True)`` for a standalone file.

    Raises:
        ValueError: If the model holds a layer other than those above (e.g. spatial layers) or is not built.

    Example:
        >>> from libspn_keras import RegionNode, RegionVariable, region_graph_to_dense_spn
        >>> from libspn_keras.layers import IndicatorLeaf
        >>> x = [RegionVariable(i) for i in range(3)]
        >>> spn = region_graph_to_dense_spn(RegionNode([RegionNode([x[0], x[1]]), x[2]]), IndicatorLeaf(2), [2], False)
        >>> fig = visualize_dense_spn(spn, show_legend=True, node_size=20)
        >>> sorted(trace.name for trace in fig.data if trace.name and trace.name.startswith("{"))
        ['{X0, X1, X2}', '{X0, X1}', '{X0}', '{X1}', '{X2}']
    """
    graph = dense_spn_graph(dense_spn)
    shown = [node for node in graph.nodes if show_padding or not node.is_padding]
    visible = {node.id for node in shown}
    scopes = sorted({node.scope for node in shown}, key=lambda scope: (len(scope), sorted(scope)))
    colors = _scope_colors(scopes)
    layers = dense_spn.layers

    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for parent, child in graph.edges:
        if parent in visible and child in visible:
            edge_x += [graph.nodes[parent].x, graph.nodes[child].x, None]
            edge_y += [graph.nodes[parent].row, graph.nodes[child].row, None]
    background = "rgba(0,0,0,0)" if transparent else "white"
    num_rows = len(graph.row_labels)
    fig = go.Figure(
        layout=go.Layout(
            plot_bgcolor=background,
            paper_bgcolor=background,
            height=140 + 110 * num_rows,
            margin={"l": 20, "r": 20, "t": 30, "b": 20},
            hovermode="closest",
            showlegend=show_legend,
            legend={"groupclick": "toggleitem", "itemsizing": "constant"},
            xaxis={"visible": False, "range": [-0.02, 1.02]},
            yaxis={
                "tickvals": list(range(num_rows)),
                "ticktext": [f"<b>{label}</b>" for label in graph.row_labels],
                "range": [-0.6, num_rows - 0.4],
                "showgrid": False,
                "zeroline": False,
                "automargin": True,
            },
        )
    )
    fig.add_trace(
        go.Scatter(
            x=edge_x,
            y=edge_y,
            mode="lines",
            line={"color": "rgba(110,110,110,0.45)", "width": 1},
            hoverinfo="skip",
            showlegend=False,
            name="edges",
        )
    )
    for scope in scopes:
        members = [node for node in shown if node.scope == scope]
        fig.add_trace(
            go.Scatter(
                x=[node.x for node in members],
                y=[node.row for node in members],
                mode="markers",
                name=_scope_label(scope),
                legendgroup="scopes",
                legendgrouptitle_text="Scopes",
                marker={
                    "size": node_size,
                    "color": colors[scope],
                    "symbol": [NODE_SYMBOLS[node.kind] for node in members],
                    "line": {"width": max(1.0, node_size / 15), "color": "#303030"},
                },
                hovertext=[_hover_text(node, layers[node.layer_index]) for node in members],
                hoverinfo="text",
            )
        )
    kinds = [kind for kind in NODE_SYMBOLS if any(node.kind == kind for node in shown)]
    for kind in kinds:
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=kind,
                legendgroup="kinds",
                legendgrouptitle_text="Node types",
                marker={
                    "size": 12,
                    "color": "#303030" if kind == "padding" else "#d9d9d9",
                    "symbol": NODE_SYMBOLS[kind],
                    "line": {"width": 1.5, "color": "#303030"},
                },
                hoverinfo="skip",
            )
        )
    return fig


def _hover_text(node: DenseSpnNode, layer: keras.layers.Layer) -> str:
    return (
        f"{node.kind} of {type(layer).__name__} '{layer.name}'<br>scope {_scope_label(node.scope)}<br>"
        f"region [scope={node.scope_index}, decomp={node.decomp}], node {node.index}"
    )


__all__ = ["NODE_SYMBOLS", "DenseSpnGraph", "DenseSpnNode", "dense_spn_graph", "visualize_dense_spn"]
