"""Swagger UI at /docs in a real headless Chromium: "Try it out" answers, with nothing fetched elsewhere.

``browser/swagger_try_it_out.mjs`` (playwright-core from tests/e2e/package.json, driving Debian's
/usr/bin/chromium) does what a person does and reports every request the page made. It runs
twice: against the service itself on http://127.0.0.1, and behind an HTTPS reverse proxy (Debian's
nginx, started here with its own configuration and a self-signed certificate made here) under a
host name other than localhost, which Chromium maps to 127.0.0.1.

Run by hand without chromium, nginx, openssl or node, the tests are skipped; in CI they must run.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.servers import ServerProcess, free_port
from tests.e2e.helpers import http
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

NODE_PROJECT = ROOT / "tests/e2e"
SCRIPT = NODE_PROJECT / "browser/swagger_try_it_out.mjs"
PLAYWRIGHT = NODE_PROJECT / "node_modules/playwright-core/package.json"
CHROMIUM = "/usr/bin/chromium"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # sbin may be off a non-root PATH
PROXY_HOST = "classifier.internal"  # not localhost: Swagger UI treats localhost documents specially


def require(what: str, present: bool) -> None:
    """Skip when ``what`` is missing, except in CI, which installs it (.ci/run) and must run the test."""
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing in CI (.ci/run installs it)")
    pytest.skip(f"{what} is not installed (CI installs it: see .ci/run)")


@pytest.fixture(scope="module")
def browser_tools() -> None:
    require("chromium (Debian's package)", Path(CHROMIUM).is_file())
    require("node and npm", shutil.which("node") is not None and shutil.which("npm") is not None)
    if not PLAYWRIGHT.exists():
        subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_PROJECT), "--no-audit", "--no-fund"],
            check=True,
            capture_output=True,
            timeout=300,
        )


def try_it_out(base_url: str, *chromium_host_rules: str) -> dict[str, Any]:
    """The browser script's report for ``base_url``; it must have found nothing wrong."""
    result = subprocess.run(
        ["node", str(SCRIPT), base_url, *chromium_host_rules],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ | {"CHROMIUM": CHROMIUM},
    )
    assert result.stdout.strip(), f"the script printed no report (exit {result.returncode}): {result.stderr[-3000:]}"
    report = dict(json.loads(result.stdout))
    assert not report["problems"], json.dumps(report, indent=1)
    assert result.returncode == 0, result.stderr[-3000:]
    return report


def check_report(report: dict[str, Any], origin: str, live: ServerProcess) -> None:
    labels = http("GET", live.url + "/model").json()["labels"]
    assert report["prediction"] == {"url": origin + "/prediction", "status": 200}
    assert report["shownStatus"] == "200"
    assert report["shownLabel"] in labels
    assert "script-src 'self'" in report["csp"]
    assert report["foreign"] == []
    assert all(request.split(" ", 1)[1].startswith(origin + "/") for request in report["requests"])
    assert f"POST {origin}/prediction" in report["requests"]


def test_try_it_out_on_the_service_itself(browser_tools: None, live: ServerProcess) -> None:
    report = try_it_out(live.url)
    check_report(report, live.url, live)


# ---- behind an HTTPS reverse proxy ------------------------------------------------------------------


@dataclass
class Proxy:
    url: str
    access_log: Path


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {host};
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            # NOTE: no buffering to files: nginx's workers may not write in a root-only temp dir.
            proxy_buffering off;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def proxy_answers(url: str) -> bool:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url + "/readyz", headers={"Host": PROXY_HOST})
    try:
        with urllib.request.urlopen(request, timeout=2, context=insecure) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def https_proxy(live: ServerProcess, tmp_path: Path) -> Iterator[Proxy]:
    """nginx on a loopback port, TLS with a certificate for PROXY_HOST, in front of the live server."""
    require("nginx (Debian's package)", Path(NGINX).is_file())
    require("openssl", shutil.which("openssl") is not None)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={PROXY_HOST}",
         "-addext", f"subjectAltName=DNS:{PROXY_HOST}", "-keyout", str(tmp_path / "key.pem"),
         "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp_path, port=port, host=PROXY_HOST, upstream=live.port))
    nginx = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not proxy_answers(url):
            assert nginx.poll() is None, f"nginx exited: {(tmp_path / 'error.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "nginx did not answer within 20 s"
            time.sleep(0.1)
        yield Proxy(f"https://{PROXY_HOST}:{port}", tmp_path / "access.log")
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)


def test_try_it_out_behind_an_https_proxy_under_another_host_name(
    browser_tools: None, live: ServerProcess, https_proxy: Proxy
) -> None:
    report = try_it_out(https_proxy.url, f"MAP {PROXY_HOST} 127.0.0.1")
    check_report(report, https_proxy.url, live)
    posted = [line for line in https_proxy.access_log.read_text().splitlines() if '"POST /prediction ' in line]
    assert len(posted) == 1, posted
    assert '" 200 ' in posted[0], posted
