"""Price bars for replays: the `Bar` value, a loader for OHLC CSV and MT5 exports, and a synthetic series.

`load_bars` reads two formats, told apart by their header line:

* a generic CSV: a comma-separated header naming ``timestamp, open, high, low, close`` and
  optionally ``volume`` and ``symbol`` (any order, any case); a timestamp is ISO 8601 or a plain
  number of unix seconds. The time may instead be in a ``datetime`` or ``date`` column (with an
  optional ``time`` column beside it, as spreadsheets and Yahoo write), or in an unnamed first
  column (a pandas index, as in the `backtesting` package's own CSVs); an unnamed first column
  beside a named time column is a row number and is skipped, and so is ``Adj Close`` (the close
  as traded is what fills use). An empty volume cell is volume 0, as in a file without the column;
* the MetaTrader 5 history export: tab-separated, header ``<DATE> <TIME> <OPEN> <HIGH> <LOW>
  <CLOSE> <TICKVOL> <VOL> <SPREAD>``, dates like ``2024.01.02`` and times like ``10:00:00`` or
  ``10:00``; daily bars have no ``<TIME>`` column.

Every row is checked where it enters: a bad row raises `PriceDataError` naming the file, the line
and the offending value, so a replay never starts on data that would quietly mislead it.

`synthetic_bars` is the bundled demonstration series (symbol `SYNTHETIC_SYMBOL`): made up, seeded,
and shaped to take a long moving-average position through a crash (see its docstring).
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from runtime.errors import TradewardenError
from runtime.validation import aware_datetime, finite_number, whole_number

__all__ = [
    "Bar",
    "PriceDataError",
    "PriceSeries",
    "load_bars",
    "load_series",
    "synthetic_bars",
    "SYNTHETIC_SYMBOL",
    "SYNTHETIC_VOLUME",
    "SYNTHETIC_MIN_LENGTH",
]


class PriceDataError(TradewardenError, ValueError):
    """Price data could not be used; the message names the file, the line and the bad value."""


def _utc_time(value: Any) -> datetime:
    return aware_datetime("time", value).astimezone(UTC)


def _price(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if finite_number(attribute.name, value) <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _volume(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if finite_number(attribute.name, value) < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class Bar:
    """One OHLC bar: the time it opened (UTC), its four prices (finite, > 0), its volume (>= 0) and,
    when the data says (an MT5 export's ``<SPREAD>``), its spread in points (>= 0; else None).

    The prices must be consistent: ``high`` is the highest of the four and ``low`` the lowest.
    A timezone-aware ``time`` in any zone is converted to UTC; a naive one is refused, because a
    guessed zone would shift every daily-loss boundary.
    """

    time: datetime = attrs.field(converter=_utc_time)
    open: float = attrs.field(validator=_price)
    high: float = attrs.field(validator=_price)
    low: float = attrs.field(validator=_price)
    close: float = attrs.field(validator=_price)
    volume: float = attrs.field(default=0.0, validator=_volume)
    spread_points: float | None = attrs.field(default=None, validator=attrs.validators.optional(_volume))

    def __attrs_post_init__(self) -> None:
        if self.high < self.low:
            raise ValueError(f"high must be >= low, got high {self.high!r} < low {self.low!r}")
        if self.high < max(self.open, self.close):
            raise ValueError(
                f"high must be >= open and close, got high {self.high!r} "
                f"(open {self.open!r}, close {self.close!r})"
            )
        if self.low > min(self.open, self.close):
            raise ValueError(
                f"low must be <= open and close, got low {self.low!r} (open {self.open!r}, close {self.close!r})"
            )


# --------------------------------------------------------------------------------------- loading

_GENERIC_REQUIRED = ("timestamp", "open", "high", "low", "close")
_GENERIC_OPTIONAL = ("volume", "symbol")
# Other names for the time column, the first one present wins; "date" may have a "time" beside it.
_TIME_COLUMNS = ("timestamp", "datetime", "date", "time")
_IGNORED = ("adj close", "adj_close", "adjclose")  # the dividend-adjusted close: fills use the traded one
_MT5_REQUIRED = ("<DATE>", "<OPEN>", "<HIGH>", "<LOW>", "<CLOSE>")
_MT5_OPTIONAL = ("<TIME>", "<TICKVOL>", "<VOL>", "<SPREAD>")
# Unix seconds above this are in the year 5138: such a number is almost surely milliseconds.
_MAX_UNIX_SECONDS = 1e11


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PriceDataError(f"{path}: cannot read price data: {exc}") from exc
    # MetaTrader writes some exports as UTF-16 with a byte-order mark; spreadsheets add a UTF-8 one.
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise PriceDataError(f"{path}: not {encoding} text: {exc}") from exc


def _zone(timezone: str | tzinfo) -> tzinfo:
    if isinstance(timezone, tzinfo):
        return timezone
    if not isinstance(timezone, str):
        raise TypeError(f"timezone must be an IANA time zone name or a tzinfo, got {timezone!r} ({type(timezone).__name__})")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone must be an IANA time zone name or a tzinfo, got {timezone!r}") from None


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PriceDataError(f"{path}:{line}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise PriceDataError(f"{path}:{line}: {column} must be a finite number, got {text!r}")
    return value


def _local_time(
    path: Path, line: int, text: str, naive: datetime, zone: tzinfo, previous: datetime | None
) -> datetime:
    # ``naive`` is a wall time in ``zone``, written ``text``; ``previous`` is the time of the bar
    # before it (None for the first).
    moment = naive.replace(tzinfo=zone).astimezone(UTC)
    if moment.astimezone(zone).replace(tzinfo=None) != naive:
        # zoneinfo would shift it by the size of the jump, onto a real time the file may also hold.
        raise PriceDataError(f"{path}:{line}: local time {text!r} does not exist in {zone} (the clocks jumped past it)")
    if previous is not None and moment <= previous:
        # The hour repeated when the clocks go back: the second time round is its later instant
        # (fold=1). Taken when it is not before the bar before, so that a third time round is
        # refused as the duplicate it is.
        later = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if later >= previous:
            return later
    return moment


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _day_start(day: datetime, zone: tzinfo) -> datetime:
    # A day's first instant: zoneinfo reads a midnight the clocks skip at the offset before the
    # jump, which is the instant the day starts, and a repeated one as its first instant.
    return day.replace(tzinfo=zone).astimezone(UTC)


def _generic_time(path: Path, line: int, text: str, zone: tzinfo, previous: datetime | None) -> datetime:
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds):
            raise PriceDataError(f"{path}:{line}: timestamp must be finite unix seconds, got {text!r}")
        if abs(seconds) >= _MAX_UNIX_SECONDS:
            raise PriceDataError(
                f"{path}:{line}: timestamp {text!r} is too large for unix seconds (milliseconds? divide by 1000)"
            )
        return datetime.fromtimestamp(seconds, UTC)
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise PriceDataError(
            f"{path}:{line}: timestamp is neither ISO 8601 nor unix seconds: {text!r}"
        ) from None
    if moment.tzinfo is not None:
        return moment.astimezone(UTC)
    if _is_date(stripped):
        return _day_start(moment, zone)
    return _local_time(path, line, stripped, moment, zone, previous)


def _mt5_time(
    path: Path, line: int, date_text: str, time_text: str | None, zone: tzinfo, previous: datetime | None
) -> datetime:
    text = date_text if time_text is None else f"{date_text} {time_text}"
    formats = ("%Y.%m.%d",) if time_text is None else ("%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M")
    for fmt in formats:
        try:
            naive = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        if time_text is None:
            return _day_start(naive, zone)
        return _local_time(path, line, text.strip(), naive, zone, previous)
    expected = "YYYY.MM.DD" if time_text is None else "YYYY.MM.DD and HH:MM[:SS]"
    raise PriceDataError(f"{path}:{line}: date/time {text!r} is not {expected}")


def _header(
    path: Path, line: int, names: list[str], required: Sequence[str], optional: Sequence[str]
) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name not in required and name not in optional:
            raise PriceDataError(
                f"{path}:{line}: unknown column {name!r} in header; expected {', '.join(required)} "
                f"and optionally {', '.join(optional)}"
            )
        if name in columns:
            raise PriceDataError(f"{path}:{line}: column {name!r} appears twice in the header")
        columns[name] = index
    missing = [name for name in required if name not in columns]
    if missing:
        raise PriceDataError(
            f"{path}:{line}: header lacks column(s) {', '.join(missing)}; got {', '.join(names) or 'nothing'}"
        )
    return columns


def _bar(
    path: Path, line: int, time: datetime, prices: dict[str, float], volume: float, spread: float | None = None
) -> Bar:
    try:
        return Bar(time, prices["open"], prices["high"], prices["low"], prices["close"], volume, spread)
    except (TypeError, ValueError) as exc:
        raise PriceDataError(f"{path}:{line}: {exc}") from None


@attrs.frozen
class PriceSeries:
    """The bars of one price file, oldest first, and the symbol the file names (its ``symbol``
    column's, when it has one; None when the file does not say)."""

    bars: tuple[Bar, ...]
    symbol: str | None


def load_bars(
    path: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    timezone: str | tzinfo = "UTC",
    symbol_field: str = "symbol=",
) -> list[Bar]:
    """The bars of `load_series`, as a list."""
    return list(load_series(path, symbol=symbol, timezone=timezone, symbol_field=symbol_field).bars)


def load_series(
    path: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    timezone: str | tzinfo = "UTC",
    symbol_field: str = "symbol=",
) -> PriceSeries:
    """Read the bars of a generic OHLC CSV or a MetaTrader 5 history export, oldest first.

    The format is told by the header (see the module docstring). Timestamps without a zone
    (ISO 8601 without an offset, and every MT5 date) are read in ``timezone``, UTC by default;
    MT5 exports carry the broker's server time, so pass the server's zone for those. A plain
    number is unix seconds. A date alone is the first instant of that day in ``timezone``.

    Where the clocks go back, a wall time comes twice: it is read as its first instant, and as
    its second (``fold=1``) when the bar before it is already at or past the first. So hourly
    rows 00:00, 01:00, 01:00, 02:00 on the night Europe/London's clocks go back are four bars an
    hour apart, and half-hourly rows 01:00, 01:30, 01:00, 01:30, 02:00 five bars; a wall time
    repeated where the clocks did not repeat it (or a third 01:00) is refused as a duplicate.

    ``symbol`` picks the rows of one symbol from a generic CSV that has a ``symbol`` column (it is
    required when that column holds several symbols; the error tells the user to pass
    ``symbol_field``, e.g. ``--symbol`` for a command line); a file without one is taken to be
    wholly of ``symbol``. For MT5 (one symbol per export) it is not checked.

    Raises `PriceDataError` naming the file, the line and the value for: an empty file or one
    with a header and no bars, an unknown header, a row with the wrong number of columns, a
    non-number (an empty price or Yahoo's ``null`` included; an empty volume cell is volume 0, no
    volume reported), NaN or infinity, a price <= 0, inconsistent prices (high < low, open or close
    outside high..low), a negative volume, a wall time that does not exist in ``timezone`` (one
    the clocks jump past when they go forward, which would otherwise be shifted by the jump), and
    timestamps out of order or repeated.
    """
    file = Path(path)
    zone = _zone(timezone)
    lines = _read_text(file).splitlines()
    numbered = [(number, text) for number, text in enumerate(lines, start=1) if text.strip()]
    if not numbered:
        raise PriceDataError(
            f"{file}: the file is empty; expected a header line "
            f"(timestamp,open,high,low,close[,volume] or the MT5 <DATE>\\t<TIME>\\t<OPEN>... export)"
        )
    header_line, header_text = numbered[0]
    symbols: set[str] = set()
    if header_text.lstrip().upper().startswith("<DATE>"):
        bars = _load_mt5(file, header_line, header_text, numbered[1:], zone)
    else:
        bars = _load_generic(file, header_line, header_text, numbered[1:], zone, (symbol, symbol_field), symbols)
    if not bars:
        which = "" if symbol is None else f" for symbol {symbol!r}"
        held = f"; it holds {', '.join(sorted(symbols))}" if symbols else ""
        raise PriceDataError(f"{file}: has a header (line {header_line}) but no bars{which}{held}")
    named = symbol if symbol is not None and symbols else (next(iter(symbols)) if len(symbols) == 1 else None)
    return PriceSeries(tuple(bars), named)


def _ordered(path: Path, rows: list[tuple[int, Bar]]) -> list[Bar]:
    # A replay that steps back in time or sees one moment twice would double-count or reorder
    # trades, so both are refused with the two lines involved.
    for (before_line, before), (line, bar) in zip(rows, rows[1:]):
        if bar.time == before.time:
            raise PriceDataError(
                f"{path}:{line}: duplicated timestamp {bar.time.isoformat()} (also on line {before_line})"
            )
        if bar.time < before.time:
            raise PriceDataError(
                f"{path}:{line}: timestamp {bar.time.isoformat()} is out of order: "
                f"before {before.time.isoformat()} on line {before_line}"
            )
    return [bar for _, bar in rows]


@attrs.frozen
class _GenericColumns:
    # Where each field of a generic CSV is: the time (a second column when a date has its time
    # beside it), the prices, and the optional volume and symbol.
    time: int
    clock: int | None
    prices: dict[str, int]
    volume: int | None
    symbol: int | None


def _generic_columns(path: Path, line: int, header_text: str, names: list[str]) -> _GenericColumns:
    plain = (*_GENERIC_REQUIRED, *_GENERIC_OPTIONAL)
    if not set(names) & {*plain, *_TIME_COLUMNS, *_IGNORED}:
        raise PriceDataError(
            f"{path}:{line}: no header line; the first line must name the columns "
            f"timestamp,open,high,low,close[,volume], got {header_text.strip()!r}"
        )
    named_time = next((name for name in _TIME_COLUMNS if name in names), None)
    columns: dict[str, int] = {}
    for index, raw in enumerate(names):
        if raw in _IGNORED:
            continue
        if index == 0 and raw == "":
            if named_time is not None:
                continue  # a row number beside a named time column
            name = "timestamp"  # an unnamed index column (pandas) holds the times
        elif raw == named_time:
            name = "timestamp"
        elif raw == "time" and named_time == "date":
            name = "clock"
        elif raw in _TIME_COLUMNS:
            raise PriceDataError(f"{path}:{line}: two time columns, {named_time!r} and {raw!r}; keep one")
        elif raw in plain:
            name = raw
        else:
            raise PriceDataError(
                f"{path}:{line}: unknown column {raw!r} in header; expected {', '.join(_GENERIC_REQUIRED)} "
                f"and optionally {', '.join(_GENERIC_OPTIONAL)} (the time may be a datetime or date[,time] column)"
            )
        if name in columns:
            raise PriceDataError(f"{path}:{line}: column {raw!r} appears twice in the header")
        columns[name] = index
    missing = [name for name in _GENERIC_REQUIRED if name not in columns]
    if missing:
        raise PriceDataError(
            f"{path}:{line}: header lacks column(s) {', '.join(missing)}; got {', '.join(names) or 'nothing'}"
        )
    return _GenericColumns(
        columns["timestamp"], columns.get("clock"), {name: columns[name] for name in ("open", "high", "low", "close")},
        columns.get("volume"), columns.get("symbol"),
    )


def _load_generic(
    path: Path,
    header_line: int,
    header_text: str,
    body: list[tuple[int, str]],
    zone: tzinfo,
    pick: tuple[str | None, str],
    seen_symbols: set[str],
) -> list[Bar]:
    # ``pick`` is the symbol asked for and how the user asks for one; ``seen_symbols`` is filled in.
    symbol, symbol_field = pick
    names = [name.strip().lower() for name in next(csv.reader([header_text]))]
    columns = _generic_columns(path, header_line, header_text, names)
    rows: list[tuple[int, Bar]] = []
    for line, text in body:
        fields = next(csv.reader([text]))
        if len(fields) != len(names):
            raise PriceDataError(
                f"{path}:{line}: expected {len(names)} columns ({','.join(names)}), got {len(fields)}: {text.strip()!r}"
            )
        if columns.symbol is not None:
            row_symbol = fields[columns.symbol].strip()
            seen_symbols.add(row_symbol)
            if symbol is not None and row_symbol != symbol:
                continue
        stamp = fields[columns.time]
        if columns.clock is not None:
            stamp = f"{stamp.strip()} {fields[columns.clock].strip()}"
        time = _generic_time(path, line, stamp, zone, rows[-1][1].time if rows else None)
        prices = {name: _number(path, line, name, fields[index]) for name, index in columns.prices.items()}
        volume = 0.0
        # An empty volume cell (Yahoo writes one where none was reported) is no volume, as in a
        # file without the column; an empty price is refused like any other non-number.
        if columns.volume is not None and fields[columns.volume].strip():
            volume = _number(path, line, "volume", fields[columns.volume])
        rows.append((line, _bar(path, line, time, prices, volume)))
    if symbol is None and len(seen_symbols) > 1:
        raise PriceDataError(
            f"{path}: holds several symbols ({', '.join(sorted(seen_symbols))}); pass {symbol_field} to pick one"
        )
    return _ordered(path, rows)


def _load_mt5(path: Path, header_line: int, header_text: str, body: list[tuple[int, str]], zone: tzinfo) -> list[Bar]:
    names = [name.strip().upper() for name in header_text.strip().split("\t")]
    columns = _header(path, header_line, names, _MT5_REQUIRED, _MT5_OPTIONAL)
    rows: list[tuple[int, Bar]] = []
    real_volumes: list[float] = []
    for line, text in body:
        fields = text.strip().split("\t")
        if len(fields) != len(names):
            raise PriceDataError(
                f"{path}:{line}: expected {len(names)} tab-separated columns ({' '.join(names)}), "
                f"got {len(fields)}: {text.strip()!r}"
            )
        time_text = fields[columns["<TIME>"]] if "<TIME>" in columns else None
        previous = rows[-1][1].time if rows else None
        time = _mt5_time(path, line, fields[columns["<DATE>"]], time_text, zone, previous)
        prices = {
            name: _number(path, line, f"<{name.upper()}>", fields[columns[f"<{name.upper()}>"]])
            for name in ("open", "high", "low", "close")
        }
        counts: dict[str, float] = {}
        for column in ("<TICKVOL>", "<VOL>"):
            counts[column] = _number(path, line, column, fields[columns[column]]) if column in columns else 0.0
            if counts[column] < 0:
                raise PriceDataError(f"{path}:{line}: {column} must be >= 0, got {fields[columns[column]]!r}")
        spread = _number(path, line, "<SPREAD>", fields[columns["<SPREAD>"]]) if "<SPREAD>" in columns else None
        if spread is not None and spread < 0:
            raise PriceDataError(f"{path}:{line}: <SPREAD> must be >= 0, got {fields[columns['<SPREAD>']]!r}")
        rows.append((line, _bar(path, line, time, prices, counts["<TICKVOL>"], spread)))
        real_volumes.append(counts["<VOL>"])
    # FX brokers report no real volume (<VOL> is all zeros) but do count ticks; exchange symbols
    # report both. One rule per file keeps the volume column in one unit throughout.
    if any(volume > 0 for volume in real_volumes):
        rows = [(line, attrs.evolve(bar, volume=real)) for (line, bar), real in zip(rows, real_volumes)]
    return _ordered(path, rows)


# ------------------------------------------------------------------------------------- synthetic

SYNTHETIC_SYMBOL = "SYNTH"
"""The symbol of the bundled synthetic series; it names no real instrument."""

SYNTHETIC_VOLUME = 100.0
"""The volume the demonstration run trades on `synthetic_bars`: 100 units is about 1x the
10,000 starting cash at the series' opening price of 100 (the paper broker's contract size is 1)."""

SYNTHETIC_MIN_LENGTH = 100
"""The shortest `synthetic_bars` series that still keeps its shape (and its crash)."""

_SYNTHETIC_START = datetime(2024, 1, 1, tzinfo=UTC)


def _phase_lengths(length: int) -> list[int]:
    # quiet, rally, plateau, breakout, crash, aftermath: fractions of the length, the crash a
    # fixed handful of bars so a short test series falls exactly as hard as the full one.
    crash = 6
    quiet = max(22, round(length * 0.18))
    rally = round(length * 0.30)
    plateau = round(length * 0.22)
    # Capped so the push stays steep on long series: its steepness is what keeps the averages
    # apart through the first crash bar.
    breakout = min(32, max(10, round(length * 0.08)))
    aftermath = length - quiet - rally - plateau - breakout - crash
    return [quiet, rally, plateau, breakout, crash, aftermath]


def synthetic_bars(
    length: int = 400,
    *,
    seed: int = 7,
    start: datetime = _SYNTHETIC_START,
) -> list[Bar]:
    """The bundled demonstration series: ``length`` hourly bars of the made-up symbol "SYNTH".

    SYNTHETIC DATA, not market history. It is generated from ``seed`` with a private
    ``random.Random`` (the global random state is neither used nor changed), so the same
    arguments always give the same bars. Hourly bars run round the clock from ``start``
    (default 2024-01-01 00:00 UTC). Its six phases, as shares of ``length``:

    1. quiet (~18%, at least 22 bars): price swings gently around 100;
    2. rally (~30%): a steady climb to about 145;
    3. plateau (~22%): two slow swings of about 2.5% around 145;
    4. breakout (~8%, 10 to 32 bars): an accelerating push to about 175;
    5. crash (6 bars): a 30% fall on the first bar (a flash crash), then a slide to 43% below the top;
    6. aftermath (the rest): a weak, swinging partial recovery from about 100.

    Run through `runtime.replay.strategies.MovingAverageCrossover` (fast 5, slow 20, volume
    `SYNTHETIC_VOLUME`) on a `PaperBroker` with 10,000 cash, the strategy is long when the crash
    starts; on the first crash bar its averages have not yet crossed down (no exit signal) while
    account equity is already more than 25% below its peak, so the default 20% drawdown guard
    fires with the position open. Equity stays far above the default 500 minimum, so it is the
    drawdown guard that fires. Tick-like
    volumes rise with volatility and are largest through the crash.

    ``length`` must be an int >= `SYNTHETIC_MIN_LENGTH`; shorter series keep the same shape.
    """
    whole_number("length", length, SYNTHETIC_MIN_LENGTH)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    start = _utc_time(start)
    rng = random.Random(seed)
    quiet, rally, plateau, breakout, crash, aftermath = _phase_lengths(length)

    # Log-price path: each phase's trend plus noise that does not accumulate (a wobble around the
    # trend). Sideways phases swing in slow waves, a fixed number per phase whatever the length,
    # so a crossover trades a few swings there rather than whipsawing on every bar's noise.
    trend: list[float] = []
    wobble: list[float] = []
    level = math.log(100.0)
    for i in range(quiet):
        trend.append(level + 0.02 * math.sin(2 * math.pi * 1.5 * i / quiet))
        wobble.append(0.002)
    for i in range(rally):
        trend.append(level + math.log(1.45) * (i + 1) / rally)
        wobble.append(0.003)
    level += math.log(1.45)
    for i in range(plateau):
        trend.append(level + 0.025 * math.sin(2 * math.pi * 2 * i / plateau))
        wobble.append(0.002)
    top = math.log(175.0 / 145.0)
    for i in range(breakout):
        # Quadratic in time: the push accelerates into the top, as blow-off tops do.
        trend.append(level + top * ((i + 1) / breakout) ** 2)
        wobble.append(0.002)
    level += top
    # The crash: -30% on the first bar, then lower; values are fractions of the top price.
    for fraction in (0.70, 0.66, 0.62, 0.60, 0.58, 0.57)[:crash]:
        trend.append(level + math.log(fraction))
        wobble.append(0.004)
    level += math.log(0.57)
    for i in range(aftermath):
        trend.append(
            level + math.log(1.12) * (i + 1) / aftermath + 0.03 * math.sin(2 * math.pi * 2 * i / aftermath)
        )
        wobble.append(0.003)

    crash_start = quiet + rally + plateau + breakout
    bars: list[Bar] = []
    previous_close = 100.0
    for index, (centre, noise) in enumerate(zip(trend, wobble)):
        close = math.exp(centre + rng.gauss(0.0, noise))
        open_ = previous_close
        spread = abs(rng.gauss(0.0, noise)) + 0.001
        high = max(open_, close) * (1 + spread)
        low = min(open_, close) * (1 - spread * 0.8)
        in_crash = crash_start <= index < crash_start + crash
        # Tick-like volume: busier on bigger moves, and three times as busy through the crash.
        activity = 400 + 60_000 * abs(math.log(close / open_))
        volume = float(round(activity * (3.0 if in_crash else 1.0) * rng.uniform(0.8, 1.2)))
        bars.append(
            Bar(start + timedelta(hours=index), round(open_, 4), round(high, 4), round(low, 4), round(close, 4), volume)
        )
        previous_close = round(close, 4)
    return bars
