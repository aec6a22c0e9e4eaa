"""What each side of the process boundary may import: the server no training, inference or
documentation library."""

from __future__ import annotations

import ast
import subprocess
import sys

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


def test_the_server_process_imports_no_documentation_tool() -> None:
    """It serves the committed API documents: aiohttp-apispec and marshmallow only generate them."""
    assert (
        server_modules("aiohttp_apispec", "apispec", "marshmallow", "webargs", "jinja2", "function.api.schemas") == []
    )


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
