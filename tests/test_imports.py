"""What each side of the process boundary may import (the server no training or inference library),
and that the modules of ``function`` import one another without a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT


def server_modules(*banned: str) -> list[str]:
    """The modules of ``banned`` (packages, or modules by full name) a fresh process holds once it has
    imported the service's entry point and built the app, as the server does before serving."""
    code = (
        "import sys, function.__main__\n"
        "from function.app import create_app\nfrom function.settings import Settings\n"
        "create_app(Settings())\n"
        f"banned = {set(banned)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned or m in banned))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return list(ast.literal_eval(result.stdout.strip()))


def test_the_server_process_imports_no_training_or_inference_library() -> None:
    """scikit-learn is for training only; onnxruntime and numpy live in the workers."""
    assert (
        server_modules("sklearn", "skl2onnx", "scipy", "train", "onnxruntime", "numpy", "function.inference.session")
        == []
    )


def test_the_server_process_does_not_generate_the_api_documents() -> None:
    """It serves the committed files (``function.api.documents``); ``make openapi`` generates them."""
    assert server_modules("function.api.openapi") == []


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, package: str, known: set[str]) -> Iterator[str]:
    """The modules of ``known`` that a module imports anywhere: at the top, in a function, under
    ``TYPE_CHECKING`` (a cycle on paper is still a cycle for the reader)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package, or a package above it
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            for alias in node.names:  # `from package import module` names a module
                name = f"{base}.{alias.name}"
                yield name if name in known else base


def import_graph(root: Path, top: str) -> dict[str, set[str]]:
    """Each module of the package ``top`` under ``root`` -> the modules of ``top`` it imports."""
    paths = {module_name(path, root): path for path in sorted((root / top).rglob("*.py"))}
    known = set(paths)
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = {target for target in imported(tree, package, known) if target in known and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_modules_of_function_import_one_another_without_a_cycle() -> None:
    graph = import_graph(ROOT, "function")
    assert "function.api.routes" in graph["function.app"]  # the graph is read, not empty
    assert cycles(graph) == []


def test_the_http_layer_is_imported_from_the_top_only() -> None:
    """The route table (which imports every handler) by the app factory alone; the service's state by the
    HTTP layer, never the other way."""
    graph = import_graph(ROOT, "function")
    assert {module for module, targets in graph.items() if "function.api.routes" in targets} == {"function.app"}
    assert {target for target in graph["function.state"] if target.startswith("function.api")} == set()


@pytest.mark.parametrize(
    ("importer", "statement"),
    [
        ("low.py", "from pkg.high import VALUE"),
        ("low.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high import VALUE"),
        ("low.py", "def later() -> None:\n    from pkg import high"),
        ("sub/leaf.py", "from .. import high"),
    ],
)
def test_the_cycle_check_finds_a_cycle(tmp_path: Path, importer: str, statement: str) -> None:
    """The check above fails when any import closes a circle, even one only a type checker reads."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "high.py").write_text("from pkg.low import VALUE\nfrom pkg.sub import leaf\n")
    (package / "low.py").write_text("VALUE = 1\n")
    (package / "sub" / "leaf.py").write_text("")
    assert cycles(import_graph(tmp_path, "pkg")) == []
    (package / importer).write_text(statement + "\n" + (package / importer).read_text())
    assert cycles(import_graph(tmp_path, "pkg")) != []


def test_worker_module_imports_only_what_inference_needs() -> None:
    """What a forkserver preloads: the worker's side of the boundary, onnxruntime, and nothing of the server."""
    code = (
        "import sys, function.inference.session, function.parallel.worker\n"
        "print(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'function.'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(
        [
            "function.errors",
            "function.heap",
            "function.inference",
            "function.inference.classifier",
            "function.inference.messages",
            "function.inference.session",
            "function.jsonio",
            "function.logs",
            "function.model_info",
            "function.parallel",
            "function.parallel.worker",
        ]
    )
