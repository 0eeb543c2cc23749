"""The trading loop actor: signals in, orders out, equity to the guard, figures for the heartbeat."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from actors.emitter import Publisher
from actors.messages import (
    EquityReading,
    GetMetrics,
    GetTradingState,
    LoopStatus,
    MarketData,
    RunCycle,
    TradingStateChanged,
)
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.broker import Broker, Fill, Position
from runtime.events import EventType
from runtime.heartbeat import HeartbeatMetrics
from runtime.metrics import MetricNames, MetricsSink, NullMetrics
from runtime.risk.guards import TradingState
from runtime.signals import ApprovalPolicy, AutoApprove, Signal, SignalSource
from runtime.store import LoopTotals, StateStore

__all__ = ["LoopActor", "reduces_exposure"]


def reduces_exposure(signal: Signal, positions: list[Position]) -> bool:
    """True when the signal's order only shrinks the net position in its symbol (never opens,
    adds to, or reverses one)."""
    net = sum(p.side.sign * p.volume for p in positions if p.symbol == signal.symbol)
    return net != 0 and signal.side.sign * net < 0 and signal.volume <= abs(net) + 1e-12


class LoopActor(SupervisedActor):
    """Runs a trading cycle on its timer (``interval`` seconds) or when `MarketData` arrives
    (first handed to ``market_feed``, so prices and strategies move in step with the cycle).

    A cycle polls the signal source; for each signal it emits SIGNAL_RECEIVED, asks the approval
    policy (SIGNAL_APPROVED), executes by the trading state the guard confirms for each order
    (ACTIVE: any order; REDUCING: only orders that reduce exposure; HALTED, or a guard that does
    not answer within ``guard_timeout``: none, recorded as a rejected TRADE_FAILED), emits
    TRADE_EXECUTED or TRADE_FAILED, and sends the account equity to the guard. A cycle without
    signals still sends the equity once. Lifetime totals survive restarts through the store.
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
    ) -> None:
        super().__init__(context)
        self._broker = context.guarded(broker)
        self._signals = signals
        self._approval = approval or AutoApprove()
        self._store = context.guarded(store)
        self._loop_id = loop_id
        self._interval = interval
        self._market_feed = market_feed
        self._guard_timeout = guard_timeout
        self._metrics = metrics or NullMetrics()
        self._guard = context.sibling("guard")
        self._publish = Publisher(context.sibling("emitter"), loop_id, context.clock)
        self._state = TradingState.ACTIVE
        self._signals_processed = 0
        self._trades_executed = 0
        self._errors = 0
        self._duration_ms = 0.0
        self._positions_open = 0
        self._equity = 0.0
        self._totals = LoopTotals()
        self._last_cycle_at: float | None = None
        self._started = False
        self._unconfirmed: str | None = None

    def prepare(self) -> None:
        """Reload lifetime totals and the guard's last trading state; start the cycle timer."""
        self._totals = self._store.load_loop_totals(self._loop_id) or LoopTotals()
        record = self._store.load_guard(self._loop_id)
        if record is not None:
            self._state = record.trading_state
        self._publish(
            EventType.LOOP_STARTED,
            {"incarnation": self.context.incarnation, "trading_state": self._state.value, **self._totals_dict()},
        )
        if self._interval is not None:
            self.timers.start_fixed_rate("cycle", self._interval)
        self._started = True

    def cleanup(self) -> None:
        """Save the totals and mark the end of this loop's life with LOOP_STOPPED."""
        if self.context.revoked.is_set() or not self._started:
            return  # an abandoned loop's successor owns the totals; a loop that never started has none
        self._store.save_loop_totals(self._loop_id, self._totals)
        self._publish(
            EventType.LOOP_STOPPED,
            {"incarnation": self.context.incarnation, "how": self.exit_kind, "cause": self.exit_cause, **self._totals_dict()},
        )

    def handle(self, message: Any) -> Any:
        """Market data and cycle requests, trading-state changes and metrics requests."""
        if isinstance(message, MarketData):
            self._feed(message)
            self._cycle(message.at)
        elif isinstance(message, RunCycle):
            self._cycle(message.at or self.context.clock.now())
            return self._status()
        elif isinstance(message, GetMetrics):
            return self._status()
        elif isinstance(message, TradingStateChanged):
            self._state = message.state
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

    def _cycle(self, at: datetime) -> None:
        started = time.perf_counter()
        before = self._totals
        self._unconfirmed = None
        signals = self._poll(at)
        for signal in signals:
            self._signals_processed += 1
            self._totals = LoopTotals(self._totals.total_signals_lifetime + 1, self._totals.total_trades_lifetime)
            self._publish(EventType.SIGNAL_RECEIVED, _describe(signal))
            if self._approve(signal):
                self._publish(EventType.SIGNAL_APPROVED, _describe(signal))
                self._execute(signal)
            self._report_equity(at)
        if not signals:
            self._report_equity(at)
        if self._totals != before:
            self._store.save_loop_totals(self._loop_id, self._totals)
        self._duration_ms = (time.perf_counter() - started) * 1000.0
        self._last_cycle_at = self.context.clock.monotonic()
        self._metrics.timing(MetricNames.LOOP_DURATION_MS, self._duration_ms)
        self._metrics.gauge(MetricNames.POSITIONS_OPEN, self._positions_open)

    def _poll(self, at: datetime) -> list[Signal]:
        try:
            return list(self._signals.poll(at))
        except Exception as exc:
            self._errors += 1
            self.log.error("signal source failed: {!r}", exc)
            return []

    def _approve(self, signal: Signal) -> bool:
        try:
            return bool(self._approval.approve(signal, self._state))
        except Exception as exc:
            self._errors += 1
            self.log.error("approval policy failed on {}: {!r}", signal.signal_id, exc)
            return False

    def _execute(self, signal: Signal) -> None:
        refusal = self._refusal(signal)
        if refusal is not None:
            self._publish(EventType.TRADE_FAILED, {**_describe(signal), "rejected": True, "error": refusal})
            return
        try:
            fill = self._broker.submit_order(signal.order())
        except Exception as exc:
            self._errors += 1
            self._publish(EventType.TRADE_FAILED, {**_describe(signal), "rejected": False, "error": repr(exc)})
            return
        self._trades_executed += 1
        self._totals = LoopTotals(self._totals.total_signals_lifetime, self._totals.total_trades_lifetime + 1)
        self._publish(EventType.TRADE_EXECUTED, {**_describe(signal), **_fill(fill)})

    def _refusal(self, signal: Signal) -> str | None:
        # Ask the guard itself before every order: the equity this loop just reported may have
        # halted trading, and that news could still be waiting behind this cycle in the mailbox.
        # One unanswered ask refuses the rest of the cycle without waiting again.
        if self._unconfirmed is not None:
            return self._unconfirmed
        if self._guard is not None:
            try:
                self._state = self._guard.ask(GetTradingState(), timeout=self._guard_timeout)
            except Exception as exc:
                self._unconfirmed = f"the guard did not confirm the trading state: {exc!r}"
                return self._unconfirmed
        if self._state is TradingState.HALTED:
            return "trading halted"
        if self._state is TradingState.REDUCING:
            try:
                positions = self._broker.open_positions()
            except Exception as exc:
                return f"reducing, and positions could not be read: {exc!r}"
            if not reduces_exposure(signal, positions):
                return "reducing: only orders that reduce exposure are allowed"
        return None

    def _report_equity(self, at: datetime) -> None:
        try:
            equity = self._broker.account_equity()
            self._positions_open = len(self._broker.open_positions())
        except Exception as exc:
            self._errors += 1
            self.log.error("could not read account equity: {!r}", exc)
            return
        self._equity = equity
        if self._guard is not None:
            try:
                self._guard.tell(EquityReading(equity, at, self._positions_open, time.perf_counter()))
            except Exception as exc:  # a guard gone for good must not take the loop down with it
                self._errors += 1
                self.log.error("equity reading not delivered to the guard: {!r}", exc)

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
        return LoopStatus(metrics, self._last_cycle_at, self._state)

    def _totals_dict(self) -> dict[str, int]:
        return {
            "total_signals_lifetime": self._totals.total_signals_lifetime,
            "total_trades_lifetime": self._totals.total_trades_lifetime,
        }


def _describe(signal: Signal) -> dict[str, Any]:
    return {
        "signal_id": signal.signal_id,
        "symbol": signal.symbol,
        "side": signal.side.value,
        "volume": signal.volume,
        "reason": signal.reason,
    }


def _fill(fill: Fill) -> dict[str, Any]:
    return {
        "position_id": fill.position_id,
        "price": fill.price,
        "filled_volume": fill.volume,
        "realised_pnl": fill.realised_pnl,
    }
