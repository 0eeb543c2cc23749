"""The guard actor: owns the risk monitor and the trading state, and liquidates on a breach."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from actors.emitter import Publisher
from actors.messages import (
    CashFlow,
    EquityBatch,
    EquityReading,
    GetGuardState,
    GetTradingState,
    GuardStatus,
    Liquidate,
    Resume,
    SendAlert,
    TradingStateChanged,
)
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.alerts import Alert, Severity
from runtime.broker import Broker
from runtime.events import EventType
from runtime.metrics import MetricNames, MetricsSink, NullMetrics
from runtime.risk.drawdown import DrawdownTracker
from runtime.risk.guards import Guard, TradingState
from runtime.risk.liquidation import close_every_position, position_closed_metadata
from runtime.risk.monitor import Assessment, RiskMonitor
from runtime.store import StateStore

__all__ = ["GuardActor"]

_RETRY_FIRST = 0.05
_RETRY_CAP = 5.0


class GuardActor(SupervisedActor):
    """Checks every equity reading against the guards; on a breach, in this order: latches HALTED
    and tells the loop, closes every position (retrying a failing broker with backoff until flat,
    one POSITION_CLOSED each), alerts, counts the block, and emits GUARD_TRIGGERED.

    While HALTED, a reading that reports open positions closes them; a breach while halted and
    flat does nothing more. A bad reading is refused, logged and counted, never fatal. The peak,
    start-of-day equity and trading state are saved to the store before they take effect, and a
    new incarnation carries on from them.
    """

    def __init__(
        self,
        context: ChildContext,
        *,
        guards: Sequence[Guard],
        broker: Broker,
        store: StateStore,
        loop_id: str = "main",
        metrics: MetricsSink | None = None,
    ) -> None:
        super().__init__(context)
        self._guards = list(guards)
        self._broker = context.guarded(broker)
        self._store = context.guarded(store)
        self._loop_id = loop_id
        self._metrics = metrics or NullMetrics()
        self._loop = context.sibling("loop")
        self._alerts = context.sibling("alerts")
        self._publish = Publisher(context.sibling("emitter"), loop_id, context.clock)
        self._monitor: RiskMonitor | None = None
        self._saved: tuple[float, object, int] = (0.0, None, 0)  # what the store last got: see _worth_saving
        self._bad_readings = 0
        self._liquidating: str | None = None
        self._reaction_started: float | None = None
        self._retry_attempt = 0

    # --- life -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Carry on from the stored record, or start a new one at the broker's equity."""
        record = self._store.load_guard(self._loop_id)
        if record is None:
            self._monitor = RiskMonitor(self._broker.account_equity(), self._guards)
            self._save()
        else:
            self._monitor = RiskMonitor.from_record(record, self._guards)
            self._saved = self._save_key()
        state = self._monitor.trading_state
        self._tell_loop(state)
        if state is TradingState.HALTED:
            self.actor_ref.tell(Liquidate("restarted while halted"))
        self.log.info("guard up: peak {:.2f}, state {}", self._monitor.tracker.peak_equity, state.value)

    @property
    def monitor(self) -> RiskMonitor:
        """The risk monitor (set once `prepare` has run)."""
        assert self._monitor is not None, "guard not started"
        return self._monitor

    # --- messages ---------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        """Readings, batches, cash flows, resume, liquidation retries and state queries."""
        if isinstance(message, EquityReading):
            self._reading(message)
        elif isinstance(message, EquityBatch):
            self._batch(message)
        elif isinstance(message, Liquidate):
            self._liquidate(message.reason, message.attempt)
        elif isinstance(message, GetTradingState):
            return self.monitor.trading_state
        elif isinstance(message, GetGuardState):
            return GuardStatus(
                self.monitor.state(), self.monitor.block_counts, self._bad_readings, self._liquidating is not None
            )
        elif isinstance(message, Resume):
            return self._resume(message.by)
        elif isinstance(message, CashFlow):
            self.monitor.record_cash_flow(message.amount)
            self._save()
        else:
            return super().handle(message)
        return None

    def on_tick(self, key: str) -> None:
        """A liquidation retry is due."""
        if key == "liquidate" and self._liquidating is not None:
            self._liquidate(self._liquidating, self._retry_attempt)

    def _reading(self, reading: EquityReading) -> None:
        monitor = self.monitor
        try:
            assessment = monitor.observe(reading.equity, reading.at)
        except (TypeError, ValueError, AttributeError) as exc:
            self._refuse(reading.equity, exc)
            return
        if assessment is None and monitor.trading_state is not TradingState.HALTED:
            tracker = monitor.tracker
            if self._save_key() == self._saved:  # nothing to save or act on
                self._gauges(tracker)
                return
        self._after([assessment] if assessment is not None else [], reading.positions_open, reading.sent_at)

    def _batch(self, batch: EquityBatch) -> None:
        try:
            assessments = self.monitor.observe_many(batch.equities, batch.at)
        except (TypeError, ValueError, AttributeError) as exc:
            self._refuse(batch.equities, exc)
            return
        self._after(assessments, batch.positions_open, None)

    def _refuse(self, value: Any, exc: Exception) -> None:
        self._bad_readings += 1
        self._metrics.incr(MetricNames.BAD_READINGS_TOTAL)
        self.log.warning("bad equity reading refused: {}", exc)

    def _after(self, assessments: list[Assessment], positions_open: int | None, sent_at: float | None) -> None:
        monitor = self.monitor
        tracker = monitor.tracker
        if assessments or self._save_key() != self._saved:
            self._save()  # durable before anything acts on it
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
        self._tell_loop(TradingState.HALTED, reason)
        self._liquidate(reason, 0)
        self._alert(f"Trading halted: {', '.join(v.guard for v in assessment.breaches)}", reason, Severity.CRITICAL)
        for verdict in assessment.breaches:
            self._metrics.incr(verdict.block_counter)
            self._publish(
                EventType.GUARD_TRIGGERED,
                {
                    "guard": verdict.guard,
                    "reason": verdict.reason,
                    "equity": assessment.equity,
                    "peak_equity": self.monitor.tracker.peak_equity,
                    "drawdown": self.monitor.tracker.drawdown,
                    "at": assessment.at.isoformat(),
                },
            )
        self._publish_state(assessment.previous_state, TradingState.HALTED, reason)

    def _state_changed(self, assessment: Assessment) -> None:
        reason = "; ".join(v.reason for v in assessment.warnings) or "back within limits"
        self._tell_loop(assessment.state, reason)
        if assessment.state is TradingState.REDUCING:
            self._alert("Reducing exposure", reason, Severity.WARNING)
        self._publish_state(assessment.previous_state, assessment.state, reason)

    def _resume(self, by: str) -> TradingState:
        previous = self.monitor.resume()
        self._liquidating = None  # a retry still scheduled must not close positions of the resumed account
        self._retry_attempt = 0
        self.timers.cancel("liquidate")
        self._save()
        self._tell_loop(TradingState.ACTIVE, f"resumed by {by}")
        if previous is not TradingState.ACTIVE:
            self._publish_state(previous, TradingState.ACTIVE, f"resumed by {by}")
            self._alert("Trading resumed", f"resumed by {by}", Severity.INFO)
        return previous

    # --- liquidation ------------------------------------------------------------------------

    def _liquidate(self, reason: str, attempt: int) -> None:
        # Close everything first, then report: the events can wait, the market cannot. Each
        # broker call marks progress, so a slow broker does not get the guard abandoned as hung.
        try:
            closed, failed = close_every_position(self._broker, self.context.mark_progress)
        except Exception as exc:
            self._retry(reason, attempt, f"listing positions failed: {exc!r}")
            return
        for position, fill in closed:
            self._publish(EventType.POSITION_CLOSED, position_closed_metadata(position, fill, reason, attempt))
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

    def _retry(self, reason: str, attempt: int, failure: str) -> None:
        delay = min(_RETRY_CAP, _RETRY_FIRST * 2 ** min(attempt, 20))
        self.log.error("liquidation attempt {} failed ({}); retrying in {:.2f}s", attempt + 1, failure, delay)
        if attempt == 0:
            self._alert("Liquidation failing", f"{reason}: {failure}; retrying until flat", Severity.CRITICAL)
        self._liquidating = reason
        self._retry_attempt = attempt + 1
        self.timers.start_single("liquidate", delay)

    # --- helpers ----------------------------------------------------------------------------

    def _save(self) -> None:
        # A store that fails must not stop the guard from protecting the account: it acts on the
        # state it holds, says loudly that the state is not durable, and saves again next time.
        monitor = self.monitor
        self._metrics.gauge(MetricNames.TRADING_STATE, monitor.trading_state.gauge)
        try:
            self._store.save_guard(self._loop_id, monitor.record())
        except Exception as exc:
            self._metrics.incr(MetricNames.STORE_ERRORS_TOTAL)
            self.log.critical("guard state not saved: {!r}", exc)
            self._alert("Guard state not saved", f"{exc!r}; the guard keeps acting on what it holds", Severity.CRITICAL)
            return
        self._saved = self._save_key()

    def _save_key(self) -> tuple[float, object, int]:
        # A reading is saved when it moves the peak or the day (which must never be lost), or
        # the worst drawdown by another 0.1 point (so a restart loses at most that much of it).
        monitor = self.monitor
        return monitor.tracker.peak_equity, monitor.day, int(monitor.tracker.max_drawdown * 1000)

    def _tell_loop(self, state: TradingState, reason: str | None = None) -> None:
        if self._loop is not None:
            try:
                self._loop.tell(TradingStateChanged(state, reason))
            except Exception as exc:  # the loop also reads the stored state when it starts
                self.log.error("could not tell the loop {}: {!r}", state.value, exc)

    def _alert(self, title: str, text: str, severity: Severity) -> None:
        if self._alerts is None:
            return
        try:
            self._alerts.tell(SendAlert(Alert(title, text, severity, key=f"guard:{title}")))
        except Exception as exc:
            self.log.error("alert {!r} not queued: {!r}", title, exc)

    def _publish_state(self, previous: TradingState, state: TradingState, reason: str) -> None:
        self._publish(EventType.TRADING_STATE_CHANGED, {"from": previous.value, "to": state.value, "reason": reason})
