"""The journal never silently drops an event: a long replay on real SQLite beside a CPU burner
journals everything published, a stop drains the journal, and a store that fails is counted,
logged at critical, and makes the paper-trading example exit 1."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import attrs
import pytest
from loguru import logger

from actors.emitter import journal_sink
from actors.replay import PaperFeed, Replay
from actors.system import TradingSystem
from runtime.adapters.paper import PaperBroker
from runtime.adapters.sqlite import SqliteStore
from runtime.clock import ManualClock
from runtime.events import EventType
from runtime.metrics import MemoryMetrics, MetricNames
from runtime.replay.prices import SYNTHETIC_SYMBOL, SYNTHETIC_VOLUME, Bar, synthetic_bars
from runtime.replay.strategies import MovingAverageCrossover
from runtime.risk.guards import TradingState
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PAPER_TRADING = ROOT / "examples" / "paper_trading.py"
# Sized to keep the suite's two long runs within about a minute on 2 busy cores; the full
# 150,000-bar run is in BENCHMARKS.md.
REPLAY_BARS = 10_000
EXAMPLE_BARS = 5_000
RUN_TIMEOUT = 180.0
UNJOURNALED = re.compile(
    r"^paper_trading: (\d+) events were not journaled \(the state store failed\); "
    r"the journal is incomplete, so no summary or chart was written$"
)


def minute_bars(count: int) -> list[Bar]:
    """The synthetic series' prices, one bar a minute."""
    bars = synthetic_bars(count)
    return [attrs.evolve(bar, time=bars[0].time + timedelta(minutes=i)) for i, bar in enumerate(bars)]


def write_csv(path: Path, bars: list[Bar]) -> None:
    lines = ["timestamp,open,high,low,close"]
    lines += [f"{b.time.isoformat()},{b.open!r},{b.high!r},{b.low!r},{b.close!r}" for b in bars]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def example_env() -> dict[str, str]:
    names = {var for field in attrs.fields(Settings) for var in field.metadata["env"]}
    env = {key: value for key, value in os.environ.items() if key not in names}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing but the run's own files is written
    return env


@pytest.fixture
def cpu_burner() -> Iterator[subprocess.Popen[bytes]]:
    """A process spinning on a core beside the test, as on a loaded machine."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield burner
    finally:
        burner.kill()
        burner.wait(timeout=10)


@pytest.fixture
def critical_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    handler = logger.add(lambda message: lines.append(message.rstrip("\n")), level="CRITICAL", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(handler)


def replay_system(path: Path, bars: list[Bar]) -> tuple[TradingSystem, SqliteStore, MemoryMetrics, PaperBroker]:
    store = SqliteStore(path)
    metrics = MemoryMetrics()
    broker = PaperBroker(10_000.0)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, volume=SYNTHETIC_VOLUME)
    settings = Settings.load(
        environ={}, heartbeat_interval_seconds=60.0, heartbeat_timeout_seconds=5.0, stall_after_seconds=600.0
    )
    system = TradingSystem(
        settings, broker, strategy, store=store, metrics=metrics, clock=ManualClock(bars[0].time),
        loop_interval=None, market_feed=PaperFeed(broker, strategy, SYNTHETIC_SYMBOL), sinks=[journal_sink(store)],
    )
    return system, store, metrics, broker


def given_to_emitter(metrics: MemoryMetrics) -> Counter[str]:
    prefix = f"{MetricNames.ANALYTICS_EVENTS_TOTAL}."
    return Counter({name[len(prefix):]: n for name, n in metrics.counters.items() if name.startswith(prefix)})


def test_a_long_one_minute_replay_beside_a_cpu_burner_journals_every_event_published(tmp_path, cpu_burner):
    bars = minute_bars(REPLAY_BARS)
    system, store, metrics, broker = replay_system(tmp_path / "state.db", bars)
    assert isinstance(system.clock, ManualClock)
    system.start()
    try:
        result = Replay(system, system.clock, equity=broker.account_equity).run(bars)
    finally:
        system.stop()
    journal = store.events()
    record = store.load_guard(system.settings.loop_id)
    store.close()

    assert result.complete and result.unsettled == 0
    assert system.unjournaled == 0
    journaled = Counter(event.event_type.value for event in journal)
    assert journaled == given_to_emitter(metrics)
    assert len(journal) == len({event.event_id for event in journal})
    assert journaled["heartbeat"] == REPLAY_BARS - 1  # one beat per one-minute bar after the first
    assert journal[0].event_type is EventType.LOOP_STARTED and journal[-1].event_type is EventType.LOOP_STOPPED
    assert record is not None
    assert (record.trading_state is TradingState.HALTED) == (journaled["guard_triggered"] > 0)


def test_the_paper_trading_summary_of_a_long_run_beside_a_cpu_burner_agrees_with_its_journal(tmp_path, cpu_burner):
    bars = minute_bars(EXAMPLE_BARS)
    prices = tmp_path / "minutes.csv"
    write_csv(prices, bars)
    done = subprocess.run(
        [sys.executable, str(PAPER_TRADING), "--prices", str(prices), "--symbol", SYNTHETIC_SYMBOL,
         "--volume", "100", "--out", "run"],
        cwd=tmp_path, env=example_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert "abandoned" not in done.stderr and "not journaled" not in done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    with SqliteStore(tmp_path / "run" / "state.db") as store:
        journal = store.events()
        record = store.load_guard("main")
    counts = Counter(event.event_type.value for event in journal)
    assert counts["heartbeat"] == EXAMPLE_BARS - 1
    assert journal[-1].event_type is EventType.LOOP_STOPPED
    assert summary["events_by_type"] == dict(counts)
    assert summary["fills"] == counts["trade_executed"] + counts["position_closed"] > 0
    fired = [event.metadata["guard"] for event in journal if event.event_type is EventType.GUARD_TRIGGERED]
    assert [trigger["guard"] for trigger in summary["guard_triggers"]] == fired
    assert record is not None
    assert (record.trading_state is TradingState.HALTED) == bool(fired)


def test_a_store_that_fails_during_stop_is_counted_in_unjournaled_and_logged_at_critical(tmp_path, critical_lines):
    bars = minute_bars(200)
    path = tmp_path / "state.db"
    system, store, metrics, broker = replay_system(path, bars)
    assert isinstance(system.clock, ManualClock)
    system.start()
    try:
        Replay(system, system.clock, equity=broker.account_equity).run(bars)
    finally:
        # The disk dies as the system stops: from now on SQLite refuses every journal write.
        with sqlite3.connect(path) as other:
            other.execute("CREATE TRIGGER dead_disk BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'dead disk'); END")
        system.stop()
    journal = store.events()
    store.close()

    lost = sum(given_to_emitter(metrics).values()) - len(journal)
    assert lost >= 1  # LOOP_STOPPED at least
    assert system.unjournaled == lost
    assert EventType.LOOP_STOPPED not in {event.event_type for event in journal}
    assert f"{lost} events were not journaled: {lost} lost by a failing store, 0 still unwritten at the stop's deadline" \
        in critical_lines


def _dead_disk_after(limit: int):
    # A real write failure: files may not grow past ``limit`` bytes (EFBIG, not a signal).
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE as a dead disk is tested on Linux")
def test_paper_trading_exits_1_naming_how_many_events_a_failing_store_did_not_journal(tmp_path):
    done = subprocess.run(
        [sys.executable, str(PAPER_TRADING), "--bars", "400", "--out", "run"],
        cwd=tmp_path, env=example_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT,
        preexec_fn=_dead_disk_after(256 * 1024),
    )
    assert done.returncode == 1, done.stderr
    matches = [m for m in map(UNJOURNALED.match, done.stderr.splitlines()) if m]
    assert len(matches) == 1, done.stderr
    assert int(matches[0].group(1)) > 0
    assert not (tmp_path / "run" / "summary.json").exists()
