"""Fault injection (`Crash`, `Hang`) is obeyed only where drills are on: a live system refuses it
and every actor lives on."""

from __future__ import annotations

import threading

import pytest
from actor_helpers import WAIT, EventLog, Journal, LogLines, Recorder

from actors import ChildContext, ChildUnavailable, IncarnationRevoked, StashOverflow, start_trading_system
from actors.messages import Crash, Hang, Ping
from actors.supervision.base import DrillsDisabled
from runtime import ListSignalSource, ManualClock, PaperBroker, Settings
from runtime.errors import TradewardenError


@pytest.fixture
def live_system():
    events = EventLog()
    system = start_trading_system(
        Settings(heartbeat_interval_seconds=3600), PaperBroker(10_000), ListSignalSource(), clock=ManualClock(),
        loop_interval=None, subscribers=[events],
    )
    yield system
    system.stop()


def test_a_live_system_answers_an_asked_crash_or_hang_with_a_clear_refusal(live_system):
    with pytest.raises(DrillsDisabled, match=r"^drills are disabled: Crash refused by guard incarnation 1$"):
        live_system.guard.ask(Crash("drill"), timeout=WAIT)
    with pytest.raises(DrillsDisabled, match=r"^drills are disabled: Hang refused by loop incarnation 1$"):
        live_system.loop.ask(Hang(threading.Event(), seconds=WAIT), timeout=WAIT)
    assert all(child.alive and child.incarnation == 1 for child in live_system.children().values())


def test_a_live_system_logs_and_ignores_a_told_crash_or_hang_and_every_actor_lives_on(live_system):
    with LogLines("WARNING") as lines:
        live_system.guard.tell(Crash("drill"))
        live_system.loop.tell(Hang(threading.Event(), seconds=WAIT))
        # Each answers its next message at once: neither died nor hangs.
        assert live_system.guard.ask(Ping(), timeout=1.0).incarnation == 1
        assert live_system.loop.ask(Ping(), timeout=1.0).incarnation == 1
    # The two actors log on their own threads, in either order.
    assert sorted(line for line in lines.snapshot() if "drills" in line) == [
        "WARNING drills are disabled: Crash refused by guard incarnation 1; ignored",
        "WARNING drills are disabled: Hang refused by loop incarnation 1; ignored",
    ]
    children = live_system.children()
    assert {name: (c.incarnation, c.alive, c.restarts) for name, c in children.items()} == {
        name: (1, True, 0) for name in ("emitter", "alerts", "guard", "loop", "heartbeat")
    }


@pytest.mark.parametrize("error", [DrillsDisabled, StashOverflow, ChildUnavailable, IncarnationRevoked])
def test_every_supervision_error_is_a_tradewarden_error_and_a_runtime_error(error):
    assert issubclass(error, TradewardenError) and issubclass(error, RuntimeError)


def test_a_standalone_actor_obeys_a_crash_only_with_drills_on():
    journal = Journal()
    live = Recorder.start(ChildContext.standalone("live"), journal)
    drill = Recorder.start(ChildContext.standalone("drill", drills=True), journal)
    live.tell(Crash("boom"))
    drill.tell(Crash("boom"))
    assert drill.actor_stopped.wait(WAIT)
    assert live.ask(("echo", "alive"), timeout=WAIT) == ("alive", 1)
    assert ("ended", "drill", 1, "crashed") in journal.snapshot()
    live.stop()
