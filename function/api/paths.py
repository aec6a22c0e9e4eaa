"""The API's fixed names: the service's own, and the paths that the layers below the route table use.

A leaf: it imports nothing of ``function.api``, so the middleware, the access log and the docs
page can name a path without importing the route table (which imports every handler).
"""

from __future__ import annotations

#: The service's name (the index and the Open Inference Protocol's server metadata).
SERVICE_NAME = "newsgroups-classifier"
#: Routes that answer in the Open Inference Protocol's shape, errors included.
V2_PREFIX = "/v2"
#: Probes, left out of the access log.
HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
#: The API documents: Swagger 2.0 and OpenAPI 3.0.
SWAGGER_PATH = "/openapi.json"
OPENAPI_PATH = "/openapi3.json"
#: Swagger UI, and the files its page loads.
DOCS_PATH = "/docs"
DOCS_STATIC = "/docs/static"
