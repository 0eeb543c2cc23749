"""The dead man's switch over HTTP: success and failure pings to a healthchecks.io-style URL."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
from loguru import logger

from runtime.metrics import MetricNames, MetricsSink, NullMetrics

if TYPE_CHECKING:
    from runtime.settings import Settings

__all__ = ["HealthcheckPing", "fail_url"]

_log = logger.bind(component="healthcheck")
# healthchecks.io keeps the first 100 kB of a ping's body; a reason never needs that much.
_MAX_REASON = 10_000


def fail_url(url: str) -> str:
    """``url`` with ``/fail`` appended to its path (its query kept), as healthchecks.io signals a failure."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


class HealthcheckPing:
    """Pings a check: `success` is an HTTP GET of ``url``, `fail` a POST of ``url/fail`` with the
    reason as its body (healthchecks.io shows it in the check's log), each waiting at most
    ``timeout`` seconds.

    Promises: never raises. A ping that fails (network error, timeout, an answer other than 2xx)
    is logged with the scheme and host only, since the path is the check's credential, and
    counted in ``healthcheck_ping_failures_total``; each ping sent is counted in
    ``healthcheck_pings_total.success`` or ``.fail``. The URL is never in a repr.
    """

    def __init__(self, url: str, *, timeout: float = 5.0, metrics: MetricsSink | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// URL with a host, got {url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self._url = url
        self._fail_url = fail_url(url)
        self._where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._metrics = metrics or NullMetrics()
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers={"user-agent": "tradewarden"})

    @classmethod
    def from_settings(cls, settings: Settings, metrics: MetricsSink | None = None) -> HealthcheckPing | None:
        """The pinger ``settings.healthcheck_ping_url`` asks for, each request bounded by the
        heartbeat's own wait; None when the setting is off."""
        if settings.healthcheck_ping_url is None:
            return None
        return cls(settings.healthcheck_ping_url, timeout=settings.heartbeat_timeout, metrics=metrics)

    def success(self) -> bool:
        """Signal that the process is alive and healthy; True if the check took it."""
        return self._send("success", "GET", self._url, None)

    def fail(self, reason: str) -> bool:
        """Signal a failure now, with ``reason`` as the ping's body; True if the check took it."""
        return self._send("fail", "POST", self._fail_url, reason[:_MAX_REASON].encode("utf-8", "replace"))

    def _send(self, kind: str, method: str, url: str, body: bytes | None) -> bool:
        self._metrics.incr(f"{MetricNames.HEALTHCHECK_PINGS_TOTAL}.{kind}")
        try:
            answer = self._client.request(method, url, content=body)
            if not answer.is_success:
                raise httpx.HTTPStatusError(f"answered {answer.status_code}", request=answer.request, response=answer)
        except Exception as exc:  # whatever the network does, the caller carries on
            self._metrics.incr(MetricNames.HEALTHCHECK_PING_FAILURES_TOTAL)
            detail = str(exc) if isinstance(exc, httpx.HTTPStatusError) else f"{type(exc).__name__}: {exc}"
            _log.warning("healthcheck {} ping to {} failed: {}", kind, self._where, detail.replace(url, self._where))
            return False
        return True

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __repr__(self) -> str:
        return f"HealthcheckPing({self._where}/***)"
