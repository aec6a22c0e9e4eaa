"""The orphan reaper the service runs as PID 1 (function/reaper.py): it reaps every zombie child
nobody waits for, never the two multiprocessing waits for itself, and works before, on and after
the event loop. Each case runs in a child process: a SIGCHLD handler in pytest's own process
would reap the children other tests wait for."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import ROOT

SETUP = """
import json, os, signal, sys, time
import multiprocessing, multiprocessing.forkserver, multiprocessing.resource_tracker
from function.reaper import OrphanReaper, reap_orphans, waited_for, zombie_children

def until(condition, within=5.0):
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)

def orphan():
    '''A child that exits at once and that nobody waits for (as a worker orphaned by its forkserver).'''
    return os.posix_spawn("/bin/true", ["true"], dict(os.environ))

def reaped(pid):
    '''Whether pid was reaped already: it is no child of ours any more.'''
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False
"""


def run(scenario: str) -> dict[str, Any]:
    """``scenario`` (after SETUP) in a fresh interpreter; the JSON object it prints last."""
    result = subprocess.run(
        [sys.executable, "-c", SETUP + scenario], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_it_reaps_orphans_but_leaves_the_forkserver_and_the_resource_tracker_to_multiprocessing() -> None:
    """Both killed along with an orphan: the orphan is reaped, the other two stay zombies until
    multiprocessing waits for them itself, and it then starts a process as before."""
    found = run("""
multiprocessing.forkserver.ensure_running()
server = vars(multiprocessing.forkserver._forkserver)["_forkserver_pid"]
tracker = vars(multiprocessing.resource_tracker._resource_tracker)["_pid"]
child = orphan()
os.kill(server, signal.SIGKILL)
os.kill(tracker, signal.SIGKILL)
until(lambda: set(zombie_children()) == {server, tracker, child})
count = reap_orphans()
left = sorted(zombie_children())
process = multiprocessing.get_context("forkserver").Process(target=os.getpid)
process.start()
process.join(10)
print(json.dumps({"reaped": count, "left": left, "protected": sorted([server, tracker]), "child_reaped": reaped(child),
                  "exitcode": process.exitcode, "zombies_after": zombie_children(),
                  "new": sorted(waited_for()) != sorted([server, tracker])}))
""")
    assert found["reaped"] == 1
    assert found["child_reaped"]
    assert found["left"] == found["protected"]
    assert found["exitcode"] == 0, "multiprocessing could not start a process after the reap"
    assert found["new"], "the forkserver and the resource tracker were not relaunched"
    assert found["zombies_after"] == []


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_it_reaps_at_each_sigchld_before_on_and_after_the_event_loop(event_loop: str) -> None:
    found = run(f"""
import asyncio, uvloop
reaper = OrphanReaper().install()
before = orphan()
until(lambda: reaper.reaped == 1)  # in the handler itself: no loop runs yet
loop = uvloop.new_event_loop() if {event_loop!r} == "uvloop" else asyncio.new_event_loop()

async def on_the_loop():
    child = orphan()
    while reaper.reaped < 2:
        await asyncio.sleep(0.01)
    return child

during = loop.run_until_complete(asyncio.wait_for(on_the_loop(), 5))
loop.close()
after = orphan()
until(lambda: reaper.reaped == 3)
reaper.uninstall()
print(json.dumps({{"reaped": [reaped(pid) for pid in (before, during, after)], "count": reaper.reaped,
                  "default_after": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL}}))
""")
    assert found["reaped"] == [True, True, True]
    assert found["count"] == 3
    assert found["default_after"], "uninstall() did not restore SIGCHLD's default (never SIG_IGN)"


def test_a_forkserver_restart_in_progress_defers_the_reap() -> None:
    """While the forkserver's lock is held (its new pid not yet recorded), nothing is reaped."""
    found = run("""
child = orphan()
until(lambda: child in zombie_children())
lock = vars(multiprocessing.forkserver._forkserver)["_lock"]
with lock:
    during = reap_orphans()
print(json.dumps({"during": during, "after": reap_orphans()}))
""")
    assert found == {"during": None, "after": 1}
