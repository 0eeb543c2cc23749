"""An Erlang/OTP-style supervisor on pykka: child specs, restart strategies and intensity,
backoff, liveness probes, ordered start, reverse-ordered stop, and escalation to a parent.

Vocabulary as in OTP: a child's restart type is ``permanent`` (always restarted), ``transient``
(restarted only after an abnormal end) or ``temporary`` (never restarted). The strategy says who
restarts with a failed child: ``one_for_one`` (only it), ``one_for_all`` (every child),
``rest_for_one`` (it and the children started after it). More than ``max_restarts`` within
``within_seconds`` and the supervisor gives up: it stops every child in reverse order, runs its
fail-safe, and ends abnormally, which its own supervisor (if any) sees as a failed child.

Busy is not hung: a child inside a `ChildContext.busy` section (a long broker call) is never
counted as hung by the liveness probe, nor its start as failed, however long it takes. A section
that runs past its own bound is the fault of whatever it waits on, not of the child: the
supervisor logs it at critical and calls ``on_overdue`` once per section, and leaves the child
running (abandoning it would cut a call whose outcome matters, such as an order in flight).
"""

from __future__ import annotations

import enum
import math
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import attrs
import pykka

from actors.supervision.address import DEFAULT_ASK_TIMEOUT, DEFAULT_STASH_LIMIT, Address, Slot
from actors.supervision.base import SupervisedActor, described
from actors.supervision.context import ChildContext
from actors.supervision.messages import ChildExited, ExitKind, GetChildren, Ping, RestartChild
from actors.supervision.pykka_internals import on_told_failure, start_failure
from runtime.backoff import Backoff
from runtime.clock import Clock
from runtime.metrics import MetricNames, MetricsSink, NullMetrics

__all__ = [
    "Restart", "Strategy", "Backoff", "ChildSpec", "Supervisor", "SupervisorHandle", "ChildInfo", "Restarted",
    "Overdue",
    "make_slots",
    "DEFAULT_MAX_RESTARTS", "DEFAULT_WITHIN_SECONDS", "DEFAULT_PROBE_INTERVAL", "DEFAULT_START_TIMEOUT",
    "DEFAULT_SHUTDOWN_TIMEOUT", "DEFAULT_LIVENESS_TIMEOUT", "DEFAULT_STOP_TIMEOUT",
]

# Each default is defined here once; the specs, the supervisor, its handle and the trading
# system refer to these names.
DEFAULT_MAX_RESTARTS = 5
"""Restarts allowed within `DEFAULT_WITHIN_SECONDS` before a supervisor gives up: a crash loop
faster than that is a fault a person must look at."""
DEFAULT_WITHIN_SECONDS = 60.0
"""The period (seconds) over which restarts are counted against the intensity."""
DEFAULT_PROBE_INTERVAL = 0.5
"""Seconds between two liveness probes of every child."""
DEFAULT_START_TIMEOUT = 10.0
"""Seconds a new incarnation has to answer its first probe before its start counts as failed."""
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
"""Seconds a child's stop may take before the child is abandoned."""
DEFAULT_LIVENESS_TIMEOUT = 2.0
"""Seconds a child has to answer a liveness probe before it counts as hung."""
DEFAULT_STOP_TIMEOUT = 30.0
"""Seconds `SupervisorHandle.stop` waits for the whole tree to stop."""


class Restart(enum.Enum):
    """When a child that ended is started again (OTP restart types)."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children restart when one fails (OTP strategies)."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


def _liveness(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value is None or value == "default":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"liveness_timeout must be seconds > 0, None or 'default', got {value!r}")


@attrs.frozen
class ChildSpec:
    """How to start and supervise one child.

    ``start`` receives the incarnation's `ChildContext` and returns the new actor's ref; an actor
    built on `SupervisedActor` reports every way it ends. A plain pykka actor's crash in a told
    message is reported with its exception as the cause (the supervisor hooks pykka's failure
    path; a `FailureTolerantActor`'s only when it does not survive it), an ``on_start`` that
    raises as ``failed to start: <exception>``, an ``on_stop`` that raises as a normal end
    ``failed to stop: <exception>``; any other end of it is found dead by the probe.

    ``liveness_timeout`` is how long a probe waits for an answer before the child counts as hung
    (None: never counted as hung). ``"default"`` is `DEFAULT_LIVENESS_TIMEOUT` for a
    `SupervisedActor`, and None for a plain pykka actor, which cannot say when it is busy: its
    wait in an ``ask`` would look like a hang. Give such a child a timeout only when it marks its
    long waits with ``with context.busy("what"):`` (the context its ``start`` receives). A dead
    child is found at every probe either way. ``shutdown_timeout`` is how long a stop may take
    before the child is abandoned.
    """

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    start: Callable[[ChildContext], pykka.ActorRef[Any]]
    restart: Restart = attrs.field(default=Restart.PERMANENT, converter=Restart)
    shutdown_timeout: float = attrs.field(default=DEFAULT_SHUTDOWN_TIMEOUT, validator=attrs.validators.gt(0))
    liveness_timeout: float | Literal["default"] | None = attrs.field(default="default", validator=_liveness)

    def liveness_for(self, supervised: bool) -> float | None:
        """The probe's timeout for an incarnation that is (``supervised``) a `SupervisedActor`
        or a plain pykka actor; None when it is never counted as hung."""
        if self.liveness_timeout == "default":
            return DEFAULT_LIVENESS_TIMEOUT if supervised else None
        return cast("float | None", self.liveness_timeout)


@attrs.frozen
class ChildInfo:
    """A child as its supervisor sees it."""

    name: str
    incarnation: int
    alive: bool
    restarts: int


class _Child:
    __slots__ = (
        "spec", "slot", "ref", "context", "incarnation", "restarts", "running", "pending_cause", "seen_progress",
        "started_at", "due", "liveness",
    )

    def __init__(self, spec: ChildSpec, slot: Slot) -> None:
        self.spec = spec
        self.slot = slot
        self.ref: pykka.ActorRef[Any] | None = None
        self.context: ChildContext | None = None
        self.incarnation = 0
        self.restarts = 0
        self.running = False
        self.pending_cause: str | None = None
        self.seen_progress = 0
        self.started_at: float | None = None
        self.due = 0.0  # when a pending restart may run (a backoff puts it in the future)
        self.liveness: float | None = None  # the probe's timeout for the running incarnation


@attrs.frozen
class Restarted:
    """What a supervisor's ``on_restart`` hook hears after it restarted a child: which child,
    why, the how-many-th restart in a row (``attempt``, 1 for the first after a good period)
    and the incarnation now running."""

    actor: str
    cause: str
    attempt: int
    incarnation: int


@attrs.frozen
class Overdue:
    """What a supervisor's ``on_overdue`` hook hears when a child has been inside one busy
    section (``what``) for ``seconds``, longer than the section's ``bound``: once per section,
    while the call still runs."""

    actor: str
    incarnation: int
    what: str
    seconds: float
    bound: float


class Supervisor(SupervisedActor):
    """Starts its children in order, restarts them by its strategy, stops them in reverse order.

    Defaults suit a trading system: at most `DEFAULT_MAX_RESTARTS` restarts within
    `DEFAULT_WITHIN_SECONDS` (past that the fail-safe halts trading), no backoff.
    After each restart (not a first start) it calls ``on_restart`` with a `Restarted`, on its own
    thread; a hook that raises is logged and changes nothing. ``on_overdue`` hears, the same way,
    of a child's busy section that has run past its bound (an `Overdue`).
    Start one with `Supervisor.launch`; to make it a child of another supervisor, call `launch`
    with the context that the parent passes to its `ChildSpec.start`.
    """

    # Its mail is about its own children's incarnations; a new supervisor must not act on it.
    salvage_mail = False

    def __init__(
        self,
        context: ChildContext,
        children: Sequence[ChildSpec],
        slots: Mapping[str, Slot],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        within_seconds: float = DEFAULT_WITHIN_SECONDS,
        backoff: Backoff | None = None,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        fail_safe: Callable[[str], None] | None = None,
        on_restart: Callable[[Restarted], None] | None = None,
        on_overdue: Callable[[Overdue], None] | None = None,
        metrics: MetricsSink | None = None,
        gave_up: threading.Event | None = None,
        seed: int | None = None,
        child_clock: Clock | None = None,
        drills: bool = False,
    ) -> None:
        super().__init__(context)
        self._drills = drills
        self._child_clock = child_clock or context.clock
        names = [spec.name for spec in children]
        if len(set(names)) != len(names):
            raise ValueError(f"children must have unique names, got {names!r}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts!r}")
        for name, value in (("within_seconds", within_seconds), ("probe_interval", probe_interval),
                            ("start_timeout", start_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self._children = [_Child(spec, slots[spec.name]) for spec in children]
        self._strategy = Strategy(strategy)
        self._max_restarts = max_restarts
        self._within = within_seconds
        self._backoff = backoff or Backoff()
        self._probe_interval = probe_interval
        self._start_timeout = start_timeout
        self._fail_safe = fail_safe
        self._on_restart = on_restart
        self._on_overdue = on_overdue
        self._metrics = metrics or NullMetrics()
        self._gave_up = gave_up or threading.Event()
        self._rng = random.Random(seed)
        self._restart_times: deque[float] = deque()
        self._stopped_children = False
        self._fail_safe_ran = False

    # --- starting ---------------------------------------------------------------------------

    @classmethod
    def launch(
        cls,
        children: Sequence[ChildSpec],
        *,
        name: str = "supervisor",
        context: ChildContext | None = None,
        slots: Mapping[str, Slot] | None = None,
        drills: bool = False,
        **options: Any,
    ) -> SupervisorHandle:
        """Start a supervisor over ``children`` and return a handle with their addresses.

        Pass the ``context`` a parent supervisor gave to make this one its child; pass ``slots``
        (from an earlier handle) to keep the same addresses across restarts of this supervisor.
        ``drills=True`` makes the children (and a standalone supervisor itself) obey `Crash` and
        `Hang`; off, as a live system must be, they are refused.
        """
        slots = dict(slots) if slots is not None else make_slots(children)
        gave_up = threading.Event()
        context = context or ChildContext.standalone(name, drills=drills)
        ref = cls.start(context, children, slots, gave_up=gave_up, drills=drills, **options)
        if context.supervisor is None:
            # Standalone: return once every child is up (a parent supervisor does its own wait).
            # Failed starts are retried within the restart intensity, so allow for all of them.
            # A supervisor waiting on a busy child's start is busy itself: wait on meanwhile.
            attempts = options.get("max_restarts", DEFAULT_MAX_RESTARTS) + len(children)
            try:
                _await(ref.ask(Ping(), block=False), options.get("start_timeout", DEFAULT_START_TIMEOUT) * attempts, context)
            except pykka.ActorDeadError:
                if not gave_up.is_set():
                    raise RuntimeError("the supervisor failed while starting; see the log") from None
            except pykka.Timeout:
                ref.stop(block=False)  # leave no orphaned tree behind the error
                raise
        return SupervisorHandle(ref, slots, gave_up)

    def prepare(self) -> None:
        """Start every child in order, each answering before the next starts."""
        for child in self._children:
            child.slot.suspend()  # a relaunch: stash, rather than refuse, until each is back
            child.pending_cause = ""  # "" marks a first start: no ACTOR_RESTARTED for it
        self._restart_pending()
        self.timers.start_fixed_rate("probe", self._probe_interval)

    def _start_child(self, child: _Child) -> bool:
        child.incarnation += 1
        context = ChildContext(
            child.spec.name,
            child.incarnation,
            supervisor=self.actor_ref,
            slots={c.spec.name: c.slot for c in self._children},
            clock=self._child_clock,
            drills=self._drills,
        )
        child.context = context
        child.pending_cause = None
        ref = None
        try:
            # Busy while a child starts, so that a parent (or `launch`) waits on a slow start.
            with self.context.busy(f"start of {child.spec.name}"):
                ref = child.spec.start(context)
                self._await_start(child, context, ref.ask(Ping(from_supervisor=True), block=False))
        except pykka.Timeout:
            child.pending_cause = f"no answer within {self._start_timeout}s of starting"
            self._abandon(child, ref)
            return False
        except Exception as exc:  # the factory or the actor's start raised
            ended = context.ended
            child.pending_cause = ended[1] if ended is not None else _start_failed(ref, exc)
            self._abandon(child, ref)
            return False
        if self.context.revoked.is_set():
            # This supervisor was itself abandoned while starting: its replacement owns the slots.
            self._abandon(child, ref)
            return False
        supervised = issubclass(ref.actor_class, SupervisedActor)
        if not supervised:
            # A plain pykka actor tells nobody how it ended: have its crash say why, at once.
            on_told_failure(ref, lambda exc, stopping: _report_crash(context, exc, stopping))
        child.liveness = child.spec.liveness_for(supervised)
        child.ref = ref
        child.running = True
        child.seen_progress = 0
        child.started_at = self.context.clock.monotonic()
        child.slot.install(ref, child.incarnation, context.busy_sections)
        self.log.debug("started {} incarnation {}", child.spec.name, child.incarnation)
        return True

    def _await_start(self, child: _Child, context: ChildContext, answered: pykka.Future[Any]) -> None:
        # A start inside a busy section (its first broker read, say) is slow, not failed: wait
        # on while it is busy or moving; only a start silent for a whole timeout has failed.
        _await(answered, self._start_timeout, context, lambda: self._report_overdue(child.spec.name, context))

    # --- messages ---------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        """Child reports, restart requests, backoff timers and introspection."""
        if isinstance(message, ChildExited):
            child = self._current(message.name, message.incarnation)
            if child is not None:
                self._child_down(child, message.kind, message.cause)
        elif isinstance(message, RestartChild):
            child = self._find(message.name)
            if child is None:
                self.log.error("restart of unknown child {!r} ignored; children: {}", message.name, self.names)
            elif message.incarnation is not None and message.incarnation != child.incarnation:
                self.log.warning(
                    "stale restart of {} ignored: it was for incarnation {}, the current one is {}",
                    message.name, message.incarnation, child.incarnation,
                )
            elif child.running:
                if message.graceful:
                    self._stop_child(child)
                else:
                    self._abandon(child)
                self._child_down(child, ExitKind.RESTART_REQUESTED, message.cause)
        elif isinstance(message, GetChildren):
            return {
                c.spec.name: ChildInfo(c.spec.name, c.incarnation, c.running and c.ref is not None and c.ref.is_alive(), c.restarts)
                for c in self._children
            }
        else:
            return super().handle(message)
        return None

    def on_tick(self, key: str) -> None:
        """Run the liveness probe, or a restart whose backoff has passed."""
        if key == "probe":
            self._probe()
        elif key == "restart":
            self._restart_pending()

    def _current(self, name: str, incarnation: int) -> _Child | None:
        child = self._find(name)
        if child is None or not child.running or child.incarnation != incarnation:
            return None  # a report from an incarnation already replaced or stopped on purpose
        return child

    def _find(self, name: str) -> _Child | None:
        return next((child for child in self._children if child.spec.name == name), None)

    @property
    def names(self) -> list[str]:
        """The children's names in start order."""
        return [child.spec.name for child in self._children]

    # --- liveness ---------------------------------------------------------------------------

    def _probe(self) -> None:
        asked = []
        for child in self._children:
            if not child.running or child.ref is None:
                continue
            if child.liveness is not None:
                context = child.context
                if context is not None and context.busy_sections():
                    # Inside a long call, so not hung: waiting for its answer would only stall
                    # this probe for the whole timeout, and with it the overdue report below.
                    child.seen_progress = context.progress
                    continue
                asked.append((child, child.incarnation, child.ref.ask(Ping(from_supervisor=True), block=False)))
            elif not child.ref.is_alive():
                self._found_dead(child)
        now = self.context.clock.monotonic()
        for child, incarnation, future in asked:
            if child.incarnation != incarnation or not child.running:
                continue
            timeout = child.liveness or 0.0
            try:
                future.get(timeout=max(0.0, now + timeout - self.context.clock.monotonic()))
            except pykka.Timeout:
                context = child.context
                if context is not None and (context.busy_sections() or context.progress != child.seen_progress):
                    child.seen_progress = context.progress  # inside a long call, or moving: not hung
                    continue
                self.log.warning("{} did not answer a liveness probe within {}s", child.spec.name, timeout)
                self._abandon(child)
                self._child_down(child, ExitKind.HUNG, f"no answer to a liveness probe within {timeout}s")
            except pykka.ActorDeadError:
                self._found_dead(child)
            except Exception as exc:  # a plain actor that refuses Ping is still alive
                self.log.debug("{} answered the probe with {!r}", child.spec.name, exc)
        for child in self._children:
            if child.running and child.context is not None:
                self._report_overdue(child.spec.name, child.context)

    def _found_dead(self, child: _Child) -> None:
        # Its own report may still be on the way: a crash it recorded is the truth.
        ended = child.context.ended if child.context is not None else None
        kind, cause = ended if ended is not None else (ExitKind.DEAD, "found dead by the liveness probe")
        self._child_down(child, kind, cause)

    def _report_overdue(self, name: str, context: ChildContext) -> None:
        for section in context.busy_sections():
            if section.overdue_reported or not section.overdue():
                continue
            section.overdue_reported = True
            overdue = Overdue(name, context.incarnation, section.what, section.elapsed(), cast("float", section.bound))
            self.log.critical(
                "{} incarnation {} has been inside {} for {:.1f}s, past its {:g}s bound; not abandoned",
                name, overdue.incarnation, overdue.what, overdue.seconds, overdue.bound,
            )
            if self._on_overdue is not None:
                try:
                    self._on_overdue(overdue)
                except Exception:  # a failing hook must not stop the supervisor supervising
                    self.log.exception("on_overdue hook failed for {}", overdue)

    # --- failure handling -------------------------------------------------------------------

    def _child_down(self, child: _Child, kind: ExitKind, cause: str) -> None:
        if self._mark_down(child, kind, cause) == 0.0:
            self._restart_pending()

    def _mark_down(self, child: _Child, kind: ExitKind, cause: str) -> float | None:
        # Applies the restart type, the intensity and the strategy to one child's end, and says
        # when to restart: now (0.0), after a backoff the timer will bring (> 0), or never (None).
        child.running = False
        child.ref = None
        if self.context.revoked.is_set():
            return None  # abandoned: the slots belong to this supervisor's replacement now
        child.slot.suspend()
        spec = child.spec
        self.log.warning("child {} ended ({}): {}", spec.name, kind, cause)
        if spec.restart is Restart.TEMPORARY or (spec.restart is Restart.TRANSIENT and kind is ExitKind.NORMAL):
            child.slot.close()
            child.pending_cause = None
            return None
        if self._intensity_exceeded():
            self._give_up(
                f"{spec.name} ended ({kind}: {cause}) and restarts exceeded "
                f"{self._max_restarts} within {self._within}s"
            )
            return None
        index = self._children.index(child)
        if self._strategy is Strategy.ONE_FOR_ONE:
            group = [child]
        elif self._strategy is Strategy.ONE_FOR_ALL:
            group = list(self._children)
        else:
            group = self._children[index:]
        for sibling in reversed(group):
            if sibling is not child and sibling.running:
                self._stop_child(sibling)
                sibling.slot.suspend()
                if sibling.spec.restart is Restart.TEMPORARY:
                    sibling.slot.close()
                else:
                    sibling.pending_cause = f"sibling {spec.name} failed: {cause}"
        child.pending_cause = cause or kind
        if child.started_at is not None and self.context.clock.monotonic() - child.started_at > self._within:
            child.restarts = 0  # it ran well for a whole period: backoff starts afresh
        child.restarts += 1
        delay = self._backoff.delay(child.restarts, self._rng)
        due = self.context.clock.monotonic() + delay
        for member in group:  # a strategy's group comes back together, when its failed child may
            if member.pending_cause is not None and not member.running:
                member.due = due
        if delay > 0:
            self._arm_restart_timer()
        return delay

    def _arm_restart_timer(self) -> None:
        # One timer, for the earliest restart waiting on a backoff: each child keeps its own due time.
        now = self.context.clock.monotonic()
        waiting = [c.due for c in self._children if not c.running and c.pending_cause is not None and c.due > now]
        if waiting:
            self.timers.start_single("restart", min(waiting) - now)

    def _intensity_exceeded(self) -> bool:
        now = self.context.clock.monotonic()
        times = self._restart_times
        times.append(now)
        while times and times[0] <= now - self._within:
            times.popleft()
        return len(times) > self._max_restarts

    def _restart_pending(self) -> None:
        # Starts every pending child in order; a start that fails is handled and the loop goes
        # on (iteration, not recursion, however long a child keeps failing).
        while not self._gave_up.is_set() and not self.context.revoked.is_set():
            now = self.context.clock.monotonic()
            child = next(
                (c for c in self._children if not c.running and c.pending_cause is not None and c.due <= now), None
            )
            if child is None:
                self._arm_restart_timer()  # for any still waiting on a backoff
                return
            cause, attempt = child.pending_cause, child.restarts
            if not self._start_child(child):
                delay = self._mark_down(child, ExitKind.START_FAILED, child.pending_cause or cause or "")
                if self._gave_up.is_set() or (delay is not None and delay > 0):
                    return  # given up, or waiting for a backoff
                continue
            if cause:  # "" is a first start, not a restart
                self._metrics.incr(MetricNames.ACTOR_RESTARTS_TOTAL)
                self._report_restart(Restarted(child.spec.name, cause, attempt, child.incarnation))

    def _report_restart(self, restarted: Restarted) -> None:
        if self._on_restart is None:
            return
        try:
            self._on_restart(restarted)
        except Exception:  # a failing hook must not stop the supervisor supervising
            self.log.exception("on_restart hook failed for {}", restarted)

    # --- stopping ---------------------------------------------------------------------------

    def _stop_child(self, child: _Child) -> None:
        ref = child.ref
        child.running = False
        child.ref = None
        if ref is None:
            return
        try:
            ref.stop(block=True, timeout=child.spec.shutdown_timeout)
        except pykka.Timeout:
            self.log.warning("{} did not stop within {}s; abandoned", child.spec.name, child.spec.shutdown_timeout)
            self._abandon(child, ref)

    def _abandon(self, child: _Child, ref: pykka.ActorRef[Any] | None = None) -> None:
        # A pykka thread cannot be killed: cut its links so it can do no harm, and ask it to
        # stop whenever it wakes.
        ref = ref or child.ref
        if ref is not None:
            child.slot.salvage(ref)
        if child.context is not None:
            child.context.revoke()
        if ref is not None:
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass

    def _stop_all(self) -> None:
        if self._stopped_children:
            return
        self._stopped_children = True
        abandoned = self.context.revoked.is_set()
        for child in reversed(self._children):
            child.pending_cause = None
            if abandoned:
                # The slots belong to this supervisor's replacement: cut these children off
                # without closing what the new ones use.
                if child.context is not None:
                    child.context.revoke()
                if child.ref is not None:
                    child.ref.stop(block=False)
                continue
            self._stop_child(child)
            child.slot.close()

    def _give_up(self, cause: str) -> None:
        self.log.critical("giving up: {}", cause)
        self.timers.cancel_all()
        self._stop_all()
        self._run_fail_safe(cause)
        self._gave_up.set()
        self.exit_with(ExitKind.GAVE_UP, cause)

    def _run_fail_safe(self, cause: str) -> None:
        if self._fail_safe is None or self._fail_safe_ran:
            return
        self._fail_safe_ran = True
        try:
            self._fail_safe(cause)
        except Exception:
            self.log.exception("fail-safe failed")

    def cleanup(self) -> None:
        """Stop every child in reverse start order; if the supervisor itself failed, run the
        fail-safe too, since nothing watches the children any more."""
        self._stop_all()
        if self.exit_kind not in (ExitKind.NORMAL, ExitKind.GAVE_UP):
            self._run_fail_safe(f"supervisor {self.context.name} failed: {self.exit_cause}")


def _await(
    answered: pykka.Future[Any], timeout: float, context: ChildContext, each_wait: Callable[[], None] | None = None
) -> Any:
    # Waits for ``answered`` in rounds of ``timeout``: a round without an answer fails (Timeout)
    # unless ``context`` was inside a busy section or made progress during it.
    seen = context.progress
    while True:
        try:
            return answered.get(timeout=timeout)
        except pykka.Timeout:
            if each_wait is not None:
                each_wait()
            if not context.busy_sections() and context.progress == seen:
                raise
            seen = context.progress


def make_slots(children: Sequence[ChildSpec], stash_limit: int = DEFAULT_STASH_LIMIT, metrics: MetricsSink | None = None) -> dict[str, Slot]:
    """One address slot per child, for `Supervisor.launch`."""
    return {spec.name: Slot(spec.name, stash_limit, metrics) for spec in children}


class SupervisorHandle:
    """What `Supervisor.launch` returns: the supervisor's ref and its children's addresses."""

    def __init__(self, ref: pykka.ActorRef[Any], slots: Mapping[str, Slot], gave_up: threading.Event) -> None:
        self.ref = ref
        self.slots = dict(slots)
        self.gave_up = gave_up

    def address(self, name: str) -> Address:
        """The stable address of the child ``name``."""
        try:
            return Address(self.slots[name])
        except KeyError:
            raise KeyError(f"no child named {name!r}; children: {sorted(self.slots)}") from None

    def children(self, timeout: float = DEFAULT_ASK_TIMEOUT) -> dict[str, ChildInfo]:
        """Each child's incarnation, liveness and restart count."""
        return cast("dict[str, ChildInfo]", self.ref.ask(GetChildren(), timeout=timeout))

    def restart(self, name: str, cause: str, graceful: bool = True, incarnation: int | None = None) -> None:
        """Ask the supervisor to restart the child ``name`` now (abandoning it if not graceful);
        with ``incarnation``, only if that incarnation is still the one running."""
        if name not in self.slots:
            raise KeyError(f"no child named {name!r}; children: {sorted(self.slots)}")
        self.ref.tell(RestartChild(name, cause, graceful, incarnation))

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the supervisor and, in reverse start order, every child."""
        try:
            self.ref.stop(block=True, timeout=timeout)
        except pykka.ActorDeadError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the supervisor has ended (stopped or given up); False on timeout."""
        return self.ref.actor_stopped.wait(timeout)


def _report_crash(context: ChildContext, exception: BaseException | None, stopping: bool) -> None:
    # On a plain child's thread, as its told message's exception stops it, or its on_stop's (it
    # was stopping, asked to: it stopped, if not cleanly): the first end wins.
    if context.ended is None:
        if stopping:
            context.report_exit(ExitKind.NORMAL, f"failed to stop: {described(exception)}")
        else:
            context.report_exit(ExitKind.CRASHED, described(exception))


def _start_failed(ref: pykka.ActorRef[Any] | None, error: Exception) -> str:
    # Why a child that reported nothing failed to start: a plain pykka actor that died before it
    # answered its first message is named with what its on_start raised, when pykka logged it.
    if ref is not None and isinstance(error, pykka.ActorDeadError) and not ref.is_alive():
        raised = start_failure(ref)
        if raised is not None:
            return f"failed to start: {raised}"
    return f"{type(error).__name__}: {error}"
