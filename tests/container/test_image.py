"""What the image ships, read from the image itself: no network, no service started."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.container import containers
from tests.container.containers import Docker, docker
from tests.container.harness import Context, verdict

pytestmark = pytest.mark.container

SBOM_PATH = "/app/sbom.cdx.json"  # the Dockerfile's SBOM of /opt/venv (knative/DEPLOY.md)
RUNTIME_LOCK = Path("requirements") / "runtime.lock"  # what the Dockerfile installs into /opt/venv
# Run inside the image by its own interpreter (the service's): the distributions importlib.metadata
# finds in the environment's site-packages and in the base's, the SBOM file, any file or folder of
# the image that is part of the SBOM tool (its command, its packages, their metadata), and the
# SBOMs wheels carry in their own metadata (PEP 770's .dist-info/sboms/, e.g. orjson's).
SBOM_PROBE = r"""
import importlib.metadata, json, os, re, sys, sysconfig
TOOL = re.compile(r"cyclonedx(-py|_py)?|cyclonedx_(bom|python_lib)-.*[.]dist-info", re.IGNORECASE)
def listed(paths):
    return sorted([d.metadata["Name"], d.version] for d in importlib.metadata.distributions(path=paths))
def site(paths):
    return sorted({paths["purelib"], paths["platlib"]})
venv = site(sysconfig.get_paths())
base = site(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix}))
tool, wheel_sboms = [], []
for root, dirs, files in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    tool += [os.path.join(root, n) for n in dirs + files if TOOL.fullmatch(n)]
    if root.endswith(".dist-info/sboms"):
        wheel_sboms += [os.path.join(os.path.basename(os.path.dirname(root)), "sboms", n) for n in files]
with open(sys.argv[1], encoding="utf-8") as file:
    sbom = json.load(file)
print(json.dumps({"prefix": sys.prefix, "venv": venv, "installed": listed(venv), "base": base,
                  "base_installed": listed(base), "sbom": sbom, "tool": tool, "wheel_sboms": sorted(wheel_sboms)}))
"""


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them: prometheus_client is prometheus-client."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path: Path) -> dict[str, str]:
    """The `name==version` lines of a hashed lock (`make lock`), by normalized name."""
    pins = {}
    for line in path.read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line):
            pins[normalized(match[1])] = match[2]
    return pins


def sbom_components(sbom: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A CycloneDX SBOM's components by normalized name -> version, and what is wrong with them."""
    problems: list[str] = []
    if sbom.get("bomFormat") != "CycloneDX":
        problems.append(f"bomFormat {sbom.get('bomFormat')!r}, not CycloneDX")
    listed: dict[str, str] = {}
    for component in sbom.get("components", []):
        name, version = normalized(str(component.get("name"))), str(component.get("version"))
        purl = re.fullmatch(r"pkg:pypi/([^@?#]+)@([^?#]+)(?:[?#].*)?", str(component.get("purl")))
        if purl is None or normalized(purl[1]) != name or purl[2] != version:
            problems.append(f"{name} {version}: purl {component.get('purl')!r}")
        if name in listed:
            problems.append(f"{name} listed twice ({listed[name]}, {version})")
        listed[name] = version
    if not listed:
        problems.append("no components")
    return listed, problems


def differences(name_a: str, a: dict[str, str], name_b: str, b: dict[str, str]) -> list[str]:
    """What one name -> version map has that the other lacks, and the versions they disagree on."""
    found = []
    for this, that, mine, theirs in ((name_a, name_b, a, b), (name_b, name_a, b, a)):
        if extra := sorted(set(mine) - set(theirs)):
            found.append(f"in {this}, not in {that}: {', '.join(f'{n} {mine[n]}' for n in extra)}")
    if changed := sorted(n for n in set(a) & set(b) if a[n] != b[n]):
        found.append(f"{name_a} / {name_b} versions differ: {', '.join(f'{n} {a[n]} / {b[n]}' for n in changed)}")
    return found


def test_sbom(context: Context, docker_session: Docker) -> None:
    """The SBOM in the image against the environment it describes and the lock it was installed from."""
    name = f"textclf-ct-{docker_session.run_id}-sbom"
    docker_session.containers.append(name)
    output = docker(
        "run", "--rm", "--name", name, "--label", f"{containers.LABEL}={docker_session.run_id}", "--network", "none",
        context.image, "python", "-c", SBOM_PROBE, SBOM_PATH,
    )  # fmt: skip
    docker_session.containers.remove(name)
    probe = json.loads(output)
    installed = {normalized(n): v for n, v in probe["installed"]}
    locked = lock_pins(context.root / RUNTIME_LOCK)
    listed, problems = sbom_components(probe["sbom"])
    if probe["prefix"] != "/opt/venv":
        problems.append(f"the image's python runs in {probe['prefix']}, not /opt/venv")
    problems += differences("the SBOM", listed, "/opt/venv", installed)
    problems += differences("/opt/venv", installed, str(RUNTIME_LOCK), locked)
    if probe["tool"]:
        problems.append(f"the SBOM tool is in the image: {', '.join(probe['tool'][:5])}")
    base = ", ".join(f"{n} {v}" for n, v in probe["base_installed"]) or "nothing"
    sbom = probe["sbom"]
    verdict(
        not problems,
        f"{SBOM_PATH}: {sbom.get('bomFormat')} {sbom.get('specVersion')}, {len(listed)} components; "
        f"{len(installed)} distributions in {', '.join(probe['venv'])} (importlib.metadata in the image); "
        f"{len(locked)} pins in {RUNTIME_LOCK}"
        + (
            f"; {'; '.join(problems)}"
            if problems
            else ": the same names at the same versions; nothing of the SBOM tool in the image (it stayed "
            "in the builder)"
        )
        + f"; outside the SBOM, the base's own {', '.join(probe['base'])}: {base}"
        + f"; SBOMs inside the wheels' metadata (PEP 770, not merged): {', '.join(probe['wheel_sboms']) or 'none'}",
    )


def test_image_size(context: Context) -> None:
    """`docker image ls`'s size, and the compressed (pulled) size of the layers. Before any service
    starts: compressing every layer keeps both cores busy for a while."""
    listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}\t{{.Size}}")
    sizes = dict(line.split("\t", 1) for line in listed.splitlines() if "\t" in line)
    image_bytes = int(docker("image", "inspect", "-f", "{{.Size}}", context.image).strip())
    base_bytes = int(docker("image", "inspect", "-f", "{{.Size}}", context.base).strip())
    base_layers = int(docker("image", "inspect", "-f", "{{len .RootFS.Layers}}", context.base).strip())
    layers = containers.compressed_layers(context.image)
    pulled, base_pulled = sum(layers), sum(layers[:base_layers])
    verdict(
        context.image in sizes and len(layers) > base_layers,
        f"{context.image} is {sizes.get(context.image, '?')} in `docker image ls` ({image_bytes / 1e6:.1f} MB); "
        f"its base {context.base} (the local stand-in) {sizes.get(context.base, '?')}, so the Dockerfile's "
        f"layers add {(image_bytes - base_bytes) / 1e6:.1f} MB; compressed as a registry stores its "
        f"{len(layers)} layers (gzip -6 each): {pulled / 1e6:.1f} MB to pull, {(pulled - base_pulled) / 1e6:.1f} "
        f"MB of them the Dockerfile's",
    )
