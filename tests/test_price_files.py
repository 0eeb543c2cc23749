"""Price files as people have them: Date/Time headers, Adj Close, a pandas index column, and
files of several symbols, picked with the command line's own flag."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_examples import journal, run_example

from runtime.events import EventType
from runtime.replay.prices import Bar, PriceDataError, PriceSeries, load_bars, load_series, synthetic_bars


def write(folder: Path, text: str, name: str = "prices.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_backtesting_packages_own_csv_with_an_unnamed_index_column_is_read(tmp_path):
    # The first lines of backtesting/test/GOOG.csv and EURUSD.csv, as that package ships them.
    daily = write(tmp_path, ",Open,High,Low,Close,Volume\n2004-08-19,100,104.06,95.96,100.34,22351900\n"
                  "2004-08-20,101.01,109.08,100.5,108.31,11428600\n", "GOOG.csv")
    assert load_series(daily) == PriceSeries((
        Bar(datetime(2004, 8, 19, tzinfo=UTC), 100.0, 104.06, 95.96, 100.34, 22351900.0),
        Bar(datetime(2004, 8, 20, tzinfo=UTC), 101.01, 109.08, 100.5, 108.31, 11428600.0),
    ), None)
    hourly = write(tmp_path, ",Open,High,Low,Close,Volume\n2017-04-19 09:00:00,1.0716,1.0722,1.07083,1.07219,1413\n",
                   "EURUSD.csv")
    assert load_bars(hourly) == [Bar(datetime(2017, 4, 19, 9, tzinfo=UTC), 1.0716, 1.0722, 1.07083, 1.07219, 1413.0)]


def test_a_yahoo_download_with_date_and_adj_close_uses_the_traded_close(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n"
                 "2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700\n")
    assert load_bars(path) == [Bar(datetime(2024, 1, 2, tzinfo=UTC), 187.15, 188.44, 183.89, 185.64, 82488700.0)]


def test_an_empty_volume_cell_is_no_volume_as_in_a_file_without_the_column(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n"
                 "2024-01-02,10,11,9,10.5,10.4,\n"
                 "2024-01-03,10.5,12,10,11,,  \n"  # whitespace only; an empty Adj Close is never read
                 "2024-01-04,11,12,10.5,11.5,11.4,1200\n")
    assert load_bars(path) == [
        Bar(datetime(2024, 1, 2, tzinfo=UTC), 10.0, 11.0, 9.0, 10.5, 0.0),
        Bar(datetime(2024, 1, 3, tzinfo=UTC), 10.5, 12.0, 10.0, 11.0, 0.0),
        Bar(datetime(2024, 1, 4, tzinfo=UTC), 11.0, 12.0, 10.5, 11.5, 1200.0),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2024-01-03,10.5,12,,11,10.9,300", "low is not a number: ''"),
        ("2024-01-03,10.5, ,10,11,10.9,300", "high is not a number: ' '"),
        # Yahoo writes a day it has no prices for as nulls: refused, never skipped.
        ("2024-01-03,null,null,null,null,null,null", "open is not a number: 'null'"),
        ("2024-01-03,10.5,12,10,11,10.9,null", "volume is not a number: 'null'"),
    ],
)
def test_an_empty_or_null_price_is_refused_naming_the_line_the_column_and_the_text(tmp_path, row, message):
    path = write(tmp_path, f"Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,10,11,9,10.5,10.4,100\n{row}\n")
    with pytest.raises(PriceDataError) as refused:
        load_bars(path)
    assert str(refused.value) == f"{path}:3: {message}"


def test_a_date_and_a_time_column_make_one_timestamp_in_the_given_zone(tmp_path):
    path = write(tmp_path, "Date,Time,Open,High,Low,Close\n2024-07-01,12:00,1.1,1.2,1.0,1.15\n"
                 "2024-07-01,13:00:00,1.15,1.2,1.1,1.12\n")
    assert [bar.time for bar in load_bars(path, timezone="Europe/Athens")] == [
        datetime(2024, 7, 1, 9, tzinfo=UTC), datetime(2024, 7, 1, 10, tzinfo=UTC),
    ]
    datetimes = write(tmp_path, "Datetime,Open,High,Low,Close\n2024-07-01 12:00:00+00:00,1.1,1.2,1.0,1.15\n", "dt.csv")
    assert load_bars(datetimes)[0].time == datetime(2024, 7, 1, 12, tzinfo=UTC)


def test_an_unnamed_row_number_beside_a_date_column_is_skipped(tmp_path):
    path = write(tmp_path, ",Date,Open,High,Low,Close\n0,2024-01-02,10,11,9,10.5\n1,2024-01-03,10.5,12,10,11\n")
    assert [(bar.time.day, bar.close) for bar in load_bars(path)] == [(2, 10.5), (3, 11.0)]


def test_two_time_columns_and_unknown_columns_are_refused_by_name(tmp_path):
    both = write(tmp_path, "timestamp,date,open,high,low,close\n", "both.csv")
    with pytest.raises(PriceDataError) as refused:
        load_bars(both)
    assert str(refused.value) == f"{both}:1: two time columns, 'timestamp' and 'date'; keep one"
    odd = write(tmp_path, "Date,Open,High,Low,Close,VWAP\n", "odd.csv")
    with pytest.raises(PriceDataError) as refused:
        load_bars(odd)
    assert str(refused.value) == (
        f"{odd}:1: unknown column 'vwap' in header; expected timestamp, open, high, low, close and optionally "
        "volume, symbol (the time may be a datetime or date[,time] column)"
    )


def test_a_file_in_local_time_across_the_clocks_going_back_replays_every_bar_in_utc(tmp_path):
    # Hourly bars in London time through the night of 27 October 2024: 01:00 comes twice.
    hours = [f"2024-10-26 {h:02}:00" for h in range(24)] + [f"2024-10-27 {h:02}:00" for h in (0, 1, 1, 2, 3, 4, 5)]
    rows = "".join(f"{stamp},{100 + i},{101 + i},{99 + i},{100.5 + i}\n" for i, stamp in enumerate(hours))
    path = write(tmp_path, "timestamp,open,high,low,close\n" + rows, "london.csv")
    result = run_example("paper_trading.py", "--prices", str(path), "--timezone", "Europe/London", "--out", "run",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"tradewarden paper trading: 31 bars of LONDON (prices from {path})\n"
        "  2024-10-25 23:00 .. 2024-10-27 05:00 UTC, one bar every 60 min\n"
    )


MIXED = (
    "symbol,timestamp,open,high,low,close\n"
    "EURUSD,2024-01-02T10:00:00,1.10,1.12,1.09,1.11\n"
    "GBPUSD,2024-01-02T10:00:00,1.27,1.28,1.26,1.27\n"
)


def test_a_file_of_several_symbols_names_the_flag_that_picks_one_and_what_it_holds(tmp_path):
    path = write(tmp_path, MIXED)
    with pytest.raises(PriceDataError) as refused:
        load_bars(path, symbol_field="--symbol")
    assert str(refused.value) == f"{path}: holds several symbols (EURUSD, GBPUSD); pass --symbol to pick one"
    with pytest.raises(PriceDataError) as refused:
        load_bars(path, symbol="XAUUSD")
    assert str(refused.value) == f"{path}: has a header (line 1) but no bars for symbol 'XAUUSD'; it holds EURUSD, GBPUSD"
    assert load_series(path, symbol="GBPUSD").symbol == "GBPUSD"
    result = run_example("paper_trading.py", "--prices", str(path), "--out", "mixed", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"paper_trading: {path}: holds several symbols (EURUSD, GBPUSD); pass --symbol to pick one\n"


def test_the_symbol_is_the_files_own_not_the_files_name(tmp_path):
    lines = ["symbol,timestamp,open,high,low,close,volume"]
    for bar in synthetic_bars(120):
        lines.append(f"EURX,{bar.time.isoformat()},{bar.open},{bar.high},{bar.low},{bar.close},{bar.volume}")
    path = write(tmp_path, "\n".join(lines) + "\n", "download (3).csv")
    assert load_series(path).symbol == "EURX"
    result = run_example("paper_trading.py", "--prices", str(path), "--volume", "100", "--out", "own", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"tradewarden paper trading: 120 bars of EURX (prices from {path})\n")
    traded = {e.metadata["symbol"] for e in journal(tmp_path / "own") if e.event_type is EventType.TRADE_EXECUTED}
    assert traded == {"EURX"}
