# syntax=docker/dockerfile:1
# The inference service: `python -m function` serves model/model.onnx on $PORT (8080).
#
#   docker build -t newsgroups-classifier:1.1.0 .
#   docker run --rm --read-only --tmpfs /var/tmp -p 8080:8080 newsgroups-classifier:1.1.0
#
# knative/DEPLOY.md explains the rest; tests/test_deployment.py checks this file against the code,
# the Procfile and the manifests, and .ci/container-smoke.sh runs what it builds.

# ---- builder: requirements/runtime.txt in a virtual environment, the app byte-compiled -------
FROM python:3.11.17-slim-bookworm AS builder

# setuptools is removed: nothing needs it at run time, and its distutils shim (loaded by
# apispec's `import distutils`) would add about 0.3 s to every start.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip uninstall --yes setuptools
COPY requirements/runtime.txt /tmp/runtime.txt
# NOTE: runtime.txt and nothing else: no scikit-learn, skl2onnx or test tools. The slim base has
# no compiler, so a dependency that would need one fails the build instead of slipping in.
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/runtime.txt

WORKDIR /app
COPY function/ function/
COPY model/ model/
COPY openapi.json ./
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
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/var/tmp \
    PORT=8080

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --from=builder /app /app

USER 10001:10001
EXPOSE 8080
# Exec form, no shell and no entrypoint: Python is PID 1 and receives SIGTERM itself. The same
# command as the Procfile's web process.
CMD ["python", "-m", "function"]
