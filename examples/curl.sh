#!/usr/bin/env bash
# One curl call for each endpoint and each error of the service, with the answer it gets.
#
#   make run                                        # in another terminal: the service on :8080
#   bash examples/curl.sh                           # every call below, one after the other
#   BASE_URL=http://127.0.0.1:9000 bash examples/curl.sh
#
# Each call follows a comment "# <status> [<error code>]: <what it shows>". tests/e2e/test_curl.py
# runs every call against a live server and checks that status, that error code and the shape of
# the body (against openapi.json), so this file cannot drift from the service.
# Not here: 408 (a body that stalls for BODY_TIMEOUT_SECONDS) and 503 (more than MAX_PENDING texts
# queued, or a worker that died): tests/e2e/test_hostile_input.py and test_faults.py cause them.
set -uo pipefail

BASE_URL="${BASE_URL:-http://localhost:8080}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JSON='Content-Type: application/json'

# ---- the endpoints ---------------------------------------------------------------------------

# 200: the challenge's operation: {"label": "hockey"}
curl -sS -X POST "$BASE_URL/prediction" -H "$JSON" -d @"$HERE/example_request.json"; echo

# 200: ?scores=true adds every label's probability: {"label": "cryptography", "scores": {...}}
curl -sS -X POST "$BASE_URL/prediction?scores=true" -H "$JSON" -d '{"text": "PGP keys and the clipper chip"}'; echo

# 200: a batch, answered in order: {"labels": ["space", "baseball"]}
curl -sS -X POST "$BASE_URL/predictions" -H "$JSON" \
     -d '{"texts": ["NASA launched the shuttle into orbit", "The pitcher threw a no-hitter"]}'; echo

# 200: a batch with scores: {"labels": ["politics", "electronics"], "scores": [{...}, {...}]}
curl -sS -X POST "$BASE_URL/predictions?scores=true" -H "$JSON" \
     -d '{"texts": ["The senate passed the budget bill", "A resistor and a capacitor"]}'; echo

# 200: a CloudEvent in structured mode, as a Knative Trigger may deliver it: the answering event,
# of type io.github.newsgroups-classifier.text.classified, whose data is what /prediction answers
curl -sS -X POST "$BASE_URL/" -H 'Content-Type: application/cloudevents+json' \
     -d '{"specversion": "1.0", "id": "post-17", "source": "/my/feed",
          "type": "io.github.newsgroups-classifier.text.classify", "data": {"text": "The goalie stopped the puck."}}'; echo

# 200: the served model's metadata (name, version, labels, SHA-256, metrics)
curl -sS "$BASE_URL/model"; echo

# 200: liveness: {"status": "ok"}
curl -sS "$BASE_URL/healthz"; echo

# 200: readiness: {"status": "ready"} once every worker is warm (503 before, and while stopping)
curl -sS "$BASE_URL/readyz"; echo

# 200: Prometheus metrics, in the text exposition format
curl -sS "$BASE_URL/metrics" | grep '^textclf_http_requests_total'

# 200: the API document in Swagger 2.0, like the challenge's contract
curl -sS "$BASE_URL/openapi.json" | head -c 300; echo

# 200: the API document in OpenAPI 3.0, the one /docs shows
curl -sS "$BASE_URL/openapi3.json" | head -c 300; echo

# 200: Swagger UI
curl -sS "$BASE_URL/docs" | head -c 300; echo

# 200: where to start: the model and links to /docs, /model, /metrics
curl -sS "$BASE_URL/"; echo

# 200: ?explain=true adds the terms that made the label: {"label": "space", "explanation": {...}}
curl -sS -X POST "$BASE_URL/prediction?explain=true" -H "$JSON" -d '{"text": "The shuttle reached orbit."}'; echo

# 200: the Open Inference Protocol (KServe V2): a BYTES tensor in, label and probabilities out
curl -sS -X POST "$BASE_URL/v2/models/newsgroups-topic/infer" -H "$JSON" \
     -d '{"id": "7", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["PGP keys"]}]}'; echo

# 200: the Open Inference Protocol's model metadata: its tensors and labels
curl -sS "$BASE_URL/v2/models/newsgroups-topic"; echo

# ---- the errors: always JSON, {"error": "<code>", "detail": "<what was wrong>"} ----------------

# 405 validation_error: the body is not JSON
curl -sS -X POST "$BASE_URL/prediction" -H "$JSON" -d '{"text": "unterminated'; echo

# 405 validation_error: the body is JSON but not an object
curl -sS -X POST "$BASE_URL/prediction" -H "$JSON" -d '["a list", "not an object"]'; echo

# 405 validation_error: the field "text" is missing
curl -sS -X POST "$BASE_URL/prediction" -H "$JSON" -d '{"txt": "a typo in the field name"}'; echo

# 405 validation_error: "text" is not a string
curl -sS -X POST "$BASE_URL/prediction" -H "$JSON" -d '{"text": 42}'; echo

# 405 validation_error: "text" is empty
curl -sS -X POST "$BASE_URL/prediction" -H "$JSON" -d '{"text": ""}'; echo

# 405 validation_error: "text" is only whitespace
curl -sS -X POST "$BASE_URL/prediction" -H "$JSON" -d '{"text": " \t\n "}'; echo

# 405 validation_error: scores must be true or false
curl -sS -X POST "$BASE_URL/prediction?scores=maybe" -H "$JSON" -d '{"text": "orbit"}'; echo

# 405 validation_error: an empty batch
curl -sS -X POST "$BASE_URL/predictions" -H "$JSON" -d '{"texts": []}'; echo

# 405 validation_error: a bad item in a batch (the detail names texts[1])
curl -sS -X POST "$BASE_URL/predictions" -H "$JSON" -d '{"texts": ["fine", null]}'; echo

# 405 validation_error: "texts" is not an array
curl -sS -X POST "$BASE_URL/predictions" -H "$JSON" -d '{"texts": "one string"}'; echo

# 405 method_not_allowed: the wrong method (the Allow header says POST)
curl -sS "$BASE_URL/prediction"; echo

# 400 not_a_cloudevent: POST / takes CloudEvents only (ce- headers, or application/cloudevents+json)
curl -sS -X POST "$BASE_URL/" -H "$JSON" -d '{"text": "orbit"}'; echo

# 404 not_found: an unknown path
curl -sS "$BASE_URL/predict"; echo

# 413 payload_too_large: a body over MAX_BODY_BYTES (1 MiB by default)
{ printf '{"text": "'; head -c 1100000 /dev/zero | tr '\0' a; printf '"}'; } |
    curl -sS -X POST "$BASE_URL/prediction" -H "$JSON" --data-binary @-; echo

# 404: the Open Inference Protocol's errors are {"error": "..."}: a model this service does not serve
curl -sS "$BASE_URL/v2/models/resnet50"; echo

# 415 unsupported_media_type: a Content-Type other than application/json
curl -sS -X POST "$BASE_URL/prediction" -H 'Content-Type: text/plain' -d '{"text": "orbit"}'; echo

# 415 unsupported_media_type: no Content-Type at all ("-H 'Content-Type:'" removes curl's own)
curl -sS -X POST "$BASE_URL/prediction" -H 'Content-Type:' -d '{"text": "orbit"}'; echo
