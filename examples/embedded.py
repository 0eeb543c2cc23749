"""Embedding: a host application runs the trading system as one child of its own supervisor.

    .venv/bin/python examples/embedded.py

The host has its own pykka actors and its own `actors.Supervisor`. One child is the host's event
actor, which it subscribes to the trading events (a pykka actor receives each `Event` by
``tell``); the other child is the whole trading system, from `TradingSystem.child_spec()`. The
trading system's own supervisor restarts its actors itself, up to its settings' intensity
(``max_restarts=1`` here). Past that it gives up: it stops its actors, runs its fail-safe (halt,
close every position, alert), and ends abnormally; the host's supervisor sees its child fail,
is notified, and restarts the whole trading system, which comes back HALTED because the latch is
in the state store. The run takes a second or two and ends by itself.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pykka

from actors.messages import Crash
from actors.replay import PaperFeed, Replay
from actors.supervision.supervisor import ChildSpec, Restarted, Supervisor
from actors.system import TradingSystem
from runtime.adapters.logs import configure_logging
from runtime.adapters.paper import PaperBroker
from runtime.clock import ManualClock
from runtime.events import Event, EventType
from runtime.payloads import ActorRestarted
from runtime.replay.prices import SYNTHETIC_SYMBOL, SYNTHETIC_VOLUME, synthetic_bars
from runtime.replay.strategies import MovingAverageCrossover
from runtime.settings import Settings
from runtime.store import MemoryStore

__all__ = ["EventCounter", "HostLog", "main"]

WAIT = 15.0  # real seconds to wait for anything the host expects


class EventCounter(pykka.ThreadingActor):
    """The host's own actor that hears every trading event (told `Event` values) and counts them;
    ask it "counts" for a count per event type, or "seen" for the (type, metadata) of each event."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def on_receive(self, message: Any) -> Any:
        """Count events; answer "counts" and "seen"."""
        if isinstance(message, Event):
            self.counts[message.event_type.value] += 1
            self.seen.append((message.event_type.value, dict(message.metadata)))
            return None
        if message == "counts":
            return dict(self.counts)
        if message == "seen":
            return list(self.seen)
        return None  # the supervisor's liveness ping, answered from this actor's thread


class HostLog:
    """What the host supervisor reported through its ``on_restart`` hook, with a way to wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.entries: list[Restarted] = []

    def __call__(self, restarted: Restarted) -> None:
        """The host supervisor's on_restart hook (runs on its thread)."""
        with self._cond:
            self.entries.append(restarted)
            self._cond.notify_all()

    def wait_for_restart(self, actor: str, timeout: float = WAIT) -> Restarted | None:
        """The first restart of ``actor`` the host supervisor made, or None."""
        def found() -> Restarted | None:
            return next((r for r in self.entries if r.actor == actor), None)
        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout)
            return found()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--help`` explains every option."""
    parser = argparse.ArgumentParser(
        prog="embedded.py",
        description="A host application with its own supervisor runs the trading system as one child, "
        "subscribes its own actor to the trading events, and sees the escalation when the trading system gives up.",
    )
    parser.add_argument("--log-level", default="CRITICAL",
                        help="log level (default CRITICAL: only the fail-safe's alert is shown)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the host; returns 0 when the escalation reached the host and the system came back halted."""
    args = parse_args(argv)
    configure_logging(args.log_level)

    bars = synthetic_bars(200)
    broker = PaperBroker(10_000.0)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, volume=SYNTHETIC_VOLUME)
    clock = ManualClock(bars[0].time)
    store = MemoryStore()  # shared by every launch of the trading system, as a database would be
    settings = Settings.load(environ={}, max_restarts=1, within_seconds=60.0, heartbeat_interval_seconds=3600.0,
                             heartbeat_timeout_seconds=1.0)
    trading = TradingSystem(
        settings, broker, strategy, store=store, clock=clock, loop_interval=None,
        market_feed=PaperFeed(broker, strategy, SYNTHETIC_SYMBOL), drills=True,  # this demo crashes the guard
    )

    host_log = HostLog()
    host = Supervisor.launch(
        [
            ChildSpec("events", lambda context: EventCounter.start()),
            trading.child_spec("trading"),
        ],
        name="host",
        on_restart=host_log,
    )
    # The host subscribes its actor by its stable address, so a restart of that actor by the host
    # does not leave the trading system telling a dead ref.
    events = host.address("events")
    trading.subscribe(events)
    children = host.children()
    print("host: supervisor up with children " + ", ".join(
        f"{name} (incarnation {info.incarnation})" for name, info in children.items()))

    # Replay until the strategy holds a position, so the fail-safe has something to close.
    def stop_once_positioned(index: int, bar: Any) -> None:
        if broker.net_volume(SYNTHETIC_SYMBOL) > 0:
            replay.stop()

    replay = Replay(trading, clock, after_bar=stop_once_positioned)
    played = replay.run(bars)
    position = broker.open_positions()
    print(f"host: replayed {played.played} bars (synthetic data); position open: "
          + (", ".join(f"long {p.volume:g} {p.symbol} at {p.entry_price:.2f}" for p in position) or "none"))

    # The trading system allows max_restarts=1: the first crash is restarted inside it, the
    # second one is more than it may absorb, so it gives up and the failure escalates.
    print(f"host: crashing the trading system's guard twice (its max_restarts is {settings.max_restarts})")
    guard_restarted = threading.Event()
    trading.subscribe(
        lambda event: guard_restarted.set()
        if event.event_type is EventType.ACTOR_RESTARTED and ActorRestarted.from_event(event).actor == "guard"
        else None
    )
    trading.guard.tell(Crash("host drill: guard crash 1"))
    if not guard_restarted.wait(WAIT):  # the first crash is absorbed inside the trading system
        print("host: the guard was NOT restarted by the trading system's supervisor", file=sys.stderr)
        host.stop()
        trading.stop()
        return 1
    print("  crash 1: restarted inside the trading system (the host is not involved)")
    trading.guard.tell(Crash("host drill: guard crash 2"))

    restart = host_log.wait_for_restart("trading")
    if restart is None:
        print("host: the escalation did NOT reach the host supervisor", file=sys.stderr)
        host.stop()
        trading.stop()
        return 1
    print(f"host supervisor notified: child 'trading' failed and was restarted (attempt {restart.attempt})")
    print(f"  cause: {restart.cause}")
    print(f"  positions open now: {len(broker.open_positions())} (the fail-safe closed them before escalating)")

    # The fail-safe tells subscribers directly (the emitter has stopped by then).
    heard = events.ask("seen", timeout=WAIT)
    fail_safe = [
        (kind, meta) for kind, meta in heard
        if (kind == "trading_state_changed" and meta.get("to") == "halted" and meta.get("reason") == restart.cause)
        or (kind == "position_closed" and meta.get("reason") == "fail-safe")
    ]
    print("host event actor heard from the fail-safe: " + "; ".join(
        f"{kind} to halted" if kind == "trading_state_changed"
        else f"{kind} {meta.get('symbol')} at {meta.get('price'):.2f} (realised {meta.get('realised_pnl'):+.2f})"
        for kind, meta in fail_safe))

    status = trading.guard_status(timeout=WAIT)
    children = host.children()
    print("host: children now: " + ", ".join(
        f"{name} incarnation {info.incarnation}, restarts {info.restarts}" for name, info in children.items()))
    print(f"host: the restarted trading system's guard is {status.state.trading_state.value} "
          f"(reason: {status.state.reason}); a person must resume it")
    counts = events.ask("counts", timeout=WAIT)
    print("host event actor, events heard so far: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    host.stop()
    trading.stop()  # after its host: drains the journal and closes what the system built
    ok = len(fail_safe) == 2 and status.state.trading_state.value == "halted" and not broker.open_positions()
    print("host: stopped" + ("" if ok else " (UNEXPECTED: see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
