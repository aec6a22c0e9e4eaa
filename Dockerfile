# syntax=docker/dockerfile:1
# The inference service: `python -m function` serves model/model.onnx on $PORT (8080).
#
#   docker build -t newsgroups-classifier:1.1.0 .
#   docker run --rm --read-only --tmpfs /var/tmp -p 8080:8080 newsgroups-classifier:1.1.0
#
# knative/DEPLOY.md explains the rest; tests/deployment/ checks this file against the code,
# the Procfile and the manifests, and `make container-test` builds and runs it (.ci/container/).

# ---- builder: requirements/runtime.lock in a virtual environment, its SBOM, the app compiled ---
FROM python:3.11.17-slim-bookworm AS builder

# /opt/venv holds requirements/runtime.lock and nothing else: no pip, no setuptools (created
# --without-pip; the base image's pip installs into it; nothing needs either at run time). The lock (`make lock`, uv) pins every transitive dependency with its hashes:
#   --require-hashes  a file whose sha256 the lock does not list is refused, and so is any
#                     dependency the lock does not pin (deliberately not --no-deps: pip still
#                     resolves, so an incomplete or inconsistent lock fails the build instead of
#                     shipping a broken environment);
#   --only-binary     the wheels the lock hashes, never an sdist built with unhashed build tools.
# NOTE: runtime.lock and nothing else: no scikit-learn, skl2onnx or test tools.
COPY requirements/runtime.lock /tmp/runtime.lock
RUN python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes \
      --only-binary :all: -r /tmp/runtime.lock

# The SBOM of /opt/venv (CycloneDX 1.6 JSON, one component per installed distribution, with its
# purl, licences and dependencies), shipped as /app/sbom.cdx.json. The tool (requirements/sbom.lock)
# lives in a throwaway environment that this same step deletes: the runtime stage never sees it.
# --output-reproducible: no timestamp, no serial number, so the same environment gives the same file.
COPY requirements/sbom.lock /tmp/sbom.lock
RUN python -m venv --without-pip /tmp/sbom-tool \
 && python -m pip --python /tmp/sbom-tool/bin/python install --no-cache-dir --require-hashes \
      --only-binary :all: -r /tmp/sbom.lock \
 && /tmp/sbom-tool/bin/cyclonedx-py environment --output-reproducible --output-format JSON \
      --output-file /opt/sbom.cdx.json /opt/venv/bin/python \
 && rm -rf /tmp/sbom-tool

# tini, statically linked, for the runtime stage to copy (see ENTRYPOINT there).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY function/ function/
COPY model/ model/
COPY openapi.json openapi3.json ./
# Readable by the unprivileged user (model/ may be private in a checkout), writable by nobody,
# and byte-compiled now: at run time the root filesystem is read-only and nothing is written.
RUN chmod -R a+rX,go-w /app \
 && /opt/venv/bin/python -m compileall -q function

# ---- runtime: the slim base, the environment and the app; no pip install, no compiler ---------
FROM python:3.11.17-slim-bookworm AS runtime

# NOTE: the official image deletes the standard library's .pyc files; compile them once here so
# that no process compiles (or tries to write) bytecode when it starts.
RUN python -m compileall -q -j 0 -x /site-packages/ /usr/local/lib/python3.11


LABEL org.opencontainers.image.title="newsgroups-classifier" \
      org.opencontainers.image.description="Newsgroup topic classifier: ONNX model served by aiohttp" \
      org.opencontainers.image.version="1.1.0"

# PORT is only a default: Knative injects its own. TMPDIR is the one place anything is written
# (the forkserver's socket): mount a tmpfs or emptyDir there when the root is read-only.
# ORT_DISABLE_TELEMETRY: onnxruntime's telemetry, which the code turns off too, stays off for any
# process that loads it here (it would write under $HOME and look up an outside host).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/var/tmp \
    ORT_DISABLE_TELEMETRY=1 \
    PORT=8080

COPY --from=builder /usr/bin/tini-static /usr/bin/tini
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/sbom.cdx.json /app/sbom.cdx.json
WORKDIR /app
COPY --from=builder /app /app

USER 10001:10001
EXPOSE 8080
# Exec form, no shell. tini is PID 1 and passes every signal on to the Procfile's web command: the
# kernel ignores a signal PID 1 has no handler for, so Python as PID 1 would miss a SIGTERM sent
# before it installs its own, and nothing would reap a process PID 1 inherits (a worker whose
# forkserver died would stay a zombie).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "function"]
