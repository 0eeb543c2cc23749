"""Why orders did not trade, as a run's summary says it: the first refusal of each cause, its
reason as a person reads it, and how many of its cause were refused alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runtime.replay.refusals import FirstRefusal, Refusal, first_refusals, readable_error
from runtime.replay.report import RunSummary, format_summary

T0 = datetime(2024, 1, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "read"),
    [
        ("OrderRejected('order refused: buy 1 X')", "OrderRejected: order refused: buy 1 X"),
        ('BrokerError("it\'s closed")', "BrokerError: it's closed"),
        ("max order volume 5 > limit 2", "max order volume 5 > limit 2"),
        ("OrderRejected('a', 'b')", "OrderRejected('a', 'b')"),
    ],
)
def test_an_exceptions_repr_is_read_as_its_name_and_message_and_other_text_is_kept(error, read):
    assert readable_error(error) == read


def test_the_first_refusal_of_each_cause_counts_those_alike_but_for_their_figures():
    leverage = "OrderRejected: order refused: buy 99.6612 GOOG would hold notional {} on equity 10,000.00, leverage {}:1"
    refusals = [
        Refusal(T0, "trading_state", "trading halted"),
        Refusal(T0 + timedelta(hours=1), "broker", leverage.format("18,424.36", "1.8")),
        Refusal(T0 + timedelta(hours=2), "broker", "ConnectionError: venue timed out"),
        Refusal(T0 + timedelta(hours=3), "broker", leverage.format("9,136.34", "0.9")),
        Refusal(T0 + timedelta(hours=4), "max_order_volume", "order volume 5 > limit 2"),
    ]
    firsts = first_refusals(refusals)
    assert firsts == (
        FirstRefusal("broker", T0 + timedelta(hours=1), leverage.format("18,424.36", "1.8"), 2),
        FirstRefusal("max_order_volume", T0 + timedelta(hours=4), "order volume 5 > limit 2", 1),
    )
    summary = RunSummary(
        10_000.0, 10_000.0, 0.0, orders_refused_by={"broker": 3, "max_order_volume": 1, "trading_state": 1},
        first_refusals=firsts,
    )
    assert RunSummary.from_json_dict(summary.to_json_dict()) == summary
    lines = format_summary(summary).splitlines()
    assert lines[4:7] == [
        "Orders refused: 5: broker 3 (the broker refused or failed it), max_order_volume 1, trading_state 1 "
        "(the guard was halted or reducing: 1)",
        "  broker, first 2024-01-02 10:00 UTC: OrderRejected: order refused: buy 99.6612 GOOG would hold notional "
        "18,424.36 on equity 10,000.00, leverage 1.8:1 (2 of 3 alike but for their figures)",
        "  max_order_volume, first 2024-01-02 13:00 UTC: order volume 5 > limit 2",
    ]
