"""The build context (.dockerignore): data, tests and tools stay out, everything the Dockerfile copies stays in."""

from __future__ import annotations

import re

import pytest

from tests.deployment.dockerfile import instructions
from tests.helpers import ROOT


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (exception?, regex) pairs, by Docker's rules: ``**`` spans folders,
    ``*`` and ``?`` stay within one name, a matching folder takes its contents, the last match wins."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = ""
        for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token) or re.escape(token)
        rules.append((negated, re.compile(regex)))
    return rules


def in_build_context(path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return not excluded


@pytest.mark.parametrize(
    "path",
    ["data/train.jsonl.gz", "tests/test_api.py", "bench/RESULTS.md", ".venv/bin/python", ".git/HEAD",
     "train.py", "examples/request.json", "requirements/dev.txt", "requirements/train.txt",
     "requirements/runtime.txt", "requirements/sbom.txt",
     "function/__pycache__/app.cpython-311.pyc", ".mypy_cache/3.11/x.json", "knative/service.yaml"],
)  # fmt: skip
def test_dockerignore_keeps_data_tests_and_tools_out_of_the_build_context(path: str) -> None:
    assert not in_build_context(path)


def test_dockerignore_keeps_everything_the_dockerfile_copies() -> None:
    sources = [c.words()[:-1] for c in instructions("COPY") if not c.words()[0].startswith("--from")]
    files = []
    for path in (ROOT / source.rstrip("/") for words in sources for source in words):
        files += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    files = [f for f in files if "__pycache__" not in f.parts]
    assert files
    missing = [str(f.relative_to(ROOT)) for f in files if not in_build_context(str(f.relative_to(ROOT)))]
    assert not missing, f"left out of the build context by .dockerignore: {missing}"
