"""Keyed timers: fixed rate with no catch-up burst, and no stale tick after a cancel or restart."""

from __future__ import annotations

import threading
from typing import Any

from actor_helpers import WAIT, Journal, wait_until

from actors.messages import Hang, Tick
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext
from runtime.adapters.system_clock import SystemClock
from runtime.clock import ManualClock


class Ticker(SupervisedActor):
    """Records every tick it accepts; messages start and cancel its timers."""

    def __init__(self, context: ChildContext, journal: Journal) -> None:
        super().__init__(context)
        self.journal = journal
        journal.timers = self.timers  # lets a test watch the timers while the actor is blocked

    def on_tick(self, key: str) -> None:
        self.journal.add((key, self.context.clock.monotonic()))

    def handle(self, message: Any) -> Any:
        verb, *args = message
        if verb == "every":
            self.timers.start_fixed_rate(*args)
        elif verb == "once":
            self.timers.start_single(*args)
        elif verb == "cancel":
            self.timers.cancel(*args)
        elif verb == "missed":
            return self.timers.missed(*args)
        elif verb == "ticks":
            return len(self.journal.snapshot())
        elif verb == "owner_tick":
            timer = self.timers._timers[args[0]]  # a tick as the timer itself would send it
            return Tick(args[0], timer.generation, self.timers._owner)
        return None


def start(clock) -> tuple[Any, Journal]:
    journal = Journal()
    ref = Ticker.start(ChildContext.standalone("ticker", clock, drills=True), journal)
    return ref, journal


def test_a_fixed_rate_timer_ticks_once_per_interval_of_a_manual_clock():
    clock = ManualClock()
    ref, journal = start(clock)
    ref.ask(("every", "beat", 10.0))
    for _ in range(3):
        clock.advance(10.0)
        ref.ask(("ticks",))
    assert [t for _, t in journal.snapshot()] == [10.0, 20.0, 30.0]
    ref.stop()


def test_a_jump_over_many_intervals_gives_one_tick_not_a_burst_and_counts_the_rest_as_missed():
    clock = ManualClock()
    ref, journal = start(clock)
    ref.ask(("every", "beat", 1.0))
    clock.advance(10.5)
    assert ref.ask(("ticks",)) == 1
    assert ref.ask(("missed", "beat")) == 9
    clock.advance(0.5)  # the schedule keeps its phase: next deadline is 11.0
    assert ref.ask(("ticks",)) == 2
    assert [t for _, t in journal.snapshot()] == [10.5, 11.0]
    ref.stop()


def test_on_a_real_clock_a_busy_actor_gets_one_tick_after_its_pause_not_a_burst():
    clock = SystemClock.shared()
    ref, journal = start(clock)
    ref.ask(("every", "beat", 0.02))
    journal.wait_for(lambda es: len(es) >= 1)
    release = threading.Event()
    ref.tell(Hang(release, seconds=WAIT))
    timers = journal.timers
    assert wait_until(lambda: timers.missed("beat") >= 5), "deadlines passed while the actor was blocked"
    before = len(journal.snapshot())
    release.set()
    assert ref.ask(("ticks",)) - before <= 1, "at most the one pending tick is delivered after the pause"
    ref.stop()


def test_a_tick_already_in_the_mailbox_is_dropped_after_its_timer_is_cancelled():
    clock = ManualClock()
    ref, journal = start(clock)
    ref.ask(("every", "beat", 1.0))
    stale = ref.ask(("owner_tick", "beat"))
    ref.ask(("cancel", "beat"))
    ref.tell(stale)
    clock.advance(5.0)
    assert ref.ask(("ticks",)) == 0
    ref.stop()


def test_a_restarted_timer_drops_the_ticks_of_its_earlier_generation():
    clock = ManualClock()
    ref, journal = start(clock)
    ref.ask(("every", "beat", 1.0))
    stale = ref.ask(("owner_tick", "beat"))
    ref.ask(("every", "beat", 1.0))  # same key again: a new generation
    ref.tell(stale)
    assert ref.ask(("ticks",)) == 0
    clock.advance(1.0)
    assert ref.ask(("ticks",)) == 1
    ref.stop()


def test_a_tick_from_an_earlier_incarnation_is_dropped_by_the_new_one():
    clock = ManualClock()
    old, _ = start(clock)
    old.ask(("every", "beat", 1.0))
    stale = old.ask(("owner_tick", "beat"))
    old.stop()
    new, journal = start(clock)
    new.ask(("every", "beat", 1.0))
    new.tell(stale)
    assert new.ask(("ticks",)) == 0
    new.stop()


def test_every_timer_is_cancelled_when_the_actor_stops():
    clock = ManualClock()
    ref, journal = start(clock)
    ref.ask(("every", "a", 1.0))
    ref.ask(("once", "b", 2.0))
    ref.stop()
    clock.advance(10.0)  # would raise inside the clock if a timer still told a dead actor
    assert journal.snapshot() == []


def test_a_single_shot_timer_ticks_once():
    clock = ManualClock()
    ref, journal = start(clock)
    ref.ask(("once", "retry", 2.0))
    clock.advance(1.0)
    assert ref.ask(("ticks",)) == 0
    clock.advance(5.0)
    assert ref.ask(("ticks",)) == 1
    clock.advance(5.0)
    assert ref.ask(("ticks",)) == 1
    ref.stop()
