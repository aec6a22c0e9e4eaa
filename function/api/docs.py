"""Swagger UI at /docs: our own page and start script around swagger-ui-dist's files.

The files come from npm's swagger-ui-dist, at the version ``swagger_ui/package-lock.json`` pins
(``make swagger-ui`` refreshes them; ``swagger_ui/SHA256SUMS`` lists them and a test checks it).
Nothing the page loads comes from another host: no validator badge (``validatorUrl: null``), no
CDN. The document it shows is fixed here, relative to the page (so it works behind a proxy, on
HTTPS, under any host name), and never taken from the query string. A strict
Content-Security-Policy lets the page run only the scripts served under /docs/static/.
"""

from __future__ import annotations

import posixpath
from html import escape
from pathlib import Path

from aiohttp import web

from function.api.paths import DOCS_PATH, DOCS_STATIC
from function.errors import StartupError

ASSETS_DIR = Path(__file__).resolve().parent / "swagger_ui"
#: The only swagger-ui-dist files served under DOCS_STATIC: a fixed list, not a directory route,
#: so nothing else can be asked for and a missing name is an ordinary JSON 404.
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
INIT_SCRIPT = "docs-init.js"

#: What the page may load and run: its own scripts, styles and calls, and nothing inline.
#: (Swagger UI sets styles through the DOM, which style-src does not govern; its CSS holds
#: data: images.)
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff"}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Swagger UI</title>
<link rel="stylesheet" href="{static}/swagger-ui.css">
<link rel="icon" type="image/png" href="{static}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-url="{document}"></div>
<script src="{static}/swagger-ui-bundle.js"></script>
<script src="{static}/{init}"></script>
</body>
</html>
"""

# NOTE: a served file, not an inline script, so that the policy needs no 'unsafe-inline'.
INIT_JS = """\
// Starts Swagger UI on the /docs page; the document's URL is in the page, relative to it.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    domNode: root,
    url: new URL(root.getAttribute("data-url"), document.baseURI).href,
    validatorUrl: null,
    queryConfigEnabled: false,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
})();
"""


def page_html(document_path: str) -> str:
    """The /docs page for the document at ``document_path`` (absolute on this service); every URL
    in it is relative to the page."""
    return _PAGE.format(
        static=escape(_relative(DOCS_STATIC)), document=escape(_relative(document_path)), init=INIT_SCRIPT
    )


def _relative(path: str) -> str:
    """``path`` as a URL relative to the page at DOCS_PATH."""
    return "./" + posixpath.relpath(path, posixpath.dirname(DOCS_PATH))


def add_docs(app: web.Application, document_path: str) -> None:
    """Serve Swagger UI for the document at ``document_path`` on DOCS_PATH, its files under DOCS_STATIC."""
    files = {name: ASSETS_DIR / name for name in ASSETS}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise StartupError(f"Swagger UI files are missing (make swagger-ui): {', '.join(missing)}")
    page = page_html(document_path).encode()
    init = INIT_JS.encode()

    async def swagger_ui(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)

    async def swagger_asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == INIT_SCRIPT:
            return web.Response(body=init, content_type="text/javascript", charset="utf-8", headers=ASSET_HEADERS)
        path = files.get(name)
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=ASSET_HEADERS)

    app.router.add_get(DOCS_PATH, swagger_ui)
    app.router.add_get(DOCS_STATIC + "/{name}", swagger_asset)
