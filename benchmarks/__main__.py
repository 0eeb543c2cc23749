"""``python -m benchmarks [--quick] [--only GROUP ...]``: measure, then print the table."""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

import attrs
from loguru import logger

from benchmarks import baselines, control, gateway, guard, heartbeat, journal, limits, replay, replay_peers, restart
from benchmarks.stats import Row, format_table, percentile
from runtime.store import MemoryStore

GROUPS = ("pykka", "guard", "gateway", "limits", "restart", "heartbeat", "replay", "journal", "control", "memory")
_ORDER = ("memory",) + GROUPS[:-1]  # memory first, before other groups' garbage moves the RSS
_SLEEPER = "plain thread sleeping to the same schedule"


@attrs.frozen
class Sizes:
    """How much each benchmark does: the full run's sizes, or `QUICK`'s."""

    messages: int = 500_000
    asks: int = 20_000
    spawns: int = 1_000
    reactions: int = 5_000
    readings: int = 500_000
    batches: int = 1_000
    orders: int = 5_000
    restarts: int = 1_000
    beats: int = 1_000
    replay_bars: int = 20_000
    journal_events: int = 200_000
    journal_singles: int = 2_000
    memory_messages: int = 1_000_000
    status_requests: int = 300
    liquidated_positions: int = 150


QUICK = Sizes(
    messages=20_000,
    asks=500,
    spawns=50,
    reactions=100,
    readings=20_000,
    batches=20,
    orders=50,
    restarts=30,
    beats=30,
    replay_bars=1_000,
    journal_events=5_000,
    journal_singles=100,
    memory_messages=50_000,
    status_requests=10,
    liquidated_positions=10,
)
"""`--quick`: every benchmark briefly, so that CI runs the code (its figures mean little)."""


class Run:
    """One run: each group's rows, and notes; a baseline several groups use is measured once."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.notes: list[str] = []

    @functools.cached_property
    def tell(self) -> float:
        """pykka tell throughput, messages/s."""
        return baselines.tell_throughput(self.sizes.messages)

    @functools.cached_property
    def spawn(self) -> baselines.Latency:
        """pykka actor start until its first answer."""
        return baselines.spawn_latencies(self.sizes.spawns)

    def pykka(self) -> list[Row]:
        """Raw pykka against raw queue.Queue."""
        handoff = baselines.queue_handoff_throughput(self.sizes.messages)
        ask = baselines.ask_latencies(self.sizes.asks)
        trips = baselines.queue_round_trips(self.sizes.asks)
        return [
            Row("pykka tell throughput", self.tell, "msg/s", "queue.Queue thread handoff", handoff),
            Row("pykka ask round trip p50", ask.p50_ms, "ms", "queue.Queue ping-pong p50", trips.p50_ms),
            Row("pykka ask round trip p99", ask.p99_ms, "ms", "queue.Queue ping-pong p99", trips.p99_ms),
        ]

    def guard(self) -> list[Row]:
        """Guard reaction (in memory, and on the journal's store), and readings/s one per message
        and batched."""
        reaction, flat, asks = guard.guard_reaction(self.sizes.reactions)
        with replay.journal_store() as (store, name):
            durable, durable_flat, durable_asks = guard.guard_reaction(max(10, self.sizes.reactions // 5), store)
        single = guard.guard_throughput(self.sizes.readings)
        batched = guard.guard_batch_throughput(self.sizes.batches)
        to_flat = "reading sent -> broker flat"
        to_answer = "tell breach -> ask answered"
        paired = "pykka ask {} (paired trials)"
        return [
            Row(f"guard reaction p50 ({to_flat})", flat.p50_ms, "ms", paired.format("p50"), asks.p50_ms),
            Row(f"guard reaction p99 ({to_flat})", flat.p99_ms, "ms", paired.format("p99"), asks.p99_ms,
                "<= 2x baseline", flat.p99_ms <= 2.0 * asks.p99_ms),
            Row(f"guard reaction p50 ({to_answer})", reaction.p50_ms, "ms", paired.format("p50"), asks.p50_ms),
            Row(f"guard reaction p99 ({to_answer})", reaction.p99_ms, "ms", paired.format("p99"), asks.p99_ms),
            Row(f"guard reaction p99, store {name} ({to_flat}, saves first)", durable_flat.p99_ms, "ms",
                paired.format("p99"), durable_asks.p99_ms),
            Row(f"guard reaction p99, store {name} ({to_answer})", durable.p99_ms, "ms", paired.format("p99"),
                durable_asks.p99_ms),
            Row("guard throughput, 1 reading/message", single, "readings/s", "pykka tell throughput", self.tell,
                ">= 0.8x baseline", single >= 0.8 * self.tell, "msg/s"),
            Row("guard throughput, EquityBatch of 1000", batched, "readings/s", "guard, 1 reading/message", single,
                ">= 1,000,000/s", batched >= 1_000_000),
        ]

    def gateway(self) -> list[Row]:
        """An order's round trip through the guard, in memory and on the journal's store."""
        loop, direct, asks = gateway.order_round_trips(self.sizes.orders)
        with replay.journal_store() as (store, name):
            durable, durable_direct, durable_asks = gateway.order_round_trips(max(10, self.sizes.orders // 5), store)
        paired = "pykka ask {} (paired trials)"
        to_fill = "signal -> fill answered, loop + guard"
        direct_name = "PlaceOrder -> answer, guard alone"
        return [
            Row(f"order round trip p50 ({to_fill})", loop.p50_ms, "ms", paired.format("p50"), asks.p50_ms),
            Row(f"order round trip p99 ({to_fill})", loop.p99_ms, "ms", paired.format("p99"), asks.p99_ms),
            Row(f"order round trip p50 ({direct_name})", direct.p50_ms, "ms", paired.format("p50"), asks.p50_ms),
            Row(f"order round trip p99 ({direct_name})", direct.p99_ms, "ms", paired.format("p99"), asks.p99_ms),
            Row(f"order round trip p50, store {name} ({to_fill})", durable.p50_ms, "ms", paired.format("p50"),
                durable_asks.p50_ms),
            Row(f"order round trip p99, store {name} ({direct_name})", durable_direct.p99_ms, "ms",
                paired.format("p99"), durable_asks.p99_ms),
        ]

    def limits(self) -> list[Row]:
        """The gate with every pre-trade limit on: alone per order, and in the guard's round trip."""
        checks = limits.gate_checks(self.sizes.orders * 10)
        # In the order A B B A, so that neither side gets the quieter half of a shared machine.
        order = (None, limits.EVERY_LIMIT, limits.EVERY_LIMIT, None)
        runs = [gateway.order_round_trips(self.sizes.orders, settings=s)[1] for s in order]
        plain = baselines.Latency(runs[0].samples + runs[3].samples)
        limited = baselines.Latency(runs[1].samples + runs[2].samples)
        direct = "PlaceOrder -> answer, guard alone"
        return [
            Row("pre-trade gate per order, every limit on, p50", checks.p50_ms, "ms",
                f"order round trip p50 ({direct}), no limits", plain.p50_ms, "< 10% of baseline",
                checks.p50_ms < 0.1 * plain.p50_ms),
            Row("pre-trade gate per order, every limit on, p99", checks.p99_ms, "ms",
                f"order round trip p99 ({direct}), no limits", plain.p99_ms, "< 10% of baseline",
                checks.p99_ms < 0.1 * plain.p99_ms),
            Row(f"order round trip p50 ({direct}), every limit on", limited.p50_ms, "ms",
                f"order round trip p50 ({direct}), no limits", plain.p50_ms, "< 1.1x baseline",
                limited.p50_ms < 1.1 * plain.p50_ms),
        ]

    def restart(self) -> list[Row]:
        """Crash until the next incarnation answers."""
        latencies, retried = restart.restart_latencies(self.sizes.restarts)
        self.notes.append(f"restart: {retried} Ping ask(s) reached a dying incarnation and were retried")
        figure = "restart {} (Crash -> Pong from new incarnation)"
        return [
            Row(figure.format("p50"), latencies.p50_ms, "ms", "pykka start + first ask p50", self.spawn.p50_ms),
            Row(figure.format("p99"), latencies.p99_ms, "ms", "pykka start + first ask p99", self.spawn.p99_ms,
                "< 5 ms", latencies.p99_ms < 5.0),
        ]

    def heartbeat(self) -> list[Row]:
        """Heartbeat jitter, drift and bursts on the real clock with a busy loop."""
        result = heartbeat.heartbeat_timing(self.sizes.beats)
        events, ticks, sleeper = result.events, result.ticks, result.sleeper
        ask50, ask99 = (percentile(result.asking, q) * 1000 for q in (50, 99))
        hop50, hop99 = (percentile(result.delivering, q) * 1000 for q in (50, 99))
        self.notes.append(
            f"heartbeat: {len(events.arrivals)} beats at 50 ms while the loop ran {result.cycles:,} cycles; "
            f"the beat timer skipped {result.missed} tick(s). A beat's stages: tick -> beat done (asking the busy "
            f"loop, publishing) p50 {ask50:.2f} ms, p99 {ask99:.2f} ms; beat done -> subscriber (emitter and "
            f"subscriber worker hops) p50 {hop50:.2f} ms, p99 {hop99:.2f} ms"
        )
        at_subscriber, at_actor = "(HEARTBEAT at subscriber)", "(tick at heartbeat actor)"
        return [
            Row(f"heartbeat jitter p50 {at_subscriber}", events.jitter_ms(50), "ms", f"{_SLEEPER}, p50",
                sleeper.jitter_ms(50)),
            Row(f"heartbeat jitter p99 {at_subscriber}", events.jitter_ms(99), "ms", f"{_SLEEPER}, p99",
                sleeper.jitter_ms(99), "< 2 ms", events.jitter_ms(99) < 2.0),
            Row(f"heartbeat jitter p50 {at_actor}", ticks.jitter_ms(50), "ms", f"{_SLEEPER}, p50",
                sleeper.jitter_ms(50)),
            Row(f"heartbeat jitter p99 {at_actor}", ticks.jitter_ms(99), "ms", f"{_SLEEPER}, p99",
                sleeper.jitter_ms(99), "< 2 ms", ticks.jitter_ms(99) < 2.0),
            Row(f"heartbeat drift, last beat vs ideal {at_subscriber}", events.drift_ms, "ms", f"{_SLEEPER}, last",
                sleeper.drift_ms, "< 2 ms (none)", abs(events.drift_ms) < 2.0),
            Row(f"heartbeat catch-up bursts {at_subscriber}", events.bursts, "", f"{_SLEEPER}, bursts",
                sleeper.bursts, "0", events.bursts == 0),
        ]

    def replay(self) -> list[Row]:
        """Bars/s through loop, guard, heartbeat and emitter, journaled, with statsd."""
        bars = self.sizes.replay_bars
        with replay.journal_store() as (store, name):
            journaled = replay.replay_throughput(bars, store=store, store_name=name)
        memory = replay.replay_throughput(bars, store=MemoryStore(), store_name="MemoryStore")
        for result in (journaled, memory):
            self.notes.append(
                f"replay ({result.store}, {result.metrics}): {result.events_journaled:,} events journaled and "
                f"{result.datagrams_received:,} statsd datagrams received for {bars:,} bars"
            )
        return [
            Row(f"full replay, journal {journaled.store}, statsd", journaled.bars_per_second, "bars/s",
                "pykka tell throughput", self.tell, ">= 50,000/s", journaled.bars_per_second >= 50_000, "msg/s"),
            Row("full replay, journal MemoryStore, statsd (comparison)", memory.bars_per_second, "bars/s",
                "pykka tell throughput", self.tell, baseline_unit="msg/s"),
            *self._peers(),
        ]

    def _peers(self) -> list[Row]:
        # The same MA(5/20) bars through backtrader, the plain core and the supervised replay.
        peer, core, journaled, sqlite, memory = replay_peers.run_all(self.sizes.replay_bars)
        assert core is not None and journaled is not None and sqlite is not None and memory is not None
        for result in (peer, core, journaled, sqlite, memory):
            if result is not None:
                self.notes.append(f"replay beside peers, {self.sizes.replay_bars:,} hourly bars: {replay_peers.describe(result)}")
        if peer is None:
            self.notes.append("replay beside peers: backtrader not installed (pip install -e '.[bench]')")
        figure = "supervised replay, SQLite journal, heartbeat per bar, MA(5/20)"
        rows = [
            Row(figure, sqlite.bars_per_second, "bars/s", "tradewarden core in a plain loop, same bars",
                core.bars_per_second, ">= 0.3x baseline", sqlite.bars_per_second >= 0.3 * core.bars_per_second),
            Row("supervised replay, MemoryStore, heartbeat per bar, MA(5/20) (comparison)", memory.bars_per_second,
                "bars/s", "tradewarden core in a plain loop, same bars", core.bars_per_second),
            Row(f"{figure} (comparison)", sqlite.bars_per_second, "bars/s",
                "the core journaling what the replay journals to SQLite, one thread, no actor",
                journaled.bars_per_second),
        ]
        if peer is not None:
            rows.insert(0, Row(figure, sqlite.bars_per_second, "bars/s", f"{peer.system}, same bars",
                               peer.bars_per_second, ">= 3x baseline", sqlite.bars_per_second >= 3 * peer.bars_per_second))
        return rows

    def journal(self) -> list[Row]:
        """Journal appends/s on SQLite with fsync: group commit against one transaction per event."""
        rates = journal.journal_rates(self.sizes.journal_events, self.sizes.journal_singles)
        self.notes.append(
            f"journal: {rates.emitter_events:,} events told to the emitter, all journaled; "
            f"{self.sizes.journal_singles:,} appended one transaction each"
        )
        single = "one transaction per event (append_event)"
        return [
            Row("journal appends, group commit through the emitter (SQLite WAL, synchronous=FULL)",
                rates.through_emitter, "events/s", single, rates.per_event, ">= 20,000/s",
                rates.through_emitter >= 20_000),
            Row(f"journal appends, append_events batches of {rates.batch_size:,} (SQLite WAL, synchronous=FULL)",
                rates.batched, "events/s", single, rates.per_event),
        ]

    def control(self) -> list[Row]:
        """`/api/status` over real HTTP while the guard is busy, beside the same calls idle."""
        figures = control.status_latencies(self.sizes.status_requests, self.sizes.liquidated_positions)
        requests = self.sizes.status_requests
        self.notes.append(
            f"control: {requests} status calls idle, {requests} while the guard worked through EquityBatches of "
            f"{control.BATCH:,} readings kept about a second deep ({figures.batches_stale} named the guard stale), "
            f"{len(figures.liquidation.samples)} during a liquidation of {self.sizes.liquidated_positions} positions "
            f"at {control.CLOSE_SECONDS * 1000:g} ms per close, {figures.liquidation_seconds:.2f} s "
            f"({figures.liquidation_stale} named the guard stale)"
        )
        bound = "<= 1.1 s (status_timeout 1 s + 100 ms)"
        batches, liquidating = "guard working through EquityBatches", "guard liquidating, slow broker"
        return [
            Row(f"/api/status p50, {batches}", figures.batches.p50_ms, "ms", "/api/status p50, idle",
                figures.idle.p50_ms),
            Row(f"/api/status p99, {batches}", figures.batches.p99_ms, "ms", "/api/status p99, idle",
                figures.idle.p99_ms, bound, figures.batches.p99_ms <= 1100.0),
            Row(f"/api/status p50, {liquidating}", figures.liquidation.p50_ms, "ms", "/api/status p50, idle",
                figures.idle.p50_ms),
            Row(f"/api/status p99, {liquidating}", figures.liquidation.p99_ms, "ms", "/api/status p99, idle",
                figures.idle.p99_ms, bound, figures.liquidation.p99_ms <= 1100.0),
        ]

    def memory(self) -> list[Row]:
        """RSS growth over many messages through the guard."""
        grown, plain = guard.rss_growth(self.sizes.memory_messages)
        return [
            Row(f"RSS growth, {self.sizes.memory_messages:,} EquityReadings through the guard", grown, "MB",
                "same through a plain pykka actor", plain, "< 5 MB", grown < 5.0),
        ]


def machine() -> str:
    """nproc, CPU model, Python and pykka versions, and the GIL switch interval."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"nproc {os.cpu_count()}, {model}; Python {platform.python_version()}, pykka {version('pykka')}; "
        f"GIL switch interval {sys.getswitchinterval() * 1000:g} ms"
    )


def _quiet() -> None:
    # The runtime's logs (a line per restart, a traceback per injected crash) would swamp the
    # table and take time the benchmarks do not mean to measure; errors still show.
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    logging.getLogger("pykka").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table (always exit 0: targets are reported, not asserted)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="run every benchmark briefly (CI: figures mean little)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), metavar="GROUP",
                        help=f"run only these groups: {', '.join(GROUPS)}")
    args = parser.parse_args(argv)
    _quiet()
    run = Run(QUICK if args.quick else Sizes())
    print(f"# tradewarden benchmarks{' (--quick: figures mean little)' if args.quick else ''}")
    print(machine(), flush=True)
    rows: dict[str, list[Row]] = {}
    started = time.perf_counter()
    for group in _ORDER:
        if group in args.only:
            measure: Callable[[], list[Row]] = getattr(run, group)
            print(f"running {group} ...", file=sys.stderr, flush=True)
            rows[group] = measure()
            gc.collect()
    print()
    print(format_table([row for group in GROUPS for row in rows.get(group, [])]))
    print()
    for note in run.notes:
        print(f"- {note}")
    print(f"- total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
