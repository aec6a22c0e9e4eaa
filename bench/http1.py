"""One raw HTTP/1.1 client over asyncio streams, for the end-to-end tests, the container test and bench.

Raw, because these judge what a full client (aiohttp) hides: the exact bytes sent (pipelined,
malformed, cut short), when a request was completely sent, bodies uploaded slowly while the
answer is awaited, and an answer told apart from a refused or a cut connection.

- ``request`` builds a request's bytes; ``exchange`` sends bytes on a fresh connection and
  parses what comes back with ``parse_responses`` (pipelined answers, HEAD, chunked bodies).
- ``Connection`` is one kept-alive connection, ``fetch`` one request on a connection of its
  own, and ``Load`` closed-loop clients whose every outcome (answered, cut, refused) is kept.
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
from urllib.parse import urlsplit


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    # Set by Connection (time.time()): the request's first byte written, its last byte written
    # (or the answer came first), the answer read completely.
    started: float = 0.0
    sent: float = 0.0
    done: float = 0.0

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None

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


def parse_responses(data: bytes, head_requests: int = 0, closed: bool = True) -> tuple[list[Response], bytes]:
    """Every complete HTTP/1.x response in ``data``; the bytes left over. The first ``head_requests``
    responses answer HEAD (no body); a body framed by the end of the connection is complete only
    when ``closed``."""
    responses: list[Response] = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return responses, data
        lines = data[:end].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        status = int(code)
        body_start = end + 4
        names = {k.lower(): v for k, v in headers}
        if status < 200 or status in (204, 304) or (head_requests > len(responses)):
            length = 0
        elif "content-length" in names:
            length = int(names["content-length"])
        elif names.get("transfer-encoding", "").lower() == "chunked":
            body, consumed = _dechunk(data[body_start:])
            if consumed < 0:
                return responses, data
            responses.append(Response(version, status, reason, headers, body))
            data = data[body_start + consumed :]
            continue
        elif not closed:
            return responses, data
        else:  # until the connection closes
            length = len(data) - body_start
        if len(data) < body_start + length:
            return responses, data
        responses.append(Response(version, status, reason, headers, data[body_start : body_start + length]))
        data = data[body_start + length :]


def _dechunk(data: bytes) -> tuple[bytes, int]:
    body, position = b"", 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return b"", -1
        size = int(data[position:end].split(b";")[0], 16)
        start = end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n", start)
            return (body, trailer_end + 2) if trailer_end >= 0 else (b"", -1)
        if len(data) < start + size + 2:
            return b"", -1
        body += data[start : start + size]
        position = start + size + 2


# ---- raw bytes on a fresh connection --------------------------------------------------------------


@dataclass
class Exchange:
    """What came back on one connection: the responses, and how the connection ended."""

    responses: list[Response] = field(default_factory=list)
    closed: bool = False  # the server closed the connection (EOF or reset)
    timed_out: bool = False  # we stopped waiting
    seconds: float = 0.0
    rest: bytes = b""  # bytes that did not parse as a complete response

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses if r.status >= 200]


async def exchange(
    url: str,
    pieces: bytes | Sequence[bytes],
    *,
    expect: int = 1,
    pause: float = 0.0,
    give_up_after: float = 10.0,
    head_requests: int = 0,
) -> Exchange:
    """Send ``pieces`` on a fresh connection (``pause`` seconds apart) and read until ``expect``
    final responses arrived, the server closed the connection, or ``give_up_after`` seconds passed."""
    parts = urlsplit(url)
    result = Exchange()
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    data = b""

    async def send() -> None:
        for i, piece in enumerate([pieces] if isinstance(pieces, bytes) else pieces):
            if i and pause:
                await asyncio.sleep(pause)
            writer.write(piece)
            await writer.drain()

    async def receive() -> None:
        nonlocal data
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                result.closed = True
                return
            data += chunk
            responses, _ = parse_responses(data, head_requests)
            if len([r for r in responses if r.status >= 200]) >= expect:
                return

    try:
        async with asyncio.timeout(give_up_after):
            sender = asyncio.create_task(send())
            try:
                await receive()
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
    except TimeoutError:
        result.timed_out = True
    except (ConnectionResetError, BrokenPipeError):
        result.closed = True
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()
    result.seconds = time.monotonic() - started
    result.responses, result.rest = parse_responses(data, head_requests)
    return result


def request(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    version: str = "HTTP/1.1",
    content_type: str | None = "application/json",
    close: bool = True,
) -> bytes:
    """A well-formed request's bytes (Host, Content-Length, Content-Type, Connection: close)."""
    fields: dict[str, str] = {"Host": "127.0.0.1"}
    if content_type is not None and (body or method == "POST"):
        fields["Content-Type"] = content_type
    if body or method == "POST":
        fields["Content-Length"] = str(len(body))
    if close and version == "HTTP/1.1":
        fields["Connection"] = "close"
    fields |= headers or {}
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


# ---- kept-alive connections and load ----------------------------------------------------------------


class Cut(Exception):
    """The connection ended (reset, EOF, timeout) before a complete answer arrived."""


class Refused(Exception):
    """The TCP connection could not be opened."""


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
    answer: Response | None = None
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
    ) -> Response:
        """``method path`` (a JSON ``body``, sent as ``upload`` says) answered within ``within`` s;
        Cut when no complete answer came, Refused when no connection could be opened."""
        if self._writer is None or self._writer.is_closing():
            await self._open()
        assert self._reader is not None
        assert self._writer is not None
        reader, writer = self._reader, self._writer
        data = request(method, path, body or b"", {"Host": f"{self.host}:{self.port}", **(headers or {})}, close=False)
        pieces = [data]
        if upload is not None:  # the head and the body's first bytes, then a chunk at a time
            first = len(data) - len(body or b"") + upload.first
            pieces = [data[:first], *(data[i : i + upload.chunk] for i in range(first, len(data), upload.chunk))]
        started = time.time()
        sent = [0.0]

        async def send() -> None:
            try:
                for i, piece in enumerate(pieces):
                    if i and upload is not None:
                        await asyncio.sleep(upload.pause)
                    writer.write(piece)
                    await writer.drain()
            except OSError:
                return  # the server may answer and close before the body is complete: read on
            sent[0] = time.time()

        sender = asyncio.create_task(send())
        try:
            answer = await asyncio.wait_for(self._read_answer(reader, method == "HEAD"), within or self.timeout)
        except TimeoutError as error:
            await self.close()
            raise Cut(f"no complete answer within {within or self.timeout:g} s") from error
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            await self.close()
            raise Cut(f"{type(error).__name__}: {error}") from error
        finally:
            sender.cancel()
            await asyncio.wait({sender})  # unlike `await sender`, lets a cancellation of this task through
        answer.started, answer.sent = started, sent[0] or answer.done
        if (answer.header("connection") or "").lower() == "close" or not sender.done() or sent[0] == 0.0:
            await self.close()
        return answer

    @staticmethod
    async def _read_answer(reader: asyncio.StreamReader, head: bool) -> Response:
        data = b""
        while True:
            chunk = await reader.read(65536)
            data += chunk
            responses, _ = parse_responses(data, int(head), closed=not chunk)
            if responses:
                responses[0].done = time.time()
                return responses[0]
            if not chunk:
                raise asyncio.IncompleteReadError(data, None)


async def fetch(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    within: float = 10.0,
    headers: dict[str, str] | None = None,
) -> Response:
    """One request on a connection of its own, answered `within` seconds."""
    connection = Connection(host, port, within)
    try:
        return await connection.request(method, path, body, headers)
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
