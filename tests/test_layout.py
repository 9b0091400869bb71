"""The package's shape: every import of ``automl`` inside ``automl``, at module level or inside a function,
forms a graph without a cycle (so no import sits in a function to dodge one), and every package says in
its ``__init__`` (``__all__``) what the others may use."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

PACKAGE = Path(__file__).resolve().parent.parent / "automl"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported(name: str, path: Path) -> set[str]:
    """The automl modules ``name`` imports anywhere in its code (TYPE_CHECKING blocks left out): the most
    specific module each import names (``from automl.rank import stage`` → ``automl.rank.stage``)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


def test_the_import_graph_of_automl_has_no_cycle():
    names = sorted(MODULES)
    index = {name: i for i, name in enumerate(names)}
    edges = np.array([(index[name], index[target]) for name in names for target in imported(name, MODULES[name])])
    graph = coo_array((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(names), len(names)))
    _, component = connected_components(graph, directed=True, connection="strong")
    cycles = [[name for name, c in zip(names, component, strict=True) if c == label]
              for label in np.flatnonzero(np.bincount(component) > 1)]
    assert not cycles, f"modules that import each other, directly or around a cycle: {cycles}"


def test_the_graph_sees_function_level_imports():
    """The check above would be empty if it missed imports inside functions: one it knows is there."""
    assert "automl.run.stages" in imported("automl.__main__", MODULES["automl.__main__"])


@pytest.mark.parametrize("package", sorted(name for name, path in MODULES.items() if path.name == "__init__.py"))
def test_every_package_declares_its_public_names(package):
    module = importlib.import_module(package)
    assert module.__doc__ and hasattr(module, "__all__"), f"{package} has no docstring or __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not have: {missing}"
