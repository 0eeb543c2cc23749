"""fills.csv: every fill of a run from its journal, with its costs, what it realised and why."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from test_examples import journal, run_example

from runtime.broker import Fill, Order, Position, Side
from runtime.events import Event, EventType
from runtime.payloads import OrderSubmitted, PositionClosed, TradeExecuted
from runtime.replay.report import FILLS_CSV_HEADER, FillRow, fills_from_events, write_fills_csv
from runtime.signals import Signal

T0 = datetime(2024, 1, 1, 9, tzinfo=UTC)


def a_journal() -> list[Event]:
    signal = Signal("SYNTH", Side.BUY, 100.0, T0, "fast MA(5) 101 crossed above slow MA(20) 100")
    order = Order("SYNTH", Side.BUY, 100.0, client_id="c-1")
    bought = Fill("1", "SYNTH", Side.BUY, 100.0, 101.5, T0, -2.5, "c-1", 7.5)
    manual = Order("SYNTH", Side.BUY, 10.0, client_id="c-2")
    added = Fill("1", "SYNTH", Side.BUY, 10.0, 102.0, T0, 0.0, "c-2", 0.0)
    position = Position("1", "SYNTH", Side.BUY, 110.0, 101.55)
    closed = Fill("1", "SYNTH", Side.SELL, 110.0, 80.0, T0, -2370.5, None, 2.75)
    return [
        OrderSubmitted.of(order, signal).event("main", T0),
        TradeExecuted.of(OrderSubmitted.of(order, signal), bought).event("main", T0),
        TradeExecuted.of(OrderSubmitted.of(manual, None), added).event("main", T0 + timedelta(hours=1)),
        PositionClosed.of(position, closed, "max drawdown 21.00% >= limit 20.00% (peak 10000.00, equity 7900.00)", 0)
        .event("main", T0 + timedelta(hours=2)),
        PositionClosed.of(Position("2", "EURX", Side.SELL, 5.0, 1.1), Fill("2", "EURX", Side.BUY, 5.0, 1.2, T0, -0.5),
                          "fail-safe", 1).event("main", T0 + timedelta(hours=3)),
    ]


def test_every_fill_is_read_from_the_journal_with_the_side_it_traded_and_why():
    assert fills_from_events(a_journal()) == [
        FillRow(T0, "SYNTH", Side.BUY, 100.0, 101.5, 7.5, -2.5, "signal",
                "fast MA(5) 101 crossed above slow MA(20) 100"),
        FillRow(T0 + timedelta(hours=1), "SYNTH", Side.BUY, 10.0, 102.0, 0.0, 0.0, "order", ""),
        # The guard closed a long: the fill is a sell.
        FillRow(T0 + timedelta(hours=2), "SYNTH", Side.SELL, 110.0, 80.0, 2.75, -2370.5, "guard",
                "max drawdown 21.00% >= limit 20.00% (peak 10000.00, equity 7900.00)"),
        FillRow(T0 + timedelta(hours=3), "EURX", Side.BUY, 5.0, 1.2, 0.0, -0.5, "fail-safe", "fail-safe"),
    ]


def test_fills_csv_has_its_header_and_a_row_per_fill(tmp_path):
    path = tmp_path / "deep" / "fills.csv"
    assert write_fills_csv(path, fills_from_events(a_journal()), price_digits=2) == 4
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "timestamp,symbol,side,volume,price,costs,realised_pnl,why,reason"
    assert lines[1] == (
        "2024-01-01T09:00:00+00:00,SYNTH,buy,100,101.50,7.5000,-2.5000,signal,"
        "fast MA(5) 101 crossed above slow MA(20) 100"
    )
    assert lines[2] == "2024-01-01T10:00:00+00:00,SYNTH,buy,10,102.00,0.0000,0.0000,order,"
    assert lines[3] == (
        '2024-01-01T11:00:00+00:00,SYNTH,sell,110,80.00,2.7500,-2370.5000,guard,'
        '"max drawdown 21.00% >= limit 20.00% (peak 10000.00, equity 7900.00)"'
    )
    # Without the instrument's digits, six.
    write_fills_csv(path, fills_from_events(a_journal()))
    assert path.read_text(encoding="utf-8").splitlines()[4] == (
        "2024-01-01T12:00:00+00:00,EURX,buy,5,1.200000,0.0000,-0.5000,fail-safe,fail-safe"
    )
    assert write_fills_csv(tmp_path / "none.csv", []) == 0
    assert (tmp_path / "none.csv").read_text(encoding="utf-8").splitlines() == [",".join(FILLS_CSV_HEADER)]


def test_a_journal_written_before_costs_existed_still_reads_with_no_costs():
    executed, closed = a_journal()[1], a_journal()[3]
    old_trade = {k: v for k, v in executed.metadata.items() if k != "costs"}
    old_close = {k: v for k, v in closed.metadata.items() if k != "costs"}
    assert TradeExecuted.from_metadata(old_trade).costs == 0.0
    assert PositionClosed.from_metadata(old_close).costs == 0.0
    assert executed.metadata["costs"] == 7.5 and closed.metadata["costs"] == 2.75


@pytest.fixture(scope="module")
def costly_run(tmp_path_factory):
    """A replay of 120 synthetic bars with a commission and a spread: its output folder and result."""
    cwd = tmp_path_factory.mktemp("costly")
    result = run_example(
        "paper_trading.py", "--bars", "120", "--commission-per-lot", "0.1", "--spread", "0.02", "--out", "run",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return cwd / "run", result


def test_a_replay_writes_fills_csv_beside_equity_csv_agreeing_with_journal_and_account(costly_run):
    out, result = costly_run
    assert "Wrote state.db, equity.csv, fills.csv, summary.json, report.png to " in result.stdout
    with (out / "fills.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    events = journal(out)
    expected = fills_from_events(events)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [tuple(row.values()) for row in rows] == [fill.csv_row(summary["price_digits"]) for fill in expected]
    executed = sum(e.event_type is EventType.TRADE_EXECUTED for e in events)
    closes = sum(e.event_type is EventType.POSITION_CLOSED for e in events)
    assert len(rows) == executed + closes and closes == 1
    assert [row["why"] for row in rows] == ["signal"] * executed + ["guard"]
    assert rows[-1]["side"] == "sell" and rows[-1]["reason"].startswith("max drawdown ")
    for row in rows:
        spread = 0.02 if row["side"] == "buy" else 0.0
        assert float(row["costs"]) == pytest.approx(float(row["volume"]) * (0.1 + spread))
    # Flat at the end (the guard closed the position): the fills' realised sum is the result.
    assert summary["final_equity"] == pytest.approx(10_000.0 + sum(float(row["realised_pnl"]) for row in rows))


def test_a_replay_writes_fills_and_equity_to_the_instruments_digits_and_money_to_four_places(costly_run):
    out, _ = costly_run
    # The synthetic series is quoted to four decimals: its fills' prices are too, and no float
    # noise (-655.9599999999991) reaches a column a trader reads or sums.
    assert (out / "fills.csv").read_text(encoding="utf-8").splitlines() == [
        "timestamp,symbol,side,volume,price,costs,realised_pnl,why,reason",
        "2024-01-04T01:00:00+00:00,SYNTH,buy,100,148.0921,12.0000,-10.0000,signal,"
        "fast MA(5) 145.208 crossed above slow MA(20) 144.915",
        "2024-01-04T08:00:00+00:00,SYNTH,sell,100,141.6325,10.0000,-655.9600,signal,"
        "fast MA(5) 144.484 crossed below slow MA(20) 145.317",
        "2024-01-04T14:00:00+00:00,SYNTH,buy,100,147.6517,12.0000,-10.0000,signal,"
        "fast MA(5) 144.818 crossed above slow MA(20) 144.717",
        # (the guard's close, where the limit was crossed, lies between two ticks: it has the
        # decimal more that its realised profit needs)
        "2024-01-04T22:00:00+00:00,SYNTH,sell,100,151.20138,10.0000,344.9680,guard,"
        '"max drawdown 20.00% >= limit 20.00% (peak 12098.76, equity 9679.01)"',
    ]
    equity = (out / "equity.csv").read_text(encoding="utf-8").splitlines()
    assert len(equity) == 121 and equity[-1] == "2024-01-05T23:00:00+00:00,9669.0080,9669.0080,9669.0080"
    assert all(re.fullmatch(r"[^,]+(,-?\d+\.\d{4}){3}", line) for line in equity[1:]), equity
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["price_digits"], summary["start_equity"], summary["final_equity"]) == (4, 10_000.0, 9_669.008)


def test_a_position_closed_by_its_own_stop_is_one_fill_saying_position_stop():
    position = Position("3", "SYNTH", Side.BUY, 2.0, 100.0)
    fill = Fill("3", "SYNTH", Side.SELL, 2.0, 90.0, T0, -20.0, "c-3", 0.5)
    reason = "position 3 SYNTH: unrealised loss 20.00 >= 0.20% of equity 10000.00"
    submitted = OrderSubmitted.closing(Order("SYNTH", Side.SELL, 2.0, client_id="c-3"), "3", "position_stop", reason)
    stop = [
        submitted.event("main", T0),
        TradeExecuted.of(submitted, fill).event("main", T0),
        PositionClosed.of(position, fill, reason, 0, rule="position_stop").event("main", T0),
    ]
    assert fills_from_events(stop) == [FillRow(T0, "SYNTH", Side.SELL, 2.0, 90.0, 0.5, -20.0, "position_stop", reason)]
    # A journal from before the order named its rule: still one fill, the order's.
    older = OrderSubmitted.of(Order("SYNTH", Side.SELL, 2.0, client_id="c-3"), None)
    old_stop = [older.event("main", T0), TradeExecuted.of(older, fill).event("main", T0), stop[2]]
    assert fills_from_events(old_stop) == [FillRow(T0, "SYNTH", Side.SELL, 2.0, 90.0, 0.5, -20.0, "order", "")]


def test_an_unreadable_order_submitted_does_not_keep_the_other_fills_out_of_fills_csv():
    damaged = Event(EventType.ORDER_SUBMITTED, "main", {"client_order_id": "c-9", "volume": "ten"}, T0)
    assert fills_from_events([damaged, *a_journal()]) == fills_from_events(a_journal())
    assert len(fills_from_events(a_journal())) == 4


# Whole-number prices: a buy at 101 on the MA(2/3) cross, then a fall that takes the account
# through its 9,900 minimum inside the 06:00 bar, where the guard closes it.
WHOLE_NUMBER_PRICES = """timestamp,open,high,low,close,volume
2024-01-02T00:00:00Z,100,100,100,100,10
2024-01-02T01:00:00Z,100,100,99,99,10
2024-01-02T02:00:00Z,99,99,98,98,10
2024-01-02T03:00:00Z,98,101,98,101,10
2024-01-02T04:00:00Z,101,103,101,102,10
2024-01-02T05:00:00Z,102,104,101,103,10
2024-01-02T06:00:00Z,102,102,70,75,10
2024-01-02T07:00:00Z,75,76,74,75,10
"""


def test_whole_number_prices_and_a_close_at_the_minimum_are_written_without_float_noise(tmp_path):
    prices = tmp_path / "cross.csv"
    prices.write_text(WHOLE_NUMBER_PRICES, encoding="utf-8")
    result = run_example(
        "paper_trading.py", "--prices", str(prices), "--fast", "2", "--slow", "3", "--volume", "100",
        "--min-equity", "9900", "--out", "run", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # The fall crosses 9,900 at 100 exactly: the equity there is a float's hair below it.
    reason = "equity below minimum 9900.00 by less than 0.01"
    assert (tmp_path / "run" / "fills.csv").read_text(encoding="utf-8").splitlines() == [
        "timestamp,symbol,side,volume,price,costs,realised_pnl,why,reason",
        "2024-01-02T03:00:00+00:00,CROSS,buy,100,101,0.0000,0.0000,signal,fast MA(2) 99.5 crossed above slow MA(3) 99.3333",
        f"2024-01-02T06:00:00+00:00,CROSS,sell,100,100,0.0000,-100.0000,guard,{reason}",
    ]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["price_digits"] == 0
    assert summary["guard_triggers"] == [{"time": "2024-01-02T06:00:00+00:00", "guard": "min_equity", "reason": reason}]
    assert f"\n  2024-01-02 06:00 UTC  closed long 100 CROSS at 100, realised -100.00: {reason}\n" in result.stdout
    assert f"\n  2024-01-02 06:00 UTC  min_equity: {reason}\n" in result.stdout
