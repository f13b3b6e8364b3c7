"""Extract the public API of LibSPN Keras 0.6.0 from its source with ``ast`` (it cannot be imported on Keras 3).

Run ``python tests/compat/extract_original_api.py /path/to/libspn-keras > tests/compat/original_api.py`` to
regenerate ``original_api.py``, the literal data ``test_api_surface.py`` compares this library with. For every
public module of the original: its public names (``__all__``, or for ``region``, ``visualize`` and ``logspace``
the public functions and classes they define) and, for each function and class, its signature (a class's is
its ``__init__``'s, inherited within the original where it defines none) and the public methods of classes
(inherited ones included), each parameter as ``(name, kind, default source or None)``.
"""

from __future__ import annotations

import ast
import pprint
import sys
from pathlib import Path

PUBLIC_MODULES = (
    "libspn_keras",
    "libspn_keras.config",
    "libspn_keras.constraints",
    "libspn_keras.initializers",
    "libspn_keras.layers",
    "libspn_keras.losses",
    "libspn_keras.metrics",
    "libspn_keras.models",
    "libspn_keras.optimizers",
    "libspn_keras.sum_ops",
    "libspn_keras.region",
    "libspn_keras.visualize",
    "libspn_keras.logspace",
)

#: Methods every Keras object has, or that Keras calls itself; their signatures are Keras 3's here.
KERAS_METHODS = frozenset(
    {"build", "call", "compute_output_shape", "get_config", "from_config", "train_step", "test_step", "get_updates"}
)


class Source:
    """The parsed modules of the original package rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trees: dict[str, ast.Module] = {}

    def path(self, module: str) -> Path:
        base = self.root / Path(*module.split("."))
        return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")

    def tree(self, module: str) -> ast.Module:
        if module not in self.trees:
            self.trees[module] = ast.parse(self.path(module).read_text())
        return self.trees[module]

    def resolve(self, module: str, name: str) -> tuple[str, ast.AST | None]:
        """The module defining ``name`` as seen from ``module`` and its definition (``None`` for modules)."""
        tree = self.tree(module)
        for node in tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
                return module, node
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                source = _absolute(module, node, self.path(module).name == "__init__.py")
                for alias in node.names:
                    if (alias.asname or alias.name) == name and source.startswith("libspn_keras"):
                        if self.path(f"{source}.{alias.name}").exists():
                            return f"{source}.{alias.name}", None
                        return self.resolve(source, alias.name)
        raise LookupError(f"{name} not found from {module}")

    def public_names(self, module: str) -> list[str]:
        tree = self.tree(module)
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                return sorted(ast.literal_eval(node.value))
        return sorted(
            node.name
            for node in tree.body
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and not node.name.startswith("_")
        )


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _signature(function: ast.FunctionDef, drop_first: bool) -> tuple[str, ...]:
    """The parameters as ``inspect`` writes them: ``"x"``, ``"x=default"``, ``"*args"``, ``"*"``, ``"**kwargs"``."""
    args = function.args
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    result = [
        arg.arg if default is None else f"{arg.arg}={ast.unparse(default)}"
        for arg, default in zip(positional, defaults, strict=True)
    ]
    if drop_first:
        result = result[1:]
    if args.vararg:
        result.append(f"*{args.vararg.arg}")
    elif args.kwonlyargs:
        result.append("*")
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        result.append(arg.arg if default is None else f"{arg.arg}={ast.unparse(default)}")
    if args.kwarg:
        result.append(f"**{args.kwarg.arg}")
    return tuple(result)


def _is_static(function: ast.FunctionDef) -> bool:
    return any(getattr(d, "id", None) == "staticmethod" for d in function.decorator_list)


def _class_members(source: Source, module: str, node: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    """Methods of the class, inherited ones (within the original) first so that overrides win."""
    members: dict[str, ast.FunctionDef] = {}
    for base in node.bases:
        name = base.id if isinstance(base, ast.Name) else None
        if name is None:
            continue
        try:
            base_module, base_node = source.resolve(module, name)
        except LookupError:
            continue  # a TensorFlow / Keras base
        if isinstance(base_node, ast.ClassDef):
            members.update(_class_members(source, base_module, base_node))
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            members[item.name] = item
    return members


def describe(source: Source, module: str, name: str, signatures: dict[str, object]) -> str:
    """The qualified name of the definition ``module.name`` refers to; its signature is added to ``signatures``."""
    defining, node = source.resolve(module, name)
    if node is None:
        return "module"
    qualified = f"{defining}.{name}"
    if isinstance(node, ast.FunctionDef):
        signatures[qualified] = _signature(node, drop_first=False)
        return qualified
    assert isinstance(node, ast.ClassDef)
    members = _class_members(source, defining, node)
    init = members.get("__init__")
    methods = {
        method: _signature(function, drop_first=not _is_static(function))
        for method, function in sorted(members.items())
        if not method.startswith("_")
        and method not in KERAS_METHODS
        and not any(getattr(d, "id", None) == "property" for d in function.decorator_list)
    }
    signatures[qualified] = {"__init__": None if init is None else _signature(init, drop_first=True), **methods}
    return qualified


def extract(root: Path) -> tuple[dict[str, dict[str, str]], dict[str, object]]:
    """Public names per module (each mapped to its definition's qualified name) and the signatures."""
    source = Source(root)
    signatures: dict[str, object] = {}
    names = {
        module: {name: describe(source, module, name, signatures) for name in source.public_names(module)}
        for module in PUBLIC_MODULES
    }
    return names, signatures


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/orig")
    names, signatures = extract(root)
    print('"""The public API of LibSPN Keras 0.6.0, extracted from its source by ``extract_original_api.py``."""')
    print()
    print("# ruff: noqa: E501")
    print("# Generated by tests/compat/extract_original_api.py: do not edit, rerun it.")
    print("# ORIGINAL_NAMES: module -> public name -> qualified name of its definition (or 'module').")
    print("# ORIGINAL_SIGNATURES: definition -> parameters (functions) or {'__init__': ..., method: ...} (classes).")
    print(f"ORIGINAL_NAMES = {pprint.pformat(names, width=116, sort_dicts=True)}")
    print(f"ORIGINAL_SIGNATURES = {pprint.pformat(signatures, width=116, sort_dicts=True)}")


if __name__ == "__main__":
    main()
