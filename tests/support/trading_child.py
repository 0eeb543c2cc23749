"""A trading system in a process of its own, for kill tests: ``run DB SEED START`` trades on a
SQLite store and writes one line per acknowledged fact; ``restore DB`` starts a system on the
file and prints what it came back with, as JSON.

Lines of ``run``: ``E <event_id>`` once an event is in the journal; ``P <peak> <state>`` once
the guard has taken a reading (its state is saved before it answers); ``T <signals> <trades>``
once the loop has completed a cycle (its totals are saved before it answers).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading

from loguru import logger

from actors import start_trading_system
from actors.messages import EquityReading, GetGuardState, RunCycle
from runtime import Event, ListSignalSource, ManualClock, PaperBroker, Settings, Signal
from runtime.adapters.sqlite import SqliteStore

_lock = threading.Lock()


def say(line: str) -> None:
    """One whole line to stdout in a single write, so that lines of threads never mix."""
    with _lock:
        os.write(1, (line + "\n").encode())


def readings(seed: int, start: int) -> list[float]:
    """The equity readings of run ``seed``: a rally, then a slide deep enough to breach 20%."""
    rng = random.Random(seed)
    equity, path = 10_000.0, []
    for i in range(400):
        drift = 0.004 if i < 30 else -0.006
        equity *= 1 + drift + rng.uniform(-0.01, 0.01)
        path.append(round(equity, 2))
    return path[start:]


def system(db: str, sinks=None):
    store = SqliteStore(db)
    broker = PaperBroker(10_000)
    broker.update_price("X", 100.0)
    signals = ListSignalSource()
    options = {"sinks": sinks(store)} if sinks else {}
    trading = start_trading_system(
        Settings(max_restarts=100), broker, signals, store=store, clock=ManualClock(), loop_interval=None, **options
    )
    return trading, signals, store


def run(db: str, seed: int, start: int) -> None:
    def acknowledged_journal(store):
        def append(event: Event) -> None:
            store.append_event(event)
            say(f"E {event.event_id}")

        return [append]

    trading, signals, _ = system(db, acknowledged_journal)
    clock = ManualClock()
    for equity in readings(seed, start):
        trading.guard.tell(EquityReading(equity, clock.now()))
        status = trading.guard.ask(GetGuardState(), timeout=10)
        say(f"P {status.state.peak_equity!r} {status.state.trading_state.value}")
        signals.push(Signal("X", "buy", 1))
        metrics = trading.loop.ask(RunCycle(), timeout=10).metrics
        say(f"T {metrics.total_signals_lifetime} {metrics.total_trades_lifetime}")
    trading.stop()


def restore(db: str) -> None:
    trading, _, store = system(db)
    state = trading.guard.ask(GetGuardState(), timeout=10).state
    totals = store.load_loop_totals("main")
    ids = [e.event_id for e in store.events()]
    trading.stop()
    print(json.dumps({
        "peak": state.peak_equity,
        "state": state.trading_state.value,
        "signals": totals.total_signals_lifetime if totals else 0,
        "trades": totals.total_trades_lifetime if totals else 0,
        "journal": ids,
    }))


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    if sys.argv[1] == "run":
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        restore(sys.argv[2])
