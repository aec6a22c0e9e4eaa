#!/usr/bin/env bash
# The container, emulated where there is no container engine: what the Dockerfile builds, run
# the way Knative runs it.
#
#   - a fresh virtual environment with requirements/runtime.txt and nothing else;
#   - function/, model/ and openapi.json copied into an app folder, byte-compiled, read-only;
#   - as root: the server runs as the image's numeric user, without capabilities and with
#     no_new_privs, in a private mount namespace whose root filesystem is read-only and whose
#     TMPDIR (the image's, /var/tmp) is a fresh tmpfs, as readOnlyRootFilesystem plus the
#     manifests' emptyDir make it. Without root (or without unshare) it falls back to the
#     read-only app folder alone and says so;
#   - LC_ALL=C, PYTHONDONTWRITEBYTECODE=1 and an otherwise empty environment;
#   - the Procfile's web command as written, waited for on /readyz, asked for a prediction,
#     sent SIGTERM, and expected to exit 0 within SHUTDOWN_GRACE_SECONDS.
#
# Prints one PASS or FAIL line per check and exits non-zero if any failed.
# Knobs: SMOKE_PYTHON (a python3.11 to build the environment with), SMOKE_KEEP=1 (keep the
# work folder), SHUTDOWN_GRACE_SECONDS (default 20, as in function/settings.py).
set -euo pipefail
cd "$(dirname "$0")/.."

GRACE=${SHUTDOWN_GRACE_SECONDS:-20}
START_TIMEOUT=90
passed=0
failed=0
server_pid=""
work=""

pass() { echo "PASS  $*"; passed=$((passed + 1)); }
fail() { echo "FAIL  $*"; failed=$((failed + 1)); }
note() { echo "....  $*"; }
summary() { echo "container-smoke: $passed passed, $failed failed"; }
abort() {
    fail "$*"
    if [[ -n $work && -s $work/server.log ]]; then
        echo "---- server output (last 40 lines)"
        tail -n 40 "$work/server.log"
    fi
    summary
    exit 1
}

cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ -n $work && -d $work ]]; then
        if [[ ${SMOKE_KEEP:-} == 1 ]]; then
            note "kept $work"
        else
            chmod -R u+w "$work" 2>/dev/null || true
            rm -rf "$work"
        fi
    fi
}
trap cleanup EXIT

# ---- what the image defines: its user, its TMPDIR, its command ---------------------------------
image_user=$(awk '$1 == "USER" { user = $2 } END { print user }' Dockerfile)
[[ $image_user =~ ^([0-9]+)(:([0-9]+))?$ ]] || abort "Dockerfile: the last USER is not numeric: '$image_user'"
run_uid=${BASH_REMATCH[1]}
run_gid=${BASH_REMATCH[3]:-$run_uid}
image_tmpdir=$(grep -oE '\bTMPDIR=[^[:space:]\\]+' Dockerfile | tail -n 1 | cut -d= -f2)
[[ $image_tmpdir == /* ]] || abort "Dockerfile: no absolute TMPDIR in ENV"

mapfile -t web_lines < <(sed -n 's/^web:[[:space:]]*//p' Procfile)
[[ ${#web_lines[@]} -eq 1 ]] || abort "Procfile: expected exactly one web process, found ${#web_lines[@]}"
web_command=${web_lines[0]}
if [[ $web_command == *[\$\;\|\&\<\>\`\(\)\'\"\\]* ]]; then
    abort "Procfile: '$web_command' needs a shell; the image's exec-form CMD could not run it"
fi
read -r -a web_argv <<<"$web_command"
pass "Procfile web command parsed: ${web_argv[*]}"

# ---- who runs the server, and how read-only its world is ----------------------------------------
as_user=()
isolate=no
if [[ $(id -u) -eq 0 ]]; then
    as_user=(setpriv --reuid="$run_uid" --regid="$run_gid" --clear-groups --no-new-privs
        --inh-caps=-all --bounding-set=-all --)
    if unshare --mount --propagation private true 2>/dev/null; then
        isolate=yes
    else
        note "unshare --mount is not permitted here: the root filesystem stays writable (app folder read-only only)"
    fi
else
    note "not root: the server runs as uid $(id -u); the app folder is read-only, the root filesystem is not"
fi

# A Python 3.11 the server's user may run (pyenv's, under /root, is out of its reach).
candidates=()
[[ -n ${SMOKE_PYTHON:-} ]] && candidates+=("$SMOKE_PYTHON")
command -v python3.11 >/dev/null && candidates+=("$(command -v python3.11)")
candidates+=(/usr/local/bin/python3.11 /usr/bin/python3.11)
python=""
for candidate in "${candidates[@]}"; do
    [[ -x $candidate ]] || continue
    real=$("$candidate" -c 'import sys; print(sys.executable if sys.version_info[:2] == (3, 11) else "")' 2>/dev/null) || continue
    [[ -n $real ]] || continue
    # Found through PATH, as the server's `python` will be.
    if [[ ${#as_user[@]} -gt 0 ]] &&
        ! (cd / && "${as_user[@]}" env -i PATH="$(dirname "$real")" "$(basename "$real")" -c 'import json') 2>/dev/null; then
        continue
    fi
    python=$real
    break
done
[[ -n $python ]] || abort "no Python 3.11 found that user $run_uid can run (set SMOKE_PYTHON)"
note "building with $python ($("$python" -c 'import platform; print(platform.python_version())'))"

# Not under the image's TMPDIR: the namespace mounts a fresh tmpfs over that.
parent=${TMPDIR:-/tmp}
[[ $parent == "$image_tmpdir" || $parent == "$image_tmpdir"/* ]] && parent=/tmp
work=$(mktemp -d "$parent/container-smoke.XXXXXX")
chmod 755 "$work"

# ---- the builder stage ---------------------------------------------------------------------------
"$python" -m venv "$work/venv" || abort "could not create a virtual environment with $python"
"$work/venv/bin/python" -m pip uninstall --quiet --yes setuptools >/dev/null 2>&1 || true  # as the Dockerfile
if ! "$work/venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
    -r requirements/runtime.txt >"$work/pip.log" 2>&1; then
    tail -n 20 "$work/pip.log"
    abort "pip install -r requirements/runtime.txt failed"
fi
pass "fresh virtual environment from requirements/runtime.txt only"

if "$work/venv/bin/python" -m pip check >"$work/pip-check.log" 2>&1; then
    pass "pip check: the runtime requirements are consistent"
else
    fail "pip check: $(tr '\n' ' ' <"$work/pip-check.log")"
fi

# Packages that only training and development need (their files' own lines, not the -r ones).
mapfile -t not_runtime < <(sed -e 's/#.*//' -e '/^[[:space:]]*-/d' -e 's/[[:space:]=<>!~;[].*//' \
    requirements/train.txt requirements/dev.txt | sed '/^$/d')
installed=$("$work/venv/bin/python" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null |
    cut -d= -f1 | tr '[:upper:]_.' '[:lower:]--')
leaked=()
for name in "${not_runtime[@]}"; do
    normal=$(tr '[:upper:]_.' '[:lower:]--' <<<"$name")
    grep -qx -- "$normal" <<<"$installed" && leaked+=("$name")
done
if [[ ${#leaked[@]} -eq 0 ]]; then
    pass "no training or development package installed (${#not_runtime[@]} checked, e.g. scikit-learn, skl2onnx, pytest)"
else
    fail "training or development packages in the runtime environment: ${leaked[*]}"
fi

app=$work/app
mkdir "$app"
cp -R function model openapi.json "$app/" || abort "could not copy function/, model/ and openapi.json"
find "$app" -name __pycache__ -prune -exec rm -rf {} +
"$work/venv/bin/python" -m compileall -q "$app/function" >/dev/null || abort "compileall failed on function/"
chmod -R a+rX,go-w "$app"
chmod -R a-w "$app"
touch "$work/before-run"
pass "app folder: function/, model/, openapi.json, byte-compiled, read-only for everyone"

# ---- run it like the image -----------------------------------------------------------------------
port=$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [[ $isolate == yes ]]; then
    tmpdir=$image_tmpdir
else
    tmpdir=$work/tmp
    mkdir -m 1777 "$tmpdir"
fi
server_env=(
    env -i
    "PATH=$work/venv/bin:/usr/local/bin:/usr/bin:/bin"
    HOME=/nonexistent
    LC_ALL=C
    PYTHONDONTWRITEBYTECODE=1
    PYTHONUNBUFFERED=1
    "TMPDIR=$tmpdir"
    "PORT=$port"
    HOST=127.0.0.1 # the image listens on 0.0.0.0; loopback is enough here
    WORKERS=2      # as the manifests set it
    "SHUTDOWN_GRACE_SECONDS=$GRACE"
)

if [[ $isolate == yes ]]; then
    # NOTE: remount,bind,ro changes this namespace's view only; a plain remount,ro would
    # change the filesystem itself, for the whole machine.
    # shellcheck disable=SC2016 # $1 and $@ belong to the inner bash, not to this script
    (cd "$app" && exec unshare --mount --propagation private -- bash -c '
        set -e
        mount -t tmpfs -o size=16m,mode=1777,nosuid,nodev tmpfs "$1"
        mount -o remount,bind,ro /
        shift
        exec "$@"' bash "$tmpdir" "${as_user[@]}" "${server_env[@]}" "${web_argv[@]}") >"$work/server.log" 2>&1 &
    server_pid=$!
    mode="uid $run_uid:$run_gid, no capabilities, read-only root, tmpfs at $tmpdir"
elif [[ ${#as_user[@]} -gt 0 ]]; then
    (cd "$app" && exec "${as_user[@]}" "${server_env[@]}" "${web_argv[@]}") >"$work/server.log" 2>&1 &
    server_pid=$!
    mode="uid $run_uid:$run_gid, no capabilities, read-only app folder (root filesystem writable)"
else
    (cd "$app" && exec "${server_env[@]}" "${web_argv[@]}") >"$work/server.log" 2>&1 &
    server_pid=$!
    mode="uid $(id -u), read-only app folder (root filesystem writable)"
fi
note "started '${web_argv[*]}' as pid $server_pid on 127.0.0.1:$port ($mode)"

http() { # METHOD PATH [BODY] -> prints "STATUS BODY"
    "$work/venv/bin/python" - "$@" <<'PY'
import sys, urllib.error, urllib.request
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=5) as answer:
        print(answer.status, answer.read().decode())
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode())
except OSError as error:
    print(0, error)
PY
}
base=http://127.0.0.1:$port

started=$SECONDS
ready=""
while ((SECONDS - started < START_TIMEOUT)); do
    kill -0 "$server_pid" 2>/dev/null || abort "the server exited before it was ready"
    answer=$(http GET "$base/readyz")
    if [[ $answer == 200* ]]; then
        ready=yes
        break
    fi
    sleep 0.2
done
[[ -n $ready ]] || abort "GET /readyz did not answer 200 within ${START_TIMEOUT}s"
pass "GET /readyz answered 200 after $((SECONDS - started))s"

if [[ $(tr '\0' ' ' <"/proc/$server_pid/cmdline") == *"-m function"* ]]; then
    pass "the Procfile command is the process itself (pid $server_pid), not a shell: SIGTERM reaches Python"
else
    fail "pid $server_pid is not the server: $(tr '\0' ' ' <"/proc/$server_pid/cmdline")"
fi
uid_line=$(awk '$1 == "Uid:" { print $2 }' "/proc/$server_pid/status")
if [[ ${#as_user[@]} -gt 0 ]]; then
    if [[ $uid_line == "$run_uid" ]]; then
        pass "the server runs as the image's user $run_uid, not root"
    else
        fail "the server runs as uid $uid_line, not $run_uid"
    fi
fi

labels=$("$work/venv/bin/python" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["labels"]))' model/model.json)
answer=$(http POST "$base/prediction" '{"text": "The goalie stopped the puck in overtime."}')
label=$("$work/venv/bin/python" -c 'import json, sys; print(json.loads(sys.argv[1].split(" ", 1)[1]).get("label", ""))' "$answer" 2>/dev/null || true)
if [[ $answer == 200* && -n $label && " $labels " == *" $label "* ]]; then
    pass "POST /prediction answered 200 with a label: $label"
else
    fail "POST /prediction: $answer"
fi

answer=$(http GET "$base/metrics")
if [[ $answer == 200* && $answer == *"# TYPE"* ]]; then
    pass "GET /metrics answered 200 in Prometheus format"
else
    fail "GET /metrics: ${answer:0:200}"
fi

# ---- SIGTERM: drain and exit 0 within the grace period -------------------------------------------
kill -TERM "$server_pid"
stopped=$SECONDS
while kill -0 "$server_pid" 2>/dev/null && ((SECONDS - stopped < GRACE)); do
    sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
    fail "still running ${GRACE}s after SIGTERM; killed"
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
else
    code=0
    wait "$server_pid" || code=$?
    if [[ $code -eq 0 ]]; then
        pass "SIGTERM: exited 0 after $((SECONDS - stopped))s (grace ${GRACE}s)"
    else
        fail "SIGTERM: exit status $code"
    fi
fi
server_pid=""

if grep -q "Traceback" "$work/server.log"; then
    fail "the server printed a traceback"
else
    pass "no traceback in the server's output"
fi
changed=$(find "$app" "$work/venv" -newer "$work/before-run" -print -quit)
if [[ -z $changed ]]; then
    pass "nothing was written to the app folder or the environment while serving"
else
    fail "written while serving: $changed"
fi

if ((failed > 0)); then
    echo "---- server output (last 40 lines)"
    tail -n 40 "$work/server.log"
fi
summary
((failed == 0))
