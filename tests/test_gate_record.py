"""The gate's record: what a restarted guard gets back, kept no larger than the rules need, and
answering exactly as the whole history would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.guard_carry import GuardCarry, Unsaved
from runtime import Order, Settings, TradingState
from runtime.risk.gate import Gate, GateRecord, Refusal
from runtime.risk.limits import MaxLeverage, MaxOrderNotional, OrderContext, OrderRate, RunawayLoop

START = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)
ORDER = Order("X", "buy", 1)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.integers(1, 5), st.integers(1, 30), st.integers(1, 30),
    st.lists(st.tuples(st.floats(0.0, 7_200.0), st.booleans()), max_size=80),
)
def test_a_capped_history_answers_as_the_whole_history_would(per_second, per_day, trades, steps):
    settings = Settings(
        max_orders_per_second=per_second, max_orders_per_day=per_day, max_trades_per_day=trades,
        trading_timezone="Europe/London",
    )
    gate, rules, everything, now = settings.gate(), settings.limits(), [], START
    for step, send in steps:
        now += timedelta(seconds=step)
        context = OrderContext([], {}, None, now, sorted(everything))
        expected = next(((r.name, reason) for r in rules if (reason := r.check(ORDER, context)) is not None), None)
        refusal = gate.check(ORDER, TradingState.ACTIVE, [], now=now)
        assert (None if refusal is None else (refusal.rule, refusal.reason)) == expected
        if send and refusal is None:
            gate.sent(now)
            everything.append(now.timestamp())
        assert len(gate.record().sent) <= max(per_second, per_day, trades)


def test_a_restored_gate_carries_on_with_the_history_the_refusals_and_the_latch():
    gate = Gate(Settings(max_orders_per_second=1).limits(), runaway=RunawayLoop(3, 60.0))
    gate.sent(START)
    assert gate.check(ORDER, TradingState.ACTIVE, [], now=START).counted
    record = gate.record()
    assert record == GateRecord(sent=(START.timestamp(),), refusals=(START.timestamp(),))
    again = Gate(Settings(max_orders_per_second=1).limits(), runaway=RunawayLoop(3, 60.0))
    again.restore(GateRecord.from_json(record.to_json()))
    later = START + timedelta(milliseconds=500)
    assert again.check(ORDER, TradingState.ACTIVE, [], now=later).runaway is None
    latched = again.check(ORDER, TradingState.ACTIVE, [], now=later)
    assert latched.runaway == "runaway order loop: 3 orders refused by rate limits within 60s (limit 3)"
    assert (again.latched, again.latched_at) == (latched.runaway, later.timestamp())
    restarted = Gate(Settings(max_orders_per_second=1).limits(), runaway=RunawayLoop(3, 60.0))
    restarted.restore(again.record())
    assert restarted.state(TradingState.ACTIVE) is TradingState.REDUCING
    assert restarted.release() == latched.runaway and restarted.record().latched is None


def test_only_a_gate_with_a_rate_rule_or_a_runaway_detector_has_anything_to_remember():
    assert not Settings(max_order_volume=5).gate().remembers
    assert Settings(max_trades_per_day=5).gate().remembers
    assert Settings(runaway_refusals=5).gate().remembers
    # Only an order a rate rule counts changes the record (and must be saved before it goes out).
    assert Settings(max_order_volume=5, runaway_refusals=5).gate().sent(START) is False
    counting = Settings(max_trades_per_day=5).gate()
    assert counting.sent(START) is True and counting.record().sent == (START.timestamp(),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a gate record's JSON: '{' (JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ("[1]", "not a gate record's JSON: '[1]' (TypeError: a gate record is a JSON object, got [1])"),
        ('{"sent": [1, "x"]}', "not a gate record's JSON: '{\"sent\": [1, \"x\"]}' (TypeError: sent must be a sequence of epoch seconds, got [1, 'x'])"),
        ('{"refusals": [NaN]}', "not a gate record's JSON: '{\"refusals\": [NaN]}' (ValueError: refusals must hold finite epoch seconds, got nan)"),
        ('{"sent": [], "colour": 1}', "not a gate record's JSON: '{\"sent\": [], \"colour\": 1}' (TypeError: unknown key 'colour'; known: sent, refusals, latched, latched_at, halted_by, halted_at)"),
        ('{"halted_at": true}', "not a gate record's JSON: '{\"halted_at\": true}' (ValueError: halted_at must be finite epoch seconds or None, got True)"),
        ('{"halted_by": "daily_loss"}', "not a gate record's JSON: '{\"halted_by\": \"daily_loss\"}' (TypeError: halted_by must be a sequence of rule names, got 'daily_loss')"),
        ('{"latched": 3}', "not a gate record's JSON: '{\"latched\": 3}' (TypeError: latched must be a reason or None, got 3)"),
        ('{"sent": 5}', "not a gate record's JSON: '{\"sent\": 5}' (TypeError: sent must be a sequence of epoch seconds, got 5)"),
        ('{"sent": {}}', "not a gate record's JSON: '{\"sent\": {}}' (TypeError: sent must be a sequence of epoch seconds, got {})"),
        ('{"latched_at": Infinity}', "not a gate record's JSON: '{\"latched_at\": Infinity}' (ValueError: latched_at must be finite epoch seconds or None, got inf)"),
        ('{"halted_by": ["daily_loss", 1]}', "not a gate record's JSON: '{\"halted_by\": [\"daily_loss\", 1]}' (TypeError: halted_by must be a sequence of rule names, got ['daily_loss', 1])"),
        ("x" * 300, "not a gate record's JSON: '" + "x" * 200 + "' (JSONDecodeError: Expecting value: line 1 column 1 (char 0))"),
    ],
)
def test_a_malformed_record_is_refused_quoting_it(text, message):
    with pytest.raises(ValueError) as info:
        GateRecord.from_json(text)
    assert str(info.value) == message


def test_a_record_with_a_non_finite_time_cannot_be_written():
    with pytest.raises(ValueError, match=r"^Out of range float values are not JSON compliant"):
        GateRecord(sent=(float("nan"),)).to_json()


def test_a_record_is_written_as_one_compact_line_with_its_keys_sorted():
    record = GateRecord(
        sent=(1.5, 2.0), refusals=(2.0,), latched="runaway", latched_at=2.0, halted_by=("daily_loss",), halted_at=3.25
    )
    assert record.to_json() == (
        '{"halted_at":3.25,"halted_by":["daily_loss"],"latched":"runaway","latched_at":2.0,"refusals":[2.0],"sent":[1.5,2.0]}'
    )
    assert GateRecord.from_json(record.to_json()) == record


def test_a_gate_without_limits_or_runaway_detector_remembers_nothing():
    gate = Gate()
    assert gate.remembers is False
    assert gate.sent(START) is False
    assert gate.record() == GateRecord()
    assert gate.release() is None


def test_the_record_keeps_only_as_many_orders_as_the_hungriest_rule_needs():
    gate = Gate([OrderRate(2, 60.0, "two_a_minute"), OrderRate(3, 60.0, "three_a_minute")])
    times = [START + timedelta(seconds=i) for i in range(5)]
    assert [gate.sent(t) for t in times] == [True] * 5
    assert gate.record() == GateRecord(sent=tuple(t.timestamp() for t in times[2:]))


@attrs.frozen
class LastMinuteCap:
    """A user's own rate rule that does not say how many orders it needs (no ``keeps``)."""

    name: ClassVar[str] = "last_minute_cap"
    uses_prices: ClassVar[bool] = False
    counts_rate: ClassVar[bool] = False
    lookback: ClassVar[float] = 60.0

    def check(self, order: Order, context: OrderContext) -> str | None:
        return None


def test_a_users_rule_that_does_not_say_what_it_keeps_keeps_every_order_within_its_lookback():
    gate = Gate([OrderRate(2, 60.0, "two_a_minute"), LastMinuteCap()])
    times = [START + timedelta(seconds=i) for i in range(5)]
    for t in times:
        gate.sent(t)
    assert gate.record() == GateRecord(sent=tuple(t.timestamp() for t in times))
    gate.sent(START + timedelta(seconds=63))  # 60 s on from the fourth order: the first four drop
    assert gate.record() == GateRecord(sent=(times[4].timestamp(), (START + timedelta(seconds=63)).timestamp()))


def test_the_gate_values_an_order_at_the_prices_given_and_its_contract_size():
    order = Order("X", "buy", 11)
    assert Gate([MaxOrderNotional(1_000)]).check(order, TradingState.ACTIVE, [], now=START, prices={"X": 100.0}) == (
        Refusal("max_order_notional", "notional 1,100.00 > limit 1,000.00 for X")
    )
    assert Gate([MaxOrderNotional(1_000)]).check(Order("X", "buy", 10), TradingState.ACTIVE, [], now=START, prices={"X": 100.0}) is None
    lots = Gate([MaxOrderNotional(1_000)], contract_size=100.0)
    assert lots.check(Order("X", "buy", 0.11), TradingState.ACTIVE, [], now=START, prices={"X": 100.0}) == (
        Refusal("max_order_notional", "notional 1,100.00 > limit 1,000.00 for X")
    )
    assert lots.check(Order("X", "buy", 0.1), TradingState.ACTIVE, [], now=START, prices={"X": 100.0}) is None


def test_the_gate_judges_leverage_on_the_equity_given():
    gate = Gate([MaxLeverage(2.0)])
    order = Order("X", "buy", 30)
    assert gate.check(order, TradingState.ACTIVE, [], now=START, prices={"X": 100.0}, equity=1_000.0) == Refusal(
        "max_leverage", "leverage 3.00 > limit 2.00 after X (exposure 3,000.00, equity 1,000.00)"
    )
    assert gate.check(order, TradingState.ACTIVE, [], now=START, prices={"X": 100.0}, equity=1_500.0) is None


def test_a_counted_rate_refusal_names_its_rule_and_reason_and_a_release_forgets_the_refusals():
    def gate() -> Gate:
        return Gate([OrderRate(1, 1.0, "max_orders_per_second")], runaway=RunawayLoop(2, 60.0))

    first = gate()
    first.sent(START)
    later = START + timedelta(milliseconds=500)
    reason = "orders 2 in 1s > limit 1 for X"
    runaway = "runaway order loop: 2 orders refused by rate limits within 60s (limit 2)"
    assert first.check(ORDER, TradingState.ACTIVE, [], now=START) == Refusal("max_orders_per_second", reason, None, True)
    assert first.check(ORDER, TradingState.ACTIVE, [], now=later) == Refusal("max_orders_per_second", reason, runaway, True)
    saved = GateRecord(
        sent=(START.timestamp(),), refusals=(START.timestamp(), later.timestamp()), latched=runaway, latched_at=later.timestamp()
    )
    assert first.record() == saved
    restarted = gate()
    restarted.restore(GateRecord.from_json(saved.to_json()))
    assert restarted.record() == saved
    assert restarted.release() == runaway
    assert restarted.record() == GateRecord(sent=(START.timestamp(),))
    # Without a runaway detector a rate refusal is not counted.
    uncounted = Gate([OrderRate(1, 1.0, "max_orders_per_second")])
    uncounted.sent(START)
    assert uncounted.check(ORDER, TradingState.ACTIVE, [], now=START) == Refusal("max_orders_per_second", reason)
    assert uncounted.release() is None and uncounted.record() == GateRecord(sent=(START.timestamp(),))


def test_a_carried_gate_record_is_taken_whole_over_what_its_guard_knew_was_stored_and_never_less_safe_over_a_newer_one():
    knew = GateRecord(sent=(1.0,), halted_by=("max_drawdown",), halted_at=1.0)
    held = GateRecord(sent=(1.0, 2.0), refusals=(2.0,), latched="runaway", latched_at=2.0, halted_by=("max_drawdown",),
                      halted_at=1.0)
    carry, first, second = GuardCarry(), object(), object()
    carry.adopt(first, None)
    carry.hold(first, Unsaved(held, knew, 3, "OSError(28, 'No space left on device')"))
    carry.adopt(second, None)
    assert carry.adopt_gate(second, knew) == (held, Unsaved(held, knew, 3, "OSError(28, 'No space left on device')"))
    # Written since (the fail-safe latched its halt: no cooldown lifts it): kept, with the carried orders and latch.
    newer = GateRecord(sent=(1.0, 1.5))
    merged, still = carry.adopt_gate(second, newer)
    assert merged == GateRecord(sent=(1.0, 1.5, 2.0), refusals=(2.0,), latched="runaway", latched_at=2.0)
    assert still is not None and still.record == held
    # One that holds all of it already: nothing is left to save, and nothing is carried any more.
    everything = GateRecord(sent=(1.0, 2.0), refusals=(2.0,), latched="a later runaway", latched_at=3.0)
    assert carry.adopt_gate(second, everything) == (everything, None)
    carry.adopt(first, None)
    assert carry.adopt_gate(first, None) == (None, None)


def test_orders_sent_in_the_same_second_count_each_when_a_carried_gate_record_meets_a_newer_one():
    # A review: the two records' order times were joined as a set, so two orders stamped alike
    # counted as one, and a day's trade limit let one more through.
    carry, first, second = GuardCarry(), object(), object()
    carry.adopt(first, None)
    carry.hold(first, Unsaved(GateRecord(sent=(5.0, 5.0, 6.0), refusals=(6.0, 6.0)), GateRecord(), 1, "disk full"))
    carry.adopt(second, None)
    merged, _ = carry.adopt_gate(second, GateRecord(sent=(4.0, 4.0, 5.0), refusals=(6.0,), halted_at=5.0))
    assert merged == GateRecord(sent=(4.0, 4.0, 5.0, 5.0, 6.0), refusals=(6.0, 6.0), halted_at=5.0)


def test_only_the_incarnation_that_adopted_last_may_hold_or_clear_a_gate_record():
    record = GateRecord(sent=(1.0,))
    carry, old, new = GuardCarry(), object(), object()
    carry.adopt(old, None)
    carry.adopt(new, None)
    carry.hold(old, Unsaved(record, None, 1, "late"))  # an abandoned incarnation that woke up late
    assert carry.adopt_gate(new, None) == (None, None)
    carry.hold(new, Unsaved(record, None, 1, "full"))
    carry.clear(old, gate=True)
    assert carry.adopt_gate(new, None) == (record, Unsaved(record, None, 1, "full"))
    carry.clear(new, gate=True)
    assert carry.adopt_gate(new, None) == (None, None)
