# Every command a newcomer runs. The virtual environment lives in .venv and is (re)built
# from requirements/*.txt whenever they change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: run test lint pytest train distill bench-pareto bench-percall openapi swagger-ui container-test bench-model bench-memory bench-deadline bench-curve bench bench-smoke soak e2e clean bench-explain lock bench-drain bench-feedback bench-canary bench-tracing

# NOTE: setuptools goes, as the image (Dockerfile) has none: nothing here needs it, and the tests
# then run the service with what the image holds.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip uninstall --quiet --yes setuptools

$(RUNTIME): requirements/runtime.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/runtime.txt
	touch $@

CLIENTS := $(VENV)/clients/.installed

$(CLIENTS): requirements/clients.txt | $(BIN)/python
	$(PYTHON) -m venv $(VENV)/clients
	$(VENV)/clients/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/clients/bin/pip install --quiet -r requirements/clients.txt
	touch $@

$(DEV): requirements/runtime.txt requirements/train.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $@ $(RUNTIME)

## run: serve the committed model on http://localhost:8080 (PORT to change)
run: $(RUNTIME)
	$(BIN)/python -m function

## test: lint, type-check, and run every test (starts its own servers)
test: lint pytest

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m function.api.openapi 2 | diff -u openapi.json - || { echo "openapi.json is stale: run make openapi"; exit 1; }
	$(BIN)/python -m function.api.openapi 3 | diff -u openapi3.json - || { echo "openapi3.json is stale: run make openapi"; exit 1; }

pytest: $(DEV)
	$(BIN)/pytest

## train: retrain, select, evaluate and export into model/ (a few minutes; offline, byte-identical on a rerun)
## MODEL=name trains that candidate alone into models/name/ (MODEL_DIR=models/name serves it)
train: $(DEV)
	$(BIN)/python train.py $(if $(MODEL),--candidates $(MODEL) --out models/$(MODEL))

DISTILL := $(VENV)/distill/.installed

$(DISTILL): requirements/distill.txt requirements/train.txt requirements/runtime.txt | $(BIN)/python
	$(PYTHON) -m venv $(VENV)/distill
	$(VENV)/distill/bin/pip install --quiet -r requirements/distill.txt
	touch $@

## distill: the static word vectors from the teacher encoder into data/word_vectors.npz (torch; about 3 min)
distill: $(DISTILL)
	HF_HUB_OFFLINE=1 $(VENV)/distill/bin/python train.py --distill

## openapi: regenerate openapi.json (Swagger 2.0) and openapi3.json (OpenAPI 3.0) from the app's routes and handlers
openapi: $(DEV)
	$(BIN)/python -m function.api.openapi 2 > openapi.json
	$(BIN)/python -m function.api.openapi 3 > openapi3.json

SWAGGER_UI := function/api/swagger_ui
SWAGGER_UI_FILES := swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-32x32.png LICENSE NOTICE

## swagger-ui: refresh function/api/swagger_ui/ from npm's swagger-ui-dist as its package-lock.json pins it
## (SWAGGER_UI_VERSION=5.x.y moves to that release); SHA256SUMS records the files and a test checks them
swagger-ui:
	@set -euo pipefail; work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; \
	cp $(SWAGGER_UI)/package.json $(SWAGGER_UI)/package-lock.json "$$work"/; \
	if [ -n "$(SWAGGER_UI_VERSION)" ]; then \
	  npm install --prefix "$$work" --save-exact --ignore-scripts --no-audit --no-fund swagger-ui-dist@$(SWAGGER_UI_VERSION); \
	else npm ci --prefix "$$work" --ignore-scripts --no-audit --no-fund; fi; \
	cp "$$work"/package.json "$$work"/package-lock.json $(SWAGGER_UI)/; \
	for name in $(SWAGGER_UI_FILES); do cp "$$work/node_modules/swagger-ui-dist/$$name" $(SWAGGER_UI)/; done; \
	(cd $(SWAGGER_UI) && sha256sum $(SWAGGER_UI_FILES) > SHA256SUMS); \
	echo "$(SWAGGER_UI): swagger-ui-dist $$(node -p 'require("./$(SWAGGER_UI)/package-lock.json").packages["node_modules/swagger-ui-dist"].version')"

NODE_TOOLS := tests/e2e/node_modules/.installed

$(NODE_TOOLS): tests/e2e/package.json tests/e2e/package-lock.json
	npm ci --prefix tests/e2e --no-audit --no-fund
	touch $@

## e2e: schemathesis, newman, curl, hostile input and production faults against live servers (about 3 minutes)
e2e: $(DEV) $(CLIENTS)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(NODE_TOOLS); \
	else echo "npm not found: the newman test will be skipped"; fi
	$(BIN)/pytest -m e2e tests/e2e

## bench-model: per-document latency and test accuracy, served graph vs stock exports (bench/MODEL.md)
bench-model: $(DEV)
	$(BIN)/python -m bench.model

## bench-memory: memory idle, after ordinary requests, under 1 MiB texts and stalled uploads (bench/MEMORY.md, 1 min)
bench-memory: $(DEV)
	$(BIN)/python -m bench.memory

## bench-percall: peak bytes per character of one onnxruntime call, by script and size (bench/PERCALL.md)
bench-percall: $(DEV)
	$(BIN)/python -m bench.percall

## bench-pareto: every model tried, on every view, with its cost and size (bench/PARETO.md; torch, about 15 min)
bench-pareto: $(DISTILL)
	HF_HUB_OFFLINE=1 $(VENV)/distill/bin/python -m bench.pareto

## bench-deadline: the longest onnxruntime call and the INFERENCE_TIMEOUT_SECONDS it justifies (bench/DEADLINE.md)
bench-deadline: $(DEV)
	$(BIN)/python -m bench.deadline

## bench-curve: one pod's throughput, p50 and p99 at 1 to 256 requests in flight, needs wrk (bench/curve.json, ~3 min)
bench-curve: $(DEV)
	$(BIN)/python -m bench.curve

## bench-explain: what explanations and the model-health outputs cost per text (bench/EXPLAIN.md)
bench-explain: $(DEV)
	$(BIN)/python -m bench.explain

## bench-drain: 20 stops under 20 clients, slow uploads included: requests answered, refused, lost (IMAGE=tag: the image under docker stop; bench/DRAIN.md, ~2 min)
bench-drain: $(DEV)
	$(BIN)/python -m bench.drain $(if $(IMAGE),--image $(IMAGE))

## bench-canary: a canary rehearsed with real nginx (90/10) and Prometheus: two model versions compared by live accuracy, then promoted (bench/CANARY.md, ~1 min)
bench-canary: $(DEV)
	$(BIN)/python -m bench.canary

## bench-feedback: POST /feedback throughput at 64 connections, each request a fresh id, needs wrk (bench/out/FEEDBACK.md, ~1 min)
bench-feedback: $(DEV)
	$(BIN)/python -m bench.feedback

## bench-tracing: what OpenTelemetry spans cost: keeps() and record() on the event loop, encode + POST in the export thread, a paced run (bench/out/TRACING.md, ~1 min)
bench-tracing: $(DEV)
	$(BIN)/python -m bench.tracing

## bench: service benchmark, 3-5 min, needs wrk (bench/RESULTS.md, bench/results.png)
bench: $(DEV)
	$(BIN)/python -m bench.run

## bench-smoke: every benchmark step for ~2 s; fails only if a step produced no numbers (bench/out/)
bench-smoke: $(DEV)
	$(BIN)/python -m bench.run --smoke
	$(BIN)/python -m bench.memory --bursts 2 --quiet 1 --out bench/out/MEMORY.md
	$(BIN)/python -m bench.deadline --calls 2 --out bench/out/DEADLINE.md
	$(BIN)/python -m bench.percall --sizes 10000 --out bench/out/PERCALL.md
	$(BIN)/python -m bench.curve --smoke --out bench/out/curve.json
	$(BIN)/python -m bench.drain --cycles 1
	$(BIN)/python -m bench.feedback --rounds 1 --seconds 2
	$(BIN)/python -m bench.canary --texts 200 --out bench/out/CANARY.md

## soak: 10 minutes at half the maximum throughput; errors and RSS growth (appends to bench/RESULTS.md)
soak: $(DEV)
	$(BIN)/python -m bench.run --soak

# The hashed locks the image installs: requirements/runtime.lock (into /opt/venv) and
# requirements/sbom.lock (the SBOM tool, in the builder stage only), from runtime.txt and sbom.txt.
# uv, pinned (one version writes one file), in its own .venv/lock: it resolves for a named target,
# not for the interpreter that runs it, so the lock is the image's whatever machine writes it:
# CPython 3.11 on x86_64 with glibc 2.36 (python:3.11.17-slim-bookworm), wheels only, every
# transitive dependency pinned with the sha256 of every file of its release (uv lists them all,
# other platforms' wheels and the sdist too; pip takes the one wheel that fits and checks it). It
# reads no pip configuration and, with --no-config, no uv configuration; --exclude-newer makes the
# transitive pins a function of the inputs and LOCK_EXCLUDE_NEWER alone (same input, same file;
# pip-compile has no such cut-off). A pin released after LOCK_EXCLUDE_NEWER does not resolve:
# move the date forward, then `make lock` and commit the .lock files with the .txt change.
UV_VERSION := 0.13.9
LOCK_EXCLUDE_NEWER := 2026-12-07T00:00:00Z
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_36 --only-binary :all:
LOCK_TOOL := $(VENV)/lock/.uv-$(UV_VERSION)

$(LOCK_TOOL):
	rm -rf $(VENV)/lock
	$(PYTHON) -m venv $(VENV)/lock
	$(VENV)/lock/bin/python -m pip install --quiet uv==$(UV_VERSION)
	touch $@

## lock: requirements/runtime.lock and sbom.lock (hashed, for the image's platform) from runtime.txt and sbom.txt
lock: $(LOCK_TOOL)
	for name in runtime sbom; do \
	  $(VENV)/lock/bin/uv pip compile --quiet --no-config --system-certs $(LOCK_TARGET) \
	    --generate-hashes --exclude-newer $(LOCK_EXCLUDE_NEWER) --custom-compile-command 'make lock' \
	    --output-file requirements/$$name.lock requirements/$$name.txt || exit 1; \
	done

## container-test: build the image, then pytest -m container tests/container: the image run as knative/service.yaml does, with real Docker (as root; 2-6 min)
container-test: $(DEV)
	bash .ci/container/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache tests/e2e/node_modules
