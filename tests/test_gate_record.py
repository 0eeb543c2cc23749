"""The gate's record: what a restarted guard gets back, kept no larger than the rules need, and
answering exactly as the whole history would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import Order, Settings, TradingState
from runtime.risk.gate import Gate, GateRecord
from runtime.risk.limits import OrderContext, RunawayLoop

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
    ],
)
def test_a_malformed_record_is_refused_quoting_it(text, message):
    with pytest.raises(ValueError) as info:
        GateRecord.from_json(text)
    assert str(info.value) == message


def test_a_record_with_a_non_finite_time_cannot_be_written():
    with pytest.raises(ValueError, match=r"^Out of range float values are not JSON compliant"):
        GateRecord(sent=(float("nan"),)).to_json()
