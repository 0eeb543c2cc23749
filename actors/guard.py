"""The guard actor: the one gateway for orders, owner of the risk monitor and the trading state,
and the liquidator on a breach."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as dt_time
from functools import partial
from typing import Any

import attrs

from actors.emitter import Publisher
from actors.guard_carry import GuardCarry, Unsaved
from actors.messages import (
    CashFlow,
    EquityBatch,
    EquityReading,
    GetGuardState,
    GetJournals,
    GuardStatus,
    Halt,
    HaltNotSaved,
    Liquidate,
    OrderOutcome,
    PlaceOrder,
    Resume,
    SendAlert,
)
from actors.pressed_halts import PressedHalts, SavedPending
from actors.replay_messages import EquitySeries, GetGuardLine, JudgeReading
from actors.supervision.base import SupervisedActor
from actors.supervision.context import BusySection, ChildContext
from actors.supervision.messages import Tick
from actors.supervision.timers import Timers
from runtime.alerts import Alert, Severity
from runtime.backoff import Backoff
from runtime.broker import (
    Broker,
    Fill,
    Order,
    OrderRejected,
    Position,
    closes_with_client_id,
    fill_mismatch,
    is_in_process,
    read_account,
)
from runtime.events import Event
from runtime.metrics import MetricNames, MetricsSink, NullMetrics
from runtime.payloads import (
    EquityRestored,
    EquityUnavailable,
    GuardTriggered,
    OrderSubmitted,
    PositionClosed,
    Rebaselined,
    TradeExecuted,
    TradeFailed,
    TradingStateChanged,
)
from runtime.replay.guard_line import GuardLine
from runtime.risk.cooldown import MAX_DRAWDOWN, RUNAWAY_LOOP, Cooldown
from runtime.risk.drawdown import DrawdownTracker
from runtime.risk.gate import ACCOUNT_UNREAD, Gate, GateRecord, Refusal, reduces_exposure
from runtime.risk.guards import DailyLossGuard, Guard, GuardState, TradingState
from runtime.risk.liquidation import close_every_position
from runtime.risk.monitor import Assessment, GuardRecord, Latch, ResumeRefused, RiskMonitor, SeriesInterrupted
from runtime.risk.position_stop import PositionStop
from runtime.store import StateStore, UnreadableOrder
from runtime.validation import brief, finite_number

__all__ = ["GuardActor"]

_LIQUIDATION_RETRIES = Backoff(0.05, 5.0, random_factor=0.0)
_RECONCILE_EVERY = 1.0  # seconds between looks at an order the broker does not know yet
# Between saves of a state the store refused: soon at first (a store that blinked), then every
# 10 s while it stays down, so that a halt reaches it within seconds of its return.
_RESAVE = Backoff(0.5, 10.0, random_factor=0.0)
_LATE_FILL_EVERY_AT_MOST = 30.0  # seconds between looks at an order failed by a reconciliation
_BLIND = "no valid equity reading"  # how a blind guard's reason starts: a restart finds it there
_BATCH_PROGRESS_EVERY = 10_000  # readings of a batch between two progress marks (milliseconds of work)


class GuardActor(SupervisedActor):
    """The only way an order reaches the broker, and the only holder of the trading state.

    Orders (`PlaceOrder`, asked): checked by its `runtime.risk.gate.Gate` (HALTED refuses,
    REDUCING allows only what reduces exposure, then every pre-trade limit; a runaway loop latches
    REDUCING with a critical alert until `Resume`); an allowed order is journaled with its client id
    (ORDER_SUBMITTED) before the broker sees it, submitted, and journaled with its outcome
    (TRADE_EXECUTED or TRADE_FAILED); then the account is read and observed as a reading, and the
    answer is an `OrderOutcome`. The gate judges an order with the account's equity read just
    before it (a reading like any other), not the last cycle's. A refusal is journaled as a
    rejected TRADE_FAILED. Before an order's events are written, the journal is given up to
    ``journal_catch_up`` seconds (and half the time the order's sender still waits) to write
    every event published before them, so its append order is causal. A broker whose account
    lives in this process (`runtime.broker.is_in_process`, the paper broker) has its orders'
    events published like every other event instead, in order, without the wait or the durable
    write before the call: a crash the record would outlive takes the account with it. Such an
    order whose ``submit_order`` failed without `OrderRejected` is settled at once by
    ``find_fill``: no fill, a TRADE_FAILED "not executed"; a ``find_fill`` that fails too, a
    TRADE_FAILED whose error starts ``outcome unknown:`` (it is not looked up again), an
    answer with ``unknown`` and a critical "Order outcome unknown" alert.

    Reconciliation: on start, an order journaled as submitted but with no outcome (its guard died
    in between) is looked up at the broker by client id. Found, its TRADE_EXECUTED is journaled
    (``reconciled``) and the account is read and judged. Not found, it may still be in flight (an
    abandoned incarnation's call can finish late), so it is looked up every second until
    ``settle_grace`` seconds (wall time) after it was sent, then journaled as not executed. A
    broker call can outlive any grace, so such an order stays in the store, watched: it is
    looked up again every ``settle_grace`` seconds (at least one, at most thirty) for
    ``late_fill_watch`` seconds, by whichever incarnation is up, and a fill found then is
    journaled as a correcting TRADE_EXECUTED (``reconciled``, after the reconciled TRADE_FAILED
    of the same client id), alerted, and the account read and judged with it (a late position
    while HALTED is closed). A watch, not an in-flight marker, because only the broker can tell
    whether an order executed: a marker dies with the process that made the call, while the
    broker may still carry the order out. Until it says (or the grace ends with no fill), such an
    order is counted by the gate for every later order, the way that is worst for it (see
    `runtime.risk.gate.Gate.check`): a close cannot reverse a position when an earlier one fills late.

    Readings (`EquityReading`, `EquityBatch`): checked against the guards; on a breach, in this
    order: latches HALTED, closes every position (retrying a failing broker with backoff until
    flat, one POSITION_CLOSED each), alerts, counts the block, and emits GUARD_TRIGGERED. While
    HALTED, a reading that reports open positions closes them. A bad reading is refused, logged
    and counted, never fatal. The peak, start-of-day equity and trading state are saved to the
    store before they take effect, and a new incarnation carries on from them. A reading's net
    deposits (`runtime.broker.AccountSnapshot`) are taken as a cash flow before its equity.
    Liquidation retries back off in wall time, also in a replay: the broker is real I/O.

    With a ``position_stop``, each reading also checks the open positions: one the stop fires for
    is closed on its own (journaled with a client id like any order, then POSITION_CLOSED naming
    the rule), and trading is not halted for it. The gate's order history and runaway latch are
    saved to the store (`runtime.risk.gate.GateRecord`) and a new incarnation carries on from them.

    Operators: `Resume` (refused past a hard limit unless it rebaselines, and refused when it
    was sent before the HALTED or REDUCING it would lift was latched: its sender had not seen
    it) and `Halt` (the kill switch; pressed while halted, it latches the halt again, keeping
    its reason and start, so a resume sent before the press does not lift it either). A latch
    is dated when its TRADING_STATE_CHANGED is published, after its liquidation and alert, and
    saved with the guard's record. With a ``cooldown``, a halt by the rules it names (and the
    runaway latch, when it names ``runaway_loop``) lifts by itself when its cooldown ends, on
    the actor's timers (the data clock in a replay), journaled and alerted as an automatic
    resume; a max-drawdown halt resumes with a rebaseline, and one the account still breaches
    stays halted, with an alert.
    On a real clock, no valid reading for ``equity_stale_after`` seconds moves trading
    to ``equity_stale_state`` (REDUCING, lifted by the next reading within limits, or HALTED and
    liquidated), with EQUITY_UNAVAILABLE and a critical alert; EQUITY_RESTORED follows the first
    valid reading, also in an incarnation started while blind (the stored reason says so).

    Once ``stopping`` is set (its system's stop has begun), every new order is refused (rule
    ``stopping``): a stop that returns while an actor is still winding down never lets one out.
    Liquidations and position stops still run.

    A kill switch pressed through its system (``pressed_halts``, see
    `actors.pressed_halts.PressedHalts`) holds from the moment it is pressed, not from when its
    `Halt` reaches the front of the mailbox: the guard carries out every press waiting there
    before it checks an order, again after the order's account read, and once more just before
    the broker call, so every order not yet sent to the broker is refused as halted (one whose
    ORDER_SUBMITTED was already journaled is settled as a refused TRADE_FAILED).

    A start says how the account starts when it is not ACTIVE (a warning in the log and a
    "Started halted" or "Started reducing" alert with the reason), unless a pending halt taken
    at that start said so already. It is said once per start of the system, by whichever
    incarnation first comes up: ``system_start`` (one per start, from `TradingSystem`) is set by
    the first incarnation whose `prepare` gets that far, so a first incarnation that failed to
    start leaves it to the next, and a restart of the guard later does not say it again.
    Without one, only incarnation 1 says it.

    A record the store refuses (the guard's, or its gate's order history and runaway latch) is
    saved again on a timer until it takes it. With a ``carry`` (`actors.guard_carry.GuardCarry`,
    one per trading system, from `TradingSystem`), it is also held there, and an incarnation
    that crashes before it is saved hands it to the next one, which carries on from it (never
    from a less safe record: see `GuardCarry.adopt` and `GuardCarry.adopt_gate`).

    Every broker call runs inside a busy section of its context, so a slow broker never gets the
    guard abandoned as hung; a call longer than ``broker_call_bound`` seconds is a broker fault:
    a critical alert naming the call and its duration, and ``broker_slow_calls_total``. Every
    store call does the same with ``store_call_bound`` (a "Store call slow" alert): a store that
    waits on a lock or a failover ends as a slow or refused save, never as a hung guard.
    """

    # Its timers are about the broker (liquidation retries, reconciliation) and a blind guard
    # (judged on a real clock only): wall time, even when a replay moves the context's clock.
    wall_clock_timers = True

    def __init__(
        self,
        context: ChildContext,
        *,
        guards: Sequence[Guard],
        broker: Broker,
        store: StateStore,
        loop_id: str = "main",
        metrics: MetricsSink | None = None,
        settle_grace: float = 30.0,
        late_fill_watch: float = 86_400.0,
        journal_catch_up: float = 0.5,
        equity_stale_after: float = 30.0,
        equity_stale_state: TradingState = TradingState.REDUCING,
        broker_call_bound: float = 10.0,
        store_call_bound: float = 10.0,
        gate: Gate | None = None,
        position_stop: PositionStop | None = None,
        cooldown: Cooldown | None = None,
        stopping: threading.Event | None = None,
        system_start: threading.Event | None = None,
        carry: GuardCarry | None = None,
        pressed_halts: PressedHalts | None = None,
    ) -> None:
        super().__init__(context)
        self._carry = carry
        self._pressed = pressed_halts
        self._stopping = stopping
        self._system_start = system_start
        self._gate = gate or Gate()
        self._position_stop = position_stop
        self._cooldown = cooldown
        self._halted_by: tuple[str, ...] = ()  # the rules of a halt a cooldown may lift, since _halted_at
        self._halted_at: float | None = None
        # A cooldown follows the trading clock (the data's time in a replay: a day's cooldown is
        # a day of data), whatever clock the guard's timers about the broker keep.
        self._cooldown_timers = Timers(self.actor_ref, context.clock)
        self._guards = list(guards)
        self._settle_grace = _seconds("settle_grace", settle_grace)
        self._late_fill_watch = timedelta(seconds=_seconds("late_fill_watch", late_fill_watch))
        self._late_fill_every = max(_RECONCILE_EVERY, min(self._settle_grace, _LATE_FILL_EVERY_AT_MOST))
        self._journal_catch_up = _seconds("journal_catch_up", journal_catch_up)
        self._stale_after = equity_stale_after
        self._stale_state = TradingState(equity_stale_state)
        self._last_valid = context.clock.monotonic()
        self._blind = False
        self._broker = context.guarded(broker, busy="broker", bound=broker_call_bound,
                                       on_slow=partial(self._slow_call, "Broker", MetricNames.BROKER_SLOW_CALLS_TOTAL))
        # An order goes out only once journaled durably with its client id, unless the account
        # lives in this process: then nothing that would outlive a crash needs that record, and
        # the order's events go through the emitter in order with the rest (no fsync, no wait).
        self._journal_first = not is_in_process(broker)
        self._close_with_id = closes_with_client_id(broker)
        # Its records need no more durability than the account: saved without waiting for the
        # disk, when the store offers that itself (a store wrapped in another, which may fence
        # or fail its writes on purpose, keeps its wrapper's saves).
        without_fsync = getattr(type(store), "without_fsync", None)
        if not self._journal_first and without_fsync is not None:
            store = without_fsync(store)
        # The optional port for notional limits: without it, a symbol is valued at its entry price.
        self._latest_price = getattr(self._broker, "price", None)
        # Busy too: a store waiting on another writer's lock (SQLite's busy timeout) or a
        # failover is slow, not hung, and abandoning the guard would only start one that waits
        # on the same store.
        self._store = context.guarded(store, busy="store", bound=store_call_bound,
                                      on_slow=partial(self._slow_call, "Store", None))
        self._loop_id = loop_id
        self._metrics = metrics or NullMetrics()
        self._alerts = context.sibling("alerts")
        self._emitter = context.sibling("emitter")
        self._publish = Publisher(self._emitter, loop_id, context.clock)
        self._monitor: RiskMonitor | None = None
        self._saved: tuple[float, object, int, float | None] | None = (0.0, None, 0, None)  # what the store last got: see _save_key
        self._stored: GuardRecord | None = None  # the record the store holds, as far as this incarnation knows
        self._unsaved: tuple[int, str] | None = None  # failed saves in a row, and the last one's error
        self._gate_stored: GateRecord | None = None  # as _stored, for the gate's record
        self._gate_unsaved: tuple[int, str] | None = None  # as _unsaved, for the gate's record
        self._bad_readings = 0
        self._bad_cash_flows = 0
        self._client_ids: set[str] = set()  # every order this incarnation journaled: sent at most once
        self._unreadable: set[str] = set()  # repr of each held order's id whose record is unreadable: alerted once
        self._unknown_ids: set[str] = set()  # orders whose outcome was alerted as unknown: their truth is alerted too
        # Orders sent with no outcome known yet, by client id: the broker may hold them, so the gate
        # counts them (see Gate.check). Not those journaled as not executed and watched for a late fill.
        self._in_doubt: dict[str, Order] = {}
        self._liquidating: str | None = None
        self._taken_halts: list[str] = []  # ids of pending halts taken whose clear failed
        self._reaction_started: float | None = None
        self._retry_attempt = 0

    # --- life -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Carry on from the stored record (or from the one a crashed incarnation could not save,
        see `GuardCarry.adopt`), or start a new one at the broker's equity."""
        record = self._stored = self._store.load_guard(self._loop_id)
        carried = None
        if self._carry is not None:
            record, carried = self._carry.adopt(self, record)
        if record is None:
            snapshot = read_account(self._broker)
            self._monitor = RiskMonitor(snapshot.equity, self._guards)
            if snapshot.net_deposits is not None:
                self._monitor.take_net_deposits(snapshot.net_deposits)  # the baseline: no flow yet
            self._save()
        else:
            self._monitor = RiskMonitor.from_record(record, self._guards)
            self._saved = self._save_key()
            if carried is not None:
                self._adopt(carried)
            # Blind when the last incarnation stopped: so the first valid reading says restored.
            self._blind = record.trading_state is not TradingState.ACTIVE and (record.reason or "").startswith(_BLIND)
            if record.trading_state is not TradingState.ACTIVE and self._monitor.latch() is None:
                # A halt of unknown start (a record saved before halts were dated, or the
                # fail-safe's): dated at this start, the safe side. Only a resume sent from now
                # on lifts it, and this start says it is halted (see below).
                self._monitor.date_latch(self.context.clock.now(), again=True)
                self._save()
        # Before any reading has set the day (see RiskMonitor.open_on): a late one must not hide today's loss.
        self._monitor.open_on(self.context.clock.now())
        self._restore_gate()
        self._reconcile()  # first: an order filled before a crash is journaled before any close of it
        took_halts = self._take_pending_halts()
        took_halts = self._take_pressed_halts() or took_halts
        if self._stale_after > 0 and not self.context.clock.virtual:
            # Blindness is judged on a real clock only: a replay's time moves in steps, and a
            # weekend between two bars is not an outage.
            self.timers.start_fixed_rate("equity_watch", max(0.05, self._stale_after / 4))
        state = self._monitor.trading_state
        shown = self._state()  # (a runaway latch the gate carried over holds REDUCING over ACTIVE)
        first_up = self._first_up_of_this_start()
        # A scrape shows the state from the start: an account that comes back halted and flat
        # may never save again, and an alert on the gauge must not miss exactly that one.
        self._metrics.gauge(MetricNames.TRADING_STATE, shown.trading_state.gauge)
        if state is TradingState.HALTED and not took_halts:  # a halt taken has closed everything already
            # Liquidating from now: a cooldown that fell due while this guard was down waits until
            # the account is flat, even if its tick reaches the mailbox before this Liquidate.
            self._liquidating = "restarted while halted"
            self.actor_ref.tell(Liquidate("restarted while halted"))
        if shown.trading_state is TradingState.ACTIVE:
            self.log.info("guard up: peak {:.2f}, state {}", self._monitor.tracker.peak_equity, state.value)
        else:  # carried over from before this start: a trader reading the log must not miss it
            state, reason = shown.trading_state, shown.reason
            self.log.warning("guard up: peak {:.2f}, state {} ({})", self._monitor.tracker.peak_equity, state.value, reason)
            # A system that starts (not each restart of the guard), unless a halt it took just said so.
            if first_up and not took_halts:
                self._alert(f"Started {state.value}", f"{reason}; trading waits for a resume" if state is TradingState.HALTED
                            else f"{reason}; only orders that reduce exposure go through", Severity.WARNING, news=True)
        if self._position_stop is not None and not self._close_with_id:
            self.log.warning(
                "the broker's close_position takes no client_id: a position stop's close cannot be found again "
                "after a crash (it would be reconciled as not executed)"
            )

    def _adopt(self, carried: Unsaved) -> None:
        # A state an earlier incarnation held but could not save: this one acts on it and saves
        # it again until the store takes it, counting on from its failures (so the outage is
        # not alerted twice, and "saved" says how many tries it took in all).
        state = self.monitor.state()
        held = f"{state.trading_state.value}" + (f": {state.reason}" if state.reason else "")
        self.log.warning("carrying on from the state an earlier incarnation could not save ({}): {}", carried.error, held)
        self._unsaved, self._saved = (carried.failures, carried.error), None
        self._save()

    def _first_up_of_this_start(self) -> bool:
        # True for the first incarnation of this system start to come this far (see the class).
        started = self._system_start
        if started is None:
            return self.context.incarnation == 1
        first = not started.is_set()
        started.set()
        return first

    def _take_pending_halts(self) -> bool:
        # Halts pressed while no guard of the account ran (see `PendingHalt`) are taken before
        # any order, each as a halt asked now. A store that cannot say whether any are pending
        # fails the start: the guard must not trade without knowing. They are cleared only once
        # HALTED is saved (now, or by the save that first goes through after a refused one: see
        # _save), so a crash in between takes them again, never loses them; a clear that fails
        # is tried again before a resume lifts the halt (else a later restart would take a halt
        # the operator has since lifted).
        pending = self._store.load_pending_halts(self._loop_id)
        for halt in pending:
            self._halt(halt.by, halt.reason)
        if pending:
            self._taken_halts = [halt.halt_id for halt in pending]
            if self._unsaved is None:
                self._clear_taken_halts()
        return bool(pending)

    def _take_pressed_halts(self) -> bool:
        # Kill-switch presses not carried out yet (see `PressedHalts`): carried out now, before
        # any order, exactly as their Halt messages would be, which then find them done.
        if self._pressed is None or not self._pressed.waiting:
            return False
        halts = self._pressed.take(self.context)
        for halt in halts:
            previous = self._halt(halt.by, halt.reason)[0]
            self._pressed.carried_out(halt.press_id, self.context, previous)
        return bool(halts)

    def _clear_taken_halts(self) -> bool:
        # True once no pending halt this guard has taken is left in the store.
        if not self._taken_halts:
            return True
        try:
            self._store.clear_pending_halts(self._loop_id, self._taken_halts)
        except Exception as exc:
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            self.log.error("pending halts taken but not cleared (a resume tries again): {!r}", exc)
            return False
        self._taken_halts = []
        return True

    @property
    def monitor(self) -> RiskMonitor:
        """The risk monitor (set once `prepare` has run)."""
        assert self._monitor is not None, "guard not started"
        return self._monitor

    def cleanup(self) -> None:
        """Stop the cooldown timers with the incarnation (the actor's own timers stop anyway); a
        state the store has not taken yet is saved once more, and when that fails too, said at
        critical level and alerted. With a ``carry``, while its system is not stopping (a crash,
        a restart), the next incarnation of this process carries it over and keeps saving it
        ("Guard state carried over"); else whatever starts from the store next will not know it
        ("Guard state lost")."""
        self._cooldown_timers.cancel_all()
        if self._monitor is not None and self._gate_unsaved is not None:
            self._save_gate()  # once more; refused again, the carry holds it for the next incarnation
        if self._monitor is not None and self._unsaved is not None and not self._save():
            assert self._unsaved is not None
            state = self._state()
            held = f"{state.trading_state.value}" + (f": {state.reason}" if state.reason else "")
            kind, error = self.exit_kind.value, self._unsaved[1]
            if self._carry is not None and not (self._stopping is not None and self._stopping.is_set()):
                self.log.critical("ending ({}) with its state not saved ({}): the next guard of this process carries it "
                                  "over, and a new process would not know it was {}", kind, error, held)
                self._alert("Guard state carried over", f"the guard ended ({kind}) with its state ({held}) not saved: "
                            f"{error}; the next guard of this process carries it over and saves it again until the store "
                            "takes it; a new process would not know it", Severity.CRITICAL, news=True)
                return
            self.log.critical("ending ({}) with its state not saved ({}): a guard that starts from the state store will "
                              "not know it was {}", kind, error, held)
            self._alert("Guard state lost", f"the guard ended ({kind}) with its state ({held}) not saved: "
                        f"{error}; the next start will not know it: press the kill switch again once it runs",
                        Severity.CRITICAL, news=True)

    # --- messages ---------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """A cooldown's tick, else as every supervised actor."""
        if type(message) is Tick and self._cooldown_timers.accept(message):
            self.on_tick(message.key)
            return None
        return super().on_receive(message)

    def handle(self, message: Any) -> Any:
        """Orders, readings, batches, cash flows, resume, liquidation retries and state queries."""
        if isinstance(message, PlaceOrder):
            return self._place(message)
        if isinstance(message, EquityReading):
            self._reading(message)
            self._check_stops()
        elif isinstance(message, EquityBatch):
            self._batch(message)
            self._check_stops()
        elif isinstance(message, EquitySeries):
            self._series(message)
            self._check_stops()
        elif isinstance(message, JudgeReading):
            self._reading(message.reading)
            self._check_stops()
            return self._line()
        elif isinstance(message, GetGuardLine):
            return self._line()
        elif isinstance(message, Liquidate):
            self._liquidate(message.reason, message.attempt)
        elif isinstance(message, GetGuardState):
            return GuardStatus(
                self._state(),
                self.monitor.block_counts,
                self._bad_readings,
                self._liquidating is not None,
                self._bad_cash_flows,
                self.monitor.rebaseline_blocked(),
                latch.since if (latch := self._latch()) is not None else None,
            )
        elif isinstance(message, Resume):
            return self._resume(message.by, message.rebaseline, sent_at=message.sent_at)
        elif isinstance(message, Halt):
            done = None if message.press is None or self._pressed is None else self._pressed.take_one(message.press, self.context)
            if done is SavedPending.FOR_THE_NEXT_START:
                # This guard outlived its system's stop (stuck in a broker call), which saved the
                # press for the next start: carried out there, it must not be carried out here too.
                self.log.warning("halt by {} ({}) not carried out: the stop saved it as pending, and the next start "
                                 "carries it out", message.by, message.reason)
                return self.monitor.trading_state
            if done is not None and self.monitor.trading_state is not TradingState.HALTED:
                # Its press was carried out, and a resume queued ahead of this Halt lifted it: sent
                # before this halt, that resume must not outlive it, so it is carried out again.
                done = None
            previous, saved = (done, False) if done is not None else self._halt(message.by, message.reason)
            if saved or self._unsaved is None:
                return previous
            return HaltNotSaved(  # answered, not raised: a told Halt must not kill the guard
                f"halted in this process, its positions being closed, but the halt was not saved in the state store "
                f"({self._unsaved[1]}): a restart before it is saved would start without it; the guard saves it again "
                "until the store takes it",
                previous,
            )
        elif isinstance(message, CashFlow):
            try:
                self.monitor.record_cash_flow(message.amount)
            except (TypeError, ValueError) as exc:
                self._refuse_flow(message.amount, exc)
            else:
                self._save()
        else:
            return super().handle(message)
        return None

    def on_tick(self, key: str) -> None:
        """A liquidation retry, or another look at orders the broker did not know yet, is due."""
        if key == "liquidate" and self._liquidating is not None:
            self._liquidate(self._liquidating, self._retry_attempt)
        elif key == "reconcile":
            self._reconcile()
        elif key == "equity_watch":
            self._watch_equity()
        elif key == "cooldown":
            self._cool_down()
        elif key == "runaway_cooldown":
            self._lift_runaway()
        elif key == "resave" and self._unsaved is not None:
            self._save()
        elif key == "resave_gate" and self._gate_unsaved is not None:
            self._save_gate()

    def _reading(self, reading: EquityReading) -> None:
        monitor = self.monitor
        found: list[Assessment] = []
        at = _not_after(reading.at, self.context.clock.now())
        try:
            # A time the flow's own reading refuses refuses the whole reading: nothing is taken.
            if reading.net_deposits is not None:
                before_flow = self._take_flows(reading.net_deposits, reading.equity, at)
                if before_flow is not None:
                    found.append(before_flow)
            assessment = monitor.observe(reading.equity, at, changes_only=True)
        except (TypeError, ValueError, AttributeError) as exc:
            self._refuse(reading.equity, exc)
            return
        self._seen_valid()
        if assessment is not None:
            found.append(assessment)
        if not found and monitor.trading_state is not TradingState.HALTED:
            tracker = monitor.tracker
            if self._save_key() == self._saved:  # nothing to save or act on
                self._gauges(tracker)
                return
        self._after(found, reading.positions_open, reading.sent_at)

    def _batch(self, batch: EquityBatch) -> None:
        monitor = self.monitor
        if batch.net_deposits is not None and batch.equities:
            # The net deposits were read with the batch's last equity: exactly as single
            # readings, the earlier ones are taken first, then the flow, then the last one.
            head = EquityBatch(batch.equities[:-1], batch.at, batch.positions_open)
            self._batch(head)
            self._reading(EquityReading(batch.equities[-1], batch.at, batch.positions_open, None, batch.net_deposits))
            return
        values, at = batch.equities, _not_after(batch.at, self.context.clock.now())
        assessments: list[Assessment] = []
        taken = 0
        # Taken in chunks, marking progress after each, so a long batch is not taken for a hang.
        for start in range(0, len(values), _BATCH_PROGRESS_EVERY):
            chunk = values[start:start + _BATCH_PROGRESS_EVERY]
            try:
                assessments += monitor.observe_many(chunk, at, changes_only=True)
                taken += len(chunk)
            except (TypeError, ValueError, AttributeError):
                # A bad value among good ones: take them one at a time, exactly as single
                # readings would be taken, refusing and counting only the bad ones.
                for value in chunk:
                    try:
                        found = monitor.observe(value, at, changes_only=True)
                    except (TypeError, ValueError, AttributeError) as exc:
                        self._refuse(value, exc)
                        continue
                    taken += 1
                    if found is not None:
                        assessments.append(found)
            self.context.mark_progress()
        if not taken:  # nothing valid (or an empty batch): no reading at all
            return
        self._seen_valid()
        self._after(assessments, batch.positions_open, None)

    def _series(self, series: EquitySeries) -> None:
        # Readings a replay found clear, each at its own time: taken as single readings would
        # be, with at most one save and one set of gauges for the lot. A series with a bad
        # reading in it is taken one by one, refusing and counting only the bad ones; so is the
        # rest of one on whose reading a rule raised, that reading refused.
        equities, times = series.equities, _all_not_after(series.times, self.context.clock.now())
        try:
            found = self.monitor.observe_series(equities, times, changes_only=True)
            taken = done = len(equities)
        except SeriesInterrupted as stop:
            cause = stop.__cause__
            if not isinstance(cause, (TypeError, ValueError, AttributeError)):
                raise  # as a single reading's would, it fails the guard (its cause attached)
            found, taken, done = stop.found, stop.index, stop.index + 1
            self._refuse(equities[stop.index], cause)
        except (TypeError, ValueError, AttributeError):
            found, taken, done = [], 0, 0
        for equity, at in zip(equities[done:], times[done:]):
            try:
                assessment = self.monitor.observe(equity, at, changes_only=True)
            except (TypeError, ValueError, AttributeError) as exc:
                self._refuse(equity, exc)
                continue
            taken += 1
            if assessment is not None:
                found.append(assessment)
        if taken:
            self._seen_valid()
            self._after(found, series.positions_open, None)

    def _line(self) -> GuardLine:
        # What a replay needs to know to send clear readings in series (see GuardLine).
        monitor = self.monitor
        tracker = monitor.tracker
        factor, floor = monitor._clear_line()  # the monitor's own shortcut, so both always agree
        day_until = None
        daily = [g for g in self._guards if isinstance(g, DailyLossGuard)]
        if daily:
            day = monitor.day
            day_until = _NEVER if day is None else _day_end(day, daily[0].zone)
        state = monitor.state()
        return GuardLine(
            monitor.trading_state, tracker.peak_equity, tracker.start_equity,
            state.day_start_equity if state.day_start_equity is not None else tracker.start_equity,
            factor, floor, day_until, monitor.net_deposits, tuple(self._guards),
            position_stop=self._position_stop,
        )

    def _take_flows(self, net_deposits: Any, equity: Any, at: Any) -> Assessment | None:
        # Cash flows travel with the equity they changed: no reading can fall between the two.
        # Whatever trading did since the last reading is judged first, in the units before the
        # flow (the equity less the flow), so the flow is scaled against the right equity.
        monitor = self.monitor
        found = None
        known = monitor.net_deposits
        if known is not None and _finite(net_deposits) and _finite(equity) and net_deposits != known:
            # At zero or below too: a loss that emptied the account is judged before the deposit
            # that followed it, which then counts as money added (see record_cash_flow), never as a recovery.
            before_flow = equity - (net_deposits - known)
            if _finite(before_flow):  # (two huge finite numbers can make one past a float's range)
                found = monitor.observe(float(before_flow), at, changes_only=True)
        try:
            flow = monitor.take_net_deposits(net_deposits)
        except (TypeError, ValueError) as exc:
            self._refuse_flow(net_deposits, exc)
            return found
        if flow:
            self.log.info("cash flow of {:+.2f} taken from the account's net deposits", flow)
        return found

    def _refuse_flow(self, value: Any, exc: Exception) -> None:
        self._bad_cash_flows += 1
        self._metrics.incr(MetricNames.BAD_CASH_FLOWS_TOTAL)
        self.log.warning("cash flow {} refused: {}", brief(value), exc)
        self._alert("Cash flow refused", f"{brief(value)}: {exc}", Severity.WARNING)

    def _refuse(self, value: Any, exc: Exception) -> None:
        self._bad_readings += 1
        self._metrics.incr(MetricNames.BAD_READINGS_TOTAL)
        self.log.warning("bad equity reading refused: {}", exc)

    def _after(self, assessments: list[Assessment], positions_open: Any, sent_at: Any) -> None:
        # A reading's equity is what the guard acts on: a bad count or send time beside a good
        # equity is taken as unknown (the broker is asked), never a reason to drop the reading.
        if positions_open is not None and (
            isinstance(positions_open, bool) or not isinstance(positions_open, int) or positions_open < 0
        ):
            self.log.warning("positions_open {} is not a whole number >= 0: taken as unknown", brief(positions_open))
            positions_open = None
        if sent_at is not None and not _finite(sent_at):
            self.log.warning("sent_at {} is not a finite number: the reaction is timed from now", brief(sent_at))
            sent_at = None
        monitor = self.monitor
        tracker = monitor.tracker
        if any(a.state_changed for a in assessments) or self._save_key() != self._saved:
            self._save()  # durable before anything acts on it (a breach while halted changes nothing)
        self._gauges(tracker)
        for assessment in assessments:
            if assessment.newly_halted:
                self._breach(assessment, sent_at)
            elif assessment.state_changed:
                self._state_changed(assessment)
        if monitor.trading_state is TradingState.HALTED and self._liquidating is None:
            if positions_open is None or positions_open > 0:
                if not any(a.newly_halted for a in assessments):
                    self._liquidate("positions found open while halted", 0)

    def _gauges(self, tracker: DrawdownTracker) -> None:
        self._metrics.gauge(MetricNames.EQUITY, tracker.latest_equity)
        self._metrics.gauge(MetricNames.DRAWDOWN_PCT, tracker.drawdown * 100.0)

    def _breach(self, assessment: Assessment, sent_at: float | None) -> None:
        reason = "; ".join(v.reason for v in assessment.breaches)
        self._reaction_started = sent_at if sent_at is not None else time.perf_counter()
        self._liquidate(reason, 0)
        self._alert(f"Trading halted: {', '.join(v.guard for v in assessment.breaches)}", reason, Severity.CRITICAL,
                    news=True)
        for verdict in assessment.breaches:
            self._metrics.incr(verdict.block_counter)
            self._publish(
                GuardTriggered(
                    verdict.guard, verdict.reason, assessment.equity, assessment.peak_equity, assessment.drawdown,
                    assessment.at,
                )
            )
        self._publish_state(assessment.previous_state, TradingState.HALTED, reason)
        self._hold_halt(tuple(v.guard for v in assessment.breaches))

    def _state_changed(self, assessment: Assessment) -> None:
        reason = "; ".join(v.reason for v in assessment.warnings) or "back within limits"
        if assessment.state is TradingState.REDUCING:
            self._alert("Reducing exposure", reason, Severity.WARNING)
        self._publish_state(assessment.previous_state, assessment.state, reason)

    def _resume(
        self, by: str, rebaseline: bool, *, sent_at: datetime | None = None, automatic: bool = False
    ) -> TradingState | ResumeRefused:
        # Decide on the account as it is now, not on the last reading (which may be old).
        try:
            snapshot = read_account(self._broker)
            positions_open = len(self._broker.open_positions())
        except Exception as exc:
            return ResumeRefused(f"resume refused: the account cannot be read ({exc!r})")
        self._reading(EquityReading(snapshot.equity, self.context.clock.now(), positions_open, None, snapshot.net_deposits))
        if self._blind:
            return ResumeRefused("resume refused: no valid equity reading (the guard is blind)")
        if not self._clear_taken_halts():
            return ResumeRefused(
                "resume refused: a halt pressed before this guard started is still pending in the state store "
                "(clearing it failed; see the log), and the next start would take it again; try again"
            )
        # A limit first: sent again, the resume would meet it too. Then what its sender could not
        # have seen, after that reading, which may itself have halted: sent again, it is taken.
        refused = self.monitor.resume_refusal(rebaseline)
        if refused is None and sent_at is not None and (latch := self._latch()) is not None:
            refused = latch.refuses(sent_at)
        if refused is not None:
            self.log.warning("resume by {} refused: {}", by, refused)
            return refused  # answered, not raised: a told Resume must not kill the guard
        previous, changed = self.monitor.resume(rebaseline)
        # An automatic resume lifts only its own halt: a runaway latch has its own cooldown.
        if not automatic and self._gate.release() is not None and previous is TradingState.ACTIVE:
            previous = TradingState.REDUCING  # the gate held it there for a runaway loop
        self._liquidating = None  # a retry still scheduled must not close positions of the resumed account
        self._retry_attempt = 0
        self.timers.cancel("liquidate")
        self._release_halt(runaway_too=not automatic)
        self._save()
        if changed is not None:
            self._publish(
                Rebaselined(by, changed.old_peak, changed.new_peak, changed.old_day_start, changed.new_day_start)
            )
            self._alert(
                "Peak rebaselined",
                f"by {by}: peak {changed.old_peak:.2f} -> {changed.new_peak:.2f}, "
                f"day start {changed.old_day_start:.2f} -> {changed.new_day_start:.2f}",
                Severity.WARNING,
                news=True,
            )
        now = self._gate.state(TradingState.ACTIVE)
        if previous is not now:
            why = f"resumed automatically: {by}" if automatic else f"resumed by {by}"
            self._publish_state(previous, now, why)
            self._alert("Trading resumed automatically" if automatic else "Trading resumed", why, Severity.INFO, news=True)
        return previous

    def _halt(self, by: str, reason: str) -> tuple[TradingState, bool]:
        # The kill switch: latched like a breach, and everything is closed even if already halted.
        # Returns the state before, and whether HALTED was saved. Pressed while halted, it keeps
        # the halt's own reason and start (a breach's numbers must not be hidden by a
        # precaution), adding only that a cooldown no longer lifts it; the press itself is
        # journaled and alerted, and latches the halt again: a resume sent before the press (by
        # someone who had not seen it) no longer lifts it, as it would not lift a new halt.
        why = f"halted by {by}: {reason}"
        monitor = self.monitor
        if monitor.trading_state is not TradingState.HALTED:
            previous = monitor.halt(why)
        else:
            previous = TradingState.HALTED
            kept = monitor.state().reason or why
            monitor.halt(f"{kept}; then {why} (latched: no cooldown lifts it)" if self._halted_by else kept)
        self._release_halt(runaway_too=False)  # the operator's halt latches: no cooldown lifts it
        saved = self._save()
        self._reaction_started = time.perf_counter()
        self._liquidate(why, 0)
        self._alert("Trading halted by hand", why, Severity.CRITICAL, news=True)
        self._publish_state(previous, TradingState.HALTED, why)
        return previous, saved

    def _latch(self) -> Latch | None:
        # The latest latch a resume would lift: the monitor's, or the runaway loop's the gate holds.
        latches = [self.monitor.latch()]
        if self._gate.latched is not None and self._gate.latched_at is not None:
            at = datetime.fromtimestamp(self._gate.latched_at, UTC)
            latches.append(Latch(TradingState.REDUCING, self._gate.latched, at, at))
        return max((latch for latch in latches if latch is not None), key=lambda latch: latch.latched_at, default=None)

    def _state(self) -> GuardState:
        # The monitor's state, unless a runaway loop latched the gate in REDUCING over it.
        state = self.monitor.state()
        if self._gate.state(state.trading_state) is state.trading_state:
            return state
        return attrs.evolve(state, trading_state=TradingState.REDUCING, reason=self._gate.latched)

    # --- a blind guard ----------------------------------------------------------------------

    def _seen_valid(self) -> None:
        self._last_valid = self.context.clock.monotonic()
        if self._blind:
            self._blind = False
            self._publish(EquityRestored(self.monitor.tracker.latest_equity))
            self._alert("Equity readings restored", f"equity {self.monitor.tracker.latest_equity:.2f}", Severity.INFO,
                        news=True)

    def _watch_equity(self) -> None:
        silent = self.context.clock.monotonic() - self._last_valid
        if self._blind or silent < self._stale_after:
            return
        self._blind = True
        reason = f"{_BLIND} for {silent:.1f}s (limit {self._stale_after:g}s)"
        previous = self.monitor.degrade(self._stale_state, reason)
        self._save()
        self._publish(EquityUnavailable(silent, self._stale_after, self.monitor.tracker.latest_equity, self._stale_state))
        self._alert("Equity unavailable", f"{reason}; trading {self.monitor.trading_state.value}", Severity.CRITICAL,
                    news=True)
        if self.monitor.trading_state is not previous:
            self._publish_state(previous, self.monitor.trading_state, reason)
        if self.monitor.trading_state is TradingState.HALTED:
            self._liquidate(reason, 0)

    # --- the order gateway --------------------------------------------------------------------

    def _place(self, request: PlaceOrder) -> OrderOutcome:
        order, signal = request.order, request.signal
        refusal: Refusal | None
        if request.expires is not None and time.monotonic() > request.expires:
            # Its sender stopped waiting: sent now, it would fill at another price, unaccounted.
            refusal = Refusal("expired", "expired: the sender stopped waiting before the guard reached it")
        elif self._stopping is not None and self._stopping.is_set():
            refusal = Refusal("stopping", "the trading system is stopping: no new order goes out")
        elif (duplicate := self._duplicate(order.client_id)) is not None:
            refusal = duplicate
        else:
            self._take_pressed_halts()  # a halt pressed while this order waited in the mailbox refuses it
            unread = self._read_before(order, request.at)
            refusal = self._check(order)
            if refusal is None and self._take_pressed_halts():  # one pressed while the account was read
                refusal = self._check(order)
            if refusal is None and unread is not None:
                refusal = self._unread_refusal(order, unread)
        reason = refusal.reason if refusal is not None else None
        if refusal is None:
            submitted = OrderSubmitted.of(order, signal)
            if self._journal_first:
                # At most half the time its sender still waits: the rest is the broker's.
                wait = self._journal_catch_up
                if request.expires is not None:
                    wait = min(wait, (request.expires - time.monotonic()) / 2)
                self._journal_caught_up(wait)
            event = self._publish.make(submitted)
            self._client_ids.add(order.client_id)
            try:
                self._open(event)
            except Exception as exc:
                self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
                reason = f"order not journaled, so not sent: {exc!r}"
        if reason is not None:
            refused_by = refusal.rule if refusal is not None else None
            self._publish(TradeFailed.of(order, signal, rejected=True, error=reason, refused_by=refused_by))
            return self._outcome(order, request.at, refusal=reason)
        if self._gate.sent(self.context.clock.now()):
            self._save_gate()  # before the broker sees it: a restart must count this order
        if self._take_pressed_halts() and (late := self._check(order)) is not None:
            # A halt pressed while this order's records were being written: it never reaches the
            # broker (the gate has counted it: the safe side).
            self._close_order(order.client_id, event, TradeFailed.of(order, signal, rejected=True, error=late.reason,
                                                                     refused_by=late.rule))
            return self._outcome(order, request.at, refusal=late.reason)
        try:
            fill = self._broker.submit_order(order)
        except OrderRejected as exc:  # the broker says it did not trade: failed for good
            self._close_order(order.client_id, event, TradeFailed.of(order, signal, rejected=False, error=repr(exc)))
            return self._outcome(order, request.at, error=repr(exc))
        except Exception as exc:
            return self._unknown(request, submitted, event, f"submit_order raised {exc!r}")
        if not isinstance(fill, Fill):  # a broker fault too: what it did is not known from that
            return self._unknown(request, submitted, event, f"submit_order returned {brief(fill)}, not a Fill")
        self._close_order(order.client_id, event, TradeExecuted.of(submitted, fill))
        return self._executed(order, fill, request.at)

    def _executed(self, order: Order, fill: Fill, at: Any) -> OrderOutcome:
        # The answer to a filled order. A fill that is not what the order asked for (another
        # symbol, side or client id, more volume) is a broker fault: the account holds what the
        # broker did, so it is journaled as the broker reports it, and the account is read from
        # the broker and judged (_outcome) before the answer; never taken silently.
        mismatch = fill_mismatch(order, fill)
        if mismatch is None:
            return self._outcome(order, at, fill=fill)
        what = f"order {order.client_id} ({order.side.value} {order.volume:g} {order.symbol})"
        told = (f"{fill.side.value} {fill.volume:g} {fill.symbol} at {fill.price:g}, position {fill.position_id!r}, "
                f"client id {fill.client_id!r}")
        self.log.critical("{}: the broker's fill does not match it: {} ({})", what, mismatch, told)
        self._alert("Fill does not match its order", f"{what}: the broker filled {told}: {mismatch}; journaled as the "
                    "broker reports it; the account is read from the broker", Severity.CRITICAL)
        return self._outcome(order, at, fill=fill, error=f"the fill does not match the order: {mismatch}")

    def _unknown(self, request: PlaceOrder, submitted: OrderSubmitted, event: Event, fault: str) -> OrderOutcome:
        # The broker failed without saying the order did not trade (a venue that timed out after
        # the order reached it): it may hold the position, and a sender told "failed" would send
        # it again. Only the broker can say: asked now, else the order stays held in the store
        # and the reconciliation looks it up (every second for settle_grace, then on the watch
        # for a late fill), journaling what the broker says.
        order = request.order
        client_id = order.client_id
        what = f"order {client_id} ({order.side.value} {order.volume:g} {order.symbol})"
        self.log.critical("{}: {}; its outcome is unknown: looked up at the broker", what, fault)
        answered = True  # find_fill said whether the broker has a fill
        try:
            found = self._broker.find_fill(client_id)
        except Exception as exc:
            found, fault, answered = None, f"{fault}; find_fill raised {exc!r}", False
        if isinstance(found, Fill):
            self._close_order(client_id, event, TradeExecuted.of(submitted, found, reconciled=True))
            self.log.warning("{}: executed after all, the broker has its fill", what)
            self._alert("Order filled despite a broker error", f"{what}: {fault}; the broker has its fill "
                        f"({found.volume:g} at {found.price:.2f}): journaled as executed (reconciled)", Severity.WARNING)
            return self._executed(order, found, request.at)
        if found is not None:
            fault, answered = f"{fault}; find_fill returned {brief(found)}, not a Fill", False
        if not self._journal_first and answered:
            # An account in this process has nothing in flight (see _journal_first): an order
            # it has no fill for did not trade.
            error = f"{fault}; not executed: the broker has no fill for this client id"
            self._close_order(client_id, event, TradeFailed.of(order, request.signal, rejected=False, error=error))
            return self._outcome(order, request.at, error=error)
        if not self._journal_first:
            # It could not say: the account may hold the order. Its orders are never held in the
            # store (see _journal_first), so none is looked up again: the journal says unknown.
            error = (f"outcome unknown: {fault}; the broker could not say whether it traded, and an order of an "
                     "account in this process is not looked up again: see the account's positions")
            self._close_order(client_id, event, TradeFailed.of(order, request.signal, rejected=False, error=error))
            self._alert("Order outcome unknown", f"{what}: {fault}; the broker could not say whether it traded: "
                        "journaled as failed with its outcome unknown; check the account's positions before sending "
                        "it again", Severity.CRITICAL)
            return self._outcome(order, request.at, error=error, unknown=True)
        self._unknown_ids.add(client_id)
        self._in_doubt[client_id] = order
        self.timers.start_single("reconcile", _RECONCILE_EVERY)
        self._alert("Order outcome unknown", f"{what}: {fault}; the broker may hold it; looked up at the broker until it "
                    "says, and journaled then; do not send it again", Severity.CRITICAL)
        error = f"outcome unknown: {fault}; the order is being reconciled with the broker (see the journal)"
        return self._outcome(order, request.at, error=error, unknown=True)

    def _duplicate(self, client_id: str) -> Refusal | None:
        # An order goes out at most once. A host whose answer was lost (the guard died between
        # sending and answering) retries with the same client id, and a broker outside the
        # process may trade it again (MT5 keeps the id only as a deal comment): the journal knows
        # every incarnation's and process's orders, and is asked (from an index) for an id this
        # incarnation has not seen. An account in this process died with any earlier process's
        # orders, and its broker refuses a repeat itself (see _journal_first).
        if client_id not in self._client_ids and self._journal_first:
            try:
                placed = self._store.order_placed(self._loop_id, client_id)
            except Exception as exc:
                self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
                self.log.error("order {} not looked up in the journal, so not sent: {!r}", client_id, exc)
                return Refusal("duplicate", f"client id {client_id!r} could not be looked up in the journal, so the "
                                            f"order was not sent (it may have been placed already): {exc!r}")
            if placed:
                self._client_ids.add(client_id)
        if client_id in self._client_ids:
            return Refusal("duplicate", f"duplicate client id {client_id!r}: that order was already placed")
        return None

    def _open(self, submitted: Event) -> None:
        # Journal an order about to go out: durable before the broker sees it, and published,
        # unless the account lives in this process (see _journal_first): then it is published
        # with its outcome. Raises when the store fails.
        if self._journal_first:
            self._store.open_order(submitted, datetime.now(UTC))
            self._publish.send(submitted)

    def _close_order(self, client_id: str, submitted: Event, payload: TradeExecuted | TradeFailed) -> None:
        # The outcome of an order opened by _open: settled in the store with it, or published
        # in one message after its ORDER_SUBMITTED when the order was never held there.
        if self._journal_first:
            self._settle(client_id, payload)
        else:
            self._publish.send_all((submitted, self._publish.make(payload)))

    def _read_before(self, order: Order, at: Any) -> str | None:
        # The gate judges the order against the account as it is now: the last cycle's equity
        # may be a loss ago. HALTED refuses every order, so no read is needed then. Returns why
        # the account could not be read (failed, or an equity that is not a number), else None.
        if self.monitor.trading_state is TradingState.HALTED:
            return None
        try:
            snapshot = read_account(self._broker)
        except Exception as exc:
            self.log.error("account not read before order {}: {!r}", order.client_id, exc)
            return f"reading it failed: {exc!r}"
        refused = self._bad_readings
        self._reading(EquityReading(snapshot.equity, at, None, None, snapshot.net_deposits))
        if self._bad_readings != refused:
            return f"its equity {brief(snapshot.equity)} is not a finite number"
        return None

    def _unread_refusal(self, order: Order, why: str) -> Refusal | None:
        # Unread, the account may already be past a limit that its last reading did not show:
        # an order that adds exposure waits until it can be read; one that reduces goes out.
        try:
            positions = self._broker.open_positions()
        except Exception as exc:
            self.log.error("open positions not read for order {}: {!r}", order.client_id, exc)
        else:
            if reduces_exposure(order, positions, tuple(self._in_doubt.values())):
                return None
        self._metrics.incr(f"{MetricNames.ORDER_REFUSED_TOTAL}.{ACCOUNT_UNREAD}")
        return Refusal(
            ACCOUNT_UNREAD,
            f"the account could not be read before this order ({why}): only an order that reduces "
            "exposure goes out until it can be",
        )

    def _journal_caught_up(self, within: float) -> None:
        # The guard writes an order's events to the store itself, every other event reaches it
        # through the emitter's journal worker: once the emitter has answered (so has handed on
        # everything told to it before) and the journal has written that, what was published
        # before the order is journaled before it. Bounded: the order must not wait on a slow disk.
        if self._emitter is None or within <= 0:
            return
        deadline = time.monotonic() + within
        try:
            with self.context.busy("journal.catch_up"):  # bounded by within itself
                journals = self._emitter.ask(GetJournals(), timeout=within)
                behind = [j for j in journals if not j.wait_caught_up(max(0.0, deadline - time.monotonic()))]
        except Exception as exc:
            self.log.warning("journal not caught up before an order's events: {!r}; they may precede earlier events", exc)
            return
        for journal in behind:
            self.log.warning(
                "journal {} still {} events behind after {:g}s; an order's events may precede them", journal, journal.backlog, within
            )

    def _check(self, order: Order) -> Refusal | None:
        gate, state = self._gate, self.monitor.trading_state
        positions = self._positions_for_gate(gate.state(state))
        prices = self._prices(order, positions) if gate.needs_prices and positions is not None else {}
        now = self.context.clock.now()
        refusal = gate.check(order, state, positions, now=now, prices=prices, equity=self.monitor.tracker.latest_equity,
                             in_doubt=tuple(self._in_doubt.values()))
        if refusal is None:
            return None
        self._metrics.incr(f"{MetricNames.ORDER_REFUSED_TOTAL}.{refusal.rule}")
        if refusal.counted:
            self._save_gate()
        if refusal.runaway is not None:
            self.log.critical("{}: trading reducing", refusal.runaway)
            self._alert("Runaway order loop", f"{refusal.runaway}; trading reducing until resumed", Severity.CRITICAL,
                        news=True)
            self._publish_state(state, gate.state(state), refusal.runaway)
            self._arm_cooldowns()
        return refusal

    def _positions_for_gate(self, state: TradingState) -> list | None:
        # Read only when something needs them: REDUCING (to tell a reducing order) or a limit.
        # None refuses there.
        if state is TradingState.HALTED or (state is TradingState.ACTIVE and not self._gate.needs_positions):
            return []
        try:
            return self._broker.open_positions()
        except Exception as exc:
            self.log.error("open positions not read for an order: {!r}", exc)
            return None

    def _prices(self, order: Order, positions: list | None) -> dict[str, float]:
        if self._latest_price is None:
            return {}
        prices = {}
        for symbol in {order.symbol, *(p.symbol for p in positions or ())}:
            try:
                prices[symbol] = self._latest_price(symbol)
            except Exception as exc:  # the rule falls back to the entry price, or refuses
                self.log.debug("no latest price for {}: {!r}", symbol, exc)
        return prices

    def _settle(self, client_id: str, payload: TradeExecuted | TradeFailed, watch_until: datetime | None = None) -> None:
        outcome = self._publish.make(payload)
        try:
            self._store.settle_order(self._loop_id, client_id, outcome, watch_until)
        except Exception as exc:
            # Unsettled in the store, the order is looked up at the broker on the next start.
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            self.log.critical("outcome of order {} not journaled: {!r}", client_id, exc)
            self._alert("Order outcome not journaled", f"order {client_id}: {exc!r}", Severity.CRITICAL)
        self._publish.send(outcome)

    def _outcome(
        self, order: Order, at: Any, *, fill: Fill | None = None, refusal: str | None = None, error: str | None = None,
        unknown: bool = False,
    ) -> OrderOutcome:
        # The account right after the order is a reading like any other: a fill that breaches a
        # limit halts and liquidates before the answer goes back.
        equity, positions_open = self._judge_account(order.client_id, at)
        state = self._gate.state(self.monitor.trading_state)
        return OrderOutcome(order.client_id, fill, refusal, error, state, equity, positions_open, unknown)

    def _judge_account(self, client_id: str, at: Any) -> tuple[float | None, int | None]:
        # Read the account after order ``client_id`` changed it, and take it as a reading.
        try:
            snapshot = read_account(self._broker)
            positions_open = len(self._broker.open_positions())
        except Exception as exc:
            self.log.error("account not read after order {}: {!r}", client_id, exc)
            return None, None
        self._reading(EquityReading(snapshot.equity, at, positions_open, time.perf_counter(), snapshot.net_deposits))
        try:  # (a bad figure is refused and counted by the reading; the answer says it is unread)
            return finite_number("equity", snapshot.equity), positions_open
        except (TypeError, ValueError):
            return None, positions_open

    def _reconcile(self) -> None:
        # See the class docstring. Ages are wall time: the broker is real I/O, even in a replay.
        try:
            held_orders = self._store.held_orders(self._loop_id)
        except Exception as exc:  # a store that fails now is read again, not fatal
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            self.log.critical("orders to reconcile not read: {!r}; read again in {:g}s", exc, _RECONCILE_EVERY)
            self.timers.start_single("reconcile", _RECONCILE_EVERY)
            return
        if held_orders:
            self._journal_caught_up(self._journal_catch_up)
        now = datetime.now(UTC)
        waits: list[float] = []
        for held in held_orders:
            if isinstance(held, UnreadableOrder):
                self._unreadable_order(held.client_order_id, held.problem)
                continue
            try:
                order = OrderSubmitted.from_event(held.submitted)
                sent = Order(order.symbol, order.side, order.volume, order.client_order_id)
            except (TypeError, ValueError) as exc:  # one unreadable record must not stop the guard
                self._unreadable_order(held.submitted.metadata.get("client_order_id"), str(exc))
                continue
            client_id, watch_until = order.client_order_id, held.watch_until
            watched = watch_until is not None
            if not watched:  # (also one an earlier incarnation sent)
                self._in_doubt[client_id] = sent
            try:
                fill = self._broker.find_fill(client_id)
            except Exception as exc:
                self.log.critical("order {} could not be looked up at the broker: {!r}", client_id, exc)
                if not watched:
                    self._alert("Order outcome unknown", f"order {client_id}: {exc!r}; looked up again", Severity.CRITICAL)
                waits.append(self._late_fill_every if watched else _RECONCILE_EVERY)
                continue
            if fill is not None:
                self._in_doubt.pop(client_id, None)
                self._settle(client_id, TradeExecuted.of(order, fill, reconciled=True))
                if order.closes is not None:
                    self._stop_found(order, fill)
                self._found(client_id, fill, watched)
            elif watch_until is not None:
                if now < watch_until or not self._unwatch(client_id):
                    waits.append(self._late_fill_every)
            else:
                left = self._settle_grace - (now - held.sent_at).total_seconds()
                if left > 0:
                    waits.append(min(left, _RECONCILE_EVERY))
                    continue
                error = f"not executed: the broker has no fill for this client id {self._settle_grace:g}s after it was sent"
                failed = TradeFailed(**order.order_fields(), rejected=False, error=error, client_order_id=client_id, reconciled=True)
                self._in_doubt.pop(client_id, None)
                self._settle(client_id, failed, watch_until=now + self._late_fill_watch)
                self.log.warning("order {} reconciled with the broker: not executed (watched for a late fill)", client_id)
                if client_id in self._unknown_ids:
                    self._unknown_ids.discard(client_id)
                    self._alert("Order outcome found", f"order {client_id}: {error}; journaled as not executed, and "
                                "watched for a late fill", Severity.WARNING)
                waits.append(self._late_fill_every)
        if waits:
            self.timers.start_single("reconcile", min(waits))

    def _unreadable_order(self, client_id: Any, problem: str) -> None:
        # Left in the store as it is: only a person can say what that order was. Said once per
        # incarnation, though reconciliation passes over it again while other orders wait.
        if repr(client_id) in self._unreadable:
            return
        self._unreadable.add(repr(client_id))
        self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
        self.log.critical("order {!r} held in the store is unreadable, not reconciled: {}", client_id, problem)
        self._alert(
            "Order record unreadable",
            f"order {client_id!r} held in the store is unreadable, so not reconciled with the broker: {problem}; check it by hand",
            Severity.CRITICAL,
        )

    def _stop_found(self, order: OrderSubmitted, fill: Fill) -> None:
        # A stop's close done at the broker whose outcome was not journaled when it was sent
        # (its guard went first, or the broker's answer was lost).
        self._publish(PositionClosed.found(order, fill))
        self.log.warning("{}: closed (found at the broker by reconciliation)", order.reason)
        self._alert("Position stopped", f"{order.reason} (closed; found at the broker by reconciliation)", Severity.WARNING)

    def _unwatch(self, client_id: str) -> bool:
        # The watch is over with no fill: the order stays journaled as not executed.
        try:
            self._store.unwatch_order(self._loop_id, client_id)
        except Exception as exc:  # still watched in the store: ended again at the next look
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            self.log.critical("watch of order {} not ended: {!r}", client_id, exc)
            return False
        self.log.warning("order {}: no late fill by the end of its watch; not executed", client_id)
        return True

    def _found(self, client_id: str, fill: Fill, late: bool) -> None:
        # A reconciled fill changed the account behind the guard's back: judge it now.
        if late:
            self.log.critical("order {}: late fill found after it was journaled as not executed", client_id)
            self._alert(
                "Late fill found",
                f"order {client_id}: filled {fill.volume:g} {fill.symbol} at {fill.price:.2f} after it was journaled "
                "as not executed; journal corrected (trade_executed, reconciled)",
                Severity.CRITICAL,
            )
        else:
            self.log.warning("order {} reconciled with the broker: filled", client_id)
            if client_id in self._unknown_ids:
                self._alert("Order outcome found", f"order {client_id}: filled {fill.volume:g} {fill.symbol} at "
                            f"{fill.price:.2f}; journaled as executed (reconciled)", Severity.WARNING)
        self._unknown_ids.discard(client_id)
        self._judge_account(client_id, self.context.clock.now())

    # --- the per-position stop ----------------------------------------------------------------

    def _check_stops(self) -> None:
        # While halted the liquidation closes everything; a stop would only race it.
        stop = self._position_stop
        if stop is None or self._liquidating is not None or self.monitor.trading_state is TradingState.HALTED:
            return
        try:
            positions = self._broker.open_positions()
        except Exception as exc:
            self.log.error("open positions not read for the position stop: {!r}", exc)
            return
        for position, reason in stop.fired(positions, self.monitor.tracker.latest_equity):
            self._close_stopped(position, reason)

    def _close_stopped(self, position: Position, reason: str) -> None:
        # The close of the exact ticket, journaled as an order: its client id, then its outcome.
        order = Order(position.symbol, position.side.opposite, position.volume)
        submitted = OrderSubmitted.closing(order, position.position_id, PositionStop.name, reason)
        event = self._publish.make(submitted)
        try:
            self._open(event)
        except Exception as exc:
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            self.log.critical("position stop of {} not journaled, so not sent: {!r}", position.position_id, exc)
            self._alert("Position stop failing", f"{reason}; its close could not be journaled, so it was not sent: "
                        f"{exc!r}; tried again at the next reading", Severity.CRITICAL)
            return
        self._client_ids.add(order.client_id)
        try:
            if self._close_with_id:
                closed = self._broker.close_position(position.position_id, client_id=order.client_id)
            else:
                closed = self._broker.close_position(position.position_id)
            fill = attrs.evolve(closed, client_id=order.client_id)
        except Exception as exc:
            self._close_order(order.client_id, event, TradeFailed.of(order, None, rejected=False, error=repr(exc)))
            self.log.error("{}; closing failed: {!r}", reason, exc)
            self._alert("Position stop failing", f"{reason}; closing failed: {exc!r}; tried again at the next reading", Severity.CRITICAL)
            return
        self._close_order(order.client_id, event, TradeExecuted.of(submitted, fill))
        self._publish(PositionClosed.of(position, fill, reason, 0, rule=PositionStop.name))
        self.log.warning("{}: closed", reason)
        self._alert("Position stopped", reason, Severity.WARNING)

    # --- what the gate remembers, and the cooldowns ----------------------------------------------

    @property
    def _remembers(self) -> bool:
        return self._gate.remembers or self._cooldown is not None

    def _restore_gate(self) -> None:
        if not self._remembers:
            return
        record = self._gate_stored = self._store.load_gate(self._loop_id)
        carried = None
        if self._carry is not None:
            record, carried = self._carry.adopt_gate(self, record)
        if record is not None:
            self._gate.restore(record)
            if self.monitor.trading_state is TradingState.HALTED:
                self._halted_by, self._halted_at = record.halted_by, record.halted_at
        if carried is not None:  # as _adopt: saved again, counting on from its failures
            self.log.warning("carrying on from the gate record an earlier incarnation could not save ({})", carried.error)
            self._gate_unsaved = (carried.failures, carried.error)
            self._save_gate()
        self._arm_cooldowns()

    def _save_gate(self) -> None:
        # As _save: a store that fails must not stop the guard, but it must say so (once an
        # outage), save it again until the store takes it, and hold it for the next incarnation.
        if not self._remembers:
            return
        record = attrs.evolve(self._gate.record(), halted_by=self._halted_by, halted_at=self._halted_at)
        try:
            self._store.save_gate(self._loop_id, record)
        except Exception as exc:
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            failures = 1 if self._gate_unsaved is None else self._gate_unsaved[0] + 1
            self._gate_unsaved = (failures, repr(exc))
            self._keep_unsaved(Unsaved(record, self._gate_stored, failures, repr(exc)), "resave_gate")
            if failures == 1:
                self.log.critical("gate state not saved: {!r}; saved again until the store takes it", exc)
                self._alert("Gate state not saved", f"{exc!r}; the guard keeps acting on its order history and latches, "
                            "and saves them again until the store takes them", Severity.CRITICAL)
            return
        self._gate_stored = record
        if self._gate_unsaved is not None:
            failures, self._gate_unsaved = self._gate_unsaved[0], None
            self._unsaved_taken("resave_gate", gate=True)
            self.log.warning("gate state saved again after {} failed tries", failures)
            self._alert("Gate state saved", f"the state store took the gate's record again after {failures} failed tries",
                        Severity.INFO)

    def _hold_halt(self, rules: tuple[str, ...]) -> None:
        if self._cooldown is None:
            return
        self._halted_by, self._halted_at = rules, self.context.clock.now().timestamp()
        self._save_gate()
        self._arm_cooldowns()

    def _release_halt(self, *, runaway_too: bool) -> None:
        self._halted_by, self._halted_at = (), None
        self._cooldown_timers.cancel("cooldown")
        if runaway_too:
            self._cooldown_timers.cancel("runaway_cooldown")
        self._save_gate()

    def _arm_cooldowns(self) -> None:
        latched = (RUNAWAY_LOOP,) if self._gate.latched is not None else ()
        for key, rules, since in (
            ("cooldown", self._halted_by, self._halted_at),
            ("runaway_cooldown", latched, self._gate.latched_at),
        ):
            ends = self._cooldown_end(rules, since)
            if ends is not None:
                self._cooldown_timers.start_single(key, max(0.0, (ends - self.context.clock.now()).total_seconds()))

    def _cooldown_end(self, rules: tuple[str, ...], since: float | None) -> datetime | None:
        # When the cooldown of a latch by ``rules`` since ``since`` (epoch seconds) ends; None
        # when none lifts it.
        if self._cooldown is None or not rules or since is None:
            return None
        return self._cooldown.resume_at(rules, datetime.fromtimestamp(since, UTC))

    def _cool_down(self) -> None:
        rules = self._halted_by
        if not rules or self.monitor.trading_state is not TradingState.HALTED:
            return
        by = f"the cooldown after {', '.join(rules)} ended"
        if self._liquidating is not None:
            # Resuming now would stop closing the breach's positions and trade on beside them:
            # the cooldown takes effect once the liquidation has left the account flat.
            self.log.warning("{}, but the liquidation is not done: trading resumes once the account is flat", by)
            return
        answer = self._resume(by, MAX_DRAWDOWN in rules, automatic=True)
        if isinstance(answer, ResumeRefused):
            self._release_halt(runaway_too=False)  # latched from now on: an operator decides
            self._alert("Automatic resume refused", f"{by}, but {answer}; trading stays halted until resumed",
                        Severity.WARNING, news=True)

    def _cooldown_ended(self) -> bool:
        ends = self._cooldown_end(self._halted_by, self._halted_at)
        return ends is not None and ends <= self.context.clock.now()

    def _lift_runaway(self) -> None:
        reason = self._gate.release()
        if reason is None:
            return
        self._save_gate()
        why = f"resumed automatically: the cooldown after {RUNAWAY_LOOP} ended"
        if self.monitor.trading_state is TradingState.ACTIVE:
            self._publish_state(TradingState.REDUCING, TradingState.ACTIVE, why)
        self._alert("Trading resumed automatically", f"{why} ({reason})", Severity.INFO, news=True)

    # --- liquidation ------------------------------------------------------------------------

    def _liquidate(self, reason: str, attempt: int) -> None:
        # Close everything first, then report: the events can wait, the market cannot. Each
        # broker call is a busy section, so a slow broker does not get the guard abandoned as hung.
        try:
            closed, failed = close_every_position(self._broker)
        except Exception as exc:
            self._retry(reason, attempt, f"listing positions failed: {exc!r}")
            return
        for position, fill in closed:
            self._publish(PositionClosed.of(position, fill, reason, attempt))
        if failed:
            self._retry(reason, attempt, "; ".join(failed))
            return
        if self._liquidating is not None or closed:
            self.log.info("flat after {} attempt(s): {}", attempt + 1, reason)
        self._liquidating = None
        self.timers.cancel("liquidate")
        if self._reaction_started is not None:
            self._metrics.timing(MetricNames.GUARD_REACTION_MS, (time.perf_counter() - self._reaction_started) * 1000.0)
            self._reaction_started = None
        if self._cooldown_ended():
            self._cool_down()  # it ended while the liquidation was still closing positions

    def _retry(self, reason: str, attempt: int, failure: str) -> None:
        delay = _LIQUIDATION_RETRIES.delay(attempt + 1)
        self.log.error("liquidation attempt {} failed ({}); retrying in {:.2f}s", attempt + 1, failure, delay)
        if attempt == 0:
            self._alert("Liquidation failing", f"{reason}: {failure}; retrying until flat", Severity.CRITICAL)
        self._liquidating = reason
        self._retry_attempt = attempt + 1
        self.timers.start_single("liquidate", delay)

    # --- helpers ----------------------------------------------------------------------------

    def _slow_call(self, port: str, counter: str | None, section: BusySection) -> None:
        # A port slower than its bound is that port's fault, not a hung guard: say it loudly.
        seconds = section.elapsed()
        if counter is not None:
            self._metrics.incr(counter)
        self.log.critical("{} took {:.1f}s, past the {:g}s bound", section.what, seconds, section.bound)
        self._alert(f"{port} call slow", f"{section.what} took {seconds:.1f}s, past the {section.bound:g}s bound",
                    Severity.CRITICAL)

    def _save(self) -> bool:
        # A store that fails must not stop the guard from protecting the account: it acts on the
        # state it holds, says loudly that the state is not durable, and saves again next time.
        # True once saved.
        # Until a save succeeds it is tried again on a timer (`_RESAVE`), so that a halt made
        # while the store was down reaches it without waiting for a reading that changes anything,
        # and it is held in the carry, so that an incarnation that crashes before then hands it on.
        monitor = self.monitor
        self._metrics.gauge(MetricNames.TRADING_STATE, monitor.trading_state.gauge)
        record = monitor.record()
        try:
            self._store.save_guard(self._loop_id, record)
        except Exception as exc:
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            failures = 1 if self._unsaved is None else self._unsaved[0] + 1
            self._unsaved, self._saved = (failures, repr(exc)), None
            self._keep_unsaved(Unsaved(record, self._stored, failures, repr(exc)), "resave")
            if failures == 1:  # said once an outage; the retries are not news
                self.log.critical("guard state not saved: {!r}; saved again until the store takes it", exc)
                self._alert("Guard state not saved", f"{exc!r}; the guard keeps acting on what it holds, and saves it "
                            "again until the store takes it", Severity.CRITICAL)
            return False
        self._saved, self._stored = self._save_key(), record
        if self._unsaved is not None:
            failures, self._unsaved = self._unsaved[0], None
            self._clear_taken_halts()  # a halt taken while the store refused it is durable now: its pending record goes
            self._unsaved_taken("resave", gate=False)
            self.log.warning("guard state saved again after {} failed tries: {}", failures, monitor.trading_state.value)
            self._alert("Guard state saved", f"the state store took the guard's state again ({monitor.trading_state.value})"
                        f" after {failures} failed tries", Severity.INFO)
        return True

    def _keep_unsaved(self, unsaved: Unsaved[GuardRecord] | Unsaved[GateRecord], timer: str) -> None:
        # A record the store refused: held for the next incarnation (see GuardCarry), and saved
        # again on ``timer``, soon at first, then every 10 s while the store stays down.
        if self._carry is not None:
            self._carry.hold(self, unsaved)
        self.timers.start_single(timer, _RESAVE.delay(unsaved.failures))

    def _unsaved_taken(self, timer: str, *, gate: bool) -> None:
        # The store took a record it had refused: nothing is left to hand on or to save again.
        if self._carry is not None:
            self._carry.clear(self, gate=gate)
        self.timers.cancel(timer)

    def _save_key(self) -> tuple[float, object, int, float | None]:
        # A reading is saved when it moves the peak, the day or the net deposits (which must
        # never be lost: a restart would take the flow again), or the worst drawdown by another
        # 0.1 point (so a restart loses at most that much of it).
        monitor = self.monitor
        return monitor.tracker.peak_equity, monitor.day, int(monitor.tracker.max_drawdown * 1000), monitor.net_deposits

    def _alert(self, title: str, text: str, severity: Severity, *, news: bool = False) -> None:
        # ``news``: a change of the trading state, never merged with the last one of its title
        # (a second breach, another person's resume): the chat's latest message says the state now.
        if self._alerts is None:
            return
        try:
            self._alerts.tell(SendAlert(Alert(title, text, severity, key=f"guard:{title}", merge=not news)))
        except Exception as exc:
            self.log.error("alert {!r} not queued: {!r}", title, exc)

    def _publish_state(self, previous: TradingState, state: TradingState, reason: str) -> None:
        # A latch is dated when it is made public, after everything its message did (the
        # liquidation included): no one can have seen it before, so a resume sent earlier must
        # not lift it. The status's state_since is this event's time: both show one moment.
        event = self._publish.make(TradingStateChanged(previous, state, reason))
        self._publish.send(event)
        monitor = self.monitor
        if state is monitor.trading_state and state is not TradingState.ACTIVE:
            monitor.date_latch(event.timestamp, again=previous is state)
            self._save()


def _seconds(field: str, value: Any) -> float:
    # A duration option: a finite number of seconds, >= 0 (else an error naming it).
    seconds = finite_number(field, value)
    if seconds < 0:
        raise ValueError(f"{field} must be >= 0 seconds, got {value!r}")
    return seconds


_NEVER = datetime.min.replace(tzinfo=UTC)


def _day_end(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), dt_time(), tzinfo=zone).astimezone(UTC)


def _not_after(at: Any, now: datetime) -> Any:
    # A reading is made before the guard takes it: a time ahead of the guard's clock (a feed's
    # local time labelled UTC, an order stamped hours ahead) is taken as now, so that no reading
    # can start a trading day that has not begun. A time that cannot be compared is left to
    # the monitor, which refuses it by name.
    try:
        return now if at > now else at
    except TypeError:
        return at


def _all_not_after(times: Any, now: datetime) -> Any:
    # As _not_after for each, and the same sequence when none is ahead (the usual case, checked in C).
    try:
        if max(times) <= now:
            return times
    except (TypeError, ValueError):  # (a time that cannot be compared, or no times)
        pass
    return tuple(_not_after(at, now) for at in times) if isinstance(times, (tuple, list)) else times


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past a float's range
        return False


def _values(equities: Any) -> list[Any]:
    # A batch that is not even a sequence is one bad value.
    try:
        return list(equities)
    except TypeError:
        return [equities]

