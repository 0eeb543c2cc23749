"""Serving the control API with uvicorn on a thread of its own, bound before anything starts."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any

import uvicorn
from loguru import logger

from runtime.errors import TradewardenError

__all__ = ["ControlServer", "ServerError", "bind"]

_log = logger.bind(component="control")


class ServerError(TradewardenError, RuntimeError):
    """The control server cannot start; the message names the address and why."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, *, has_token: bool) -> socket.socket:
    """A listening socket on ``host:port``. Refuses (`ServerError`) a non-loopback host without a
    token, and names the address when it cannot be bound (in use, not this machine's)."""
    if not _loopback(host) and not has_token:
        raise ServerError(
            f"control_host {host!r} is not a loopback address: set CONTROL_TOKEN (control_token) "
            f"before exposing the control API"
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
    on it, and it stops when asked (open streams get ``grace`` seconds)."""

    def __init__(self, app: Any, sock: socket.socket, *, grace: int = 2) -> None:
        self._sock = sock
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=grace
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
