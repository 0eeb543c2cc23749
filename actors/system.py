"""Assembling the whole trading system under one supervisor, standalone or inside a host's tree."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pykka
from loguru import logger

from actors.alerts import AlertActor
from actors.emitter import EmitterActor, EventSink, Publisher, Subscribers, journal_sink, log_sink
from actors.guard import GuardActor
from actors.heartbeat import HeartbeatActor
from actors.loop import LoopActor
from actors.messages import GetGuardState, GuardStatus, Halt, MarketData, RestartChild, Resume, Subscribe
from actors.supervision.address import Address, Slot
from actors.supervision.context import ChildContext
from actors.supervision.supervisor import (
    DEFAULT_PROBE_INTERVAL,
    Backoff,
    ChildInfo,
    ChildSpec,
    Restart,
    Restarted,
    Strategy,
    Supervisor,
    SupervisorHandle,
    make_slots,
)
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.statsd import StatsdMetrics
from runtime.adapters.system_clock import SystemClock
from runtime.adapters.telegram import TelegramAlerts
from runtime.alerts import Alert, AlertSink, Severity
from runtime.broker import Broker
from runtime.clock import Clock
from runtime.events import Event, EventType
from runtime.metrics import MetricsSink
from runtime.payloads import ActorRestarted
from runtime.risk.guards import TradingState
from runtime.risk.liquidation import close_every_position, position_closed_metadata
from runtime.risk.monitor import ResumeRefused, RiskMonitor
from runtime.settings import Settings
from runtime.signals import ApprovalPolicy, SignalSource
from runtime.store import StateStore

__all__ = ["TradingSystem", "start_trading_system"]

_FAIL_SAFE_ATTEMPTS = 5
# No random stretch: every actor has stopped, so nothing retries against the broker in step with it.
_FAIL_SAFE_BACKOFF = Backoff(min_seconds=0.1, max_seconds=2.0, random_factor=0.0)


class TradingSystem:
    """The four actors (plus the alert sender) under one supervisor, with stable addresses.

    Children start in the order emitter, alerts, guard, loop, heartbeat and stop in reverse, so
    LOOP_STOPPED reaches the journal before the emitter goes. Build it, then either `start` it
    on its own or hand `child_spec` to a host's `Supervisor`; the addresses stay the same across
    every restart, the host's included. When restarts exceed the settings' intensity, the
    fail-safe halts trading, closes every position and alerts, and the failure escalates.
    ``drills=True`` lets its actors obey `Crash` and `Hang` (tests, drills); a live system, the
    default, refuses them.
    """

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        signals: SignalSource,
        *,
        approval: ApprovalPolicy | None = None,
        alerts: AlertSink | None = None,
        metrics: MetricsSink | None = None,
        store: StateStore | None = None,
        clock: Clock | None = None,
        subscribers: Sequence[Any] = (),
        sinks: Sequence[EventSink] | None = None,
        loop_interval: float | None = -1.0,
        market_feed: Callable[[MarketData], None] | None = None,
        backoff: Backoff | None = None,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        liveness_timeout: float = 5.0,
        fail_safe_deadline: float = 30.0,
        drills: bool = False,
    ) -> None:
        self.settings = settings
        self.broker = broker
        # What is not given comes from the settings: SQLite at STATE_DB, statsd at STATSD_HOST,
        # Telegram with TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID; else memory, nothing, the log.
        self.store = store if store is not None else SqliteStore.from_settings(settings)
        self.metrics = metrics if metrics is not None else StatsdMetrics.from_settings(settings)
        self.alert_sink = alerts if alerts is not None else TelegramAlerts.from_settings(settings)
        # What this system built it also closes (on `stop`); what the caller gave, the caller owns.
        self._owned = [part for part, given in ((self.store, store), (self.metrics, metrics), (self.alert_sink, alerts))
                       if given is None]
        self.clock = clock or SystemClock.shared()
        self.subscribers = Subscribers(subscribers)
        self._signals = signals
        self._approval = approval
        self._market_feed = market_feed
        self._sinks = list(sinks) if sinks is not None else [log_sink, journal_sink(self.store)]
        self._loop_interval = settings.loop_interval_seconds if loop_interval == -1.0 else loop_interval
        self._backoff = backoff
        self._probe_interval = probe_interval
        self._liveness_timeout = liveness_timeout
        self._fail_safe_deadline = fail_safe_deadline
        self._drills = drills
        self._fail_safe_alert: threading.Event | None = None
        self._specs = self._child_specs()
        self._slots: dict[str, Slot] = make_slots(self._specs, metrics=self.metrics)
        self._handle: SupervisorHandle | None = None
        self.escalations = 0

    # --- the children -----------------------------------------------------------------------

    def _child_specs(self) -> list[ChildSpec]:
        s = self.settings
        loop_id = s.loop_id
        timeout = self._liveness_timeout

        def emitter(ctx: ChildContext) -> pykka.ActorRef[Any]:
            return EmitterActor.start(ctx, sinks=self._sinks, subscribers=self.subscribers, metrics=self.metrics)

        def alerts(ctx: ChildContext) -> pykka.ActorRef[Any]:
            return AlertActor.start(ctx, sink=self.alert_sink)

        def guard(ctx: ChildContext) -> pykka.ActorRef[Any]:
            return GuardActor.start(
                ctx,
                guards=s.guards(),
                broker=self.broker,
                store=self.store,
                loop_id=loop_id,
                metrics=self.metrics,
                equity_stale_after=s.equity_stale_seconds,
                equity_stale_state=TradingState(s.equity_stale_action),
                gate=s.gate(),  # a new one each incarnation: its order history is not stored
            )

        def loop(ctx: ChildContext) -> pykka.ActorRef[Any]:
            return LoopActor.start(
                ctx,
                broker=self.broker,
                signals=self._signals,
                store=self.store,
                approval=self._approval,
                loop_id=loop_id,
                interval=self._loop_interval,
                market_feed=self._market_feed,
                metrics=self.metrics,
                # Well inside the heartbeat's wait, so a busy guard never makes the loop look stalled.
                guard_timeout=min(1.0, s.heartbeat_timeout / 4),
            )

        def heartbeat(ctx: ChildContext) -> pykka.ActorRef[Any]:
            return HeartbeatActor.start(
                ctx,
                provider=ctx.address("loop"),
                interval=s.heartbeat_interval_seconds,
                timeout=s.heartbeat_timeout,
                stall_after=s.stall_after,
                loop_id=loop_id,
                metrics=self.metrics,
            )

        return [
            ChildSpec("emitter", emitter, liveness_timeout=timeout),
            # Alerts may block on a slow API by design: only its own stop may wait that long.
            ChildSpec("alerts", alerts, liveness_timeout=None),
            ChildSpec("guard", guard, liveness_timeout=timeout),
            ChildSpec("loop", loop, liveness_timeout=None),  # the heartbeat watches the loop
            # The heartbeat may wait heartbeat_timeout on a stalled loop: that is not a hang.
            ChildSpec("heartbeat", heartbeat, liveness_timeout=timeout + s.heartbeat_timeout),
        ]

    # --- starting and stopping --------------------------------------------------------------

    def start(self) -> TradingSystem:
        """Start the system under its own top-level supervisor; returns self."""
        self._launch(None)
        return self

    def child_spec(self, name: str = "trading", restart: Restart = Restart.PERMANENT) -> ChildSpec:
        """A child spec for a host's `Supervisor`: the host starts (and restarts) this whole
        system as one child, and sees it fail when this system's supervisor gives up."""
        return ChildSpec(name, self._launch, restart=restart, shutdown_timeout=60.0, liveness_timeout=30.0)

    def _launch(self, context: ChildContext | None) -> pykka.ActorRef[Any]:
        publisher = Publisher(Address(self._slots["emitter"]), self.settings.loop_id, self.clock)

        def restarted(r: Restarted) -> None:
            publisher(ActorRestarted(r.actor, r.cause, r.attempt, r.incarnation))

        self._handle = Supervisor.launch(
            self._specs,
            name=f"trading-{self.settings.loop_id}",
            context=context,
            slots=self._slots,
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=self.settings.max_restarts,
            within_seconds=self.settings.within_seconds,
            backoff=self._backoff,
            probe_interval=self._probe_interval,
            fail_safe=lambda cause: self._fail_safe(cause, context),
            on_restart=restarted,
            metrics=self.metrics,
            child_clock=self.clock,
            drills=self._drills,
        )
        return self._handle.ref

    def stop(self, timeout: float = 60.0) -> None:
        """Stop cleanly: heartbeat, loop (LOOP_STOPPED), guard, alerts, emitter, in that order;
        then close the store, metrics and alert sinks this system built from its settings (a
        Telegram sink sends the repeats it was still merging)."""
        if self._handle is not None:
            self._handle.stop(timeout)
        if self._fail_safe_alert is not None:
            self._fail_safe_alert.wait(timeout)  # the critical alert goes out before its sink closes
        for part in self._owned:
            close = getattr(part, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    logger.error("closing {!r} failed: {!r}", part, exc)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the system has ended (stopped, or given up); False on timeout."""
        if self._handle is None:
            return True
        return self._handle.wait(timeout)

    @property
    def gave_up(self) -> bool:
        """True once a supervisor of this system has given up and run the fail-safe (it stays
        true after a host restarts the system; `escalations` counts how often)."""
        return self.escalations > 0

    # --- addresses and conveniences ---------------------------------------------------------

    def address(self, name: str) -> Address:
        """The stable address of ``name``: emitter, alerts, guard, loop or heartbeat."""
        return Address(self._slots[name])

    @property
    def loop(self) -> Address:
        """The loop's address."""
        return self.address("loop")

    @property
    def guard(self) -> Address:
        """The guard's address."""
        return self.address("guard")

    @property
    def heartbeat(self) -> Address:
        """The heartbeat's address."""
        return self.address("heartbeat")

    @property
    def emitter(self) -> Address:
        """The emitter's address."""
        return self.address("emitter")

    @property
    def supervisor(self) -> SupervisorHandle:
        """The handle of the supervisor now running this system."""
        if self._handle is None:
            raise RuntimeError("the trading system has not been started")
        return self._handle

    def children(self) -> dict[str, ChildInfo]:
        """Each actor's incarnation, liveness and restart count."""
        return self.supervisor.children()

    def restart(self, name: str, cause: str, graceful: bool = True, incarnation: int | None = None) -> None:
        """Ask the supervisor to restart one actor now; ``graceful=False`` abandons it at once
        (for an actor known not to answer); with ``incarnation``, only if that incarnation is
        still the one running (a stale request is ignored)."""
        if self._handle is not None:
            try:
                self._handle.ref.tell(RestartChild(name, cause, graceful, incarnation))
            except pykka.ActorDeadError:
                logger.warning("restart of {} not requested: supervisor stopped", name)

    def guard_status(self, timeout: float = 5.0) -> GuardStatus:
        """The guard's state, block counts and bad-reading count."""
        return self.guard.ask(GetGuardState(), timeout=timeout)

    def resume(self, by: str = "operator", *, rebaseline: bool = False, timeout: float = 5.0) -> TradingState:
        """Lift a latched HALTED back to ACTIVE; returns the state before. Raises `ResumeRefused`
        (naming the limit and the numbers) while the account is still past a hard limit, unless
        ``rebaseline`` sets the peak and the day's start to today's equity first."""
        answer = self.guard.ask(Resume(by, rebaseline), timeout=timeout)
        if isinstance(answer, ResumeRefused):
            raise answer
        return answer

    def halt(self, by: str, reason: str, timeout: float = 5.0) -> TradingState:
        """The kill switch: latch HALTED with who and why, close every position, alert and
        journal; returns the state before."""
        return self.guard.ask(Halt(by, reason), timeout=timeout)

    def subscribe(self, subscriber: Any) -> None:
        """Add a subscriber: a callable taking an `Event`, or a pykka ActorRef told each event."""
        self.subscribers.add(subscriber)
        self.emitter.tell(Subscribe(subscriber))

    # --- the fail-safe ----------------------------------------------------------------------

    def _fail_safe(self, cause: str, context: ChildContext | None = None) -> None:
        # Runs on the supervisor's thread once every child has stopped: nothing else is left to
        # act, so it talks to the ports directly. The alert goes first and on its own thread, and
        # the liquidation runs on its own thread with a deadline, so neither a dead alert service
        # nor a stuck broker can hold up the escalation. Through the supervisor's context the
        # ports go quiet if a host abandons this supervisor meanwhile.
        self.escalations += 1
        broker = context.guarded(self.broker) if context is not None else self.broker
        store = context.guarded(self.store) if context is not None else self.store
        started = time.monotonic()
        alert = Alert("Supervisor gave up: trading halted", cause, Severity.CRITICAL, key="fail-safe")
        self._fail_safe_alert = _in_background("fail-safe-alert", self._send_alert, alert)
        try:
            record = store.load_guard(self.settings.loop_id)
            guards = self.settings.guards()
            # No record yet (the guard never got to save one): halt a new one at today's equity,
            # so that the next start does not trade as if nothing had happened.
            monitor = RiskMonitor.from_record(record, guards) if record else RiskMonitor(broker.account_equity(), guards)
            previous = monitor.halt(f"supervisor gave up: {cause}")
            store.save_guard(self.settings.loop_id, monitor.record())
            self._journal(store, EventType.TRADING_STATE_CHANGED, {"from": previous.value, "to": "halted", "reason": cause})
        except Exception as exc:  # the store (or the broker) may be what failed: liquidate all the same
            logger.critical("fail-safe could not save HALTED: {!r}", exc)
        done = _in_background("fail-safe-liquidation", self._close_everything, broker, store)
        if not done.wait(self._fail_safe_deadline):
            logger.critical("fail-safe liquidation still running after {}s; escalating anyway", self._fail_safe_deadline)
        self._fail_safe_alert.wait(max(0.0, self._fail_safe_deadline - (time.monotonic() - started)))

    def _close_everything(self, broker: Broker, store: StateStore) -> None:
        for attempt in range(_FAIL_SAFE_ATTEMPTS):
            try:
                closed, failed = close_every_position(broker)
            except Exception as exc:
                closed, failed = [], [repr(exc)]
            for position, fill in closed:
                self._journal(store, EventType.POSITION_CLOSED, position_closed_metadata(position, fill, "fail-safe", attempt))
            if not failed:
                return
            logger.error("fail-safe close attempt {} failed: {}", attempt + 1, "; ".join(failed))
            threading.Event().wait(_FAIL_SAFE_BACKOFF.delay(attempt + 1))

    def _journal(self, store: StateStore, event_type: EventType, metadata: dict[str, Any]) -> None:
        event = Event(event_type, self.settings.loop_id, metadata, self.clock.now())
        try:
            store.append_event(event)
        except Exception as exc:
            logger.error("fail-safe event not journaled: {!r}", exc)
        for subscriber in self.subscribers.snapshot():
            try:
                subscriber.tell(event) if hasattr(subscriber, "tell") else subscriber(event)
            except Exception as exc:
                logger.error("fail-safe event not delivered to {!r}: {!r}", subscriber, exc)

    def _send_alert(self, alert: Alert) -> None:
        try:
            self.alert_sink.send(alert)
        except Exception as exc:
            logger.error("fail-safe alert not delivered: {!r}", exc)


def _in_background(name: str, target: Callable[..., None], *args: Any) -> threading.Event:
    """Run ``target(*args)`` on a daemon thread; the event is set when it returns."""
    done = threading.Event()

    def run() -> None:
        try:
            target(*args)
        finally:
            done.set()

    threading.Thread(target=run, name=f"tradewarden-{name}", daemon=True).start()
    return done


def start_trading_system(
    settings: Settings,
    broker: Broker,
    signals: SignalSource,
    *,
    approval: ApprovalPolicy | None = None,
    alerts: AlertSink | None = None,
    metrics: MetricsSink | None = None,
    store: StateStore | None = None,
    clock: Clock | None = None,
    **options: Any,
) -> TradingSystem:
    """Start the whole trading system under one supervisor and return its `TradingSystem` handle.

    Defaults: auto-approval, the system clock, and from ``settings``: the SQLite store at
    ``state_db`` (else in memory), statsd at ``statsd_host`` (else no metrics), Telegram alerts
    with ``telegram_bot_token`` and ``telegram_chat_id`` (else alerts are logged).
    ``options`` go to `TradingSystem` (subscribers, sinks, loop_interval, backoff, ...).
    """
    return TradingSystem(
        settings, broker, signals, approval=approval, alerts=alerts, metrics=metrics, store=store, clock=clock, **options
    ).start()
