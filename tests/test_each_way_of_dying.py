"""Each actor of the trading system, killed each way an actor can die, comes back with its state,
and what was sent to it meanwhile is delivered to the new incarnation."""

from __future__ import annotations

import threading

import pytest
from actor_helpers import WAIT, EventLog

from actors import start_trading_system
from actors.heartbeat import GetHeartbeatStats
from actors.messages import Crash, EquityReading, GetGuardState, Hang, Ping, Publish, RunCycle
from runtime import Event, EventType, ListSignalSource, ManualClock, MemoryStore, PaperBroker, Settings, Signal


class OnceBrokenStore(MemoryStore):
    """A store whose next load fails once when armed, as a database that drops a connection does."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def _maybe_fail(self) -> None:
        if self.armed:
            self.armed = False
            raise OSError("database is locked")

    def load_guard(self, loop_id):
        self._maybe_fail()
        return super().load_guard(loop_id)

    def load_loop_totals(self, loop_id):
        self._maybe_fail()
        return super().load_loop_totals(loop_id)


class World:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.broker = PaperBroker(10_000)
        self.broker.update_price("X", 100.0)
        self.signals = ListSignalSource()
        self.store = OnceBrokenStore()
        self.events = EventLog()
        self.system = start_trading_system(
            Settings(heartbeat_interval_seconds=10, heartbeat_timeout_seconds=0.3, stall_after_seconds=1000),
            self.broker, self.signals, store=self.store, clock=self.clock, loop_interval=None,
            subscribers=[self.events], probe_interval=0.05, liveness_timeout=0.3, drills=True,
        )
        self.release = threading.Event()

    def kill(self, name: str, way: str) -> None:
        address = self.system.address(name)
        if way == "crash":
            address.tell(Crash(f"{name} crashed"))
        elif way == "stop":
            address.ref.stop(block=False)
        elif way == "hang":
            address.tell(Hang(self.release, seconds=WAIT))
            if name == "loop":  # the heartbeat is the loop's watchdog
                self.clock.advance(10)
        elif way == "start_failure":
            self.store.armed = True
            address.tell(Crash(f"{name} crashed"))

    def wait_restarted(self, name: str) -> dict:
        events = self.events.wait_for(
            lambda es: any(e.event_type is EventType.ACTOR_RESTARTED and e.metadata["actor"] == name for e in es)
        )
        return next(e.metadata for e in events if e.event_type is EventType.ACTOR_RESTARTED)


WAYS = {
    "guard": ["crash", "stop", "hang", "start_failure"],
    "loop": ["crash", "stop", "hang", "start_failure"],
    "emitter": ["crash", "stop", "hang"],
    "heartbeat": ["crash", "stop", "hang"],
}


@pytest.fixture
def world():
    w = World()
    yield w
    w.release.set()
    w.system.stop()


@pytest.mark.parametrize(("name", "way"), [(n, w) for n, ways in WAYS.items() for w in ways])
def test_an_actor_killed_this_way_is_restarted_with_its_state_and_gets_what_was_sent_meanwhile(world, name, way):
    system, clock = world.system, world.clock
    system.guard.tell(EquityReading(12_000.0, clock.now()))
    world.signals.push(Signal("X", "buy", 1))
    system.loop.ask(RunCycle())
    assert system.guard.ask(GetGuardState()).state.peak_equity == 12_000

    world.kill(name, way)
    # sent while the actor is dead, hung or restarting:
    if name == "guard":
        system.guard.tell(EquityReading(13_000.0, clock.now()))
    elif name == "loop":
        world.signals.push(Signal("X", "buy", 1))
        system.loop.tell(RunCycle())
    elif name == "emitter":
        system.emitter.tell(Publish(Event(EventType.HEARTBEAT, "main", {"sent": "meanwhile"})))

    restart = world.wait_restarted(name)
    assert restart["incarnation"] >= 2
    if way == "start_failure":
        assert restart["cause"] == "OSError: database is locked" and restart["attempt"] == 2
    system.address(name).ask(Ping(), timeout=WAIT)

    status = system.guard.ask(GetGuardState(), timeout=WAIT).state
    assert status.peak_equity == (13_000 if name == "guard" else 12_000), "the guard's peak was kept"
    metrics = system.loop.ask(RunCycle(), timeout=WAIT).metrics
    expected_signals = 2 if name == "loop" else 1
    assert metrics.total_signals_lifetime == expected_signals, "lifetime totals were kept, nothing lost"
    if name == "emitter":
        world.events.wait_for(lambda es: any(e.metadata.get("sent") == "meanwhile" for e in es))
    if name == "heartbeat":
        clock.advance(10)
        system.heartbeat.ask(GetHeartbeatStats(), timeout=WAIT)
        world.events.wait_count(EventType.HEARTBEAT, 1)
    children = system.children()
    assert all(child.alive for child in children.values()), children
