"""Talking to a running process's control API over HTTP (httpx), for the command line."""

from __future__ import annotations

from typing import Any

import attrs
import httpx

from runtime.errors import TradewardenError

__all__ = ["Answer", "ControlClient", "ControlUnreachable"]


class ControlUnreachable(TradewardenError, RuntimeError):
    """No answer from the control API; the message names the address and why."""


@attrs.frozen
class Answer:
    """One answer of the control API: the HTTP status and the JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300


@attrs.frozen(repr=False)
class ControlClient:
    """The control API at ``url`` with ``token`` (never shown in a repr)."""

    url: str
    token: str | None = None
    timeout: float = 10.0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        """Send one request and return its answer; `ControlUnreachable` when nothing answers or
        the answer is not JSON. A body goes as JSON (``Content-Type: application/json``), and a
        POST always has one (``{}`` when none is given): the API refuses any other with 415."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        if body is None and method.upper() == "POST":
            body = {}
        try:
            response = httpx.request(method, f"{self.url.rstrip('/')}{path}", json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ControlUnreachable(f"control API at {self.url} did not answer: {exc}") from None
        try:
            return Answer(response.status_code, response.json())
        except ValueError:
            raise ControlUnreachable(f"control API at {self.url} answered {response.status_code} without JSON") from None

    def __repr__(self) -> str:
        return f"ControlClient(url={self.url!r}, token={'***' if self.token else None})"
