"""The requirement files: each lock pins what its ``.txt`` pins, with hashes, and the runtime's
requirements bring nothing of training or development."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """The ``name==version`` requirements of a requirements file, by normalized name."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line)
            assert match, f"{path.name}: not pinned exactly: {line!r}"
            found[normalized(match[1])] = match[2]
    return found


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """A hashed lock (``make lock``) as {normalized name: (version, sha256 hashes)}; continuation
    lines joined, comments dropped. Anything but ``name==version --hash=sha256:...`` fails."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", requirement)
        assert match, f"{path.name}: not a plain name==version pin (no option, URL or marker): {line[:100]!r}"
        hashes = [option.removeprefix("--hash=sha256:") for option in options]
        assert hashes, f"{path.name}: {requirement} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{path.name}: {requirement}: {options}"
        assert normalized(match[1]) not in entries, f"{path.name}: {match[1]} twice"
        entries[normalized(match[1])] = (match[2], hashes)
    return entries


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[=<>!~;\[ ]", line)[0].lower().replace("_", "-"))
    return names


@pytest.mark.parametrize("name", ["runtime", "sbom"])
def test_each_lock_pins_its_requirements_at_their_versions_with_hashes(name: str) -> None:
    wanted = pins(ROOT / "requirements" / f"{name}.txt")
    locked = lock_entries(ROOT / "requirements" / f"{name}.lock")
    assert wanted
    found = {n: locked[n][0] if n in locked else None for n in wanted}
    stale = {n: (version, found[n]) for n, version in wanted.items() if found[n] != version}
    assert not stale, f"requirements/{name}.lock is stale (pinned, locked): {stale}; run make lock"
    assert len(locked) > len(wanted), "the lock holds the transitive dependencies too"


def test_runtime_requirements_pull_in_no_training_or_dev_package() -> None:
    runtime = requirement_names(ROOT / "requirements" / "runtime.txt")
    assert not runtime & requirement_names(ROOT / "requirements" / "train.txt")
    assert not runtime & requirement_names(ROOT / "requirements" / "dev.txt")
    assert not runtime & requirement_names(ROOT / "requirements" / "distill.txt")
    lines = (ROOT / "requirements" / "runtime.txt").read_text().splitlines()
    assert not [line for line in lines if line.startswith("-r")], "runtime.txt includes no other file"
