"""The order gateway: a signal's round trip through the loop and the guard to an answered fill."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from actors.messages import GetGuardState, PlaceOrder, RunCycle
from benchmarks.baselines import COUNT, Counter, Latency
from benchmarks.system import running_system
from runtime.adapters.paper import PaperBroker
from runtime.broker import Order, Side
from runtime.settings import Settings
from runtime.signals import ListSignalSource, Signal
from runtime.store import StateStore

__all__ = ["order_round_trips"]

_SYMBOL = "EURUSD"
_AT = datetime(2024, 1, 2, 12, 0, tzinfo=UTC)


def order_round_trips(
    trials: int, store: StateStore | None = None, settings: Settings | None = None
) -> tuple[Latency, Latency, Latency]:
    """Time ``trials`` orders, alternating buy and sell so the account stays near flat, each way
    in turn, with a plain pykka ask timed between them as the baseline:

    - signal -> fill answered: push a signal, ask the loop for a cycle; it returns once the guard
      has gated, journaled, submitted, journaled the outcome, read the account and answered;
    - `PlaceOrder` asked of the guard directly (the gateway alone, without the loop's hop).

    ``store`` is the system's state store (default in memory), ``settings`` its settings (the
    defaults: no pre-trade limit). Returns (signal -> fill,
    PlaceOrder -> answer, paired plain asks). Every order is checked to have filled.
    """
    broker = PaperBroker(1_000_000.0)
    broker.update_price(_SYMBOL, 1.1)
    signals = ListSignalSource()
    counter = Counter.start()
    through_loop, direct, asks = [], [], []
    clock = time.perf_counter
    try:
        with running_system(broker, store=store, signals=signals, settings=settings) as system:
            loop, guard = system.loop, system.guard
            guard.ask(GetGuardState())
            for trial in range(trials):
                side = Side.BUY if trial % 2 == 0 else Side.SELL
                started = clock()
                counter.ask(COUNT)
                asks.append(clock() - started)
                signals.push(Signal(_SYMBOL, side, 1.0))
                started = clock()
                status = loop.ask(RunCycle())
                through_loop.append(clock() - started)
                started = clock()
                outcome = guard.ask(PlaceOrder(Order(_SYMBOL, side.opposite, 1.0), _AT))
                direct.append(clock() - started)
                if not outcome.executed or status.metrics.trades_executed != trial + 1:
                    raise AssertionError(f"trial {trial}: an order did not fill: {outcome!r}, {status!r}")
    finally:
        counter.stop()
    return Latency(tuple(through_loop)), Latency(tuple(direct)), Latency(tuple(asks))

