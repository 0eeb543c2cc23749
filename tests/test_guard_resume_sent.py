"""A resume lifts only what its sender could have seen: the guard dates each HALTED or REDUCING as
it makes it public, keeps the date in its record, and refuses a resume sent before it, saying when
each happened. Real actors on a manual clock, so every time in a message is exact."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from actor_helpers import WAIT
from support.control_server import SlowCloseBroker
from test_guard_actor import T0, GuardTree, broker_with_positions

from actors.messages import Halt, Resume, SendAlert
from actors.service.hub import EventHub
from runtime import DrawdownSnapshot, EventType, GuardRecord, ManualClock, MemoryStore, PaperBroker, TradingState
from runtime.risk.monitor import ResumeRefused

NEWS = "halted by alice: news at 14:30"
AGAIN = "send the resume again if you still mean to lift it"


def seconds(n: float):
    return T0 + timedelta(seconds=n)


def test_a_resume_sent_before_the_halt_it_would_lift_is_refused_saying_when_each_happened(trees):
    # It lifted a halt its sender had never seen (a /resume held back by a Bot API outage).
    tree = GuardTree(PaperBroker(10_000), clock=ManualClock(T0))
    trees.append(tree)
    tree.guard.ask(Halt("alice", "news at 14:30"), timeout=WAIT)
    refused = tree.guard.ask(Resume("bob", sent_at=seconds(-5)), timeout=WAIT)
    assert isinstance(refused, ResumeRefused) and refused.rebaseline_helps is False
    assert str(refused) == (
        f"resume refused: it was sent at 2024-03-01 11:59:55.000 UTC, before the halt in force began at "
        f"2024-03-01 12:00:00.000 UTC ({NEWS}); {AGAIN}"
    )
    assert tree.status().state.trading_state is TradingState.HALTED
    record = tree.store.load_guard("main")
    assert (record.state_since, record.latched_at) == (T0, T0)
    # The status's state_since is the time of the change the hub remembers: the same moment.
    hub = EventHub()
    for event in tree.events.wait_count(EventType.TRADING_STATE_CHANGED, 1):
        hub(event)
    assert hub.last_state_change().timestamp == record.state_since
    # Sent again (at the halt's moment or later), it lifts it; ACTIVE has no dates.
    assert tree.guard.ask(Resume("bob", sent_at=T0), timeout=WAIT) is TradingState.HALTED
    assert tree.status().state.trading_state is TradingState.ACTIVE
    record = tree.store.load_guard("main")
    assert (record.state_since, record.latched_at) == (None, None)


def test_a_kill_switch_pressed_again_refuses_a_resume_sent_before_the_press_and_keeps_the_halts_start(trees):
    # The operator who sent /resume before the second press had not seen that press either.
    clock = ManualClock(T0)
    tree = GuardTree(PaperBroker(10_000), clock=clock)
    trees.append(tree)
    tree.guard.ask(Halt("alice", "news at 14:30"), timeout=WAIT)
    clock.advance(60)
    assert tree.guard.ask(Halt("carol", "broker incident"), timeout=WAIT) is TradingState.HALTED
    refused = tree.guard.ask(Resume("bob", sent_at=seconds(30)), timeout=WAIT)
    assert str(refused) == (
        "resume refused: it was sent at 2024-03-01 12:00:30.000 UTC, before the halt in force was laid again at "
        f"2024-03-01 12:01:00.000 UTC (halted since 2024-03-01 12:00:00.000 UTC: {NEWS}); {AGAIN}"
    )
    status = tree.status().state
    assert (status.trading_state, status.reason) == (TradingState.HALTED, NEWS)
    record = tree.store.load_guard("main")
    assert (record.state_since, record.latched_at) == (T0, seconds(60))
    # The status keeps showing the halt as it began: a press over it is no change of state.
    hub = EventHub()
    for event in tree.events.wait_count(EventType.TRADING_STATE_CHANGED, 2):
        hub(event)
    assert hub.last_state_change().timestamp == T0 == record.state_since
    assert tree.guard.ask(Resume("bob", sent_at=seconds(60)), timeout=WAIT) is TradingState.HALTED


def test_a_halt_is_dated_once_made_public_after_its_liquidation_so_a_resume_sent_meanwhile_is_refused(trees):
    # A busy guard: the halt is latched, then its positions close slowly; a resume sent in
    # between was sent by someone who could not yet see the halt (no alert, no status answer).
    clock = ManualClock(T0)
    broker = SlowCloseBroker(broker_with_positions("EURUSD"))
    tree = GuardTree(broker, clock=clock)
    trees.append(tree)
    halting = threading.Thread(target=tree.guard.ask, args=(Halt("alice", "news at 14:30"), WAIT))
    halting.start()
    assert broker.closing.wait(WAIT)
    clock.advance(10)  # the position is still closing at 12:00:05, when bob sends his resume
    broker.release.set()
    halting.join(WAIT)
    assert not halting.is_alive()
    refused = tree.guard.ask(Resume("bob", sent_at=seconds(5)), timeout=WAIT)
    assert str(refused) == (
        f"resume refused: it was sent at 2024-03-01 12:00:05.000 UTC, before the halt in force began at "
        f"2024-03-01 12:00:10.000 UTC ({NEWS}); {AGAIN}"
    )
    [changed] = tree.events.wait_count(EventType.TRADING_STATE_CHANGED, 1)
    assert changed.timestamp == seconds(10) == tree.store.load_guard("main").state_since


def test_a_halt_saved_without_its_start_is_dated_as_a_guard_loads_it_and_lifted_only_by_a_later_resume(trees):
    # A record saved before latches were dated (or by the fail-safe, which cannot date its halt):
    # its halt may be newer than any resume in flight, so it counts as begun at this start.
    store = MemoryStore()
    store.save_guard("main", GuardRecord(DrawdownSnapshot(10_000.0, 10_000.0, 10_000.0, 0.0), TradingState.HALTED,
                                         NEWS, None, None, None))
    loaded = seconds(3_600)
    tree = GuardTree(PaperBroker(10_000), store=store, clock=ManualClock(loaded))
    trees.append(tree)
    refused = tree.guard.ask(Resume("bob", sent_at=seconds(3_540)), timeout=WAIT)
    assert str(refused) == (
        f"resume refused: it was sent at 2024-03-01 12:59:00.000 UTC, before the halt in force began at "
        f"2024-03-01 13:00:00.000 UTC ({NEWS}); {AGAIN}"
    )
    record = store.load_guard("main")
    assert (record.state_since, record.latched_at) == (loaded, loaded)
    tree.journal.wait_for(lambda entries: any(isinstance(e[-1], SendAlert) for e in entries))
    assert [(a.title, a.text) for a in tree.alerts()] == [("Started halted", f"{NEWS}; trading waits for a resume")]
    assert tree.guard.ask(Resume("bob", sent_at=loaded), timeout=WAIT) is TradingState.HALTED


def test_a_fail_safes_halt_over_a_dated_halt_keeps_its_start_and_is_latched_again_as_a_guard_loads_it(trees):
    store = MemoryStore()
    store.save_guard("main", GuardRecord(DrawdownSnapshot(10_000.0, 10_000.0, 10_000.0, 0.0), TradingState.HALTED,
                                         f"{NEWS}; then supervisor gave up: guard restarted too often", None, None,
                                         None, state_since=T0, latched_at=None))
    tree = GuardTree(PaperBroker(10_000), store=store, clock=ManualClock(seconds(600)))
    trees.append(tree)
    refused = tree.guard.ask(Resume("bob", sent_at=seconds(300)), timeout=WAIT)
    assert str(refused) == (
        "resume refused: it was sent at 2024-03-01 12:05:00.000 UTC, before the halt in force was laid again at "
        "2024-03-01 12:10:00.000 UTC (halted since 2024-03-01 12:00:00.000 UTC: "
        f"{NEWS}; then supervisor gave up: guard restarted too often); {AGAIN}"
    )


def test_a_resume_without_a_sending_time_is_not_checked_and_one_sent_before_a_breachs_halt_is_refused(trees):
    clock = ManualClock(T0)
    tree = GuardTree(PaperBroker(10_000), clock=clock)
    trees.append(tree)
    tree.guard.ask(Halt("alice", "news at 14:30"), timeout=WAIT)
    assert tree.guard.ask(Resume("bob"), timeout=WAIT) is TradingState.HALTED  # sent_at None: no check
    clock.advance(30)
    tree.read(7_000)  # a 30% drawdown: HALTED at 12:00:30
    refused = tree.guard.ask(Resume("bob", rebaseline=True, sent_at=seconds(10)), timeout=WAIT)
    assert str(refused) == (
        "resume refused: it was sent at 2024-03-01 12:00:10.000 UTC, before the halt in force began at "
        "2024-03-01 12:00:30.000 UTC (max drawdown 30.00% >= limit 20.00% (peak 10000.00, equity 7000.00)); "
        f"{AGAIN}"
    )
    assert tree.status().state.peak_equity == 10_000  # no rebaseline was taken


def test_a_resume_past_a_hard_limit_is_refused_for_the_limit_first_since_sent_again_it_would_meet_it_too(trees):
    # The account still breaches: "send the resume again" would be bad advice.
    tree = GuardTree(PaperBroker(9_000), clock=ManualClock(T0))
    trees.append(tree)
    tree.read(12_000, 9_000)
    refused = tree.guard.ask(Resume("bob", sent_at=seconds(-5)), timeout=WAIT)
    assert str(refused) == (
        "resume refused: max drawdown 25.00% >= limit 20.00% (peak 12000.00, equity 9000.00); resume with a "
        "rebaseline to measure from equity 9000.00 (the peak and the day's start set to it)"
    )
    assert refused.rebaseline_helps is True
    # With the rebaseline the limit no longer refuses it: the halt it has not seen does.
    refused = tree.guard.ask(Resume("bob", rebaseline=True, sent_at=seconds(-5)), timeout=WAIT)
    assert str(refused) == (
        "resume refused: it was sent at 2024-03-01 11:59:55.000 UTC, before the halt in force began at "
        f"2024-03-01 12:00:00.000 UTC (max drawdown 25.00% >= limit 20.00% (peak 12000.00, equity 9000.00)); {AGAIN}"
    )
    assert tree.status().state.peak_equity == 12_000  # nothing was rebaselined


@pytest.mark.parametrize(("sent_at", "kind", "message"), [
    ("2024-03-01T12:00:00Z", TypeError, "sent_at must be a timezone-aware datetime, got '2024-03-01T12:00:00Z' (str)"),
    (T0.replace(tzinfo=None), ValueError,
     "sent_at must be a timezone-aware datetime, got datetime.datetime(2024, 3, 1, 12, 0)"),
])
def test_a_resume_whose_sending_time_is_not_an_aware_datetime_is_refused_naming_it(sent_at, kind, message):
    with pytest.raises(kind) as refused:
        Resume("bob", sent_at=sent_at)
    assert str(refused.value) == message
