"""Tests for price bars: the Bar value, both file formats, malformed rows, and the synthetic series."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

import pytest

from runtime import DrawdownTracker, Level, MaxDrawdownGuard, MinEquityGuard, PaperBroker, Side
from runtime.replay.prices import (
    SYNTHETIC_MIN_LENGTH,
    SYNTHETIC_SYMBOL,
    SYNTHETIC_VOLUME,
    Bar,
    PriceDataError,
    load_bars,
    synthetic_bars,
)
from runtime.replay.strategies import MovingAverageCrossover

T0 = datetime(2024, 1, 2, 10, tzinfo=UTC)
MT5_HEADER = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"
MT5_DAILY_HEADER = "<DATE>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    """Write ``text`` to a file in ``tmp_path`` and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- Bar


def test_bar_converts_an_aware_time_to_utc():
    bar = Bar(datetime(2024, 1, 2, 12, tzinfo=timezone(timedelta(hours=2))), 1.0, 1.2, 0.9, 1.1)
    assert bar.time == datetime(2024, 1, 2, 10, tzinfo=UTC)
    assert bar.time.tzinfo is UTC
    assert bar.volume == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time": datetime(2024, 1, 2)}, "time must be a timezone-aware datetime"),
        ({"open": -1.0}, "open must be > 0, got -1.0"),
        ({"close": float("nan")}, "close must be a finite real number, got nan"),
        ({"high": 0.95, "low": 1.0, "open": 0.97, "close": 0.97}, "high must be >= low, got high 0.95 < low 1.0"),
        ({"high": 1.05}, "high must be >= open and close, got high 1.05"),
        ({"low": 1.05}, "low must be <= open and close, got low 1.05"),
        ({"volume": -3}, "volume must be >= 0, got -3"),
    ],
)
def test_bar_refuses_bad_values_naming_field_and_value(kwargs, message):
    fields = {"time": T0, "open": 1.0, "high": 1.2, "low": 0.9, "close": 1.1} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Bar(**fields)


# ---------------------------------------------------------------------------------- generic CSV


def test_generic_csv_with_iso_timestamps_naive_read_as_utc(tmp_path):
    path = write(
        tmp_path,
        "timestamp,open,high,low,close,volume\n"
        "2024-01-02T10:00:00,1.10,1.12,1.09,1.11,150\n"
        "2024-01-02T12:00:00+01:00,1.11,1.13,1.10,1.12,90\n"  # 11:00 UTC
        "2024-01-02T12:00:00Z,1.12,1.12,1.05,1.06,0\n",
    )
    bars = load_bars(path)
    assert [b.time for b in bars] == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert bars[0] == Bar(T0, 1.10, 1.12, 1.09, 1.11, 150.0)
    assert bars[2].close == 1.06 and bars[2].volume == 0


def test_generic_csv_with_unix_seconds_no_volume_any_column_order_and_case(tmp_path):
    start = int(T0.timestamp())
    path = write(
        tmp_path,
        "Close, Open ,HIGH,low,Timestamp\n"
        f"1.11,1.10,1.12,1.09,{start}\n"
        f"1.12,1.11,1.13,1.10,{start + 3600}\n\n",  # a trailing blank line is fine
    )
    bars = load_bars(path)
    assert bars == [Bar(T0, 1.10, 1.12, 1.09, 1.11), Bar(T0 + timedelta(hours=1), 1.11, 1.13, 1.10, 1.12)]


def test_generic_csv_symbol_column_picks_the_symbol_and_requires_one_when_mixed(tmp_path):
    path = write(
        tmp_path,
        "symbol,timestamp,open,high,low,close\n"
        "EURUSD,2024-01-02T10:00:00,1.10,1.12,1.09,1.11\n"
        "GBPUSD,2024-01-02T10:00:00,1.27,1.28,1.26,1.27\n"
        "EURUSD,2024-01-02T11:00:00,1.11,1.13,1.10,1.12\n",
    )
    assert [b.close for b in load_bars(path, symbol="EURUSD")] == [1.11, 1.12]
    assert [b.close for b in load_bars(path, symbol="GBPUSD")] == [1.27]
    with pytest.raises(PriceDataError, match=r"several symbols \(EURUSD, GBPUSD\); pass symbol="):
        load_bars(path)
    with pytest.raises(PriceDataError, match=r"no bars for symbol 'XAUUSD'"):
        load_bars(path, symbol="XAUUSD")


def test_naive_timestamps_can_be_read_in_another_zone(tmp_path):
    path = write(tmp_path, "timestamp,open,high,low,close\n2024-07-01T12:00:00,1,1,1,1\n")
    (bar,) = load_bars(path, timezone="Europe/Athens")  # UTC+3 in summer
    assert bar.time == datetime(2024, 7, 1, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone must be an IANA time zone name or a tzinfo, got 'Mars/Olympus'"):
        load_bars(path, timezone="Mars/Olympus")


def local_times(tmp_path: Path, form: str, stamps: list[str]) -> Path:
    """A price file of one bar at each of ``stamps`` (``YYYY-MM-DD HH:MM``, no offset), as a
    generic CSV or as an MT5 export (``form``)."""
    if form == "csv":
        return write(tmp_path, "timestamp,open,high,low,close\n" + "".join(f"{s},1,1,1,1\n" for s in stamps))
    rows = "".join(f"{s[:10].replace('-', '.')}\t{s[11:]}\t1\t1\t1\t1\t10\t0\t5\n" for s in stamps)
    return write(tmp_path, MT5_HEADER + "\n" + rows)


@pytest.mark.parametrize("form", ["csv", "mt5"])
@pytest.mark.parametrize(
    ("wall", "utc"),
    [
        # Europe/London goes back from 02:00 BST to 01:00 GMT: the hour from 01:00 comes twice.
        (["00:00", "01:00", "01:00", "02:00"], ["2024-10-26 23:00", "00:00", "01:00", "02:00"]),
        (["01:00", "01:30", "01:00", "01:30", "02:00"], ["00:00", "00:30", "01:00", "01:30", "02:00"]),
        (["00:30", "01:30", "01:00"], ["2024-10-26 23:30", "00:30", "01:00"]),
    ],
    ids=["hourly", "half-hourly", "half-hour-back"],
)
def test_the_hour_repeated_when_the_clocks_go_back_is_read_as_its_second_instant_the_second_time(
    tmp_path, form, wall, utc
):
    path = local_times(tmp_path, form, [f"2024-10-27 {time}" for time in wall])
    expected = [datetime.fromisoformat(t if " " in t else f"2024-10-27 {t}").replace(tzinfo=UTC) for t in utc]
    assert [bar.time for bar in load_bars(path, timezone="Europe/London")] == expected


@pytest.mark.parametrize("form", ["csv", "mt5"])
@pytest.mark.parametrize(
    ("stamps", "zone", "message"),
    [
        (["2024-10-27 00:00", "2024-10-27 01:00", "2024-10-27 01:00", "2024-10-27 01:00"], "Europe/London",
         "5: duplicated timestamp 2024-10-27T01:00:00+00:00 (also on line 4)"),
        (["2024-10-27 02:00", "2024-10-27 03:00", "2024-10-27 03:00"], "Europe/London",
         "4: duplicated timestamp 2024-10-27T03:00:00+00:00 (also on line 3)"),
        (["2024-10-27 00:00", "2024-10-27 01:00", "2024-10-27 01:00"], "UTC",
         "4: duplicated timestamp 2024-10-27T01:00:00+00:00 (also on line 3)"),
        (["2024-07-01 01:00", "2024-07-01 01:00"], "Europe/London",
         "3: duplicated timestamp 2024-07-01T00:00:00+00:00 (also on line 2)"),
    ],
    ids=["a third time", "an hour not repeated", "a zone without changes", "in summer"],
)
def test_a_wall_time_repeated_where_the_clocks_did_not_repeat_it_is_a_duplicate(tmp_path, form, stamps, zone, message):
    path = local_times(tmp_path, form, stamps)
    with pytest.raises(PriceDataError) as refused:
        load_bars(path, timezone=zone)
    assert str(refused.value) == f"{path}:{message}"


@pytest.mark.parametrize(("form", "text"), [("csv", "2024-03-31 01:30"), ("mt5", "2024.03.31 01:30")])
def test_a_time_the_clocks_skip_when_they_go_forward_is_refused_naming_it_and_the_zone(tmp_path, form, text):
    path = local_times(tmp_path, form, ["2024-03-31 00:30", "2024-03-31 01:30", "2024-03-31 02:30"])
    with pytest.raises(PriceDataError) as refused:
        load_bars(path, timezone="Europe/London")
    assert str(refused.value) == (
        f"{path}:3: local time {text!r} does not exist in Europe/London (the clocks jumped past it)"
    )


def test_a_date_alone_is_the_start_of_its_day_even_when_the_clocks_skip_its_midnight(tmp_path):
    # Santiago's clocks go from 24:00 on 7 September 2024 to 01:00: the 8th starts at 01:00 (-03).
    days = write(tmp_path, "Date,Open,High,Low,Close\n2024-09-07,1,1,1,1\n2024-09-08,1,1,1,1\n")
    mt5 = write(
        tmp_path, MT5_DAILY_HEADER + "\n2024.09.07\t1\t1\t1\t1\t10\t0\t5\n2024.09.08\t1\t1\t1\t1\t10\t0\t5\n", "d1.csv"
    )
    for path in (days, mt5):
        assert [bar.time for bar in load_bars(path, timezone="America/Santiago")] == [
            datetime(2024, 9, 7, 4, tzinfo=UTC), datetime(2024, 9, 8, 4, tzinfo=UTC),
        ]


# ------------------------------------------------------------------------------------------- MT5


def test_mt5_intraday_export_with_seconds_and_without(tmp_path):
    path = write(
        tmp_path,
        MT5_HEADER + "\n"
        "2024.01.02\t10:00:00\t1.10450\t1.10600\t1.10300\t1.10500\t1520\t0\t7\n"
        "2024.01.02\t11:00\t1.10500\t1.10700\t1.10400\t1.10650\t1310\t0\t6\n",
        name="EURUSD_H1.csv",
    )
    bars = load_bars(path)
    assert bars == [
        Bar(T0, 1.1045, 1.106, 1.103, 1.105, 1520.0, 7.0),  # FX: <VOL> is all zeros, so tick volume is used
        Bar(T0 + timedelta(hours=1), 1.105, 1.107, 1.104, 1.1065, 1310.0, 6.0),  # <SPREAD> in points
    ]


def test_mt5_daily_export_has_no_time_column_and_real_volume_wins(tmp_path):
    path = write(
        tmp_path,
        MT5_DAILY_HEADER + "\n"
        "2024.01.02\t100.0\t104.0\t99.0\t103.0\t5000\t120000\t2\n"
        "2024.01.03\t103.0\t105.0\t101.0\t102.0\t4800\t98000\t2\n",
        name="AAPL_D1.csv",
    )
    bars = load_bars(path)
    assert [b.time for b in bars] == [datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC)]
    assert [b.volume for b in bars] == [120000.0, 98000.0]
    assert bars[1] == Bar(datetime(2024, 1, 3, tzinfo=UTC), 103.0, 105.0, 101.0, 102.0, 98000.0, 2.0)


def test_mt5_export_in_utf16_with_bom_and_server_time_zone(tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_text(MT5_HEADER + "\r\n2024.01.02\t12:00:00\t1.1\t1.2\t1.0\t1.1\t10\t0\t5\r\n", encoding="utf-16")
    assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    (bar,) = load_bars(path, timezone="Europe/Athens")  # UTC+2 in winter
    assert bar.time == T0


# ------------------------------------------------------------------------------------ malformed

BAD_GENERIC = [
    ("wrong column count", "2024-01-02T11:00:00,1.1,1.2,1.0\n", 3, "expected 6 columns"),
    ("not a number", "2024-01-02T11:00:00,1.1,abc,1.0,1.1,5\n", 3, "high is not a number: 'abc'"),
    ("NaN", "2024-01-02T11:00:00,1.1,1.2,NaN,1.1,5\n", 3, "low must be a finite number, got 'NaN'"),
    ("negative price", "2024-01-02T11:00:00,-1.1,1.2,1.0,1.1,5\n", 3, "open must be > 0, got -1.1"),
    ("high below low", "2024-01-02T11:00:00,1.1,0.9,1.0,1.1,5\n", 3, "high must be >= low, got high 0.9 < low 1.0"),
    ("negative volume", "2024-01-02T11:00:00,1.1,1.2,1.0,1.1,-5\n", 3, "volume must be >= 0, got -5.0"),
    ("bad timestamp", "02/01/2024 11:00,1.1,1.2,1.0,1.1,5\n", 3, "neither ISO 8601 nor unix seconds: '02/01/2024 11:00'"),
    ("milliseconds", "1704193200000,1.1,1.2,1.0,1.1,5\n", 3, "'1704193200000' is too large for unix seconds"),
    ("duplicate", "2024-01-02T10:00:00,1.1,1.2,1.0,1.1,5\n", 3, "duplicated timestamp 2024-01-02T10:00:00+00:00 (also on line 2)"),
    ("out of order", "2024-01-02T09:00:00,1.1,1.2,1.0,1.1,5\n", 3, "timestamp 2024-01-02T09:00:00+00:00 is out of order"),
]


@pytest.mark.parametrize(("case", "row", "line", "message"), BAD_GENERIC, ids=[c[0] for c in BAD_GENERIC])
def test_malformed_generic_row_names_file_line_and_value(tmp_path, case, row, line, message):
    path = write(tmp_path, "timestamp,open,high,low,close,volume\n2024-01-02T10:00:00,1.1,1.2,1.0,1.1,5\n" + row)
    with pytest.raises(PriceDataError) as caught:
        load_bars(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:{line}: "), text
    assert message in text
    assert isinstance(caught.value, ValueError)


BAD_MT5 = [
    ("wrong column count", "2024.01.02\t11:00:00\t1.1\t1.2\t1.0\t1.1\t10\n", 3, "expected 9 tab-separated columns"),
    ("bad date", "02.01.2024\t11:00:00\t1.1\t1.2\t1.0\t1.1\t10\t0\t5\n", 3, "date/time '02.01.2024 11:00:00' is not"),
    ("not a number", "2024.01.02\t11:00:00\t1,1\t1.2\t1.0\t1.1\t10\t0\t5\n", 3, "<OPEN> is not a number: '1,1'"),
    ("nan", "2024.01.02\t11:00:00\t1.1\tnan\t1.0\t1.1\t10\t0\t5\n", 3, "<HIGH> must be a finite number, got 'nan'"),
    ("high below low", "2024.01.02\t11:00:00\t1.1\t1.0\t1.2\t1.1\t10\t0\t5\n", 3, "high must be >= low, got high 1.0 < low 1.2"),
    ("negative volume", "2024.01.02\t11:00:00\t1.1\t1.2\t1.0\t1.1\t10\t-3\t5\n", 3, "<VOL> must be >= 0, got '-3'"),
    ("out of order", "2024.01.02\t09:00:00\t1.1\t1.2\t1.0\t1.1\t10\t0\t5\n", 3, "is out of order: before 2024-01-02T10:00:00+00:00 on line 2"),
]


@pytest.mark.parametrize(("case", "row", "line", "message"), BAD_MT5, ids=[c[0] for c in BAD_MT5])
def test_malformed_mt5_row_names_file_line_and_value(tmp_path, case, row, line, message):
    path = write(tmp_path, MT5_HEADER + "\n2024.01.02\t10:00:00\t1.1\t1.2\t1.0\t1.1\t10\t0\t5\n" + row)
    with pytest.raises(PriceDataError) as caught:
        load_bars(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:{line}: "), text
    assert message in text


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path, "timestamp,open,high,low,close\n\n2024-01-02T10:00:00,1,1,1,1\n\nx,1,1,1,1\n")
    with pytest.raises(PriceDataError, match=r":5: timestamp is neither ISO 8601 nor unix seconds: 'x'"):
        load_bars(path)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file_is_a_clear_error(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(PriceDataError, match=r"the file is empty; expected a header line"):
        load_bars(path)


def test_header_only_missing_header_and_unknown_column_are_errors(tmp_path):
    with pytest.raises(PriceDataError, match=r"has a header \(line 1\) but no bars"):
        load_bars(write(tmp_path, "timestamp,open,high,low,close\n", "a.csv"))
    for first_row in ("1704189600,1,1,1,1", "2024-01-02T10:00:00,1,1,1,1"):
        with pytest.raises(PriceDataError, match=r"a.csv:1: no header line"):
            load_bars(write(tmp_path, first_row + "\n", "a.csv"))
    with pytest.raises(PriceDataError, match=r"b.csv:1: unknown column 'vwap'"):
        load_bars(write(tmp_path, "timestamp,open,high,low,close,vwap\n", "b.csv"))
    with pytest.raises(PriceDataError, match=r"c.csv:1: header lacks column\(s\) <CLOSE>"):
        load_bars(write(tmp_path, "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\n", "c.csv"))
    with pytest.raises(PriceDataError, match=r"cannot read price data"):
        load_bars(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------------- synthetic


def test_synthetic_series_is_deterministic_and_leaves_global_random_alone():
    state = random.getstate()
    first = synthetic_bars()
    assert random.getstate() == state
    random.seed(12345)  # a caller's use of the global generator must not change the series
    assert synthetic_bars() == first
    assert synthetic_bars(seed=8) != first
    assert len(first) == 400 and len(synthetic_bars(SYNTHETIC_MIN_LENGTH)) == SYNTHETIC_MIN_LENGTH
    assert SYNTHETIC_SYMBOL == "SYNTH"


def test_synthetic_series_is_hourly_utc_and_well_formed():
    bars = synthetic_bars(150, start=datetime(2023, 6, 1, tzinfo=UTC))
    assert bars[0].time == datetime(2023, 6, 1, tzinfo=UTC)
    assert all(b.time - a.time == timedelta(hours=1) for a, b in zip(bars, bars[1:]))
    assert all(b.open == a.close for a, b in zip(bars, bars[1:]))  # no gaps between bars
    top = max(b.close for b in bars)
    assert min(b.close for b in bars[[b.close for b in bars].index(top) :]) < top * 0.7  # a crash of > 30%


@pytest.mark.parametrize("length", [0, SYNTHETIC_MIN_LENGTH - 1])
def test_synthetic_series_refuses_too_short_a_length(length):
    with pytest.raises(ValueError, match=f"^length must be a whole number >= {SYNTHETIC_MIN_LENGTH}, got {length}$"):
        synthetic_bars(length)


class Step(NamedTuple):
    """What one bar of the hand replay left behind."""

    bar: Bar
    signals: list
    fills: list
    equity: float
    drawdown: float
    peak: float
    position_open: bool


def replay(bars: list[Bar]) -> list[Step]:
    """The paper run by hand: price, strategy, poll, orders, then the account's equity."""
    broker = PaperBroker(10_000.0)
    strategy = MovingAverageCrossover(SYNTHETIC_SYMBOL, fast=5, slow=20, volume=SYNTHETIC_VOLUME)
    tracker = DrawdownTracker(10_000.0)
    steps = []
    for bar in bars:
        broker.update_price(SYNTHETIC_SYMBOL, bar.close, bar.time)
        strategy.on_bar(bar)
        signals = strategy.poll(bar.time)
        fills = [broker.submit_order(signal.order()) for signal in signals]
        equity = broker.account_equity()
        tracker.observe(equity)
        position_open = bool(broker.open_positions())
        steps.append(Step(bar, list(signals), fills, equity, tracker.drawdown, tracker.peak_equity, position_open))
    return steps


@pytest.mark.parametrize("length", [400, SYNTHETIC_MIN_LENGTH, 250])
def test_synthetic_run_breaches_the_default_drawdown_guard_while_long(length):
    steps = replay(synthetic_bars(length))
    drawdown_guard, equity_guard = MaxDrawdownGuard(20.0), MinEquityGuard(500.0)
    breaches = [i for i, step in enumerate(steps) if step.drawdown >= 0.20]
    assert breaches, "the drawdown never reached 20%"
    first = breaches[0]
    breach = steps[first]
    assert breach.position_open, "the breach came with no position open"
    assert breach.signals == [], "the strategy exited on the breach bar itself, before any guard could act"
    assert drawdown_guard.level(breach.equity, breach.peak, 10_000.0, 10_000.0) is Level.BREACH
    # The minimum-equity guard is never the one that fires first.
    assert all(equity_guard.level(s.equity, s.peak, 10_000.0, 10_000.0) is Level.OK for s in steps[: first + 1])
    # Without a guard, the strategy itself closes the position at a loss after the crash.
    closing = [fill for s in steps[first + 1 :] for fill in s.fills if fill.side is Side.SELL]
    assert closing and closing[0].realised_pnl < 0
