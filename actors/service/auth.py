"""The control API's bearer token: compared in constant time, never shown, and its ASGI gate."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from runtime.metrics import MetricNames, MetricsSink

__all__ = ["BearerToken", "RequireToken"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BearerToken:
    """A secret that an ``Authorization: Bearer <token>`` header must carry.

    Promises: `matches` compares in constant time (`hmac.compare_digest`), and neither `repr`
    nor `str` shows the secret.
    """

    def __init__(self, secret: str) -> None:
        if not isinstance(secret, str) or not secret.strip():
            raise ValueError("control_token must be a non-empty string")
        self._secret = secret.encode()

    def matches(self, header: str | None) -> bool:
        """True when ``header`` is ``Bearer <the token>``."""
        scheme, _, given = (header or "").partition(" ")
        # Compared even when the scheme is wrong, so timing says nothing about which part failed.
        same = hmac.compare_digest(given.strip().encode(), self._secret)
        return same and scheme.lower() == "bearer"

    def __repr__(self) -> str:
        return "BearerToken('***')"

    __str__ = __repr__


class RequireToken:
    """ASGI middleware: every HTTP request but those to ``exempt`` paths needs the token, or gets
    401 with a JSON error, reaches nothing, and is counted in ``control_auth_failures_total``.
    With ``token`` None every request passes (a loopback-only server started without a token)."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: BearerToken | None,
        metrics: MetricsSink, exempt: frozenset[str] = frozenset({"/health"}),
    ) -> None:
        self.app = app
        self.token = token
        self.metrics = metrics
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass an authorised request on, answer any other with 401."""
        if scope["type"] != "http" or self.token is None or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        header = headers.get("authorization")
        if self.token.matches(header):
            await self.app(scope, receive, send)
            return
        self.metrics.incr(MetricNames.CONTROL_AUTH_FAILURES_TOTAL)
        if header is None:
            why = "no bearer token (send 'Authorization: Bearer <CONTROL_TOKEN>')"
        elif not header.lower().startswith("bearer "):
            scheme = header.split(" ", 1)[0]
            # A scheme is a word (Basic, Token); anything else may be a token sent bare: never echoed.
            named = f"scheme is {scheme!r}" if " " in header and scheme.isalpha() and len(scheme) <= 12 else "has no scheme"
            why = f"the Authorization header {named}, not Bearer (send 'Authorization: Bearer <CONTROL_TOKEN>')"
        else:
            why = "wrong bearer token"
        body = json.dumps({"error": why}).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
        })
        await send({"type": "http.response.body", "body": body})
