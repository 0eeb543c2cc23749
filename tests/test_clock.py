"""Clocks: ManualClock moves only when told and runs what falls due in order; SystemClock calls back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import aware_datetimes

from runtime import ManualClock, SystemClock

START = datetime(2024, 1, 1, tzinfo=UTC)
WAIT = 5.0  # seconds to wait for a thread before calling it a failure; never slept


# --- ManualClock --------------------------------------------------------------------------------


def test_a_manual_clock_starts_at_its_start_and_does_not_move_by_itself():
    clock = ManualClock(START)
    assert clock.now() == START and clock.monotonic() == 0.0
    assert clock.now() == START


def test_the_default_start_is_new_year_2024_utc():
    assert ManualClock().now() == START


def test_a_start_in_another_zone_reads_back_in_utc():
    clock = ManualClock(datetime(2024, 6, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo")))
    assert clock.now() == datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)


def test_a_naive_start_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2024, 1, 1))


def test_advance_moves_now_and_monotonic_together():
    clock = ManualClock(START)
    clock.advance(90.5)
    assert clock.monotonic() == 90.5
    assert clock.now() == START + timedelta(seconds=90.5)


def test_advance_runs_every_due_callback_in_time_order_not_in_order_of_scheduling():
    clock = ManualClock(START)
    ran: list[str] = []
    clock.call_at(30.0, lambda: ran.append("c"))
    clock.call_at(10.0, lambda: ran.append("a"))
    clock.call_at(20.0, lambda: ran.append("b"))
    clock.call_at(20.0, lambda: ran.append("b2"))  # same moment: order of scheduling
    clock.call_at(99.0, lambda: ran.append("late"))
    clock.advance(30.0)
    assert ran == ["a", "b", "b2", "c"]
    clock.advance(68.9)
    assert ran == ["a", "b", "b2", "c"]
    clock.advance(0.1)
    assert ran == ["a", "b", "b2", "c", "late"]


def test_a_callback_runs_once_only():
    clock = ManualClock(START)
    ran: list[int] = []
    clock.call_at(1.0, lambda: ran.append(1))
    clock.advance(5.0)
    clock.advance(5.0)
    assert ran == [1]


def test_a_callback_already_due_runs_on_the_next_move_even_of_zero():
    clock = ManualClock(START)
    clock.advance(10.0)
    ran: list[int] = []
    clock.call_at(5.0, lambda: ran.append(1))
    clock.advance(0.0)
    assert ran == [1]


def test_a_callback_scheduled_by_a_callback_for_a_moment_inside_the_move_runs_in_the_same_move():
    clock = ManualClock(START)
    ran: list[str] = []

    def first():
        ran.append("first")
        clock.call_at(2.0, lambda: ran.append("second"))
        clock.call_at(20.0, lambda: ran.append("third"))

    clock.call_at(1.0, first)
    clock.advance(10.0)
    assert ran == ["first", "second"]
    clock.advance(10.0)
    assert ran == ["first", "second", "third"]


def test_a_cancelled_callback_never_runs_and_the_others_still_do():
    clock = ManualClock(START)
    ran: list[str] = []
    keep = clock.call_at(1.0, lambda: ran.append("kept"))
    drop = clock.call_at(2.0, lambda: ran.append("dropped"))
    drop.cancel()
    clock.advance(5.0)
    assert ran == ["kept"]
    keep.cancel()  # cancelling after it ran is harmless
    assert ran == ["kept"]


def test_a_failing_callback_does_not_stop_the_ones_after_it():
    clock = ManualClock(START)
    ran: list[str] = []

    def boom():
        raise RuntimeError("boom")

    clock.call_at(1.0, boom)
    clock.call_at(2.0, lambda: ran.append("after"))
    clock.advance(3.0)
    assert ran == ["after"]


def test_set_moves_forward_to_a_moment_running_what_falls_due():
    clock = ManualClock(START)
    ran: list[int] = []
    clock.call_at(3600.0, lambda: ran.append(1))
    clock.set(START + timedelta(hours=2))
    assert ran == [1]
    assert clock.now() == START + timedelta(hours=2)
    assert clock.monotonic() == 7200.0


def test_set_backwards_is_refused_and_time_stays():
    clock = ManualClock(START)
    clock.advance(100.0)
    with pytest.raises(ValueError, match="before the clock's time"):
        clock.set(START + timedelta(seconds=50))
    assert clock.monotonic() == 100.0


def test_set_to_the_current_moment_is_allowed():
    clock = ManualClock(START)
    clock.set(START)
    assert clock.monotonic() == 0.0


def test_set_with_a_naive_moment_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(START).set(datetime(2024, 1, 2))


def test_set_backwards_in_another_zone_is_refused_naming_the_moment_as_given():
    clock = ManualClock(START)
    clock.advance(7200.0)
    with pytest.raises(ValueError) as refused:
        clock.set(datetime(2024, 1, 1, 2, 30, tzinfo=ZoneInfo("Europe/Paris")))
    assert str(refused.value) == (
        "moment 2024-01-01T02:30:00+01:00 is before the clock's time 2024-01-01T02:00:00+00:00"
    )
    with pytest.raises(TypeError) as refused:
        clock.set("2024-01-02")  # type: ignore[arg-type]
    assert str(refused.value) == "moment must be a timezone-aware datetime, got '2024-01-02' (str)"
    assert clock.monotonic() == 7200.0


@settings(max_examples=100, deadline=None)
@given(
    start=aware_datetimes("Asia/Kolkata"),
    steps=st.lists(
        st.tuples(st.floats(0.0, 10 * 86_400.0), st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"])),
        max_size=12,
    ),
    due=st.lists(st.floats(0.0, 40 * 86_400.0), max_size=8),
)
def test_set_to_a_utc_moment_moves_exactly_as_to_the_same_instant_in_any_zone(start, steps, due):
    # Two clocks set to the same instants, one given each in UTC (the replay's case) and one in
    # another zone: the same time, to the microsecond and the bit, and the same callbacks at it.
    utc_clock, zoned_clock = ManualClock(start), ManualClock(start)
    seen: dict[str, list[tuple[float, datetime]]] = {"utc": [], "zoned": []}
    for name, clock in (("utc", utc_clock), ("zoned", zoned_clock)):
        for when in due:
            clock.call_at(when, lambda c=clock, n=name, w=when: seen[n].append((w, c.now())))
    moment = start.astimezone(UTC)
    for seconds, zone in steps:
        moment = moment + timedelta(seconds=seconds)
        ran = len(seen["utc"])
        utc_clock.set(moment)
        zoned_clock.set(moment.astimezone(ZoneInfo(zone)))
        assert utc_clock.monotonic().hex() == zoned_clock.monotonic().hex()
        assert utc_clock.now() == zoned_clock.now() == moment
        assert utc_clock.now().tzinfo is UTC
        assert seen["utc"] == seen["zoned"]
        # Every callback that fell due ran in this move, in time order, and saw the time moved to.
        assert [when for when, _ in seen["utc"][ran:]] == sorted(w for w in due if w <= utc_clock.monotonic())[ran:]
        assert all(now == moment for _, now in seen["utc"][ran:])


class _Stamp(datetime):
    """A datetime subclass (as pandas' Timestamp is one): a clock started at one keeps its type."""


@settings(max_examples=200, deadline=None)
@given(
    start=st.sampled_from([datetime(1900, 1, 1, tzinfo=UTC), _Stamp(1999, 12, 31, 23, 59, tzinfo=UTC)]),
    moments=st.lists(
        st.tuples(st.datetimes(datetime(1900, 1, 1), datetime(9999, 12, 31), timezones=st.just(UTC)), st.booleans()),
        max_size=10,
    ),
)
def test_after_set_now_reads_exactly_the_start_plus_the_elapsed_seconds(start, moments):
    # Set keeps the moment it was given as the time (within 142 years of the start); it must be
    # the very datetime the start plus the elapsed seconds makes: value, type, zone and fold.
    clock = ManualClock(start)
    for moment, folded in sorted(moments):
        if moment.astimezone(UTC) < clock.now():
            continue
        clock.set(moment.replace(fold=1) if folded else moment)
        made = start + timedelta(seconds=clock.monotonic())
        assert (type(clock.now()), repr(clock.now())) == (type(made), repr(made))


class _Precise(datetime):
    """A datetime subclass holding more than microseconds (as pandas' Timestamp holds nanoseconds)."""

    nanoseconds = 789


def test_a_clock_set_to_a_datetime_subclass_reads_the_time_it_computes_not_the_moment_given():
    # Only a plain datetime is kept as the time: a subclass may hold more than the clock keeps.
    start = _Precise(2024, 1, 1, tzinfo=UTC)
    clock = ManualClock(start)
    moment = _Precise(2024, 1, 1, 0, 0, 1, 1, tzinfo=UTC)
    clock.set(moment)
    assert clock.now() is not moment
    made = start + timedelta(seconds=clock.monotonic())
    assert (type(clock.now()), repr(clock.now())) == (type(made), repr(made))


@settings(max_examples=100, deadline=None)
@given(moves=st.lists(st.tuples(st.floats(0.0, 1e6), st.booleans()), max_size=20))
def test_now_is_always_the_start_plus_the_elapsed_seconds_however_often_it_is_asked(moves):
    clock = ManualClock(START)
    assert clock.now() == START
    for seconds, ask_twice in moves:
        clock.advance(seconds)
        expected = START + timedelta(seconds=clock.monotonic())
        assert clock.now() == expected
        if ask_twice:
            assert clock.now() == expected


@pytest.mark.parametrize("seconds", [-1.0, float("nan")])
def test_advance_by_a_negative_or_nan_amount_is_refused(seconds):
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        clock.advance(seconds)
    assert clock.monotonic() == 0.0


def test_a_manual_clock_is_virtual_and_the_system_clock_is_not():
    assert ManualClock.virtual is True
    assert SystemClock.virtual is False


# --- SystemClock ----------------------------------------------------------------------------------


def test_system_clock_now_is_utc_and_close_to_the_wall_clock():
    clock = SystemClock()
    now = clock.now()
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_system_clock_monotonic_never_goes_back():
    clock = SystemClock()
    readings = [clock.monotonic() for _ in range(100)]
    assert readings == sorted(readings)


def test_a_system_clock_callback_fires_on_the_clocks_own_thread():
    clock = SystemClock()
    fired = threading.Event()
    threads: list[str] = []

    def callback():
        threads.append(threading.current_thread().name)
        fired.set()

    clock.call_at(clock.monotonic() + 0.01, callback)
    assert fired.wait(timeout=WAIT)
    assert threads == ["tradewarden-clock"]


def test_a_system_clock_callback_already_due_fires_at_once():
    clock = SystemClock()
    fired = threading.Event()
    clock.call_at(clock.monotonic() - 1.0, fired.set)
    assert fired.wait(timeout=WAIT)


def test_a_cancelled_system_clock_callback_does_not_fire_while_a_later_one_does():
    clock = SystemClock()
    ran: list[str] = []
    done = threading.Event()
    now = clock.monotonic()
    dropped = clock.call_at(now + 0.05, lambda: ran.append("dropped"))
    clock.call_at(now + 0.10, lambda: (ran.append("kept"), done.set()))
    dropped.cancel()
    assert done.wait(timeout=WAIT)
    assert ran == ["kept"]  # callbacks run in time order, so the cancelled one would have come first


def test_system_clock_callbacks_fire_in_time_order():
    clock = SystemClock()
    ran: list[int] = []
    done = threading.Event()
    now = clock.monotonic()
    clock.call_at(now + 0.06, lambda: (ran.append(3), done.set()))
    clock.call_at(now + 0.02, lambda: ran.append(1))
    clock.call_at(now + 0.04, lambda: ran.append(2))
    assert done.wait(timeout=WAIT)
    assert ran == [1, 2, 3]


def test_set_says_how_many_callbacks_ran_and_calls_before_callbacks_once_before_the_first():
    clock = ManualClock(START)
    seen: list[str] = []
    clock.call_at(60.0, lambda: seen.append("first"))
    clock.call_at(90.0, lambda: seen.append("second"))
    clock.call_at(3600.0, lambda: seen.append("later"))
    assert clock.set(START + timedelta(seconds=30), before_callbacks=lambda: seen.append("before")) == 0
    assert seen == []  # nothing fell due: not called
    assert clock.set(START + timedelta(seconds=120), before_callbacks=lambda: seen.append("before")) == 2
    assert seen == ["before", "first", "second"]
    assert clock.set(START + timedelta(hours=2)) == 1
    assert seen == ["before", "first", "second", "later"]


def test_a_before_callbacks_that_raises_loses_no_callback():
    clock = ManualClock(START)
    seen: list[str] = []
    clock.call_at(60.0, lambda: seen.append("due"))

    def failing() -> None:
        raise RuntimeError("could not send")

    with pytest.raises(RuntimeError, match="^could not send$"):
        clock.set(START + timedelta(seconds=120), before_callbacks=failing)
    assert seen == [] and clock.monotonic() == 120.0
    assert clock.set(START + timedelta(seconds=180)) == 1
    assert seen == ["due"]
