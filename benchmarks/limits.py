"""The pre-trade gate: its cost per order with every limit on, beside the gateway round trip."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from benchmarks.baselines import Latency
from runtime.broker import Order, Position, Side
from runtime.risk.guards import TradingState
from runtime.settings import Settings

__all__ = ["EVERY_LIMIT", "gate_checks"]

EVERY_LIMIT = Settings(
    max_order_volume=1e6,
    max_order_notional=1e9,
    max_open_positions=10,
    max_symbol_exposure=1e9,
    max_total_exposure=1e10,
    max_leverage=1e4,
    max_orders_per_second=1_000_000,
    max_orders_per_day=100_000_000,
    max_trades_per_day=100_000_000,
    runaway_refusals=10,
    trading_timezone="Europe/London",
)
"""Every limit on, each loose enough that no benchmark order is refused: what is timed is the
checking, not a refusal's shorter path."""

_HELD = [Position(str(i), symbol, "buy", 10.0, 1.1) for i, symbol in enumerate(("GBPUSD", "USDJPY", "XAUUSD"))]
_PRICES = {"EURUSD": 1.1, "GBPUSD": 1.27, "USDJPY": 151.0, "XAUUSD": 2_300.0}
_START = datetime(2024, 1, 2, 12, 0, tzinfo=UTC)


def gate_checks(trials: int) -> Latency:
    """Time ``trials`` orders through a gate with `EVERY_LIMIT`: each checked (three positions
    held, four prices) and recorded as sent, a millisecond apart, so the rate rules' history grows
    as a busy day's would. Every order is checked to have passed."""
    gate = EVERY_LIMIT.gate()
    clock = time.perf_counter
    samples = []
    for trial in range(trials):
        order = Order("EURUSD", Side.BUY if trial % 2 == 0 else Side.SELL, 1.0)
        now = _START + timedelta(milliseconds=trial)
        started = clock()
        refusal = gate.check(order, TradingState.ACTIVE, _HELD, now=now, prices=_PRICES, equity=1_000_000.0)
        gate.sent(now)
        samples.append(clock() - started)
        if refusal is not None:
            raise AssertionError(f"trial {trial}: the gate refused a benchmark order: {refusal}")
    return Latency(tuple(samples))
