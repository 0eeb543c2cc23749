"""The supervision layer's messages: probes, timer ticks, drills, exits and restart requests."""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = ["ExitKind", "Ping", "Pong", "Tick", "Crash", "Hang", "ChildExited", "RestartChild", "GetChildren"]


class ExitKind(enum.StrEnum):
    """How an incarnation ended. A `StrEnum`, so that event metadata, logs and comparisons with
    the plain strings ("normal", "crashed", ...) keep seeing the same values."""

    NORMAL = "normal"
    """It stopped because it, or its supervisor, asked it to."""
    CRASHED = "crashed"
    """An exception in a told message stopped it."""
    START_FAILED = "start_failed"
    """Its start raised, or it did not answer within the start timeout."""
    GAVE_UP = "gave_up"
    """A supervisor whose restarts exceeded its intensity."""
    DEAD = "dead"
    """Found dead by the liveness probe, without having reported an end."""
    HUNG = "hung"
    """It did not answer a liveness probe in time and was abandoned."""
    RESTART_REQUESTED = "restart_requested"
    """Someone (the heartbeat, an operator) asked for it to be restarted."""


@attrs.frozen
class Ping:
    """Liveness probe: every supervised actor answers `Pong` from its own thread.

    A supervisor's own probe (``from_supervisor``) is about one incarnation, so it is never
    carried over to the next one: left unanswered by a dead incarnation, it fails at once.
    """

    from_supervisor: bool = False


@attrs.frozen
class Pong:
    """The answer to `Ping`: the actor's name and incarnation."""

    name: str
    incarnation: int


@attrs.frozen
class Tick:
    """A timer firing. ``owner`` and ``generation`` let the actor drop ticks of cancelled timers
    and of earlier incarnations."""

    key: str
    generation: int
    owner: int


@attrs.frozen
class Crash:
    """Fault injection for drills and tests: the receiving actor raises ``RuntimeError(reason)``.

    Sent with ``tell`` it kills the actor (pykka stops it and calls ``on_failure``); sent with
    ``ask`` the error returns to the caller and the actor lives on, as pykka's rules say.
    """

    reason: str = "injected crash"


@attrs.frozen
class Hang:
    """Fault injection: the receiving actor blocks until ``release`` is set (or ``seconds`` pass),
    so it stops answering, as a stuck broker call would make it."""

    release: Any  # threading.Event
    seconds: float = 60.0


@attrs.frozen
class ChildExited:
    """A child told its supervisor it has ended, and how."""

    name: str
    incarnation: int
    kind: ExitKind = attrs.field(converter=ExitKind)
    cause: str = ""


@attrs.frozen
class RestartChild:
    """Ask a supervisor to restart one child now (the heartbeat's answer to a stalled loop).

    ``graceful`` asks it to stop first (waiting up to its shutdown timeout); a child known not to
    answer is abandoned at once instead. ``incarnation`` names the incarnation the request is
    about: when the child has moved on since, the request is stale and ignored (logged at
    warning), so it can never stop a healthy successor. None restarts whatever runs now."""

    name: str
    cause: str
    graceful: bool = True
    incarnation: int | None = None


@attrs.frozen
class GetChildren:
    """Ask a supervisor for its children: name -> (incarnation, alive)."""
