#!/usr/bin/env bash
# make container-test: the real container, built and run here.
#
#   1. a Docker engine (engine.sh): Debian's docker.io installed if dockerd is missing, dockerd
#      started if none is running, and stopped at the end if this run started it;
#   2. the Dockerfile's base image: a local stand-in built when its tag is missing (base-image.sh;
#      there is no registry here);
#   3. the Dockerfile built as it is (the classic builder: BuildKit would fetch the
#      `# syntax=docker/dockerfile:1` frontend from a registry);
#   4. `pytest -m container tests/container`: the image run the way knative/service.yaml runs it,
#      one test per check, each check's figures under its result.
#
# Knobs: CONTAINER_TEST_REV=<commit> builds and checks that commit (`git archive` into a
# temporary folder) instead of the working tree; CONTAINER_TEST_ONLY=<check,...> runs only those
# checks (development: sbom,worker-kill runs test_sbom and test_worker_kill); CONTAINER_TEST_IMAGE
# (default newsgroups-classifier:container-test) names the image; PYTHON (default
# .venv/bin/python) runs pytest. Exits non-zero if anything failed; a machine where dockerd
# cannot run fails here too.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=.ci/container
image=${CONTAINER_TEST_IMAGE:-newsgroups-classifier:container-test}
python=${PYTHON:-.venv/bin/python}
started=$SECONDS
context=.
export_dir=""

# shellcheck source=.ci/container/engine.sh
source "$here/engine.sh"
# shellcheck disable=SC2329 # called by the EXIT trap
finish() {
    local code=$?
    engine_down || true
    [[ -n $export_dir ]] && rm -rf "$export_dir"
    echo "....  container-test: $((SECONDS - started)) s in all"
    exit "$code"
}
checks_pid=""
# While the checks run, a signal goes to pytest (it removes the containers, then exits); before,
# it ends this script (and its EXIT trap stops the engine it started).
# shellcheck disable=SC2329 # called by the INT and TERM traps
on_signal() {
    if [[ -n $checks_pid ]]; then
        kill -TERM "$checks_pid" 2>/dev/null || true
    else
        exit "$1"
    fi
}
trap finish EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

[[ -x $python ]] || { echo "FAIL setup: $python not found (make container-test sets up .venv)"; exit 1; }
engine_up

if [[ -n ${CONTAINER_TEST_REV:-} ]]; then
    export_dir=$(mktemp -d "${TMPDIR:-/tmp}/container-test-context.XXXXXX")
    git archive "$CONTAINER_TEST_REV" | tar -x -C "$export_dir"
    context=$export_dir
    echo "....  building $(git rev-parse --short "$CONTAINER_TEST_REV") (git archive), not the working tree"
fi

mapfile -t bases < <(awk 'toupper($1) == "FROM" { print $2 }' "$context/Dockerfile" | sort -u)
[[ ${#bases[@]} -eq 1 ]] || { echo "FAIL setup: expected one base image in the Dockerfile: ${bases[*]}"; exit 1; }
base=${bases[0]}
"$here/base-image.sh" "$base"

echo "....  docker build -t $image $context"
build_started=$SECONDS
build_log=$(mktemp "${TMPDIR:-/tmp}/container-test-build.XXXXXX")
previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
if ! DOCKER_BUILDKIT=0 docker build --pull=false --tag "$image" "$context" >"$build_log" 2>&1; then
    tail -n 40 "$build_log"
    rm -f "$build_log"
    echo "FAIL build: docker build of the Dockerfile failed (above)"
    exit 1
fi
rm -f "$build_log"
current=$(docker image inspect --format '{{.Id}}' "$image")
# The image this tag named before is of no use any more (its layers stay as the build cache).
if [[ -n $previous && $previous != "$current" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
echo "....  built $image from the Dockerfile as it is in $((SECONDS - build_started)) s"

only=()
if [[ -n ${CONTAINER_TEST_ONLY:-} ]]; then
    names=${CONTAINER_TEST_ONLY//-/_}
    only=(-k "${names//,/ or }")
fi
# .ci/run sets PYTHONASYNCIODEBUG for the test suites; the checks' own clients run without it.
env -u PYTHONASYNCIODEBUG CONTAINER_TEST_IMAGE="$image" CONTAINER_TEST_CONTEXT="$context" CONTAINER_TEST_BASE="$base" \
    "$python" -m pytest -m container tests/container -v --durations=0 "${only[@]}" &
checks_pid=$!
status=0
while true; do
    wait "$checks_pid" && status=0 || status=$?
    kill -0 "$checks_pid" 2>/dev/null || break # `wait` returned for a trapped signal: wait again
done
checks_pid=""
exit "$status"
