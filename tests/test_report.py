"""Tests for the run report: summary.json keys, the text digest, the equity CSV and the PNG chart."""

from __future__ import annotations

import csv
import json
import struct
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from loguru import logger

from runtime import EventType, Side
from runtime.replay.report import (
    PRICE_DIGITS_UNKNOWN,
    FillRow,
    GuardTrigger,
    OpenPosition,
    Refusal,
    RunSummary,
    format_price,
    format_summary,
    open_positions,
    plot_report,
    price_digits,
    report_figure,
    write_equity_csv,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SUMMARY_KEYS = [
    "interrupted",
    "bars_played",
    "bars_total",
    "start_equity",
    "final_equity",
    "max_drawdown",
    "fills",
    "fills_by_why",
    "guard_triggers",
    "state_spans",
    "restarts",
    "orders_refused",
    "orders_refused_by",
    "first_refusals",
    "open_positions",
    "unrealised_pnl",
    "price_digits",
    "events_by_type",
]


def a_summary(**changes) -> RunSummary:
    """A plausible summary, with ``changes`` applied."""
    fields = {
        "start_equity": 10_000.0,
        "final_equity": 12_345.5,
        "max_drawdown": 0.2512,
        "fills_by_why": {"signal": 12, "guard": 1},
        "guard_triggers": (
            GuardTrigger(T0 + timedelta(hours=312), "max_drawdown", "max drawdown 25.12% >= limit 20.00%"),
        ),
        "restarts": 1,
        "events_by_type": {EventType.TRADE_EXECUTED: 12, "position_closed": 1, "guard_triggered": 1},
        "orders_refused_by": {"trading_state": 2, "max_order_volume": 1},
        "open_positions": (OpenPosition("EURUSD", Side.SELL, 0.5, 1.0851234),),
        "unrealised_pnl": -12.345678,
        "price_digits": 5,
    }
    return RunSummary(**(fields | changes))


def test_summary_json_has_exactly_the_documented_keys_and_shapes():
    data = a_summary().to_json_dict()
    assert list(data) == SUMMARY_KEYS
    assert data["guard_triggers"] == [
        {"time": "2024-01-14T00:00:00+00:00", "guard": "max_drawdown", "reason": "max drawdown 25.12% >= limit 20.00%"}
    ]
    assert data["events_by_type"] == {"guard_triggered": 1, "position_closed": 1, "trade_executed": 12}
    assert (data["fills"], data["fills_by_why"]) == (13, {"guard": 1, "signal": 12})
    assert (data["orders_refused"], data["orders_refused_by"]) == (3, {"max_order_volume": 1, "trading_state": 2})
    # An average entry lies between the instrument's ticks: written with the decimals its worth
    # needs to the money's last decimal (on 0.5 units the instrument's own five will do).
    assert data["open_positions"] == [{"symbol": "EURUSD", "side": "short", "volume": 0.5, "entry_price": 1.08512}]
    assert (data["unrealised_pnl"], data["price_digits"]) == (-12.3457, 5)
    assert data["start_equity"] == 10_000.0 and data["restarts"] == 1
    assert json.loads(json.dumps(data)) == data  # plain JSON values only
    # A reader gets the same summary back, its money and prices as summary.json rounds them.
    again = RunSummary.from_json_dict(data)
    assert again.to_json_dict() == data and again.fills == 13 and again.orders_refused == 3
    with pytest.raises(ValueError, match=r"^fills must be the sum of its counts, 13, got 14$"):
        RunSummary.from_json_dict(data | {"fills": 14})


def test_guard_trigger_times_are_utc():
    trigger = GuardTrigger(datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=3))), "min_equity", "low")
    assert trigger.to_json_dict()["time"] == "2024-01-01T00:00:00+00:00"
    with pytest.raises(ValueError, match="time must be a timezone-aware datetime"):
        GuardTrigger(datetime(2024, 1, 1), "min_equity", "low")


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"fills_by_why": {"signal": -1}}, ValueError, "fills_by_why['signal'] must be a whole number >= 0, got -1"),
        ({"orders_refused_by": {"broker": 1.0}}, TypeError, "orders_refused_by['broker'] must be a whole number"),
        ({"open_positions": ("EURUSD",)}, TypeError, "open_positions[0] must be an OpenPosition, got 'EURUSD'"),
        ({"restarts": 1.5}, TypeError, "restarts must be a whole number >= 0, got 1.5 (float)"),
        ({"start_equity": 0}, ValueError, "start_equity must be > 0, got 0"),
        ({"max_drawdown": -0.1}, ValueError, "max_drawdown must be >= 0, got -0.1"),
        ({"events_by_type": {"heartbeat": -2}}, ValueError, "events_by_type['heartbeat'] must be a whole number >= 0, got -2"),
    ],
)
def test_summary_refuses_bad_values_naming_field_and_value(changes, error, message):
    with pytest.raises(error) as caught:
        a_summary(**changes)
    assert message in str(caught.value)


def test_format_summary_reads_at_a_glance():
    text = format_summary(a_summary(final_equity=7_400.5), currency="USD")
    assert text.splitlines() == [
        "Equity: USD 10,000.00 -> USD 7,400.50 (-USD 2,599.50, -26.00%)",
        "Max drawdown: 25.12%",
        "Fills: 13 in fills.csv: 12 by signal, 1 closed by the guard   Restarts: 1",
        "Open at the end: short 0.5 EURUSD from 1.08512; unrealised -USD 12.35 at the last close, in the final equity",
        # No stretch of halted trading is on record here, so the state is not known.
        "Orders refused: 3: max_order_volume 1, trading_state 2 (the guard was halted or reducing: 2)",
        "Guards fired: 1",
        "  2024-01-14 00:00 UTC  max_drawdown: max drawdown 25.12% >= limit 20.00%",
        "Trading halted or reducing: never",
        "Events: guard_triggered 1, position_closed 1, trade_executed 12",
    ]
    calm = format_summary(a_summary(guard_triggers=(), events_by_type={}, fills_by_why={}, orders_refused_by={},
                                    open_positions=()))
    assert "Guards fired: none" in calm and "GBP 12,345.50" in calm and "+GBP 2,345.50, +23.46%" in calm
    assert "Fills: 0 in fills.csv   Restarts: 1\nOpen at the end: none (flat)\nOrders refused: none\n" in calm


def test_write_equity_csv(tmp_path):
    path = tmp_path / "out" / "equity.csv"
    rows = [(T0, 10_000.0, 10_000.0, 10_000.0), (T0 + timedelta(hours=1), 9_876.5, 9_512.25, 10_120.75)]
    assert write_equity_csv(path, rows) == 2
    with path.open(newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["timestamp", "equity", "worst_equity", "best_equity"],
            ["2024-01-01T00:00:00+00:00", "10000.0000", "10000.0000", "10000.0000"],
            ["2024-01-01T01:00:00+00:00", "9876.5000", "9512.2500", "10120.7500"],
        ]


def test_equity_csv_writes_money_to_four_places_without_float_noise(tmp_path):
    path = tmp_path / "equity.csv"
    write_equity_csv(path, [(T0, 14_391.088000003596, 14_391.088000003596, 14_391.088000003596),
                            (T0 + timedelta(hours=1), -0.00001, -0.00001, -0.00001)])
    assert path.read_text(encoding="utf-8").splitlines()[1:] == [
        "2024-01-01T00:00:00+00:00,14391.0880,14391.0880,14391.0880",
        "2024-01-01T01:00:00+00:00,0.0000,0.0000,0.0000",
    ]


def test_an_instruments_digits_are_read_from_its_own_prices():
    assert price_digits([1.08512, 1.0851, 1.1]) == 5
    assert price_digits([148.0921, 100.0, 0.02]) == 4
    assert price_digits([60_000.0, 1e-05]) == 5  # written 1e-05 by Python: still five decimals
    assert price_digits([]) == PRICE_DIGITS_UNKNOWN == 6
    assert price_digits([0.1 + 0.2]) == 10  # computed, not quoted: no more than ten decimals


def test_an_instrument_quoted_in_whole_numbers_has_no_decimals():
    # A float's text has a ".0" that no file wrote: 100 is quoted to no decimals, and written so.
    assert price_digits([100.0, 101.0, 99.0, 1_000_000.0]) == 0
    assert FillRow(T0, "CROSS", Side.BUY, 100.0, 101.0, 0.0, 0.0, "signal", "").csv_row(0)[4] == "101"


def test_a_quoted_price_loses_its_float_noise_and_a_price_between_ticks_keeps_the_decimals_its_profit_needs():
    quoted = FillRow(T0, "EURUSD", Side.BUY, 1.0, 1.1000000000000001, 0.0, 0.0, "signal", "")
    assert quoted.csv_row(5)[4] == "1.10000"
    # A guard's close where the limit was crossed (bisected, not on the 0.01 grid): rounded to
    # 96.98 it would disagree with its realised profit by 0.04 on 73 units; 96.980589 is within
    # 0.000003 of it, below the 0.0001 the money columns show.
    crossed = FillRow(T0, "DEMO", Side.SELL, 73.0, 96.98058904110191, 0.0, -220.41699999956074, "guard", "")
    assert crossed.csv_row(2)[3:7] == ("73", "96.980589", "0.0000", "-220.4170")
    assert format_price(96.98058904110191, 2, 73.0) == "96.980589"
    assert format_price(96.98, 2, 73.0) == "96.98"
    # GOOG's daily history with the 20% guard: the bisected crossing is a hair from 174.242,
    # which is as exact as the fill's worth (99.661152 shares) can show.
    goog = FillRow(T0, "GOOG", Side.SELL, 99.661152, 174.2419999833235, 0.0, -771.1779958379987, "guard", "")
    assert goog.csv_row(2)[3:7] == ("99.661152", "174.242", "0.0000", "-771.1780")
    # The more units, the more decimals it takes: 200,000 EURUSD need nine.
    assert format_price(1.0891517978123, 5, 200_000.0) == "1.089151798"
    assert format_price(1.0891517978123, 5, 1.0) == "1.08915"


def fill(side: Side, volume: float, price: float, symbol: str = "SYNTH") -> FillRow:
    return FillRow(T0, symbol, side, volume, price, 0.0, 0.0, "signal", "")


def test_open_positions_net_fills_as_the_paper_broker_does():
    assert open_positions([fill(Side.BUY, 100.0, 10.0), fill(Side.SELL, 100.0, 11.0)]) == []
    # Added to at the volume-weighted price, reduced at the same entry.
    added = [fill(Side.BUY, 100.0, 10.0), fill(Side.BUY, 300.0, 12.0), fill(Side.SELL, 100.0, 13.0)]
    assert open_positions(added) == [OpenPosition("SYNTH", Side.BUY, 300.0, 11.5)]
    # Reversed at the fill's price; one position per symbol.
    reversed_ = [fill(Side.BUY, 1.0, 10.0), fill(Side.SELL, 3.0, 9.0), fill(Side.SELL, 0.1 + 0.2, 1.2, "EURX")]
    assert open_positions(reversed_) == [
        OpenPosition("SYNTH", Side.SELL, 2.0, 9.0), OpenPosition("EURX", Side.SELL, 0.1 + 0.2, 1.2),
    ]
    # A rounding remainder is no position.
    assert open_positions([fill(Side.BUY, 0.1 + 0.2, 10.0), fill(Side.SELL, 0.3, 10.0)]) == []


def test_the_chart_marks_refused_orders_and_writes_the_end_of_the_run_under_it():
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    from matplotlib.dates import date2num

    times, equities = curve()
    notes = ["Open at the end: long 100 SYNTH from 139.2495; unrealised +GBP 12.00 at the last close, in the final equity",
             "Orders refused: 2: trading_state 2 (the guard was halted: 2)"]
    refusals = [Refusal(times[45], "trading_state"), Refusal(times[50], "trading_state")]
    figure = report_figure(times, equities, 0.2, refused_marks=refusals, notes=notes)
    assert [text.get_text() for text in figure.texts] == ["\n".join(notes)]
    top = figure.axes[0]
    assert "order refused (2)" in [text.get_text() for text in top.get_legend().get_texts()]
    [marks] = [c for c in top.collections if c.get_label() == "order refused (2)"]
    assert [tuple(point) for point in marks.get_offsets()] == [
        (date2num(times[45]), equities[45]), (date2num(times[50]), equities[50]),
    ]
    with pytest.raises(ValueError, match=r"refused_marks\[0\] must be a timezone-aware datetime"):
        report_figure(times, equities, 0.2, refused_marks=[datetime(2024, 1, 1)])


def test_write_equity_csv_refuses_bad_rows_and_writes_nothing(tmp_path):
    path = tmp_path / "equity.csv"
    with pytest.raises(ValueError, match=r"rows\[1\] timestamp must be a timezone-aware datetime"):
        write_equity_csv(path, [(T0, 1.0, 1.0, 1.0), (datetime(2024, 1, 1), 2.0, 2.0, 2.0)])
    with pytest.raises(ValueError, match=r"rows\[0\] equity must be a finite real number, got nan"):
        write_equity_csv(path, [(T0, float("nan"), 1.0, 1.0)])
    with pytest.raises(ValueError, match=r"rows\[0\] worst_equity must be a finite real number, got inf"):
        write_equity_csv(path, [(T0, 1.0, float("inf"), 1.0)])
    with pytest.raises(ValueError, match=r"rows\[0\] best_equity must be a finite real number, got -inf"):
        write_equity_csv(path, [(T0, 1.0, 1.0, float("-inf"))])
    with pytest.raises(
        ValueError, match=r"^rows\[0\] must be a \(timestamp, equity, worst_equity, best_equity\) row, got "
    ):
        write_equity_csv(path, [(T0, 1.0, 1.0)])
    assert not path.exists()


def curve():
    """60 hourly points: a climb, then a fall of about 33% from the peak."""
    times = [T0 + timedelta(hours=i) for i in range(60)]
    equities = [10_000 + 100 * i for i in range(30)] + [12_900 - 150 * i for i in range(30)]
    return times, equities


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR", "the first chunk of a PNG must be IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_report_writes_a_real_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    times, equities = curve()
    path = tmp_path / "charts" / "report.png"
    guard = GuardTrigger(times[40], "max_drawdown", "max drawdown 20.9% >= limit 20.00%")
    assert plot_report(path, times, equities, 0.2, [guard], [times[41], times[50]]) is True
    width, height = png_size(path.read_bytes())
    assert width >= 600 and height >= 400
    assert path.stat().st_size > 10_000  # a drawn chart, not an empty canvas


def test_plot_report_checks_its_inputs(tmp_path):
    times, equities = curve()
    with pytest.raises(ValueError, match="times and equities must have the same length, got 60 and 59"):
        plot_report(tmp_path / "a.png", times, equities[:-1], 0.2, [], [])
    with pytest.raises(ValueError, match=r"drawdown_limit_fraction must be in \(0, 1\], got 20"):
        plot_report(tmp_path / "a.png", times, equities, 20, [], [])
    with pytest.raises(ValueError, match=r"guard_marks\[0\] must be a timezone-aware datetime"):
        plot_report(tmp_path / "a.png", times, equities, 0.2, [datetime(2024, 1, 1)], [])
    with pytest.raises(ValueError, match=r"times must be in order, got times\[1\] 2024-01-01T00:00:00\+00:00"):
        plot_report(tmp_path / "a.png", [times[1], times[0]], equities[:2], 0.2, [], [])
    with pytest.raises(ValueError, match=r"^times, closes and lows must have the same length, got 60, 60 and 59$"):
        plot_report(tmp_path / "a.png", times, equities, 0.2, [], [], lows=equities[:-1])
    with pytest.raises(ValueError, match=r"^lows\[0\] must be <= closes\[0\] 10000.0, got 10001.0$"):
        plot_report(tmp_path / "a.png", times, equities, 0.2, [], [], lows=[10_001] + equities[1:])
    assert not (tmp_path / "a.png").exists()


def test_plot_report_without_matplotlib_returns_false_and_says_how_to_install(tmp_path, monkeypatch):
    # Submodules already imported by an earlier test would still import, so block them all.
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        times, equities = curve()
        path = tmp_path / "report.png"
        assert plot_report(path, times, equities, 0.2, [], []) is False
    finally:
        logger.remove(sink)
    assert not path.exists()
    assert any("pip install -e '.[plot]'" in message for message in messages), messages


def test_a_loss_or_change_that_rounds_to_nothing_is_never_written_minus_zero():
    # A trader's trial: "unrealised -GBP 0.00", and "(-GBP 0.00, -0.00%)" for a change of -0.0001.
    summary = a_summary(final_equity=9_999.9999, unrealised_pnl=-0.004)
    lines = format_summary(summary).splitlines()
    assert lines[0] == "Equity: GBP 10,000.00 -> GBP 10,000.00 (+GBP 0.00, +0.00%)"
    assert lines[3] == "Open at the end: short 0.5 EURUSD from 1.08512; unrealised +GBP 0.00 at the last close, in the final equity"
    loss = format_summary(a_summary(final_equity=9_999.99, unrealised_pnl=-0.006)).splitlines()
    assert loss[0] == "Equity: GBP 10,000.00 -> GBP 9,999.99 (-GBP 0.01, -0.00%)"
    assert "; unrealised -GBP 0.01 at the last close" in loss[3]
