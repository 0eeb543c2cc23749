"""The alert actor: delivers alerts on its own thread, so the guard never waits on the network."""

from __future__ import annotations

from typing import Any

from actors.base import SupervisedActor
from actors.context import ChildContext
from actors.messages import SendAlert
from runtime.alerts import AlertSink, LogAlerts

__all__ = ["AlertActor"]


class AlertActor(SupervisedActor):
    """Receives `SendAlert` and hands it to the alert sink (Telegram, logs, ...).

    The sink may block or fail: only this actor waits. A failure is logged and counted in
    ``failures``; the sink itself owns retries and rate limits.
    """

    def __init__(self, context: ChildContext, *, sink: AlertSink | None = None) -> None:
        super().__init__(context)
        self._sink = context.guarded(sink or LogAlerts())
        self.delivered = 0
        self.failures = 0

    def handle(self, message: Any) -> Any:
        """Deliver a `SendAlert`."""
        if not isinstance(message, SendAlert):
            return super().handle(message)
        try:
            self._sink.send(message.alert)
            self.delivered += 1
        except Exception as exc:
            self.failures += 1
            self.log.error("alert {!r} not delivered: {}", message.alert.title, exc)
        return None
