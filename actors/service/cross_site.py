"""Keeping web pages on other sites away from the control API: its Origin and Host checks.

A browser lets any page it shows send a "simple" request (a form's POST, a ``text/plain``
fetch) to any address, the trader's own 127.0.0.1 included, without asking the server first;
and a page whose own name is made to resolve to 127.0.0.1 (DNS rebinding) is, to the browser,
on the same site as the API. Without a token, either would lift a halt. The browser always
says where a request comes from (``Origin``) and which name it asked for (``Host``): those are
what is checked here. A JSON body is required separately, by `actors.service.control.read_body`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from loguru import logger

from runtime.metrics import MetricNames, MetricsSink

__all__ = ["LOOPBACK_NAMES", "RefuseCrossSite"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
"""The names a control API bound to a loopback address answers to (with any port), besides the
address it is bound to."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_log = logger.bind(component="control")


def _authority(text: str) -> tuple[str, int | None] | None:
    # The host name (lower case, an IPv6 address without its brackets) and the port of a Host
    # header's value, or None when it is anything but a host and an optional port.
    try:
        parts = urlsplit("//" + text)
        name, port = parts.hostname, parts.port
    except ValueError:  # a port that is no number, or past 65535; an unclosed bracket
        return None
    if not name or parts.netloc != text or "@" in text or parts.path or parts.query or parts.fragment:
        return None
    return name, port


def _bracketed(address: str) -> str:
    # An address as a Host header names it: an IPv6 one in brackets.
    return f"[{address}]" if ":" in address else address


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def host_refusal(host: str | None, bound: str | None) -> str | None:
    """Why a request with the ``Host`` header ``host`` is refused by a server bound to the
    address ``bound``, or None when it is not. Only a server on a loopback address checks it:
    there, a name other than `LOOPBACK_NAMES` and ``bound`` (a page's own site, resolved to
    127.0.0.1) is refused; a request without the header (no browser sends one) passes."""
    if host is None or bound is None or not _loopback(bound):
        return None
    names = dict.fromkeys((*LOOPBACK_NAMES, _bracketed(bound)))
    found = _authority(host)
    if found is not None and _bracketed(found[0]) in names:
        return None
    return (f"the Host header {host!r} is not this server's name: on the loopback address {bound} it answers only "
            f"to {', '.join(names)} (with a port); a web page reaching it by another name (DNS rebinding) is refused")


def origin_refusal(origin: str | None, host: str | None) -> str | None:
    """Why a request with the ``Origin`` header ``origin`` is refused by the server its ``Host``
    header names, or None when it is not: a browser sends its page's origin, and only a page
    this server served itself (same host name and port, over http or https) may call it. A
    request without the header (a command line, a script) passes."""
    if origin is None:
        return None
    own = _authority(host) if host is not None else None
    scheme, _, authority = origin.partition("://")
    default = _DEFAULT_PORTS.get(scheme)
    theirs = _authority(authority) if default is not None else None
    if own is not None and theirs is not None and (theirs[0], theirs[1] or default) == (own[0], own[1] or default):
        return None
    served = f"http://{host}" if host is not None else "this server (the request names no Host)"
    return f"the Origin header {origin!r} is not this server's own origin ({served}): a page on another site may not call it"


class RefuseCrossSite:
    """ASGI middleware: an HTTP request whose ``Origin`` is not the server's own origin, or
    whose ``Host`` is not its name while it is bound to a loopback address (see
    `origin_refusal` and `host_refusal`), gets 403 with a JSON error naming the header's value,
    reaches nothing, and is counted in ``control_auth_failures_total``. It is checked before
    the token, so every route is covered, and a request without either header passes."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], metrics: MetricsSink) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a request from this server's own pages or from outside a browser on; answer any
        other with 403."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        host, server = headers.get("host"), scope.get("server")
        why = host_refusal(host, server[0] if server else None) or origin_refusal(headers.get("origin"), host)
        if why is None:
            await self.app(scope, receive, send)
            return
        self.metrics.incr(MetricNames.CONTROL_AUTH_FAILURES_TOTAL)
        _log.warning("control: {} {} refused: {}", scope.get("method"), scope.get("path"), why)
        await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps({"error": why}).encode()})
