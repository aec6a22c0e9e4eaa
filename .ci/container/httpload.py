"""A small HTTP/1.1 client over asyncio streams, for the container checks.

Written here rather than taken from aiohttp because the checks need what a full client hides:
when each request was completely sent, bodies uploaded slowly while the answer is awaited, and
the difference between an answer, a refused connection and a connection cut before the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class Cut(Exception):
    """The connection ended (reset, EOF, timeout) before a complete answer arrived."""


class Refused(Exception):
    """The TCP connection could not be opened."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    started: float  # the first byte of the request was written (time.time())
    sent: float  # the last byte of the request was written, or the answer came first
    done: float  # the answer was read completely

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        """The JSON error code of an error answer ("" if none)."""
        try:
            value = self.json()
        except ValueError:
            return ""
        return str(value.get("error", "")) if isinstance(value, dict) else ""


@dataclass
class Upload:
    """A body sent in chunks with pauses: `first` bytes at once, then `chunk` bytes every `pause` s."""

    first: int
    chunk: int
    pause: float


@dataclass
class Outcome:
    """One request of a load run: its answer, or why there was none."""

    started: float
    answer: Answer | None = None
    failure: str = ""  # "cut: ..." or "refused: ..."
    ended: float = 0.0


class Connection:
    """One keep-alive connection; reconnects transparently when the server closed it."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
        except (OSError, TimeoutError) as error:
            raise Refused(f"{type(error).__name__}: {error}") from error

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        upload: Upload | None = None,
        within: float | None = None,
    ) -> Answer:
        if self._writer is None or self._writer.is_closing():
            await self._open()
        assert self._reader is not None
        assert self._writer is not None
        reader, writer = self._reader, self._writer
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        lines += [f"{name}: {value}" for name, value in all_headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        started = time.time()
        sent = [0.0]

        async def send() -> None:
            try:
                if body is None or upload is None:
                    writer.write(head + (body or b""))
                    await writer.drain()
                else:
                    writer.write(head + body[: upload.first])
                    await writer.drain()
                    for offset in range(upload.first, len(body), upload.chunk):
                        await asyncio.sleep(upload.pause)
                        writer.write(body[offset : offset + upload.chunk])
                        await writer.drain()
            except OSError:
                return  # the server may answer and close before the body is complete: read on
            sent[0] = time.time()

        sender = asyncio.create_task(send())
        try:
            answer = await asyncio.wait_for(self._read_answer(reader, started), within or self.timeout)
        except TimeoutError as error:
            await self.close()
            raise Cut(f"no complete answer within {within or self.timeout:g} s") from error
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            await self.close()
            raise Cut(f"{type(error).__name__}: {error}") from error
        finally:
            sender.cancel()
            await asyncio.wait({sender})  # unlike `await sender`, lets a cancellation of this task through
        answer.sent = sent[0] or answer.done
        if answer.headers.get("connection", "").lower() == "close" or not sender.done() or sent[0] == 0.0:
            await self.close()
        return answer

    @staticmethod
    async def _read_answer(reader: asyncio.StreamReader, started: float) -> Answer:
        status_line = await reader.readline()
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        parts = status_line.decode("latin-1").split(" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
        else:
            body = await reader.read()
        return Answer(status, headers, body, started, 0.0, time.time())


async def fetch(
    host: str, port: int, method: str, path: str, body: bytes | None = None, within: float = 10.0
) -> Answer:
    """One request on a connection of its own, answered `within` seconds."""
    connection = Connection(host, port, within)
    try:
        return await connection.request(method, path, body)
    finally:
        await connection.close()


@dataclass
class Load:
    """Closed-loop clients posting texts to /prediction until stopped; every request's outcome kept."""

    host: str
    port: int
    bodies: Sequence[bytes]
    clients: int
    path: str = "/prediction"
    timeout: float = 30.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(index)) for index in range(self.clients)]

    async def stop(self) -> list[Outcome]:
        """No new requests from now on; waits for the ones in flight."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def _client(self, index: int) -> None:
        rng = random.Random(index)
        connection = Connection(self.host, self.port, self.timeout)
        try:
            while not self._stop.is_set():
                outcome = Outcome(started=time.time())
                self.outcomes.append(outcome)
                try:
                    outcome.answer = await connection.request("POST", self.path, rng.choice(self.bodies))
                except Cut as error:
                    outcome.failure = f"cut: {error}"
                except Refused as error:
                    outcome.failure = f"refused: {error}"
                    await asyncio.sleep(0.05)
                outcome.ended = time.time()
        finally:
            await connection.close()


def statuses(outcomes: Sequence[Outcome]) -> str:
    """Counts by status and error code ("200: 7390, 503 model_unavailable: 4") or failure ("cut: 8")."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.answer is None:
            key = outcome.failure.split(":", 1)[0]
        else:
            key = f"{outcome.answer.status} {outcome.answer.error}".strip()
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{key}: {count}" for key, count in sorted(counts.items())) or "none"
