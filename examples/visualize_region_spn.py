"""Draw the dense SPN of a small, unbalanced region graph and write it to a standalone HTML file.

The region graph over five variables is ``{{X0, X3}, {X1, {X2, X4}}}``: the deepest region {X2, X4} is one level
below the others, so X0, X3 and X1 are padded up to its level (grey padding nodes in the leaf row). Open the HTML
file in a browser: hover over a node for its layer, scope and position; click legend entries to hide scopes.

    python examples/visualize_region_spn.py                       # writes region_spn.html
    python examples/visualize_region_spn.py --output /tmp/spn.html --hide-padding
    python examples/visualize_region_spn.py --png region_spn.png      # static image, needs kaleido
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from libspn_keras import RegionNode, RegionVariable, region_graph_to_dense_spn  # noqa: E402
from libspn_keras.layers import IndicatorLeaf  # noqa: E402
from libspn_keras.models import SequentialSumProductNetwork  # noqa: E402
from libspn_keras.visualize import dense_spn_graph, visualize_dense_spn  # noqa: E402


def build_spn() -> SequentialSumProductNetwork:
    """A binary SPN over five variables from an unbalanced region graph."""
    x = [RegionVariable(i) for i in range(5)]
    graph = RegionNode([RegionNode([x[0], x[3]]), RegionNode([x[1], RegionNode([x[2], x[4]])])])
    return region_graph_to_dense_spn(
        graph,
        leaf_node=IndicatorLeaf(num_components=2),
        num_sums_iterable=[2, 2],
        return_weighted_child_logits=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("region_spn.html"), help="HTML file to write")
    parser.add_argument("--hide-padding", action="store_true", help="do not draw padding nodes")
    parser.add_argument("--node-size", type=int, default=18)
    parser.add_argument("--png", type=Path, help="also write a PNG (needs the optional kaleido package)")
    args = parser.parse_args()

    spn = build_spn()
    graph = dense_spn_graph(spn)
    for row, label in enumerate(graph.row_labels):
        in_row = [node for node in graph.nodes if node.row == row]
        padding = sum(node.is_padding for node in in_row)
        print(f"row {row}: {label:<14} {len(in_row):3d} nodes ({padding} padding)")
    print(f"{len(graph.edges)} edges")

    fig = visualize_dense_spn(spn, show_legend=True, show_padding=not args.hide_padding, node_size=args.node_size)
    fig.update_layout(title="Dense SPN of the region graph {{X0, X3}, {X1, {X2, X4}}}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(args.output, include_plotlyjs=True)
    print(f"wrote {args.output}")
    if args.png and importlib.util.find_spec("kaleido") is None:
        print(
            f"not writing {args.png}: static images need the optional kaleido package. Take a screenshot instead: "
            f"chromium --headless --screenshot={args.png} --window-size=1200,900 file://{args.output.resolve()}"
        )
    elif args.png:
        fig.write_image(args.png, width=1200, height=900)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
