"""The heartbeat actor: a beat every interval with the loop's figures, and a watchdog for stalls."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pykka

from actors.emitter import Publisher
from actors.messages import GetMetrics, LoopStatus, SendAlert
from actors.replay_messages import Cycles, FollowData
from actors.supervision.address import Address
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from actors.supervision.messages import RestartChild
from runtime.alerts import Alert, Severity
from runtime.heartbeat import HeartbeatMetrics
from runtime.metrics import MetricNames, MetricsSink, NullMetrics
from runtime.payloads import Heartbeat, StallDetected

__all__ = ["HeartbeatActor", "HeartbeatStats", "GetHeartbeatStats", "MetricsProvider"]

MetricsProvider = Address | Callable[[], Any]


@attrs.frozen
class GetHeartbeatStats:
    """Ask the heartbeat for its `HeartbeatStats`."""


@attrs.frozen
class HeartbeatStats:
    """What the heartbeat has done: beats emitted, stalls detected, beats its timer skipped."""

    beats: int
    stalls: int
    missed: int
    last_metrics: HeartbeatMetrics | None


class HeartbeatActor(SupervisedActor):
    """Every ``interval`` seconds asks for the loop's figures (waiting at most ``timeout``, shorter
    than the interval), emits HEARTBEAT and counts heartbeat_total.

    It is also the loop's watchdog: when the loop does not answer in time, or answers but has
    completed no cycle for ``stall_after`` seconds (a loop that only answers is still stalled), it
    emits STALL_DETECTED and alerts. A loop that does not answer while inside a busy section (a
    slow store call, `ChildContext.busy`) is slow, not stalled: that is logged, no more. When the
    provider is the loop's address, it also tells its own
    supervisor `RestartChild` for that child (at most once per ``stall_after``), naming the
    incarnation it watched, so the request cannot stop a successor that is already healthy:
    gracefully if the loop still answers, abandoning it at once if it does not. An abandoned
    heartbeat restarts nothing. The provider is the loop's address, or a plain callable (sync or
    a coroutine function; nothing to restart then); whatever it returns that can be awaited is
    awaited.
    """

    def __init__(
        self,
        context: ChildContext,
        *,
        provider: MetricsProvider,
        interval: float,
        timeout: float,
        stall_after: float,
        loop_id: str = "main",
        metrics: MetricsSink | None = None,
    ) -> None:
        super().__init__(context)
        if not 0 < timeout < interval:
            raise ValueError(f"timeout must be > 0 and shorter than interval ({interval!r}), got {timeout!r}")
        if not stall_after > 0:
            raise ValueError(f"stall_after must be > 0, got {stall_after!r}")
        self._provider = provider
        self._interval = interval
        self._timeout = timeout
        self._stall_after = stall_after
        self._metrics = metrics or NullMetrics()
        self._publish = Publisher(context.sibling("emitter"), loop_id, context.clock)
        self._loop_id = loop_id
        self._alerts = context.sibling("alerts")
        self._beats = 0
        self._stalls = 0
        self._last: HeartbeatMetrics | None = None
        self._watch_from = 0.0
        self._last_restart_request: float | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._due: float | None = None  # the next beat's data time, once beats follow the loop's cycles
        self._skipped = 0  # deadlines passed with no cycle at them, while following the data
        self._last_figures: tuple[Any, ...] | None = None

    def prepare(self) -> None:
        """Start the beat timer."""
        self._watch_from = self.context.clock.monotonic()
        self.timers.start_fixed_rate("beat", self._interval)

    def cleanup(self) -> None:
        """Close the event loop used for coroutine providers."""
        if self._event_loop is not None:
            self._event_loop.close()

    def handle(self, message: Any) -> Any:
        """Answers `GetHeartbeatStats`."""
        if isinstance(message, GetHeartbeatStats):
            if self._last_figures is not None:  # the figures of the last beat made from cycles
                self._last, self._last_figures = HeartbeatMetrics(*self._last_figures), None
            return HeartbeatStats(self._beats, self._stalls, self.timers.missed("beat") + self._skipped, self._last)
        if isinstance(message, FollowData):
            self._follow_data(message.since)
            return None
        if isinstance(message, Cycles):
            self._cycles(message)
            return None
        return super().handle(message)

    def _follow_data(self, since: float) -> None:
        # The timer's schedule, kept without the timer: the next deadline after ``since``.
        if self._due is None:
            self.timers.cancel("beat")
            self._due = self._watch_from + (math.floor((since - self._watch_from) / self._interval) + 1) * self._interval

    def _cycles(self, cycles: Cycles) -> None:
        # A beat falls due where the timer would have ticked: at the first cycle at or past its
        # deadline, skipping (and counting) deadlines a gap in the data jumped over, as the
        # timer does. It carries the figures of that cycle, stamped with its data time; the loop
        # that sent them completed that cycle, so there is no stall to judge.
        due = self._due
        if due is None:
            return
        interval, number = self._interval, self._beats
        beats = []
        for at, moment, figures in cycles.entries:  # (kept in locals, and stored once at the end)
            if moment < due:
                continue
            following = due + interval
            if following <= moment:
                skipped = math.floor((moment - due) / interval)
                self._skipped += skipped
                following = due + (skipped + 1) * interval
            due = following
            number += 1
            beats.append((at, (*figures, number)))  # the fields in order, the beat's number last
        self._due, self._beats = due, number
        if beats:
            self._last_figures = beats[-1][1][:-1]
            events = Heartbeat.events_of(self._loop_id, beats)
            self._metrics.incr(MetricNames.HEARTBEAT_TOTAL, len(events))
            self._publish.send_all(events)  # the batch's beats in one message, in order

    def on_tick(self, key: str) -> None:
        """The beat timer fired: beat."""
        if key == "beat":
            self._beat()

    def _beat(self) -> None:
        # Judge the answer against the beat's own moment: a fast virtual clock may move on
        # while the loop answers.
        now = self.context.clock.monotonic()
        watched = self._provider.incarnation if isinstance(self._provider, Address) else None
        try:
            answer = self._fetch()
        except Exception as exc:
            if isinstance(exc, (TimeoutError, pykka.Timeout)):
                busy = self._provider.busy_sections() if isinstance(self._provider, Address) else []
                if busy:
                    # Inside a long call (its store waiting on a lock): slow, not stalled. A call
                    # past its own bound is the supervisor's to report ("Call overdue").
                    self.log.warning("loop did not answer within {}s: inside {} for {:.1f}s, not a stall",
                                     self._timeout, busy[0].what, busy[0].elapsed())
                    return
                self._stall(f"loop did not answer within {self._timeout}s", now, watched, answering=False)
            else:
                self._stall(f"metrics provider failed: {exc!r}", now, watched, answering=True)
            return
        metrics, last_cycle_at = answer
        self._beats += 1
        self._last, self._last_figures = metrics, None
        self._metrics.incr(MetricNames.HEARTBEAT_TOTAL)
        self._publish(Heartbeat.of(metrics, self._beats))
        if isinstance(self._provider, Address):
            reference = self._watch_from if last_cycle_at is None else max(last_cycle_at, self._watch_from)
            idle = now - reference
            if idle > self._stall_after:
                self._stall(f"no completed cycle for {idle:.1f}s (limit {self._stall_after}s)", now, watched, answering=True)

    def _fetch(self) -> tuple[HeartbeatMetrics, float | None]:
        if isinstance(self._provider, Address):
            status = self._provider.ask(GetMetrics(), timeout=self._timeout)
        else:
            status = self._provider()
            if inspect.isawaitable(status):
                status = self._await(status)
        return _as_metrics(status)

    def _await(self, awaitable: Any) -> Any:
        # The old system called an async provider without awaiting it, and its heartbeat died
        # silently; anything awaitable is awaited here, within the timeout.
        if self._event_loop is None:
            self._event_loop = asyncio.new_event_loop()
        return self._event_loop.run_until_complete(asyncio.wait_for(_wrap(awaitable), self._timeout))

    def _stall(self, reason: str, now: float, watched: int | None, answering: bool) -> None:
        self._stalls += 1
        self.log.error("loop stalled: {}", reason)
        self._publish(StallDetected(reason, self._stalls))
        if self._alerts is not None:
            try:
                self._alerts.tell(SendAlert(Alert("Trading loop stalled", reason, Severity.CRITICAL, key="stall")))
            except Exception as exc:
                self.log.error("stall alert not queued: {!r}", exc)
        loop = self._provider
        if not isinstance(loop, Address) or self.context.supervisor is None:
            return  # nothing this heartbeat's supervisor could restart
        if self._last_restart_request is not None and now - self._last_restart_request < self._stall_after:
            return
        self._last_restart_request = now
        self._watch_from = now  # the new loop gets a full stall period to complete a cycle
        # A beat that started while the loop was restarting watched whichever incarnation answered
        # (or failed to): the one the address reaches now.
        incarnation = watched if watched is not None else loop.incarnation
        # A loop that does not answer cannot stop gracefully.
        if not self.context.tell_supervisor(RestartChild(loop.name, reason, answering, incarnation)):
            self.log.warning("restart of {} incarnation {} not requested: abandoned, or no supervisor", loop.name, incarnation)


async def _wrap(awaitable: Any) -> Any:
    return await awaitable


def _as_metrics(status: Any) -> tuple[HeartbeatMetrics, float | None]:
    if isinstance(status, LoopStatus):
        return status.metrics, status.last_cycle_at
    if isinstance(status, HeartbeatMetrics):
        return status, None
    if isinstance(status, Mapping):
        return HeartbeatMetrics(**status), None
    raise TypeError(f"metrics provider returned {status!r}; expected HeartbeatMetrics, LoopStatus or a mapping")
