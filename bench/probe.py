"""A slow side client that times individual answers while wrk floods the server.

wrk reports one latency distribution for all answers; this probe tells how fast the 503s of
load shedding are, apart from the 200s. One keep-alive connection, a few requests a second.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field

from bench.servers import HOST

BODY = b'{"text": "The shuttle reached orbit after the launch."}'


@dataclass
class Probe:
    port: int
    interval: float = 0.05
    seconds: dict[int, list[float]] = field(default_factory=dict)  # status -> latencies (s); 0 = no answer
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
        try:
            while not self._stop.wait(self.interval):
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/prediction", BODY, {"Content-Type": "application/json"})
                    answer = conn.getresponse()
                    answer.read()
                    status = answer.status
                except OSError:
                    conn.close()
                    status = 0
                self.seconds.setdefault(status, []).append(time.perf_counter() - t0)
        finally:
            conn.close()
