"""The alert actor: delivers alerts on its own thread, so the guard never waits on the network."""

from __future__ import annotations

from typing import Any

from actors.messages import SendAlert
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.alerts import AlertSink, LogAlerts

__all__ = ["AlertActor"]


class AlertActor(SupervisedActor):
    """Receives `SendAlert` and hands it to the alert sink (Telegram, logs, ...).

    The sink may block or fail: only this actor waits. A failure is logged and counted in
    ``failures``; the sink itself owns retries, rate limits and merging. A sink that merges
    repeats (it has ``next_flush_in()`` and ``flush()``, as `TelegramAlerts` does) is flushed
    when its merge window closes, on wall-clock time even in a replay, since the people reading
    the alerts live in wall-clock time.
    """

    wall_clock_timers = True

    def __init__(self, context: ChildContext, *, sink: AlertSink | None = None) -> None:
        super().__init__(context)
        self._sink = context.guarded(sink or LogAlerts())
        self.delivered = 0
        self.failures = 0

    def on_tick(self, key: str) -> None:
        """A merge window closed: send what was merged."""
        if key == "flush":
            try:
                flush = getattr(self._sink, "flush", None)  # only merging sinks have one
                if flush is not None:
                    flush()
            except Exception as exc:
                self.failures += 1
                self.log.error("merged alerts not delivered: {}", exc)
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        next_flush_in = getattr(self._sink, "next_flush_in", None)
        delay = next_flush_in() if next_flush_in is not None else None
        if delay is not None:
            self.timers.start_single("flush", max(0.0, delay))

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
        self._schedule_flush()
        return None
