"""/docs: the vendored Swagger UI files are swagger-ui-dist's, byte for byte, and the page is locked down.

``function/api/swagger_ui/SHA256SUMS`` is written by ``make swagger-ui`` from the package that
``package-lock.json`` pins; a file edited by hand, added or left out fails here.
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from function.api import docs
from function.errors import StartupError
from tests.helpers import ROOT

VENDORED = ROOT / "function/api/swagger_ui"
MANIFESTS = {"package.json", "package-lock.json", "SHA256SUMS"}


def sums() -> dict[str, str]:
    """SHA256SUMS as {file name: hex digest}."""
    lines = (VENDORED / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def pinned_version() -> str:
    wanted = json.loads((VENDORED / "package.json").read_text())["dependencies"]["swagger-ui-dist"]
    locked = json.loads((VENDORED / "package-lock.json").read_text())["packages"]["node_modules/swagger-ui-dist"]
    assert locked["version"] == wanted, "package.json and package-lock.json disagree: run make swagger-ui"
    assert locked["integrity"].startswith("sha512-")
    return str(wanted)


def test_every_vendored_file_has_the_digest_sha256sums_records() -> None:
    for name, digest in sums().items():
        assert hashlib.sha256((VENDORED / name).read_bytes()).hexdigest() == digest, f"{name} changed: make swagger-ui"


def test_the_folder_holds_the_listed_files_and_nothing_else() -> None:
    present = {path.name for path in VENDORED.iterdir()}
    assert present == set(sums()) | MANIFESTS


def test_make_swagger_ui_copies_what_sha256sums_lists_and_the_page_serves() -> None:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^SWAGGER_UI_FILES := (.+)$", makefile, re.MULTILINE)
    assert match, "the Makefile's SWAGGER_UI_FILES"
    assert match[1].split() == list(sums())
    assert set(docs.ASSETS) <= set(sums())
    assert {"LICENSE", "NOTICE"} <= set(sums())


def test_the_pin_is_an_exact_swagger_ui_5_release_and_the_bundle_is_that_release() -> None:
    version = pinned_version()
    assert re.fullmatch(r"5\.\d+\.\d+", version), version
    assert f'PACKAGE_VERSION:"{version}"'.encode() in (VENDORED / "swagger-ui-bundle.js").read_bytes()


class Page(HTMLParser):
    """The URLs a page loads, and its scripts' inline text."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_script = ""
        self.data_url = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [value for key, value in values.items() if key in ("src", "href") and value]
        self.data_url = values.get("data-url") or self.data_url
        self._in_script = tag == "script"
        assert not any(key.startswith("on") for key in values), f"an inline handler on <{tag}>"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script += data.strip()


async def parsed(client: TestClient, target: str) -> tuple[Page, str]:
    answer = await client.get(target)
    assert answer.status == 200
    page = Page()
    page.feed(await answer.text())
    return page, answer.headers["Content-Security-Policy"]


async def test_docs_page_runs_only_its_own_scripts_under_a_strict_policy(client: TestClient) -> None:
    page, policy = await parsed(client, "/docs")
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe" not in policy
    assert page.inline_script == ""
    page_url = "http://service.test/docs"
    for url in [*page.urls, page.data_url]:
        assert not urlsplit(url).scheme, f"{url} is not relative to the page"
        assert not urlsplit(url).netloc, f"{url} is not relative to the page"
    assert urljoin(page_url, page.data_url) == "http://service.test/openapi3.json"
    for url in page.urls:
        answer = await client.get(urlsplit(urljoin(page_url, url)).path)
        assert answer.status == 200, url
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


async def test_docs_start_script_has_no_validator_and_takes_nothing_from_the_query(client: TestClient) -> None:
    answer = await client.get(f"/docs/static/{docs.INIT_SCRIPT}")
    assert answer.status == 200
    assert answer.content_type == "text/javascript"
    script = await answer.text()
    assert "validatorUrl: null," in script
    assert "queryConfigEnabled: false," in script
    assert "configUrl" not in script
    assert 'root.getAttribute("data-url")' in script


@pytest.mark.parametrize(
    "query",
    ["?url=https://elsewhere.test/openapi.json", "?configUrl=https://elsewhere.test/config.json",
     "?url=//elsewhere.test/x.json&configUrl=//elsewhere.test/c.json&urls.primaryName=x"],
)  # fmt: skip
async def test_docs_page_is_the_same_whatever_the_query_asks(client: TestClient, query: str) -> None:
    plain = await (await client.get("/docs")).read()
    answer = await client.get("/docs" + query)
    assert answer.status == 200
    body = await answer.read()
    assert body == plain
    assert b"elsewhere" not in body


@pytest.mark.parametrize(
    "name",
    ["index.html", "swagger-ui.js", "package.json", "SHA256SUMS", "LICENSE", "swagger-ui-standalone-preset.js",
     "..%2Fdocs.py", "swagger-ui-bundle.js.map"],
)  # fmt: skip
async def test_docs_serves_no_file_outside_its_list(client: TestClient, name: str) -> None:
    answer = await client.get(f"/docs/static/{name}")
    assert answer.status == 404
    assert (await answer.json())["error"] == "not_found"


def test_missing_swagger_ui_files_stop_the_service_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs, "ASSETS_DIR", tmp_path)
    with pytest.raises(StartupError, match=r"swagger-ui-bundle\.js"):
        docs.add_docs(web.Application(), "/openapi.json")
