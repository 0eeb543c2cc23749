"""The guard actor: reaction from a breaching reading to a flat broker, throughput, and memory."""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from actors.messages import EquityBatch, EquityReading, GetGuardState, Resume
from benchmarks.baselines import COUNT, Counter, Latency
from benchmarks.stats import rss_bytes
from benchmarks.system import running_system
from runtime.adapters.paper import PaperBroker
from runtime.broker import Order, Side
from runtime.metrics import MemoryMetrics, MetricNames
from runtime.risk.guards import TradingState
from runtime.store import StateStore

__all__ = ["guard_reaction", "guard_throughput", "guard_batch_throughput", "rss_growth"]

_START = 1_000_000.0
_AT = datetime(2024, 1, 2, 12, 0, tzinfo=UTC)
_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")


def _broker() -> PaperBroker:
    broker = PaperBroker(_START)
    for symbol in _SYMBOLS:
        broker.update_price(symbol, 100.0)
    return broker


def guard_reaction(trials: int, store: StateStore | None = None) -> tuple[Latency, Latency, Latency]:
    """Time from telling the guard a breaching reading until the paper broker is flat, over
    ``trials`` fresh breaches; with the round trip of a plain pykka ask timed in alternation.

    Each trial, untimed: a reading at a new peak, `Resume`, and one position per symbol opened.
    Timed: tell the breaching reading, then ask `GetGuardState`; the ask is queued behind the
    reading, so when it returns the liquidation has run (checked: the broker is flat and the
    guard HALTED). ``store`` is the system's state store (default in memory). Returns
    (tell-to-answer, reading-to-flat, paired plain asks). Reading-to-flat is the guard's own
    ``guard_reaction_ms``: from the reading's ``sent_at`` to the moment the last close returned,
    which is the issue's definition; tell-to-answer adds the ask and the events published after.
    """
    broker = _broker()
    counter = Counter.start()
    metrics = MemoryMetrics()
    reaction, asks = [], []
    clock = time.perf_counter
    try:
        with running_system(broker, store=store, metrics=metrics) as system:
            guard = system.guard
            peak = _START
            for trial in range(trials):
                peak *= 1.001
                guard.tell(EquityReading(peak, _AT, 0))
                if trial:
                    guard.ask(Resume("benchmark"))
                for symbol in _SYMBOLS:
                    broker.submit_order(Order(symbol, Side.BUY, 1.0))
                started = clock()
                counter.ask(COUNT)
                asks.append(clock() - started)
                started = clock()
                guard.tell(EquityReading(peak * 0.7, _AT, len(_SYMBOLS), started))
                status = guard.ask(GetGuardState())
                reaction.append(clock() - started)
                if broker.open_positions() or status.state.trading_state is not TradingState.HALTED:
                    raise AssertionError(f"trial {trial}: not flat and halted after the breach: {status!r}")
    finally:
        counter.stop()
    flat = Latency(tuple(ms / 1000.0 for ms in metrics.timings[MetricNames.GUARD_REACTION_MS]))
    return Latency(tuple(reaction)), flat, Latency(tuple(asks))


def _readings(count: int) -> list[EquityReading]:
    # Readings just under the start equity: within every limit, and no new peak to save.
    return [EquityReading(_START - 1.0 - (i % 97), _AT, 0) for i in range(count)]


def guard_throughput(readings: int) -> float:
    """Readings per second told one per message to the guard's address, until an ask returns."""
    pool = _readings(1000)
    with running_system(_broker()) as system:
        guard = system.guard
        guard.ask(GetGuardState())
        tell = guard.tell
        started = time.perf_counter()
        for message in itertools.islice(itertools.cycle(pool), readings):
            tell(message)
        status = guard.ask(GetGuardState())
        elapsed = time.perf_counter() - started
    if status.state.trading_state is not TradingState.ACTIVE:
        raise AssertionError(f"the guard left ACTIVE on readings within limits: {status!r}")
    return readings / elapsed


def guard_batch_throughput(batches: int, size: int = 1000) -> float:
    """Readings per second told to the guard in `EquityBatch` messages of ``size`` readings."""
    batch = EquityBatch(tuple(reading.equity for reading in _readings(size)), _AT, 0)
    with running_system(_broker()) as system:
        guard = system.guard
        guard.ask(GetGuardState())
        tell = guard.tell
        started = time.perf_counter()
        for _ in range(batches):
            tell(batch)
        guard.ask(GetGuardState())
        elapsed = time.perf_counter() - started
    return batches * size / elapsed


def rss_growth(messages: int, chunk: int = 10_000) -> tuple[float, float]:
    """Resident memory growth, in MB, over ``messages`` new `EquityReading` objects through the
    guard, and over as many through a plain pykka `Counter`; each sent in chunks of ``chunk``
    with an ask after each, after one warm-up chunk. Returns (guard, plain pykka)."""
    with running_system(_broker()) as system:
        guard = system.guard
        guard_growth = _growth(guard.tell, lambda: guard.ask(GetGuardState()), messages, chunk)
    counter = Counter.start()
    try:
        plain_growth = _growth(counter.tell, lambda: counter.ask(COUNT), messages, chunk)
    finally:
        counter.stop()
    return guard_growth, plain_growth


def _growth(tell: Callable[[Any], None], sync: Callable[[], Any], messages: int, chunk: int) -> float:
    def send(count: int) -> None:
        for i in range(count):
            tell(EquityReading(_START - 1.0 - (i % 97), _AT, 0))
        sync()

    send(chunk)
    gc.collect()
    before = rss_bytes()
    for _ in range(messages // chunk):
        send(chunk)
    gc.collect()
    return (rss_bytes() - before) / 1e6
