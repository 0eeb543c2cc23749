"""Assembling the whole trading system under one supervisor, standalone or inside a host's tree."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import pykka
from loguru import logger

from actors.alerts import AlertActor
from actors.emitter import EmitterActor, EventSink, JournalSink, Publisher, Subscribers, journal_sink, log_sink
from actors.fail_safe import FailSafe
from actors.guard import GuardActor
from actors.guard_carry import GuardCarry
from actors.healthcheck import HealthcheckActor, HealthcheckRelay
from actors.heartbeat import HeartbeatActor
from actors.loop import LoopActor
from actors.messages import (
    GetGuardState,
    GetJournals,
    GuardStatus,
    Halt,
    HaltNotSaved,
    MarketData,
    RestartChild,
    Resume,
    SendAlert,
    Subscribe,
)
from actors.pressed_halts import HaltNotConfirmed, PressedHalt, PressedHalts
from actors.supervision.address import Address, ChildUnavailable, Slot
from actors.supervision.context import ChildContext
from actors.supervision.supervisor import (
    DEFAULT_PROBE_INTERVAL,
    Backoff,
    ChildInfo,
    ChildSpec,
    Overdue,
    Restart,
    Restarted,
    Strategy,
    Supervisor,
    SupervisorHandle,
    make_slots,
)
from runtime.adapters.healthcheck import HealthcheckPing
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.state_claim import StateFileClaim
from runtime.adapters.statsd import StatsdMetrics
from runtime.adapters.system_clock import SystemClock
from runtime.adapters.telegram import TelegramAlerts
from runtime.alerts import Alert, AlertSink, Severity
from runtime.broker import Broker
from runtime.clock import Clock
from runtime.metrics import MetricsSink, contained
from runtime.payloads import ActorRestarted
from runtime.risk.guards import TradingState
from runtime.risk.monitor import ResumeRefused
from runtime.settings import Settings
from runtime.signals import ApprovalPolicy, SignalSource
from runtime.store import PendingHalt, StateStore, check_store
from runtime.validation import finite_number, port

__all__ = ["TradingSystem", "start_trading_system", "store_from_settings"]

# What the loop and the guard call on every broker (`find_fill` only after a restart, and
# `account_snapshot` where there is one, are asked for when needed).
_BROKER_METHODS = ("account_equity", "open_positions", "submit_order", "close_position")


def _close(part: Any) -> None:
    close = getattr(part, "close", None)
    if close is not None:
        close()


def store_from_settings(settings: Settings) -> StateStore:
    """The store ``settings`` choose: a `PostgresStore` at ``state_dsn`` that has claimed the
    loop (this incarnation's epoch: an older one's writes are refused from now on), else the
    SQLite store at ``state_db``, else memory."""
    if settings.state_dsn is None:
        return SqliteStore.from_settings(settings)
    from runtime.adapters.postgres import PostgresStore  # psycopg only when asked for

    store = PostgresStore(settings.state_dsn)
    try:
        store.claim(settings.loop_id)
    except BaseException:
        store.close()
        raise
    return store

STATE_FILE_LOST_ADVICE = (
    "It sends a broker outside this process no order while its store refuses to record one, and its guard still "
    "watches the open positions in memory (a breach closes them); restore the file before its next start, which "
    "otherwise begins afresh"
)
"""What the "State file lost" alert adds to what happened (`TradingSystem.guard_state_file`)."""


class TradingSystem:
    """The four actors (plus the alert sender, and with ``healthcheck_ping_url`` the dead man's
    switch) under one supervisor, with stable addresses.

    Children start in the order emitter, alerts, guard, loop, heartbeat and stop in reverse, so
    LOOP_STOPPED reaches the journal before the emitter goes. Build it, then either `start` it
    on its own or hand `child_spec` to a host's `Supervisor`; the addresses stay the same across
    every restart, the host's included. When restarts exceed the settings' intensity, the
    fail-safe halts trading, closes every position and alerts, and the failure escalates.
    ``drills=True`` lets its actors obey `Crash` and `Hang` (tests, drills); a live system, the
    default, refuses them. A kill switch pressed before the system started is kept by its store
    (`runtime.store.PendingHalt`): the guard takes it as it starts, ahead of any order, exactly
    as `halt` (HALTED latched and saved, positions closed, alert, journaled).
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
        # Parts that cannot work are refused here, naming them, before any actor starts: found
        # later, each is a restart storm that ends in a fail-safe and a critical alert.
        if not isinstance(settings, Settings):
            raise TypeError(f"settings must be a runtime.settings.Settings, got {settings!r}")
        port("broker", broker, "runtime.broker.Broker", _BROKER_METHODS)
        port("signals", signals, "runtime.signals.SignalSource", ("poll",))
        if approval is not None:
            port("approval", approval, "runtime.signals.ApprovalPolicy", ("approve",))
        if alerts is not None:
            port("alerts", alerts, "runtime.alerts.AlertSink", ("send",))
        if metrics is not None:
            port("metrics", metrics, "runtime.metrics.MetricsSink", ("incr", "gauge", "timing"))
        if loop_interval is not None and loop_interval != -1.0 and not finite_number("loop_interval", loop_interval) > 0:
            raise ValueError(f"loop_interval must be > 0 seconds, or None for no cycle timer, got {loop_interval!r}")
        self.settings = settings
        self.broker = broker
        # What is not given comes from the settings: PostgreSQL at STATE_DSN or SQLite at STATE_DB,
        # statsd at STATSD_HOST, Telegram with TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID; else
        # memory, nothing, the log.
        # A SQLite file it opens itself is claimed first (`StateFileClaim`): two systems on one
        # file would each trade the account with its own peak and latch, so a halt of one would
        # leave the other trading. A store the caller gives is the caller's to claim.
        with ExitStack() as undo:  # what was built is closed again when a later part is refused
            claim = StateFileClaim.of(settings.state_db) if store is None and settings.state_dsn is None else None
            if claim is not None:
                undo.callback(claim.close)
            self.store = check_store(store) if store is not None else store_from_settings(settings)
            if store is None:
                undo.callback(_close, self.store)
            self.metrics = contained(metrics) if metrics is not None else StatsdMetrics.from_settings(settings)
            self.alert_sink = alerts if alerts is not None else TelegramAlerts.from_settings(settings)
            undo.pop_all()
        # What this system built it also closes (on `stop`), the claim after the store; what the
        # caller gave, the caller owns.
        self._owned: list[Any] = [part for part, given in ((self.store, store), (self.metrics, metrics), (self.alert_sink, alerts))
                       if given is None]
        if claim is not None:
            self._owned.insert(1, claim)
        # The dead man's switch, when HEALTHCHECK_PING_URL is set: a child of its own, last.
        self._healthcheck = HealthcheckPing.from_settings(settings, self.metrics)
        if self._healthcheck is not None:
            self._owned.append(self._healthcheck)
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
        self._drills = drills
        # What a guard held that the store refused, handed from one incarnation to the next.
        self._carry = GuardCarry()
        # Kill-switch presses, in force for every guard incarnation from the moment they are pressed.
        self._halts = PressedHalts()
        self._fail_safe = FailSafe(
            loop_id=settings.loop_id,
            guards=settings.guards,
            broker=broker,
            store=self.store,
            alert_sink=self.alert_sink,
            clock=self.clock,
            subscribers=self.subscribers,
            deadline=fail_safe_deadline,
        )
        self._specs = self._child_specs()
        self._slots: dict[str, Slot] = make_slots(self._specs, metrics=self.metrics)
        self._healthcheck_relay: HealthcheckRelay | None = None
        if self._healthcheck is not None:
            self._healthcheck_relay = HealthcheckRelay(Address(self._slots["healthcheck"]), self._healthcheck)
            self.subscribers.add(self._healthcheck_relay)
        self._handle: SupervisorHandle | None = None
        # Held while a start launches, and while a halt decides whether it is pending: one start at
        # a time, and a halt pressed during a start waits for the guard it will ask.
        self._starting = threading.RLock()
        self._stopped = False  # set once a stop has saved the presses left: a halt is then pending
        self._host: ChildContext | None = None  # the host's, when a host's supervisor started it
        self._stopping = threading.Event()  # set as a stop begins: the guard refuses new orders from then on
        self._started = threading.Event()  # set by this start's first guard to come up: it says how the account started
        self.escalations = 0
        self._unjournaled = 0
        if claim is not None:
            self.guard_state_file(claim)

    def guard_state_file(self, claim: StateFileClaim) -> None:
        """Say, at critical and as an alert ("State file lost"), when the state file ``claim``
        holds is deleted or replaced while this system runs (`StateFileClaim.watch`): its store
        then refuses every save, so it sends a broker outside this process no order (none can be
        recorded first; a `PaperBroker`'s account lives and dies with this process), and neither a
        halt nor the peak would outlive a restart. The claim takes the path's new file first, so
        no second bot starts on the path while this one is up. It does not halt: that would close
        every position at market because a file went missing, while its guard still watches them
        in memory and closes them on a breach. A system that claims its own file calls this
        itself; a caller that claims the file and hands the system its store (`tradewarden run`)
        calls it."""
        claim.watch(self._state_file_lost)

    def _state_file_lost(self, what: str) -> None:
        said = f"{what}. {STATE_FILE_LOST_ADVICE}"
        logger.critical("{}", said)
        try:
            Address(self._slots["alerts"]).tell(SendAlert(Alert("State file lost", said, Severity.CRITICAL)))
        except ChildUnavailable:
            pass  # stopped: the log line above is all there is to say it with

    # --- the children -----------------------------------------------------------------------

    def _child_specs(self) -> list[ChildSpec]:
        s = self.settings
        loop_id = s.loop_id
        timeout = self._liveness_timeout

        def emitter(ctx: ChildContext) -> pykka.ActorRef[Any]:
            return EmitterActor.start(ctx, sinks=self._sinks, subscribers=self.subscribers, metrics=self.metrics)

        def alerts(ctx: ChildContext) -> pykka.ActorRef[Any]:
            return AlertActor.start(ctx, sink=self.alert_sink, metrics=self.metrics)

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
                broker_call_bound=s.broker_call_bound_seconds,
                store_call_bound=s.store_call_bound_seconds,
                gate=s.gate(),  # a new one each incarnation, carrying on from the stored gate record
                position_stop=s.position_stop(),
                cooldown=s.cooldown(),
                stopping=self._stopping,
                system_start=self._started,
                carry=self._carry,
                pressed_halts=self._halts,
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
                store_call_bound=s.store_call_bound_seconds,
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

        def healthcheck(ctx: ChildContext) -> pykka.ActorRef[Any]:
            assert self._healthcheck is not None
            return HealthcheckActor.start(
                ctx, ping=self._healthcheck, fresh_for=s.heartbeat_interval_seconds, guard_timeout=s.heartbeat_timeout
            )

        specs = [
            ChildSpec("emitter", emitter, liveness_timeout=timeout),
            # Alerts may block on a slow API by design: only its own stop may wait that long.
            ChildSpec("alerts", alerts, liveness_timeout=None),
            ChildSpec("guard", guard, liveness_timeout=timeout),
            ChildSpec("loop", loop, liveness_timeout=None),  # the heartbeat watches the loop
            # The heartbeat may wait heartbeat_timeout on a stalled loop: that is not a hang.
            ChildSpec("heartbeat", heartbeat, liveness_timeout=timeout + s.heartbeat_timeout),
        ]
        if self._healthcheck is not None:
            # Last, so it stops first: no ping says "healthy" while the rest shuts down. It may
            # wait on a slow endpoint (each request bounded by its timeout): that is not a hang.
            specs.append(ChildSpec("healthcheck", healthcheck, liveness_timeout=None))
        return specs

    # --- starting and stopping --------------------------------------------------------------

    def start(self) -> TradingSystem:
        """Start the system under its own top-level supervisor; returns self. A system starts
        at a time: started already (by this, or by a host's supervisor through `child_spec`) and
        not stopped, it raises `RuntimeError` and changes nothing. After `stop` it starts afresh
        from its store (one it was given: a store it built from its settings was closed by `stop`)."""
        with self._starting:
            if self._handle is not None and not self._stopping.is_set():
                raise RuntimeError(
                    "this trading system is already started: a second start would run a second guard and loop on the "
                    "same account; stop() it first"
                )
            self._launch(None)
        return self

    def child_spec(self, name: str = "trading", restart: Restart = Restart.PERMANENT) -> ChildSpec:
        """A child spec for a host's `Supervisor`: the host starts (and restarts) this whole
        system as one child, and sees it fail when this system's supervisor gives up."""
        return ChildSpec(name, self._launch, restart=restart, shutdown_timeout=60.0, liveness_timeout=30.0)

    def _launch(self, context: ChildContext | None) -> pykka.ActorRef[Any]:
        with self._starting:  # (a host's supervisor launches without start())
            return self._launch_now(context)

    def _launch_now(self, context: ChildContext | None) -> pykka.ActorRef[Any]:
        self._host = context
        # A new event, not the old one cleared: a guard of an earlier start that a stop left
        # stuck must go on refusing orders.
        self._stopping = threading.Event()
        self._stopped = False
        # A new start (a host's restart too): its first guard to come up says how the account
        # starts, whichever incarnation that is. A new event, so that no guard of an earlier
        # start still winding down can take it.
        self._started = threading.Event()
        publisher = Publisher(Address(self._slots["emitter"]), self.settings.loop_id, self.clock)

        def restarted(r: Restarted) -> None:
            publisher(ActorRestarted(r.actor, r.cause, r.attempt, r.incarnation))

        def overdue(o: Overdue) -> None:
            # The call may never return, so this is said now; the guard counts it when it returns.
            text = (f"{o.actor} incarnation {o.incarnation} has been inside {o.what} for {o.seconds:.1f}s, "
                    f"past its {o.bound:g}s bound; not abandoned")
            Address(self._slots["alerts"]).tell(
                SendAlert(Alert("Call overdue", text, Severity.CRITICAL, key=f"overdue:{o.actor}:{o.what}"))
            )

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
            fail_safe=lambda cause: self._run_fail_safe(cause, context),
            on_restart=restarted,
            on_overdue=overdue,
            metrics=self.metrics,
            child_clock=self.clock,
            drills=self._drills,
        )
        return self._handle.ref

    def stop(self, timeout: float = 60.0) -> None:
        """Stop cleanly: heartbeat, loop (LOOP_STOPPED), guard, alerts, emitter, in that order;
        wait, within ``timeout`` in all, until the journal has taken every event published; then
        close the store, metrics and alert sinks this system built from its settings (a Telegram
        sink sends the repeats it was still merging). Events the journal could not take (its store
        failed, or was still writing at the deadline) are logged at critical and counted in
        `unjournaled`. From the moment it is called the guard refuses every new order. It returns
        by the deadline and never raises for it: an actor still stopping then (one blocked in a
        part's call) is logged at critical and left to end on its own, unable to trade.

        Under a host's supervisor (`child_spec`), stop the host first: it stops this system with
        its other children; this then only drains the journal and closes what it built. Called
        while the host runs, it raises `RuntimeError` and changes nothing."""
        host = self._host
        if host is not None and host.supervisor is not None and host.supervisor.is_alive() and not host.revoked.is_set():
            # Its host would restart it at once, on a store this stop closes, until the host gave up.
            raise RuntimeError(
                "this trading system runs under a host's supervisor, which would restart it: stop the host first "
                "(host.stop() stops it too), then call stop() to drain its journal and close what it built"
            )
        self._stopping.set()  # no order goes out from here on, whatever is still winding down
        deadline = time.monotonic() + timeout
        if self._handle is not None:
            try:
                self._handle.stop(timeout)
            except pykka.Timeout:
                # A child stuck past the deadline (an alert sink blocking in its send) finishes
                # stopping on its own: the stop stays bounded, and still closes what it owns.
                logger.critical("the trading system did not stop within {:g}s: what still runs is left to end on its own",
                                timeout)
        if self._fail_safe.alert_sent is not None:
            # The critical alert goes out before its sink closes.
            self._fail_safe.alert_sent.wait(max(0.0, deadline - time.monotonic()))
        if self._healthcheck_relay is not None:
            self._healthcheck_relay.wait(max(0.0, deadline - time.monotonic()))  # so does the failure ping
        self._unjournaled = self._drain_journals(deadline)
        with self._starting:  # (a halt pressed from here on is saved pending itself)
            self._halts_left_pending()  # (before the store closes)
            self._stopped = True
        for part in self._owned:
            try:
                _close(part)
            except Exception as exc:
                logger.error("closing {!r} failed: {!r}", part, exc)

    def _drain_journals(self, deadline: float) -> int:
        # The emitter's journal worker may still be writing (an emitter stops after a bounded
        # wait): closing the store under it would lose what it holds.
        journals = [sink for sink in self._sinks if isinstance(sink, JournalSink)]
        for journal in journals:
            journal.wait_backlog(0, max(0.0, deadline - time.monotonic()))
        failed = sum(journal.unjournaled for journal in journals)
        waiting = sum(journal.backlog for journal in journals)
        if failed or waiting:
            logger.critical(
                "{} events were not journaled: {} lost by a failing store, {} still unwritten at the stop's deadline",
                failed + waiting, failed, waiting,
            )
        return failed + waiting

    @property
    def unjournaled(self) -> int:
        """How many published events the journal did not take, as counted by the last `stop`
        (0 before it): the journal is complete when this is 0."""
        return self._unjournaled

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

    def _halt_pending(self, by: str, reason: str) -> TradingState:
        # The kill switch of a system not started: kept by its store for its guard's start.
        loop_id = self.settings.loop_id
        record = None
        try:
            record = self.store.load_guard(loop_id)
            self.store.save_pending_halt(loop_id, PendingHalt(by, reason))
        except Exception as exc:
            previous = TradingState.ACTIVE if record is None else record.trading_state
            raise HaltNotSaved(f"the halt by {by} ({reason}) was not saved for the system's start: {exc}", previous) from exc
        logger.warning("halt by {} ({}) saved as pending: the guard carries it out as it starts", by, reason)
        return TradingState.ACTIVE if record is None else record.trading_state

    def _halt_once_started(self, press: PressedHalt) -> None:
        # After a halt() that a start outlasted: its guard is told the Halt (done already if it
        # took the press), or, when the start did not leave a system running, it is saved pending.
        with self._starting:
            if self.running:
                try:
                    self.guard.tell(Halt(press.by, press.reason, press.press_id))
                except Exception as exc:  # (the guard took the press before any order all the same)
                    logger.critical("halt by {} ({}) not told to the guard after the start: {!r}", press.by,
                                    press.reason, exc)
                return
            self._halts_left_pending()

    def _halts_left_pending(self) -> None:
        # Kill-switch presses no guard took before the stop: kept by the store for the next start.
        # A guard left running (stuck in a broker call) then finds them saved and leaves them to it.
        for press in self._halts.hand_over():
            try:
                self.store.save_pending_halt(self.settings.loop_id, PendingHalt(press.by, press.reason))
            except Exception as exc:
                self._halts.handed(press, saved=False)
                logger.critical("halt by {} ({}) was not carried out before the stop, nor saved for the next start: {!r}",
                                press.by, press.reason, exc)
                continue
            self._halts.handed(press, saved=True)
            logger.warning("halt by {} ({}) was not carried out before the stop: saved as pending, the next start "
                           "carries it out first", press.by, press.reason)

    @property
    def halt_unsaved(self) -> bool:
        """True when the supervisor gave up and the fail-safe's HALTED was refused by the store
        (a full disk): a start from the store now would trade. `save_halt_again` retries it."""
        return self._fail_safe.halt_saved is False

    def save_halt_again(self) -> bool:
        """Try once more to save the fail-safe's HALTED the store refused; True once it is saved
        (or there was none to save). Call it before `stop`, which closes a store it built."""
        return self._fail_safe.save_again()

    @property
    def running(self) -> bool:
        """True from `start` (or a host's start) until the system ends (stopped, or its supervisor
        gave up): a `halt` asks its guard; else it is saved as a pending halt for the next start."""
        return self._handle is not None and not self._stopped and not self._handle.wait(0)

    def _started_or_raise(self, what: str) -> None:
        if self._handle is None:
            raise RuntimeError(f"the trading system is not started: start() it before {what}")

    def guard_status(self, timeout: float = 5.0) -> GuardStatus:
        """The guard's state, block counts and bad-reading count; `RuntimeError` before `start`."""
        self._started_or_raise("asking for the guard's status")
        return self.guard.ask(GetGuardState(), timeout=timeout)

    def resume(
        self, by: str = "operator", *, rebaseline: bool = False, timeout: float = 5.0, sent_at: datetime | None = None
    ) -> TradingState:
        """Lift a latched HALTED back to ACTIVE; returns the state before. Raises `ResumeRefused`
        (naming the limit and the numbers) while the account is still past a hard limit, unless
        ``rebaseline`` sets the peak and the day's start to today's equity first.

        ``sent_at`` (timezone-aware, on this system's `clock`) is when the resume was decided:
        a HALTED or REDUCING latched after it (its sender had not seen it) is not lifted, and the
        `ResumeRefused` says when each happened. None (the default) means now: no such check. `RuntimeError` before `start`."""
        self._started_or_raise("resuming")
        answer = self.guard.ask(Resume(by, rebaseline, sent_at), timeout=timeout)
        if isinstance(answer, ResumeRefused):
            raise answer
        return answer

    def halt(self, by: str, reason: str, timeout: float = 5.0) -> TradingState:
        """The kill switch: latch HALTED with who and why, close every position, alert and
        journal; returns the state before. It holds from the moment it is called: every order
        the guard has not sent to the broker yet is refused as halted, also those queued in its
        mailbox ahead of the halt. Raises `HaltNotSaved` when it was carried out but the state
        store did not take it (the guard saves it again until the store does), and
        `HaltNotConfirmed` (a `pykka.Timeout`) when the guard did not answer within ``timeout``:
        the halt is recorded and in force all the same, and carried out when the guard gets to it.
        Before `start`, or after `stop`, it is saved in the store as a `runtime.store.PendingHalt`,
        which the guard carries out as its first act when the system starts (as `tradewarden halt`
        does for a bot that is not running), and the state the store holds is returned;
        `HaltNotSaved` when the store does not take it (a store the system built is closed by
        `stop`). Pressed while a start is under way, it waits for the start and asks its guard."""
        Halt(by, reason)  # refused here, naming the field, before it is recorded
        if not self._starting.acquire(timeout=max(0.0, timeout)):
            # A start under way outlasted the timeout: the press holds for every order from now
            # on (the starting guard takes it before any), and is carried out once the start ends.
            press = self._halts.press(by, reason)
            threading.Thread(target=self._halt_once_started, args=(press,), name="tradewarden-halt-after-start",
                             daemon=True).start()
            raise HaltNotConfirmed(
                f"the system is starting and did not confirm the halt by {by} ({reason}) within {timeout:g}s; the halt "
                "is recorded and in force for every order not yet sent to the broker, and carried out as soon as the "
                "start ends"
            )
        try:
            if not self.running:
                return self._halt_pending(by, reason)
            press = self._halts.press(by, reason)
        finally:
            self._starting.release()
        try:
            answer = self.guard.ask(Halt(by, reason, press.press_id), timeout=timeout)
        except pykka.Timeout:
            raise HaltNotConfirmed(
                f"the guard did not confirm the halt by {by} ({reason}) within {timeout:g}s; the halt is recorded and "
                "in force for every order not yet sent to the broker: the guard refuses them as halted, and latches "
                "HALTED, closes every position and alerts as soon as it gets to it"
            ) from None
        if isinstance(answer, HaltNotSaved):
            raise answer
        return answer

    def journaled(self, timeout: float) -> bool:
        """Block until every event published so far is in the journal (the emitter has handed on
        what it was told, and each journal has written that), or ``timeout`` seconds have passed;
        True when it is. Events published later are not waited for. An order of an account that
        lives in this process (`PaperBroker`) is journaled after the guard answers it: a caller
        that must know the order is on record before it answers (the fleet) waits here."""
        deadline = time.monotonic() + timeout
        try:
            journals = self.emitter.ask(GetJournals(), timeout=max(0.001, timeout))
        except Exception as exc:  # no emitter to answer (stopped, restarting): nothing is known
            logger.warning("the journal could not be asked whether it caught up: {!r}", exc)
            return False
        return all(journal.wait_caught_up(max(0.0, deadline - time.monotonic())) for journal in journals)

    def subscribe(self, subscriber: Any) -> None:
        """Add a subscriber: a callable taking an `Event`, or a pykka ActorRef told each event.
        Added while the system is not running (before `start`, after `stop`), it is told the
        events of its next start."""
        self.subscribers.add(subscriber)
        try:
            self.emitter.tell(Subscribe(subscriber))
        except ChildUnavailable:
            pass  # no emitter now: the next one starts with every subscriber kept

    # --- the fail-safe ----------------------------------------------------------------------

    def _run_fail_safe(self, cause: str, context: ChildContext | None) -> None:
        self.escalations += 1
        self._fail_safe.run(cause, context)


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

    Defaults: auto-approval, the system clock, and from ``settings``: the store of
    `store_from_settings` (PostgreSQL at ``state_dsn``, SQLite at ``state_db``, else memory),
    statsd at ``statsd_host`` (else no metrics), Telegram alerts
    with ``telegram_bot_token`` and ``telegram_chat_id`` (else alerts are logged).
    ``options`` go to `TradingSystem` (subscribers, sinks, loop_interval, backoff, ...).
    """
    return TradingSystem(
        settings, broker, signals, approval=approval, alerts=alerts, metrics=metrics, store=store, clock=clock, **options
    ).start()
