"""Messages refuse a bad field as they are made, naming the field and the value: a wrong one is
the sender's error at the sender, never an actor's crash (or a quiet no) at the receiver."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors.messages import MarketData, PlaceOrder, Resume, RunCycle
from runtime import Order

NOW = datetime(2024, 5, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: Resume(by=5), TypeError, "by must be a non-empty string, got 5 (int)"),
    (lambda: Resume(by=" "), ValueError, "by must be a non-empty string, got ' '"),
    (lambda: Resume("desk", rebaseline="yes"), TypeError, "rebaseline must be true or false, got 'yes' (str)"),
    (lambda: PlaceOrder("EURUSD", NOW), TypeError, "order must be an Order, got 'EURUSD' (str)"),
    (lambda: PlaceOrder(Order("EURUSD", "buy", 1), "now"), TypeError,
     "at must be a timezone-aware datetime, got 'now' (str)"),
    # A naive one: the guard refused its own reading of the account at that time, and judged the
    # order without it (an account past its limit then traded).
    (lambda: PlaceOrder(Order("EURUSD", "buy", 1), datetime(2024, 5, 1, 10)), ValueError,
     "at must be a timezone-aware datetime, got datetime.datetime(2024, 5, 1, 10, 0)"),
    (lambda: MarketData("2024-05-01T10:00:00Z", None), TypeError,
     "at must be a timezone-aware datetime, got '2024-05-01T10:00:00Z' (str)"),
    (lambda: MarketData(datetime(2024, 5, 1, 10)), ValueError,
     "at must be a timezone-aware datetime, got datetime.datetime(2024, 5, 1, 10, 0)"),
    (lambda: RunCycle(at="x"), TypeError, "at must be a timezone-aware datetime, got 'x' (str)"),
])
def test_a_message_with_a_bad_field_is_refused_naming_the_field_and_the_value(make, error, message):
    with pytest.raises(error) as refused:
        make()
    assert type(refused.value) is error and str(refused.value) == message


def test_well_made_messages_are_taken_as_they_are():
    assert Resume() == Resume("operator", False)
    assert RunCycle().at is None and RunCycle(NOW).at == NOW
    assert MarketData(NOW, {"X": 1.0}).bar == {"X": 1.0}
