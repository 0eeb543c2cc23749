"""Serving the control API with uvicorn on a thread of its own, bound before anything starts."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from typing import Any

import h11
import uvicorn
from loguru import logger
from uvicorn.protocols.http.h11_impl import H11Protocol

from runtime.errors import TradewardenError

__all__ = ["ControlServer", "ServerError", "bind", "REQUEST_TIMEOUT", "KEEP_ALIVE_TIMEOUT", "MAX_CONNECTIONS", "MAX_HEADER_BYTES"]

_log = logger.bind(component="control")

REQUEST_TIMEOUT = 10.0
"""Seconds a request may take to arrive whole (headers and body) from when the server waits for it."""
KEEP_ALIVE_TIMEOUT = 5.0
"""Seconds an idle keep-alive connection stays open."""
MAX_CONNECTIONS = 512
"""Connections (and tasks) past which a new request gets 503 at once."""
MAX_HEADER_BYTES = 16 * 1024
"""The most an unfinished request line and headers may hold; more gets 400 and the connection closed."""


def _request_timeout_protocol(timeout: float) -> type[asyncio.Protocol]:
    # uvicorn bounds an idle keep-alive connection, but not one that trickles its request in
    # (slowloris) or never finishes its body: this closes any connection whose request has not
    # arrived whole within ``timeout`` seconds of the server starting to wait for it.

    class RequestTimeoutH11(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_request()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.DONE:
                self._cancel_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.conn.their_state is not h11.DONE:  # waiting for the next request (or its rest)
                self._await_request()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_deadline()
            super().connection_lost(exc)

        def _await_request(self) -> None:
            self._cancel_deadline()
            self._deadline = self.loop.call_later(timeout, self._too_slow)

        def _cancel_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
                _log.warning("control: closed a connection from {} whose request did not arrive within {:g}s",
                             f"{self.client[0]}:{self.client[1]}" if self.client else "?", timeout)
                self.transport.abort()

    return RequestTimeoutH11


class ServerError(TradewardenError, RuntimeError):
    """The control server cannot start; the message names the address and why."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MIN_EXPOSED_TOKEN = 16
"""The fewest characters of a control token that may guard an API on a non-loopback address
(`secrets.token_hex(16)`, as `tradewarden demo` makes, has 32)."""


def bind(host: str, port: int, *, token: str | None) -> socket.socket:
    """A listening socket on ``host:port``. Refuses (`ServerError`) a non-loopback host without a
    token or with one shorter than `MIN_EXPOSED_TOKEN` (guessable by anyone who can reach it),
    and names the address when it cannot be bound (in use, not this machine's)."""
    if not _loopback(host) and not token:
        raise ServerError(
            f"control_host {host!r} is not a loopback address: set CONTROL_TOKEN (control_token) "
            f"before exposing the control API"
        )
    if not _loopback(host) and token is not None and len(token) < MIN_EXPOSED_TOKEN:
        raise ServerError(
            f"control_token must be at least {MIN_EXPOSED_TOKEN} characters to expose the control API on "
            f"{host!r}, got one of {len(token)}"
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise ServerError(f"control API cannot listen on {host}:{port}: {exc}") from None
    sock.setblocking(False)
    return sock


class ControlServer:
    """uvicorn serving ``app`` on an already bound socket, on a daemon thread: no actor ever waits
    on it, and it stops when asked (open streams get ``grace`` seconds).

    Hostile or slow clients are bounded: a request must arrive whole within ``request_timeout``
    seconds (a slowloris trickling its headers, or a body that never ends, is cut off), an idle
    keep-alive connection is closed after `KEEP_ALIVE_TIMEOUT`, request headers over
    `MAX_HEADER_BYTES` get 400, and past `MAX_CONNECTIONS` a new request gets 503 at once.
    """

    def __init__(self, app: Any, sock: socket.socket, *, grace: int = 2, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self._sock = sock
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=grace,
            http=_request_timeout_protocol(request_timeout), timeout_keep_alive=int(KEEP_ALIVE_TIMEOUT),
            limit_concurrency=MAX_CONNECTIONS, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="tradewarden-control", daemon=True)
        self._failure: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on."""
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by start, or logged once the server was up
            self._failure = exc
            _log.error("control server ended: {!r}", exc)

    def start(self, timeout: float = 10.0) -> ControlServer:
        """Start serving; returns self once requests are accepted. `ServerError` if it does not
        come up within ``timeout`` seconds."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn has no startup callback: watch its flag, and the thread in case it died.
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise ServerError(f"control server on {self.address} did not start within {timeout:g}s")
            self._thread.join(0.01)
        if not self._server.started:
            raise ServerError(f"control server on {self.address} failed to start: {self._failure!r}")
        host, port = self.address
        _log.info("control API listening on http://{}:{}", host, port)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, close the connections and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
