"""``python -m bench.ipc``: what one call to an inference process costs the server, by IPC design.

The service sends every batch to its worker through ``loop.run_in_executor`` on a one-process
``ProcessPoolExecutor``: a feeder thread pickles the call into a pipe, a manager thread reads the
answer and hands it back to the event loop, all under the server's GIL. The alternative measured
here is a plain ``multiprocessing`` pipe that the event loop itself watches (``loop.add_reader``):
no threads in the server. Both send a list of one test text to a process that echoes it (no
model), on uvloop, one call at a time; the figures are the round trip and the CPU time the
*server* process spends per call, which the event loop then lacks for HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import pickle
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

import uvloop

from bench import machine
from bench.paths import BENCH
from bench.tables import markdown_table, publish

TEXT = "The shuttle reached orbit after the launch; the goalie made 40 saves."
Call = Callable[[list[str]], Awaitable[object]]


def echo(texts: list[str]) -> list[str]:
    return texts


def _serve(conn: Connection) -> None:
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(pickle.dumps(echo(pickle.loads(message))))


async def _timed(call: Call, n: int) -> tuple[float, float]:
    """(wall µs, this process's CPU µs) per call, calls made one after another."""
    for _ in range(50):
        await call([TEXT])
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await call([TEXT])
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def executor_costs(n: int) -> tuple[float, float]:
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
    loop = asyncio.get_running_loop()

    async def call(texts: list[str]) -> object:
        return await loop.run_in_executor(executor, echo, texts)

    try:
        return await _timed(call, n)
    finally:
        executor.shutdown(wait=True)


async def pipe_costs(n: int) -> tuple[float, float]:
    context = multiprocessing.get_context("forkserver")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(theirs,), daemon=True)
    process.start()
    theirs.close()
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[object]] = []

    def readable() -> None:
        while ours.poll():
            waiting.pop(0).set_result(pickle.loads(ours.recv_bytes()))

    async def call(texts: list[str]) -> object:
        future: asyncio.Future[object] = loop.create_future()
        waiting.append(future)
        ours.send_bytes(pickle.dumps(texts))
        return await future

    loop.add_reader(ours.fileno(), readable)
    try:
        return await _timed(call, n)
    finally:
        loop.remove_reader(ours.fileno())
        ours.close()
        process.join(5)
        if process.is_alive():
            process.terminate()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ipc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=BENCH / "IPC.md", help="where to write the table")
    args = parser.parse_args(argv)
    rows = []
    for name, costs in (
        ("ProcessPoolExecutor + run_in_executor (the service today)", executor_costs),
        ("multiprocessing pipe + loop.add_reader", pipe_costs),
    ):
        wall, cpu = uvloop.run(costs(args.calls))
        rows.append([name, f"{wall:.0f}", f"{cpu:.0f}"])
    report = "\n".join(
        [
            "# IPC cost per call to an inference process",
            "",
            f"Machine: {machine.describe()}. `python -m bench.ipc`: {args.calls} sequential calls each, "
            "echoing a one-text list (no model), on uvloop. See the module docstring.",
            "",
            markdown_table(["IPC to one inference process", "round trip µs", "server CPU µs per call"], rows),
            "",
        ]
    )
    publish(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
