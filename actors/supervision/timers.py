"""Keyed timers owned by one actor: fixed rate without catch-up bursts, no stale ticks.

A timer posts `Tick` messages to its actor. When time jumps past several deadlines at once (a
paused process, a manual clock moved far) only one tick is posted and the rest are counted as
missed; a tick still waiting in the mailbox when the next falls due also makes that next one be
skipped and counted. So a busy actor never gets a burst, and a backlog of ticks never builds up
(on a virtual clock driven faster than the actor keeps up, too). A replay that wants every beat
waits for the actor before moving time on, as `actors.replay.Replay` does. Each tick carries the timer's generation and its owner's identity: after a cancel, a
restart or a new incarnation, old ticks are recognised and dropped.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import pykka

from actors.supervision.messages import Tick
from runtime.clock import Clock, Scheduled

__all__ = ["Timers"]

_owners = itertools.count(1)


class _Timer:
    __slots__ = ("key", "generation", "interval", "deadline", "pending", "handle", "missed")

    def __init__(self, key: str, generation: int, interval: float | None, deadline: float) -> None:
        self.key = key
        self.generation = generation
        self.interval = interval
        self.deadline = deadline
        self.pending = False
        self.handle: Scheduled | None = None
        self.missed = 0


class Timers:
    """The timers of one actor incarnation; create it in the actor and call `cancel_all` when it ends."""

    def __init__(self, actor_ref: pykka.ActorRef[Any], clock: Clock) -> None:
        self._ref = actor_ref
        self._clock = clock
        self._owner = next(_owners)
        self._generations = itertools.count(1)
        self._timers: dict[str, _Timer] = {}
        self._lock = threading.Lock()

    def start_fixed_rate(self, key: str, interval: float, initial_delay: float | None = None) -> None:
        """Tick every ``interval`` seconds from now (first after ``initial_delay``, default one
        interval), replacing any timer with this key."""
        if not interval > 0 or not math.isfinite(interval):
            raise ValueError(f"interval must be a finite number of seconds > 0, got {interval!r}")
        self._start(key, interval, interval if initial_delay is None else initial_delay)

    def start_single(self, key: str, delay: float) -> None:
        """Tick once after ``delay`` seconds, replacing any timer with this key."""
        if not delay >= 0 or not math.isfinite(delay):
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        self._start(key, None, delay)

    def _start(self, key: str, interval: float | None, delay: float) -> None:
        with self._lock:
            self._cancel(key)
            timer = _Timer(key, next(self._generations), interval, self._clock.monotonic() + delay)
            self._timers[key] = timer
            timer.handle = self._clock.call_at(timer.deadline, lambda: self._fire(timer))

    def _fire(self, timer: _Timer) -> None:
        # Runs on the clock's thread: decide, post at most one tick, and schedule the next.
        with self._lock:
            if self._timers.get(timer.key) is not timer:
                return
            send = not timer.pending
            if send:
                timer.pending = True
            else:
                timer.missed += 1
            if timer.interval is None:
                timer.handle = None
            else:
                now = self._clock.monotonic()
                following = timer.deadline + timer.interval
                if following <= now:
                    # The clock jumped past several deadlines: skip them rather than burst.
                    skipped = math.floor((now - timer.deadline) / timer.interval)
                    timer.missed += skipped
                    following = timer.deadline + (skipped + 1) * timer.interval
                timer.deadline = following
                timer.handle = self._clock.call_at(following, lambda: self._fire(timer))
        if send:
            try:
                self._ref.tell(Tick(timer.key, timer.generation, self._owner))
            except pykka.ActorDeadError:
                self.cancel_all()

    def accept(self, tick: Tick) -> bool:
        """True when ``tick`` belongs to a live timer of this owner; marks it handled.

        A single-shot timer is finished once its tick is accepted."""
        with self._lock:
            timer = self._timers.get(tick.key)
            if tick.owner != self._owner or timer is None or timer.generation != tick.generation:
                return False
            timer.pending = False
            if timer.interval is None:
                del self._timers[tick.key]
            return True

    def cancel(self, key: str) -> None:
        """Stop the timer ``key``; a tick of it already in the mailbox will be dropped."""
        with self._lock:
            self._cancel(key)

    def _cancel(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None and timer.handle is not None:
            timer.handle.cancel()

    def cancel_all(self) -> None:
        """Stop every timer (called when the actor stops or crashes)."""
        with self._lock:
            for key in list(self._timers):
                self._cancel(key)

    def missed(self, key: str) -> int:
        """How many ticks of ``key`` were skipped because the actor was behind or time jumped."""
        with self._lock:
            timer = self._timers.get(key)
            return 0 if timer is None else timer.missed
