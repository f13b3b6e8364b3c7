"""Write the notebook twin (``.ipynb``) of an example script: the same code, one cell per top-level definition.

The module docstring becomes a markdown cell; consecutive top-level statements (imports, constants) share a code
cell and every function or class gets its own; the ``if __name__ == "__main__":`` block is replaced by a cell that
calls ``main([])`` (the script's defaults). Run it after editing a script so that its twin stays the same code
(``tests/test_examples_dgcspn.py`` checks this)::

    python examples/make_notebooks.py examples/dgcspn_classification.py examples/dgcspn_completion.py
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path
from typing import Any

RUN_CELL = 'results = main([])  # the script\'s defaults; e.g. main(["--quick"]) for a short run'


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def script_cells(source: str) -> list[tuple[str, str]]:
    """Split a script into ``(cell_type, source)`` pairs."""
    lines = source.splitlines()
    tree = ast.parse(source)
    body = list(tree.body)
    cells: list[tuple[str, str]] = []
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        cells.append(("markdown", ast.get_docstring(tree) or ""))
        body = body[1:]
    groups: list[list[ast.stmt]] = []
    for node in body:
        if _is_main_guard(node):
            continue
        is_definition = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        if is_definition or not groups or isinstance(groups[-1][-1], ast.FunctionDef | ast.ClassDef):
            groups.append([node])
        else:
            groups[-1].append(node)

    def first_line(node: ast.stmt) -> int:
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)]) - 1
        while start > 0 and lines[start - 1].lstrip().startswith("#"):  # comments above belong to the node
            start -= 1
        return start

    for group in groups:
        start, stop = first_line(group[0]), group[-1].end_lineno or group[-1].lineno
        cells.append(("code", "\n".join(lines[start:stop]).strip("\n")))
    cells.append(("code", RUN_CELL))
    return cells


def notebook(cells: list[tuple[str, str]]) -> dict[str, Any]:
    """A version-4 notebook holding ``cells``."""

    def cell(kind: str, text: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": text.splitlines(keepends=True)}
        if kind == "code":
            entry.update(execution_count=None, outputs=[])
        return entry

    return {
        "cells": [cell(kind, text) for kind, text in cells],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scripts", type=Path, nargs="+")
    args = parser.parse_args(argv)
    for script in args.scripts:
        target = script.with_suffix(".ipynb")
        nb = notebook(script_cells(script.read_text()))
        for index, entry in enumerate(nb["cells"]):
            entry["id"] = f"{script.stem[:40]}-{index}"
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
