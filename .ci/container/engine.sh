# shellcheck shell=bash
# A Docker engine for this run; sourced by .ci/container/run.sh.
#
#   engine_up    installs Debian's docker.io if dockerd is missing, and starts dockerd in the
#                background if `docker info` cannot reach a daemon; waits until it answers.
#   engine_down  stops the dockerd that engine_up started, and nothing else: a daemon that was
#                already running is left as it was.
#
# Without the privileges to run dockerd (not root, no cgroups, no overlay2, no iptables) it says
# so and fails: there is no fallback to an emulation.

ENGINE_START_TIMEOUT=${ENGINE_START_TIMEOUT:-60}
engine_started_pid=""
engine_log=""

engine_note() { echo "....  engine: $*"; }
engine_fail() {
    echo "FAIL engine: $*"
    return 1
}

engine_up() {
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        if [[ $(id -u) -ne 0 ]]; then
            engine_fail "dockerd is not installed and only root can install it (apt-get install docker.io)"
            return 1
        fi
        engine_note "installing Debian's docker.io (dockerd, containerd, runc)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null ||
            { engine_fail "apt-get install docker.io failed"; return 1; }
    fi
    if docker info >/dev/null 2>&1; then
        engine_note "using the running daemon ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        engine_fail "no Docker daemon is running and dockerd needs root to start"
        return 1
    fi
    engine_log=$(mktemp "${TMPDIR:-/tmp}/container-test-dockerd.XXXXXX")
    # Its own session: a Ctrl-C meant for the checks must not stop the daemon under their cleanup.
    setsid dockerd >"$engine_log" 2>&1 </dev/null &
    engine_started_pid=$!
    local waited=0
    until docker info >/dev/null 2>&1; do
        if ! kill -0 "$engine_started_pid" 2>/dev/null; then
            engine_started_pid=""
            echo "---- dockerd's output (last 30 lines)"
            tail -n 30 "$engine_log"
            engine_fail "dockerd exited at start: this machine does not let it run (see above); no fallback"
            return 1
        fi
        if ((waited >= ENGINE_START_TIMEOUT * 2)); then
            echo "---- dockerd's output (last 30 lines)"
            tail -n 30 "$engine_log"
            engine_fail "dockerd did not answer within ${ENGINE_START_TIMEOUT}s"
            return 1
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    # setsid execs dockerd in place (a background job of a script leads no process group), but
    # the daemon's own pid file is the authority.
    [[ -s /var/run/docker.pid ]] && engine_started_pid=$(</var/run/docker.pid)
    engine_note "started dockerd $(docker version --format '{{.Server.Version}}') as pid $engine_started_pid" \
        "($(docker info --format '{{.Driver}}, cgroup v{{.CgroupVersion}}'); log $engine_log)"
}

engine_down() {
    [[ -n $engine_started_pid ]] || return 0
    local pid=$engine_started_pid waited=0
    engine_started_pid=""
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && ((waited < 60)); do
        sleep 0.5
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        engine_note "dockerd (pid $pid) still running 30 s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    else
        engine_note "stopped the dockerd this run started (pid $pid)"
    fi
    rm -f "$engine_log"
}
