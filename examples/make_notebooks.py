"""Write the notebook twin (``.ipynb``) of an example script: the same code, one cell per top-level definition.

The module docstring becomes a markdown cell; consecutive top-level statements (imports, constants) share a code
cell and every function or class gets its own; the ``if __name__ == "__main__":`` block is replaced by a cell that
calls ``main`` with the script's defaults, or with the command-line arguments in the environment variable
``LIBSPN_KERAS_EXAMPLE_ARGS`` (``LIBSPN_KERAS_EXAMPLE_ARGS=--quick`` gives a short run; ``tests/test_notebooks.py``
executes the notebooks so). A script in the "percent" format (cells started by ``# %%`` and ``# %% [markdown]``
comment lines, like ``understanding_region_spns.py``) keeps its cells instead; it reads the same environment
variable itself. Run this after editing a script so that its twin stays the same code (``tests/test_examples_*.py``
check this)::

    python examples/make_notebooks.py examples/dgcspn_classification.py examples/dgcspn_completion.py \
        examples/understanding_region_spns.py
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path
from typing import Any

#: The notebook's last cell: the script's ``if __name__ == "__main__":`` block.
RUN_CELL = """import os
import shlex

# The script's defaults, or the command-line arguments in LIBSPN_KERAS_EXAMPLE_ARGS (e.g. "--quick": a short run)
results = main(shlex.split(os.environ.get("LIBSPN_KERAS_EXAMPLE_ARGS", "")))"""
PERCENT_CELL = re.compile(r"^# %%(.*)$", re.MULTILINE)


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def percent_cells(source: str) -> list[tuple[str, str]]:
    """Split a percent-format script into ``(cell_type, source)`` pairs; markdown cells lose their ``# ``."""
    parts = PERCENT_CELL.split(source)
    cells: list[tuple[str, str]] = []
    for marker, body in zip(parts[1::2], parts[2::2], strict=True):
        text = body.strip("\n")
        if "[markdown]" in marker:
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines())
            cells.append(("markdown", text))
        else:
            cells.append(("code", text))
    return cells


def script_cells(source: str) -> list[tuple[str, str]]:
    """Split a script into ``(cell_type, source)`` pairs."""
    if PERCENT_CELL.search(source):
        return percent_cells(source)
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
