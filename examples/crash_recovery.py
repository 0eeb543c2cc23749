"""Crash drills: kill the guard and the loop every way an actor can die while a replay runs, and show the recovery.

    .venv/bin/python examples/crash_recovery.py

A paper replay of the bundled synthetic series (made-up data) runs through the whole supervised
system. While it runs, the drills below are injected one at a time; each is followed until the
supervisor has restarted the actor (its ACTOR_RESTARTED event), and the guard's peak equity is
read before the drill and after the restart. The peak lives in the state store, so every new
guard incarnation must carry on from exactly the peak the dead one had saved.

Ways of dying, for the guard and for the loop:

* an exception in a told message (`actors.messages.Crash`): the actor crashes, its unhandled mail
  is kept for the next incarnation;
* a hang (`actors.messages.Hang`): the guard stops answering the supervisor's liveness probe, the
  loop stops answering the heartbeat's stall watchdog, and either is abandoned and replaced;
* a stop on its own (``ref.stop()``): a permanent child that ends, even normally, is restarted;
* a start failure: the state store fails once while the new incarnation loads its state (a fake
  of an outside failure: a database that drops one read), so one restart attempt fails and the
  next succeeds.

Probe and heartbeat settings are short so the drills take seconds. The state database goes in
``--out`` (default: a temporary folder) with ``drills.json``, one record per drill. Exit code 0
when every drill ran and every peak after equals the peak before (for the hung loop, which is
found only as bars pass, and whose successor trades those bars: is not below it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from actors.emitter import journal_sink
from actors.messages import Crash, Hang
from actors.replay import PaperFeed, Replay
from actors.system import TradingSystem
from runtime.adapters.logs import configure_logging
from runtime.adapters.paper import PaperBroker
from runtime.adapters.sqlite import SqliteStore
from runtime.clock import ManualClock
from runtime.events import Event, EventType
from runtime.payloads import ActorRestarted, GuardTriggered
from runtime.replay.prices import SYNTHETIC_MIN_LENGTH, SYNTHETIC_SYMBOL, SYNTHETIC_VOLUME, synthetic_bars
from runtime.replay.strategies import MovingAverageCrossover
from runtime.risk.monitor import GuardRecord
from runtime.settings import Settings
from runtime.store import LoopTotals, StateStore

__all__ = ["Drill", "DrillResult", "FlakyStore", "main"]

SYNTHETIC_LABEL = "SYNTHETIC DATA: a made-up demonstration series, not market history"
WAIT = 15.0  # real seconds to wait for a restart before calling a drill failed
BAR = 3600.0  # the synthetic series is hourly
START_CASH = 10_000.0


class StoreOutage(RuntimeError):
    """The fake outage of `FlakyStore`: the database dropped one read."""


class FlakyStore:
    """A `StateStore` that passes everything to a real one, except that once armed, the next
    load of the chosen kind fails, as a database that drops one connection would."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self._armed: set[str] = set()
        self._lock = threading.Lock()

    def fail_next(self, what: str) -> None:
        """Make the next ``load_guard`` or ``load_loop_totals`` raise `StoreOutage`, once."""
        if what not in ("load_guard", "load_loop_totals"):
            raise ValueError(f"what must be 'load_guard' or 'load_loop_totals', got {what!r}")
        with self._lock:
            self._armed.add(what)

    def disarm(self) -> bool:
        """Cancel an outage that nothing triggered; True if one was still armed."""
        with self._lock:
            armed = bool(self._armed)
            self._armed.clear()
            return armed

    def _outage(self, what: str) -> None:
        with self._lock:
            if what in self._armed:
                self._armed.discard(what)
                raise StoreOutage(f"state database connection lost during {what} (drill)")

    def __getattr__(self, name: str) -> Any:
        # The rest of the port (orders, the journal) goes to the real store unchanged.
        return getattr(self.inner, name)

    def load_guard(self, loop_id: str) -> GuardRecord | None:
        """The real store's guard record, unless an outage is armed."""
        self._outage("load_guard")
        return self.inner.load_guard(loop_id)

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        """Save to the real store."""
        self.inner.save_guard(loop_id, record)

    def load_loop_totals(self, loop_id: str) -> LoopTotals | None:
        """The real store's loop totals, unless an outage is armed."""
        self._outage("load_loop_totals")
        return self.inner.load_loop_totals(loop_id)

    def save_loop_totals(self, loop_id: str, totals: LoopTotals) -> None:
        """Save to the real store."""
        self.inner.save_loop_totals(loop_id, totals)

    def append_event(self, event: Event) -> bool:
        """Journal in the real store."""
        return self.inner.append_event(event)

    def events(self, loop_id: str | None = None) -> list[Event]:
        """The real store's journal."""
        return self.inner.events(loop_id)


class Restarts:
    """A subscriber that keeps the ACTOR_RESTARTED events and lets the drills wait for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[ActorRestarted] = []

    def __call__(self, event: Event) -> None:
        """Take one event from the emitter."""
        if event.event_type is EventType.ACTOR_RESTARTED:
            with self._cond:
                self.events.append(ActorRestarted.from_event(event))
                self._cond.notify_all()

    def count(self, actor: str) -> int:
        """How many restarts of ``actor`` have been seen."""
        with self._cond:
            return sum(e.actor == actor for e in self.events)

    def since(self, actor: str, seen: int) -> list[ActorRestarted]:
        """The restarts of ``actor`` after the first ``seen``."""
        with self._cond:
            return [e for e in self.events if e.actor == actor][seen:]

    def wait(self, actor: str, more_than: int, timeout: float = WAIT) -> bool:
        """Wait until ``actor`` has restarted more than ``more_than`` times; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(e.actor == actor for e in self.events) > more_than, timeout
            )


@attrs.frozen
class Drill:
    """One way of dying: which actor, how (its description), whether it needs data time to move
    before anything can notice (a hung loop is noticed only by the heartbeat, whose timer follows
    the bars), and when it may start."""

    actor: str
    how: str
    inject: Callable[[], Any]
    needs_bars: bool = False
    when: str = "any"  # "any", "in_drawdown" (a position open, equity below the peak) or "flat"


@attrs.frozen
class DrillResult:
    """What happened in one drill, as written to drills.json."""

    actor: str
    how: str
    bar_time: str
    restarted: bool
    causes: tuple[str, ...]
    attempts: tuple[int, ...]
    peak_before: float
    peak_after: float | None
    problem: str = ""
    bars_passed: bool = False  # bars were played between the drill and its restart being seen

    @property
    def peak_kept(self) -> bool:
        """True when the guard's peak after the restart equals the one before the drill; for a
        drill during which bars were played (the hung loop, found only as data time moves), when
        it is not below it: the new loop trades those bars, and a gain may raise the peak."""
        if not self.restarted or self.peak_after is None:
            return False
        if self.bars_passed:
            return self.peak_after >= self.peak_before
        return self.peak_after == self.peak_before

    @property
    def ok(self) -> bool:
        """True when the actor was restarted, the peak kept, and nothing unexpected was seen."""
        return self.peak_kept and not self.problem


class DrillRunner:
    """Runs the drills from the replay's after-bar hook, one at a time."""

    def __init__(self, system: TradingSystem, store: FlakyStore, broker: PaperBroker, restarts: Restarts,
                 first_bar: int, spacing: int) -> None:
        self.system = system
        self.store = store
        self.broker = broker
        self.restarts = restarts
        self.next_bar = first_bar
        self.spacing = spacing
        self.results: list[DrillResult] = []
        self._releases: list[threading.Event] = []
        self._pending: tuple[Drill, int, float, str, threading.Event | None] | None = None
        self.drills = self._drills()
        self.total = len(self.drills)

    def _hang(self, address: Any) -> Callable[[], None]:
        def inject() -> None:
            release = threading.Event()
            self._releases.append(release)
            address.tell(Hang(release, seconds=30.0))
        return inject

    def _start_failure(self, actor: str, load: str) -> Callable[[], None]:
        def inject() -> None:
            self.store.fail_next(load)
            self.system.address(actor).tell(Crash(f"drill: {actor} crash before a failing start"))
        return inject

    def _drills(self) -> list[Drill]:
        guard, loop = self.system.guard, self.system.loop
        return [
            Drill("guard", "exception in a told message (Crash)", lambda: guard.tell(Crash("drill: guard crash")),
                  when="in_drawdown"),
            Drill("guard", "hang (Hang), found by the liveness probe", self._hang(guard), when="in_drawdown"),
            Drill("guard", "stopped on its own (ref.stop())", lambda: guard.ref.stop(), when="in_drawdown"),
            Drill("guard", "start failure (store outage on load), then a good start",
                  self._start_failure("guard", "load_guard"), when="in_drawdown"),
            Drill("loop", "exception in a told message (Crash)", lambda: loop.tell(Crash("drill: loop crash"))),
            Drill("loop", "hang (Hang), found by the heartbeat's stall watchdog", self._hang(loop),
                  needs_bars=True, when="flat"),
            Drill("loop", "stopped on its own (ref.stop())", lambda: loop.ref.stop()),
            Drill("loop", "start failure (store outage on load), then a good start",
                  self._start_failure("loop", "load_loop_totals")),
        ]

    def peak(self) -> float:
        """The guard's peak equity, asked of the guard itself."""
        return float(self.system.guard_status(timeout=WAIT).state.peak_equity)

    @property
    def done(self) -> bool:
        """True once every drill has run."""
        return not self.drills and self._pending is None

    @property
    def not_run(self) -> list[Drill]:
        """The drills whose moment had not come (or not passed) when the series ended."""
        return ([self._pending[0]] if self._pending is not None else []) + self.drills

    def after_bar(self, index: int, bar: Any) -> None:
        """The replay's hook: finish a pending drill, or start the next one when it is due."""
        if self._pending is not None:
            drill, seen, before, at, _ = self._pending
            if self.restarts.count(drill.actor) > seen:
                self._pending = None
                self._record(drill, seen, before, at)
            return
        if not self.drills or index < self.next_bar:
            return
        drill = self.drills[0]
        flat = self.broker.net_volume(SYNTHETIC_SYMBOL) == 0
        # The guard drills run with a position open and equity below its peak: a new guard that
        # forgot the stored peak and started again from the current equity would show it. The
        # hung loop waits for a flat book, because bars must pass before the heartbeat notices
        # it, and a flat book keeps the peak still meanwhile.
        if drill.when == "in_drawdown" and (flat or self.peak() <= self.broker.account_equity()):
            return
        if drill.when == "flat" and not flat:
            return
        self.drills.pop(0)
        seen = self.restarts.count(drill.actor)
        before = self.peak()
        drill.inject()
        at = bar.time.isoformat()
        if drill.needs_bars:
            self._pending = (drill, seen, before, at, None)
            return
        if not self.restarts.wait(drill.actor, seen):
            self.results.append(DrillResult(drill.actor, drill.how, at, False, (), (), before, None))
        else:
            self._record(drill, seen, before, at)
        self.next_bar = index + self.spacing

    def _record(self, drill: Drill, seen: int, before: float, at: str) -> None:
        events = self.restarts.since(drill.actor, seen)
        after = self.peak()
        unread = self.store.disarm()  # an outage nothing triggered: the new incarnation never read its state
        for release in self._releases:
            release.set()  # let an abandoned, hung thread end; its links were cut when abandoned
        self._releases.clear()
        self.results.append(
            DrillResult(
                drill.actor, drill.how, at, True,
                tuple(e.cause or "(no cause given)" for e in events),
                tuple(e.attempt for e in events),
                before, after,
                "the store outage was never triggered: the new incarnation did not load its state" if unread else "",
                drill.needs_bars,
            )
        )

    def release_all(self) -> None:
        """Wake every thread still hung by a drill."""
        for release in self._releases:
            release.set()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--help`` explains every option."""
    parser = argparse.ArgumentParser(
        prog="crash_recovery.py",
        description=(
            "Crash, hang, stop and fail the start of the guard and the loop while a paper replay runs, "
            "and show the supervisor's restarts, their causes, and the guard's peak before and after each."
        ),
    )
    parser.add_argument("--bars", type=int, default=400,
                        help=f"length of the synthetic series in hourly bars (>= {SYNTHETIC_MIN_LENGTH}; default 400)")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for state.db and drills.json (default: a temporary folder, removed afterwards)")
    parser.add_argument("--log-level", default="ERROR",
                        help="log level (default ERROR: the drills' expected warnings are not shown)")
    args = parser.parse_args(argv)
    if args.bars < SYNTHETIC_MIN_LENGTH:
        parser.error(f"--bars must be >= {SYNTHETIC_MIN_LENGTH}, got {args.bars}")
    return args


def run(args: argparse.Namespace, out: Path) -> int:
    """Run the drills with their files in ``out``; returns the exit code."""
    bars = synthetic_bars(args.bars)
    store = FlakyStore(SqliteStore(out / "state.db", synchronous="NORMAL"))
    settings = Settings.load(
        environ={},
        max_restarts=50,  # every drill restarts something; the real intensity limit is not on trial here
        within_seconds=60.0,
        heartbeat_interval_seconds=BAR,  # data time: one beat per bar
        heartbeat_timeout_seconds=0.3,  # real seconds the heartbeat waits for the loop's answer
        stall_after_seconds=3 * BAR,
    )
    broker = PaperBroker(START_CASH)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, volume=SYNTHETIC_VOLUME)
    clock = ManualClock(bars[0].time)
    restarts = Restarts()
    system = TradingSystem(
        settings, broker, strategy, store=store, clock=clock, loop_interval=None,
        market_feed=PaperFeed(broker, strategy, SYNTHETIC_SYMBOL),
        sinks=[journal_sink(store)], subscribers=[restarts],
        probe_interval=0.1, liveness_timeout=0.5, drills=True,
    )
    print(f"tradewarden crash drills: {len(bars)} hourly bars of {SYNTHETIC_SYMBOL} ({SYNTHETIC_LABEL})")
    print("  probe every 0.1 s (hung after 0.5 s); heartbeat every bar, waiting 0.3 s for the loop")
    sys.stdout.flush()
    runner = DrillRunner(system, store, broker, restarts, first_bar=45, spacing=6)
    system.start()
    try:
        result = Replay(system, clock, settle_timeout=5.0, after_bar=runner.after_bar).run(bars)
    finally:
        runner.release_all()
        system.stop()
    events = store.events()
    store.inner.close()

    print()
    width = max(len(r.how) for r in runner.results) if runner.results else 10
    print(f"{'actor':<6} {'how it died':<{width}}  {'bar (UTC)':<16}  {'peak before':>12}  {'peak after':>12}  kept")
    for r in runner.results:
        after = f"{r.peak_after:12,.2f}" if r.peak_after is not None else f"{'-':>12}"
        moment = r.bar_time[:16].replace("T", " ")
        print(f"{r.actor:<6} {r.how:<{width}}  {moment:<16}  {r.peak_before:12,.2f}  {after}  "
              f"{'yes' if r.peak_kept else 'NO'}")
        for cause, attempt in zip(r.causes, r.attempts):
            print(f"{'':<6}   restarted (attempt {attempt}): {cause}")
        if not r.restarted:
            print(f"{'':<6}   NOT restarted within {WAIT:g}s")
        if r.problem:
            print(f"{'':<6}   PROBLEM: {r.problem}")
    restarted = [ActorRestarted.from_event(e) for e in events if e.event_type is EventType.ACTOR_RESTARTED]
    by_actor: dict[str, int] = {}
    for restart in restarted:
        by_actor[restart.actor] = by_actor.get(restart.actor, 0) + 1
    stalls = sum(e.event_type is EventType.STALL_DETECTED for e in events)
    fired = [GuardTriggered.from_event(e) for e in events if e.event_type is EventType.GUARD_TRIGGERED]
    print()
    print(f"ACTOR_RESTARTED events in the journal: {len(restarted)} "
          f"({', '.join(f'{a} {n}' for a, n in sorted(by_actor.items())) or 'none'}); STALL_DETECTED: {stalls}")
    print(f"Replay: {result.played} of {result.total} bars, {result.unsettled} not settled in time; "
          f"guard fired {len(fired)} time(s)" + (f", first at {fired[0].at.isoformat()}" if fired else ""))
    # A drill the series was too short for is reported as not run, not as a failure: on a short
    # series the guard halts (and the book goes flat) before the guard drills' moment comes.
    kept = all(r.peak_kept for r in runner.results)
    ok = all(r.ok for r in runner.results)
    restarted_all = all(r.restarted for r in runner.results)
    print(f"Drills run: {len(runner.results)} of {runner.total}, each restarted: {'yes' if restarted_all else 'NO'}; "
          f"peak equity kept across every crash: {'yes' if kept else 'NO'}")
    if runner.not_run:
        print(f"Not run, the series ended before their moment: {'; '.join(f'{d.actor} {d.how}' for d in runner.not_run)}"
              f" (more bars run them all, e.g. the default --bars 400)")
    (out / "drills.json").write_text(
        json.dumps([{**attrs.asdict(r), "peak_kept": r.peak_kept, "ok": r.ok} for r in runner.results], indent=2)
        + "\n",
        encoding="utf-8",
    )
    return 0 if ok and result.complete else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the drills, return the exit code."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            (out / f"state.db{suffix}").unlink(missing_ok=True)  # each run drills from a fresh state
        return run(args, out)
    with tempfile.TemporaryDirectory(prefix="tradewarden-drills-") as folder:
        return run(args, Path(folder))


if __name__ == "__main__":
    sys.exit(main())
