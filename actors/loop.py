"""The trading loop actor: signals in, orders to the guard, figures for the heartbeat."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from actors.emitter import Publisher
from actors.messages import EquityReading, GetMetrics, LoopStatus, MarketData, OrderOutcome, PlaceOrder, RunCycle
from actors.replay_messages import BatchDone, Cycles, EquitySeries, GetGuardLine, JudgeReading, MarketBatch
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.broker import AccountSnapshot, Broker, read_account
from runtime.errors import TradewardenError
from runtime.events import Event
from runtime.heartbeat import HeartbeatMetrics
from runtime.metrics import MetricNames, MetricsSink, NullMetrics
from runtime.payloads import LoopStarted, LoopStopped, Payload, SignalApproved, SignalReceived, TradeFailed
from runtime.replay.guard_line import GuardLine
from runtime.signals import ApprovalPolicy, AutoApprove, Signal, SignalSource
from runtime.store import LoopTotals, StateStore

__all__ = ["LoopActor", "NoGuard"]

_SERIES_MAX = 10_000  # clear readings held back at most, before they go to the guard as one series
_SAY_AGAIN_SECONDS = 60.0  # how often a failure that repeats every cycle is logged again


class NoGuard(TradewardenError, LookupError):
    """A loop was started without a guard sibling: it refuses to start rather than trade unguarded."""


class _Account:
    """The loop's view of the broker: it reads the account and has no way to place or close an
    order (only the guard does that)."""

    __slots__ = ("_broker",)

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def snapshot(self) -> AccountSnapshot:
        return read_account(self._broker)

    def positions_open(self) -> int:
        return len(self._broker.open_positions())


class LoopActor(SupervisedActor):
    """Runs a trading cycle on its timer (``interval`` seconds) or when `MarketData` arrives
    (first handed to ``market_feed``, so prices and strategies move in step with the cycle).

    A cycle polls the signal source; for each signal it emits SIGNAL_RECEIVED, asks the approval
    policy (SIGNAL_APPROVED), and asks the guard to place its order (`PlaceOrder`): the guard alone
    decides whether it goes out, journals it and answers with the fill or the refusal. The loop
    holds no trading state and never calls the broker's order methods. A cycle in which no order
    was answered sends the account equity to the guard as one `EquityReading`. An order the guard
    does not answer within ``guard_timeout`` (in a replay's `MarketBatch`, by the batch's
    deadline) is logged and counted (the guard journals its outcome); the cycle then places no
    further order. Lifetime totals survive restarts through the
    store; each store call runs in a busy section bounded by ``store_call_bound`` seconds, so a
    slow store is not a stalled loop. Without a guard sibling the loop refuses to start (`NoGuard`).
    """

    def __init__(
        self,
        context: ChildContext,
        *,
        broker: Broker,
        signals: SignalSource,
        store: StateStore,
        approval: ApprovalPolicy | None = None,
        loop_id: str = "main",
        interval: float | None = 1.0,
        market_feed: Callable[[MarketData], None] | None = None,
        metrics: MetricsSink | None = None,
        guard_timeout: float = 5.0,
        store_call_bound: float = 10.0,
    ) -> None:
        super().__init__(context)
        self._account = _Account(context.guarded(broker))
        self._signals = signals
        self._approval = approval or AutoApprove()
        # Busy while the store answers (a lock held elsewhere, a failover): the heartbeat then
        # takes the loop for slow, not stalled, and a call past its bound is reported as overdue.
        self._store = context.guarded(store, busy="store", bound=store_call_bound)
        self._loop_id = loop_id
        self._interval = interval
        self._market_feed = market_feed
        self._guard_timeout = guard_timeout
        self._metrics = metrics or NullMetrics()
        guard = context.sibling("guard")
        if guard is None:
            raise NoGuard(f"loop {loop_id!r} has no guard sibling: it would trade unguarded, so it does not start")
        self._guard = guard
        self._publish = Publisher(context.sibling("emitter"), loop_id, context.clock)
        self._signals_processed = 0
        self._trades_executed = 0
        self._errors = 0
        self._read_failures = 0  # the account's reads failed in a row, up to now
        self._read_failure_said = 0.0  # time.monotonic() when that was last logged
        self._duration_ms = 0.0
        self._positions_open = 0
        self._equity = 0.0
        self._totals = LoopTotals()
        self._totals_unsaved = False  # the store refused the last save of the totals
        self._last_cycle_at: float | None = None
        self._started = False
        self._unanswered: str | None = None  # why orders are held back for the rest of this cycle
        # While a MarketBatch plays: the guard's line, and the clear readings not yet sent to it.
        self._line: GuardLine | None = None
        self._batching = False
        self._held_equities: list[float] = []
        self._held_times: list[datetime] = []
        self._held_positions: int | None = None
        self._held_events: list[Event] = []  # published in one message before the guard hears more
        self._batch_deadline: float | None = None  # while a MarketBatch plays: how long the guard is waited for

    def prepare(self) -> None:
        """Reload lifetime totals; start the cycle timer."""
        self._totals = self._store.load_loop_totals(self._loop_id) or LoopTotals()
        totals = self._totals
        self._publish(LoopStarted(self.context.incarnation, totals.total_signals_lifetime, totals.total_trades_lifetime))
        if self._interval is not None:
            self.timers.start_fixed_rate("cycle", self._interval)
        self._started = True

    def cleanup(self) -> None:
        """Save the totals and mark the end of this loop's life with LOOP_STOPPED."""
        if self.context.revoked.is_set() or not self._started:
            return  # an abandoned loop's successor owns the totals; a loop that never started has none
        self._save_totals()
        totals = self._totals
        self._publish(
            LoopStopped(
                self.context.incarnation,
                str(self.exit_kind),
                self.exit_cause,
                totals.total_signals_lifetime,
                totals.total_trades_lifetime,
            )
        )

    def handle(self, message: Any) -> Any:
        """Market data, cycle requests and metrics requests."""
        if isinstance(message, MarketData):
            self._feed(message)
            self._cycle(message.at)
        elif isinstance(message, MarketBatch):
            return self._play(message)
        elif isinstance(message, RunCycle):
            self._cycle(message.at or self.context.clock.now())
            return self._status()
        elif isinstance(message, GetMetrics):
            return self._status()
        else:
            return super().handle(message)
        return None

    def on_tick(self, key: str) -> None:
        """The cycle timer fired."""
        if key == "cycle":
            self._cycle(self.context.clock.now())

    # --- the cycle --------------------------------------------------------------------------

    def _feed(self, data: MarketData) -> None:
        if self._market_feed is None:
            return
        try:
            self._market_feed(data)
        except Exception as exc:
            self._errors += 1
            self.log.error("market feed failed on data at {}: {!r}", data.at.isoformat(), exc)

    def _save_totals(self) -> None:
        # The lifetime totals are bookkeeping, not safety: a store that refuses them (a full
        # disk) must not crash the loop, whose restarts would soon make the supervisor give up.
        # Said once an outage, counted, and saved again with the next change (or at the stop).
        try:
            self._store.save_loop_totals(self._loop_id, self._totals)
        except Exception as exc:
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            if not self._totals_unsaved:
                self.log.error("lifetime totals not saved: {!r}; saved again with the next change", exc)
            self._totals_unsaved = True
            return
        if self._totals_unsaved:
            self.log.warning("lifetime totals saved again")
        self._totals_unsaved = False

    def _cycle(self, at: datetime) -> float:
        # Returns the clock's monotonic moment at the cycle's end.
        started = time.perf_counter()
        before = self._totals
        self._unanswered = None
        answered = False
        for signal in self._poll(at):
            self._signals_processed += 1
            self._totals = LoopTotals(self._totals.total_signals_lifetime + 1, self._totals.total_trades_lifetime)
            self._emit(SignalReceived.of(signal))
            if self._approve(signal):
                self._emit(SignalApproved.of(signal))
                answered = self._place(signal, at) or answered
        if not answered:  # the guard read the account after every order it answered
            self._report_equity(at)
        if self._totals is not before and not self._batching:  # a batch saves them once, at its end
            self._save_totals()
        self._duration_ms = (time.perf_counter() - started) * 1000.0
        self._last_cycle_at = moment = self.context.clock.monotonic()
        self._metrics.timing(MetricNames.LOOP_DURATION_MS, self._duration_ms)
        self._metrics.gauge(MetricNames.POSITIONS_OPEN, self._positions_open)
        return moment

    def _emit(self, payload: Payload) -> None:
        # In a batch, the events wait and go out together just before the next message to the
        # guard (or the batch's end), so all the guard then publishes still follows them.
        if self._batching:
            self._held_events.append(self._publish.make(payload))
        else:
            self._publish(payload)

    def _send_events(self) -> None:
        if self._held_events:
            events, self._held_events = self._held_events, []
            self._publish.send_all(events)

    def _poll(self, at: datetime) -> list[Signal]:
        try:
            polled = list(self._signals.poll(at))
        except Exception as exc:
            self._errors += 1
            self.log.error("signal source failed: {!r}", exc)
            return []
        for item in polled:  # (nothing to look at on most cycles: no list is made for them)
            if not isinstance(item, Signal):
                return self._signals_only(polled)
        return polled

    def _signals_only(self, polled: list[Any]) -> list[Signal]:
        # A source's bug must not take the loop down with it: what is not a Signal is skipped.
        for item in polled:
            if not isinstance(item, Signal):
                self._errors += 1
                self.log.error("signal source {!r} gave {!r}, not a Signal: skipped", self._signals, item)
        return [item for item in polled if isinstance(item, Signal)]

    def _approve(self, signal: Signal) -> bool:
        try:
            verdict = self._approval.approve(signal)
        except Exception as exc:
            self._errors += 1
            self.log.error("approval policy failed on {}: {!r}", signal.signal_id, exc)
            return False
        if not isinstance(verdict, bool):  # "no" is a truthy string: only True approves
            self._errors += 1
            self.log.error("approval policy gave {!r} on {}, not True or False: not approved", verdict, signal.signal_id)
            return False
        return verdict

    def _place(self, signal: Signal, at: datetime) -> bool:
        """Ask the guard to place the signal's order; True when it answered."""
        if self._unanswered is not None:
            # An earlier order of this cycle is unanswered: its guard is busy or gone, and this
            # order must not pile up behind it (or go out after the cycle has moved on).
            self._errors += 1
            self._emit(TradeFailed.held_back(signal, self._unanswered))
            return False
        order = signal.order()
        self._send_held()  # the guard takes every reading made before the order first
        try:
            patience = self._patience()
            request = PlaceOrder(order, at, signal, expires=time.monotonic() + patience)
            outcome: OrderOutcome = self._guard.ask(request, timeout=patience)
        except Exception as exc:
            self._errors += 1
            self._unanswered = f"held back: order {order.client_id} of this cycle was not answered by the guard ({exc!r})"
            self.log.error("order {} not answered by the guard: {!r}; the guard journals its outcome", order.client_id, exc)
            return False
        if outcome.executed:
            self._trades_executed += 1
            self._totals = LoopTotals(self._totals.total_signals_lifetime, self._totals.total_trades_lifetime + 1)
        elif outcome.error is not None:
            self._errors += 1
        if outcome.equity is not None:
            self._equity = outcome.equity
        if outcome.positions_open is not None:
            self._positions_open = outcome.positions_open
        if self._batching:
            self._follow_order(outcome, at)
        return True

    def _patience(self) -> float:
        # Seconds to wait for the guard's answer: in a replay's batch, until the replay's own
        # deadline (data time waits for the guard; only a hung system gives up), else guard_timeout.
        if self._batch_deadline is None:
            return self._guard_timeout
        return max(self._guard_timeout, self._batch_deadline - time.monotonic())

    def _follow_order(self, outcome: OrderOutcome, at: datetime) -> None:
        # The guard judged the account after the order as a reading: when the line calls that
        # reading clear, the guard found nothing and the line only follows it; otherwise the
        # guard may have moved (a warning, a breach), and the line is asked for again.
        line = self._line
        if line is not None and outcome.equity is not None and outcome.positions_open is not None:
            try:
                net_deposits = self._account.snapshot().net_deposits
            except Exception:
                net_deposits = math.nan  # unknown: never clear
            if (
                outcome.trading_state is line.state
                and line.clear(outcome.equity, at, outcome.positions_open, net_deposits)
            ):
                line.take(outcome.equity)
                return
        self._line = self._ask_line(GetGuardLine())

    def _report_equity(self, at: datetime) -> None:
        try:
            snapshot = self._account.snapshot()
            self._positions_open = self._account.positions_open()
        except Exception as exc:
            self._errors += 1
            self._read_failures += 1
            # Said at once, then once a minute while it lasts: a broker down for an hour must
            # not write a line per cycle (the guard alerts on the stale equity in any case).
            now = time.monotonic()
            if self._read_failures == 1 or now - self._read_failure_said >= _SAY_AGAIN_SECONDS:
                self._read_failure_said = now
                self.log.error("could not read account equity ({} in a row; said once a minute while it lasts): {!r}",
                               self._read_failures, exc)
            return
        if self._read_failures:
            self.log.info("account equity read again after {} failed reads", self._read_failures)
            self._read_failures = 0
        self._equity = snapshot.equity
        line = self._line
        if line is not None and line.clear(snapshot.equity, at, self._positions_open, snapshot.net_deposits):
            self._hold(snapshot.equity, at)
            return
        reading = EquityReading(snapshot.equity, at, self._positions_open, time.perf_counter(), snapshot.net_deposits)
        if self._batching:
            # Near a limit, or the state may change: the guard judges it before the bar goes on.
            self._send_held()
            self._line = self._ask_line(JudgeReading(reading))
            return  # (unanswered, the guard still takes it when it gets to it: never twice)
        try:
            self._guard.tell(reading)
        except Exception as exc:  # a guard gone for good must not take the loop down with it
            self._errors += 1
            self.log.error("equity reading not delivered to the guard: {!r}", exc)

    # --- a batch of bars (a replay) -------------------------------------------------------------

    def _play(self, batch: MarketBatch) -> BatchDone:
        # Each bar exactly as a MarketData told alone and settled before the next: the clock
        # moves to it, the guard sees the equity carried into a new trading day (on the day's
        # first bar), then the readings inside the bar (its worst, its best, a limit crossed on
        # the way to the close: `PaperFeed.intrabar`), then the close. Readings the guard's line
        # calls clear are held and sent as one series before anything else reaches
        # the guard; any other reading, and every order, is judged at once (asked).
        clock = self.context.clock
        move = getattr(clock, "set", None)
        if move is None:
            raise TypeError(f"a MarketBatch needs a clock that a replay moves (ManualClock), got {self.context.clock!r}")
        intrabar = getattr(self._market_feed, "intrabar", None)
        before = self._totals
        cycles: list[tuple[datetime, float, tuple[Any, ...]]] = []
        equities: list[float] = []
        self._batching = True
        self._batch_deadline = batch.deadline
        self._line = self._ask_line(GetGuardLine())
        try:
            for data in batch.bars:
                if data.at > clock.now():  # (a driver that gave up waiting may have moved it on)
                    self._move(move, data.at)
                if self._line is not None and self._line.begins_day(data.at):
                    # The day starts from the equity carried into it (the broker still prices
                    # the last close), as a live guard reads it at midnight: never from the
                    # worst of the day's first bar, which would hide that bar's loss.
                    self._report_equity(data.at)
                if intrabar is not None and self._line is not None:
                    self._inside_bar(intrabar, data)
                self._feed(data)
                cycles.append((data.at, self._cycle(data.at), self._figures()))
                if batch.equity is not None:
                    equities.append(float(batch.equity()))
        finally:
            self._send_held()
            self._batching = False
            self._batch_deadline = None
            self._line = None
            if self._totals is not before:
                self._save_totals()
            self._tell_heartbeat(cycles)
        return BatchDone(len(cycles), tuple(equities))

    def _move(self, move: Callable[..., int], at: datetime) -> None:
        # A data-time timer that falls due as the clock moves to ``at`` (the guard's cooldown)
        # acts at this bar's time, as it does between bars played one at a time: what was held
        # for the guard reaches it before the tick, and the bar waits for the guard's new line.
        if move(at, before_callbacks=self._send_held) and self._line is not None:
            self._line = self._ask_line(GetGuardLine())

    def _inside_bar(self, intrabar: Callable[..., Iterable[tuple[float, bool]]], data: MarketData) -> None:
        # The feed tells the readings inside the bar for what is held (its worst, its best, a
        # crossing on the way to the close), each with whether it is clear; when one is not, it
        # has priced the broker where the guard must judge it, and the guard does before the
        # feed looks at the bar again (what the guard closed is no longer held).
        try:
            for equity, clear in intrabar(data, lambda: self._line):
                if clear:
                    self._hold(equity, data.at)
                else:
                    self._report_equity(data.at)
        except Exception as exc:
            self._errors += 1
            self.log.error("market feed failed inside the bar at {}: {!r}", data.at.isoformat(), exc)

    def _hold(self, equity: float, at: datetime) -> None:
        assert self._line is not None
        self._line.take(equity)
        self._held_equities.append(equity)
        self._held_times.append(at)
        self._held_positions = self._positions_open
        if len(self._held_equities) >= _SERIES_MAX:
            self._send_held()

    def _send_held(self) -> None:
        self._send_events()
        if not self._held_equities:
            return
        series = EquitySeries(tuple(self._held_equities), tuple(self._held_times), self._held_positions)
        self._held_equities, self._held_times = [], []
        try:
            self._guard.tell(series)
        except Exception as exc:
            self._errors += 1
            self.log.error("equity readings not delivered to the guard: {!r}", exc)

    def _ask_line(self, message: Any) -> GuardLine | None:
        # None when the guard did not answer: readings then go to it one by one, told.
        self._send_events()
        try:
            line = self._guard.ask(message, timeout=self._patience())
        except Exception as exc:
            self._errors += 1
            self.log.error("the guard did not answer {!r}: {!r}", type(message).__name__, exc)
            return None
        return line if isinstance(line, GuardLine) else None

    def _tell_heartbeat(self, cycles: list[tuple[datetime, float, tuple[Any, ...]]]) -> None:
        heartbeat = self.context.sibling("heartbeat")
        if heartbeat is None or not cycles:
            return
        try:
            heartbeat.tell(Cycles(tuple(cycles)))
        except Exception as exc:
            self.log.error("cycles not delivered to the heartbeat: {!r}", exc)

    def _figures(self) -> tuple[Any, ...]:
        # HeartbeatMetrics' fields in order: built only for the cycles a beat falls on.
        totals = self._totals
        return (
            self._signals_processed, self._trades_executed, self._errors, self._duration_ms,
            self._positions_open, self._equity, totals.total_signals_lifetime, totals.total_trades_lifetime,
        )

    # --- figures ----------------------------------------------------------------------------

    def _status(self) -> LoopStatus:
        metrics = HeartbeatMetrics(
            signals_processed=self._signals_processed,
            trades_executed=self._trades_executed,
            error_count=self._errors,
            loop_duration_ms=self._duration_ms,
            positions_open=self._positions_open,
            account_equity=self._equity,
            total_signals_lifetime=self._totals.total_signals_lifetime,
            total_trades_lifetime=self._totals.total_trades_lifetime,
        )
        return LoopStatus(metrics, self._last_cycle_at)
