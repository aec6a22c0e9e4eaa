"""Heap trimming: freed memory goes back to the OS once a burst is over, never during one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from function.heap import IdleTrim, trim
from tests.helpers import ROOT

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux)")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_trimmed_before_any_activity() -> None:
    clock = Clock()
    idle = IdleTrim(quiet=1.0, clock=clock)
    clock.now += 10
    assert not idle.observe(0)


@glibc_only
def test_a_burst_is_trimmed_once_after_a_quiet_spell() -> None:
    clock = Clock()
    idle = IdleTrim(quiet=1.0, clock=clock)

    assert not idle.observe(5)  # activity
    clock.now += 0.9
    assert not idle.observe(5)  # not quiet for long enough
    clock.now += 0.2
    assert idle.observe(5)
    clock.now += 5
    assert not idle.observe(5)  # once per quiet spell


@glibc_only
def test_steady_activity_is_never_trimmed() -> None:
    clock = Clock()
    idle = IdleTrim(quiet=1.0, clock=clock)
    for activity in range(1, 50):
        clock.now += 0.5
        assert not idle.observe(activity)
    clock.now += 1.0
    assert idle.observe(49)


@glibc_only
def test_trim_gives_freed_heap_pages_back_to_the_os() -> None:
    # NOTE: a fresh process, so that the heap holds only this test's blocks; the last block
    # stays allocated, so that free() alone cannot shrink the heap from its top.
    code = """
import re
from function.heap import trim
def rss_mb():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
blocks = [bytes(4000) for _ in range(10000)]
pin = bytes(4000)
del blocks
before = rss_mb()
assert trim()
print(before - rss_mb())
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert float(result.stdout) > 20  # of the 40 MB freed


def test_trim_answers_whether_it_could_run() -> None:
    assert trim() is sys.platform.startswith("linux")
