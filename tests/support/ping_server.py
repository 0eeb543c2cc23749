"""A real local HTTP server standing in for healthchecks.io: records every ping it is sent.

Each request is recorded (method, path, body, arrival on the monotonic clock) before it is
answered, so whoever sees a ping's answer can count it. `answer_with` sets the status of the
following answers (200 "OK" by default, as healthchecks.io answers).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["PingServer", "ReceivedPing"]

CHECK = "/ping/0c8f3c4e-9d2a-4b7e-a1f0-5e6d7c8b9a01"


@dataclass(frozen=True)
class ReceivedPing:
    """One ping as it arrived."""

    method: str
    path: str
    body: str
    at: float


class PingServer:
    """Listens on 127.0.0.1 on a free port; `url` is a check's ping URL on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pings: list[ReceivedPing] = []
        self._status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def do_POST(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="ping-server", daemon=True)

    @property
    def url(self) -> str:
        """The check's ping URL."""
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}{CHECK}"

    def start(self) -> PingServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> PingServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def answer_with(self, status: int) -> None:
        with self._cond:
            self._status = status

    @property
    def pings(self) -> list[ReceivedPing]:
        with self._cond:
            return list(self._pings)

    def wait_for(self, count: int, path: str = CHECK, timeout: float = 10.0) -> list[ReceivedPing]:
        """The pings to ``path`` once there are at least ``count``; AssertionError on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: sum(p.path == path for p in self._pings) >= count, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {count} pings to {path}; got {self._pings}")
            return [p for p in self._pings if p.path == path]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        with self._cond:
            self._pings.append(ReceivedPing(handler.command, handler.path, body, time.monotonic()))
            status = self._status
            self._cond.notify_all()
        handler.send_response(status)
        handler.send_header("content-length", "2")
        handler.end_headers()
        handler.wfile.write(b"OK")
