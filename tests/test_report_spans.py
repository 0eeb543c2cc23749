"""The report's account of when trading was halted or reducing: each stretch from the journal,
with when and why it began, how it ended, its bars, its time and the orders it refused; in the
printed summary, the refused-order line and the chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runtime.broker import Order, Side
from runtime.payloads import TradeFailed, TradingStateChanged
from runtime.replay.report import RunSummary, end_of_run_lines, format_summary, report_figure
from runtime.replay.spans import StateSpan, span_lines, span_notes, state_spans, time_span
from runtime.risk.guards import TradingState

T0 = datetime(2017, 4, 23, 22, tzinfo=UTC)
ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
BREACH = "daily loss 1.50% >= limit 1.50% (start of day 10000.00, equity 9850.00)"
RESUMED = "resumed automatically: the cooldown after daily_loss ended"
WARNING = "warning: max drawdown 3.80% >= warning 3.00% (limit 5.00%, peak 10000.00, equity 9620.35)"
DAILY_WARNING = "warning: daily loss 1.00% >= warning 0.90% (limit 1.50%, start of day 9843.64, equity 9745.30)"


def hours(count: float) -> timedelta:
    return timedelta(hours=count)


def changed(at: timedelta, before: TradingState, after: TradingState, reason: str):
    return TradingStateChanged(before, after, reason).event("main", T0 + at)


def refused(at: timedelta, by: str | None = "trading_state", reconciled: bool = False):
    order = Order("EURUSD", Side.BUY, 1.0, client_id=f"c-{at}")
    failed = TradeFailed.of(order, None, rejected=True, error="refused", refused_by=by, reconciled=reconciled)
    return failed.event("main", T0 + at)


BARS = [T0 + hours(i) for i in range(40)]  # hourly, 22:00 on 2017-04-23 to 13:00 on 2017-04-25


def a_journal():
    """Halted 2 hours by a breach; a warning that comes and goes inside one bar; halted again,
    resumed straight into a warning that stays to the end, refusing orders all along."""
    return [
        changed(hours(0), ACTIVE, HALTED, BREACH),
        refused(hours(1)),
        changed(hours(2), HALTED, ACTIVE, RESUMED),
        changed(hours(23), ACTIVE, REDUCING, DAILY_WARNING),
        changed(hours(23), REDUCING, ACTIVE, "back within limits"),
        changed(hours(27), ACTIVE, HALTED, BREACH),
        refused(hours(28)),
        refused(hours(28), by="max_trades_per_day"),  # another rule's refusal is not the state's
        refused(hours(29), reconciled=True),  # a restarted guard's record of a lost order
        changed(hours(30), HALTED, REDUCING, WARNING),
        refused(hours(31)),
        refused(hours(35)),
    ]


SPANS = [
    StateSpan("halted", T0, T0 + hours(2), BREACH, 2, 1, "active", RESUMED),
    StateSpan("reducing", T0 + hours(23), T0 + hours(23), DAILY_WARNING, 0, 0, "active", "back within limits"),
    StateSpan("halted", T0 + hours(27), T0 + hours(30), BREACH, 3, 1, "reducing", WARNING),
    StateSpan("reducing", T0 + hours(30), T0 + hours(39), WARNING, 10, 2),
]


def test_each_stretch_of_halted_or_reducing_trading_is_read_from_the_journal_with_its_bars_and_refusals():
    assert state_spans(a_journal(), BARS) == SPANS
    assert [span.stopped_trading for span in SPANS] == [True, False, True, True]
    assert SPANS[3].duration == hours(9)
    # A stretch that came and went at one bar's time but refused an order there held that bar.
    brief = [changed(hours(3), ACTIVE, REDUCING, WARNING), refused(hours(3)),
             changed(hours(3), REDUCING, ACTIVE, "back within limits")]
    assert state_spans(brief, BARS) == [
        StateSpan("reducing", T0 + hours(3), T0 + hours(3), WARNING, 1, 1, "active", "back within limits"),
    ]
    assert state_spans([], BARS) == []


def test_the_printed_report_names_every_stretch_that_stopped_trading_with_when_why_and_how_long():
    assert span_lines(SPANS) == [
        "Trading halted or reducing: halted 2 times, 5 bars; reducing 1 time, 10 bars",
        f"  2017-04-23 22:00 UTC  halted for 2 bars (2h), 1 order refused: {BREACH}",
        f"    until 2017-04-24 00:00 UTC, then active: {RESUMED}",
        f"  2017-04-25 01:00 UTC  halted for 3 bars (3h), 1 order refused: {BREACH}",
        f"    until 2017-04-25 04:00 UTC, then reducing: {WARNING}",
        f"  2017-04-25 04:00 UTC  reducing for 10 bars (9h), 2 orders refused: {WARNING}",
        "    to the last bar, 2017-04-25 13:00 UTC: still reducing when the run ended",
        "  (1 more began and ended inside one bar, refusing nothing)",
    ]
    assert span_lines([]) == ["Trading halted or reducing: never"]
    assert span_lines(SPANS[1:2]) == [
        "Trading halted or reducing: never",
        "  (1 more began and ended inside one bar, refusing nothing)",
    ]
    assert [time_span(t) for t in (timedelta(0), hours(2), hours(1.5), timedelta(days=287, hours=15, seconds=7))] == [
        "0s", "2h", "1h 30m", "287d 15h 7s",
    ]


def a_summary(spans=tuple(SPANS), refused_by=None) -> RunSummary:
    return RunSummary(
        start_equity=10_000.0, final_equity=9_620.35, max_drawdown=0.038, fills_by_why={"signal": 2, "guard": 2},
        state_spans=spans, orders_refused_by=refused_by or {"trading_state": 4, "max_trades_per_day": 1},
    )


def test_the_summary_says_which_state_refused_the_orders_and_ends_with_the_stretches():
    assert format_summary(a_summary()).splitlines() == [
        "Equity: GBP 10,000.00 -> GBP 9,620.35 (-GBP 379.65, -3.80%)",
        "Max drawdown: 3.80%",
        "Fills: 4 in fills.csv: 2 by signal, 2 closed by the guard   Restarts: 0",
        "Open at the end: none (flat)",
        "Orders refused: 5: max_trades_per_day 1, trading_state 4 (the guard was halted: 2, reducing: 2)",
        "Guards fired: none",
        *span_lines(SPANS),
    ]
    # Refusals no stretch accounts for (a summary.json written before stretches were) say so.
    older = a_summary(spans=(), refused_by={"trading_state": 3})
    assert end_of_run_lines(older)[1] == "Orders refused: 3: trading_state 3 (the guard was halted or reducing: 3)"
    only_reducing = a_summary(spans=SPANS[3:], refused_by={"trading_state": 2})
    assert end_of_run_lines(only_reducing)[1] == "Orders refused: 2: trading_state 2 (the guard was reducing: 2)"


def test_summary_json_holds_every_stretch_and_reads_it_back():
    data = a_summary().to_json_dict()
    assert data["state_spans"][2] == {
        "state": "halted", "start": "2017-04-25T01:00:00+00:00", "end": "2017-04-25T04:00:00+00:00",
        "reason": BREACH, "bars": 3, "orders_refused": 1, "next_state": "reducing", "ended_by": WARNING,
    }
    assert data["state_spans"][3]["next_state"] is None and data["state_spans"][3]["ended_by"] is None
    assert RunSummary.from_json_dict(data).state_spans == tuple(SPANS)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"state": "active"}, ValueError, "state must be halted or reducing, got 'active'"),
        ({"end": T0 - hours(1)}, ValueError,
         "end must be at or after start 2017-04-23T22:00:00+00:00, got 2017-04-23T21:00:00+00:00"),
        ({"bars": -1}, ValueError, "bars must be a whole number >= 0, got -1"),
        ({"next_state": "paused"}, ValueError, "next_state must be active or reducing or halted or None, got 'paused'"),
        ({"start": datetime(2017, 4, 23)}, ValueError, "time must be a timezone-aware datetime"),
    ],
)
def test_a_bad_stretch_is_refused_naming_the_field_and_value(changes, error, message):
    fields = {"state": "halted", "start": T0, "end": T0 + hours(2), "reason": BREACH, "bars": 2} | changes
    with pytest.raises(error) as caught:
        StateSpan(**fields)
    assert message in str(caught.value)
    with pytest.raises(TypeError, match=r"^state_spans\[0\] must be a StateSpan, got 'halted'$"):
        a_summary(spans=("halted",))


def test_the_chart_shades_each_stretch_counts_them_in_the_legend_and_writes_why_under_it():
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    from matplotlib.dates import date2num

    equities = [10_000.0 - 10 * i for i in range(len(BARS))]
    notes = ["Open at the end: none (flat)"]
    figure = report_figure(BARS, equities, 0.05, notes=notes, state_spans=SPANS)
    top, bottom = figure.axes
    legend = [text.get_text() for text in top.get_legend().get_texts()]
    assert legend[-2:] == ["halted: 2 times, 5 bars", "reducing: 1 time, 10 bars"]
    # Both panels, one band per stretch that stopped trading, from its start to its end.
    for axes in (top, bottom):
        bands = [patch.get_x() for patch in axes.patches if patch.get_width() > 0 and patch.get_alpha() == 0.15]
        assert bands == [date2num(T0), date2num(T0 + hours(27)), date2num(T0 + hours(30))]
    assert [text.get_text() for text in figure.texts] == ["\n".join([
        "Open at the end: none (flat)",
        # Wrapped to the figure's width (130 characters).
        "Halted 2017-04-23 22:00 UTC to 2017-04-24 00:00 UTC, 2 bars (2h), 1 order refused: daily loss 1.50% >= limit "
        "1.50% (start of day",
        "    10000.00, equity 9850.00)",
        "Halted 2017-04-25 01:00 UTC to 2017-04-25 04:00 UTC, 3 bars (3h), 1 order refused: daily loss 1.50% >= limit "
        "1.50% (start of day",
        "    10000.00, equity 9850.00)",
        "Reducing 2017-04-25 04:00 UTC to the end, 10 bars (9h), 2 orders refused: warning: max drawdown 3.80% >= "
        "warning 3.00% (limit",
        "    5.00%, peak 10000.00, equity 9620.35)",
    ])]
    with pytest.raises(ValueError, match=r"^state_spans\[0\] must be a StateSpan, got 'halted'$"):
        report_figure(BARS, equities, 0.05, state_spans=["halted"])


def test_under_the_chart_only_the_longest_stretches_are_written_in_time_order_and_the_rest_counted():
    spans = [StateSpan("halted", T0 + hours(3 * i), T0 + hours(3 * i + bars), BREACH, bars, 0, "active", RESUMED)
             for i, bars in enumerate([1, 2, 1, 3, 1, 1])]
    assert span_notes(spans, most=2) == [
        f"Halted 2017-04-24 01:00 UTC to 2017-04-24 03:00 UTC, 2 bars (2h): {BREACH}",
        f"Halted 2017-04-24 07:00 UTC to 2017-04-24 10:00 UTC, 3 bars (3h): {BREACH}",
        "... and 4 shorter halted or reducing stretches (summary.json's state_spans)",
    ]
