"""Hypothesis strategies for property-testing your own guard settings against realistic accounts.

Equity curves with crashes and rallies, cash flows that are valid for an equity, readings that
cross midnight in a trading time zone, the bad readings a broker can send, guard settings, and
for the pre-trade limits: orders, open positions, prices, order contexts and limit settings.
Everything drawn is realistic in size (equity between 1e-2 and 1e9 by default), so float
underflow is not a concern in properties built on it.

Usage::

    from hypothesis import given
    from runtime import RiskMonitor, TradingState
    from runtime.testing import equity_curves, guard_settings, day_rollovers

    @given(config=guard_settings(), curve=equity_curves(), moments=day_rollovers("Europe/London"))
    def test_my_settings_never_trade_below_the_minimum(config, curve, moments):
        monitor = RiskMonitor(curve[0], config.guards())
        for index, equity in enumerate(curve):
            monitor.observe(equity, moments[min(index, len(moments) - 1)])
            if equity < config.min_equity:
                assert monitor.trading_state is TradingState.HALTED

This module needs Hypothesis (the ``test`` extra); it is the only part of `runtime` that imports
it, and ``import runtime`` does not import this module.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
from hypothesis import strategies as st

from runtime.broker import Order, Position, Side
from runtime.events import Event, EventType
from runtime.payloads import PAYLOAD_TYPES, Payload, is_nullable, kind_of
from runtime.risk.guards import DailyLossGuard, Guard, MaxDrawdownGuard, MinEquityGuard
from runtime.risk.limits import OrderContext
from runtime.risk.position_stop import STOP_BASES, PositionStop
from runtime.settings import Settings

__all__ = [
    "TIMEZONES",
    "aware_datetimes",
    "bad_readings",
    "cash_flows",
    "daily_loss_guards",
    "day_rollovers",
    "equities",
    "equity_curves",
    "event_metadata",
    "events",
    "guard_sets",
    "guard_settings",
    "guards",
    "limit_percents",
    "limit_settings",
    "open_positions",
    "order_contexts",
    "orders",
    "prices",
    "SYMBOLS",
    "max_drawdown_guards",
    "min_equities",
    "min_equity_guards",
    "next_midnight",
    "payloads",
    "position_stops",
    "priced_positions",
    "timezones",
    "warn_fractions",
]

TIMEZONES: tuple[str, ...] = (
    "UTC",
    "Europe/London",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Havana",
    "Asia/Beirut",
)
"""Trading time zones worth testing: no DST, DST at 01:00/02:00, odd offsets, DST at midnight."""

SYMBOLS: tuple[str, ...] = ("EURUSD", "GBPUSD", "XAUUSD", "US500")
"""The symbols the order strategies draw from: few, so orders meet the positions they reduce."""

_MIN_EQUITY = 1e-2
_MAX_EQUITY = 1e9


def _check_range(min_value: float, max_value: float) -> None:
    if not (math.isfinite(min_value) and math.isfinite(max_value) and 0 < min_value < max_value):
        raise ValueError(f"need 0 < min_value < max_value (finite), got {min_value!r}, {max_value!r}")


def equities(min_value: float = _MIN_EQUITY, max_value: float = _MAX_EQUITY) -> st.SearchStrategy[float]:
    """Positive, finite equity readings in ``[min_value, max_value]``.

    Mixes arbitrary floats with round numbers, so properties meet both rounding and exact
    boundaries (a drawdown of exactly 20% from 100.0 to 80.0).
    """
    _check_range(min_value, max_value)
    low, high = math.ceil(min_value), math.floor(max_value)
    round_numbers = [st.integers(low, min(high, 10**6)).map(float)] if low <= min(high, 10**6) else []
    return st.one_of(st.floats(min_value, max_value, allow_nan=False, allow_infinity=False), *round_numbers)


# Multiplicative moves of an equity curve: flat, ordinary noise, crashes and rallies.
_MOVES = st.one_of(
    st.just(1.0),
    st.floats(0.97, 1.03),
    st.floats(0.999999, 1.000001),  # ticks: new peaks and dips by a hair
    st.floats(0.05, 0.8),  # a crash: lose 20% to 95%
    st.floats(1.2, 4.0),  # a rally
    st.sampled_from([0.5, 0.8, 0.9, 1.1, 2.0]),
)


@st.composite
def _equity_curves(
    draw: Any, start: float | None, min_size: int, max_size: int, min_value: float, max_value: float
) -> list[float]:
    first = start if start is not None else draw(equities(min_value, max_value))
    moves = draw(st.lists(_MOVES, min_size=min_size - 1, max_size=max_size - 1))
    curve = [first]
    for move in moves:
        curve.append(min(max(curve[-1] * move, min_value), max_value))
    return curve


def equity_curves(
    *,
    min_size: int = 1,
    max_size: int = 50,
    start: float | None = None,
    min_value: float = _MIN_EQUITY,
    max_value: float = _MAX_EQUITY,
) -> st.SearchStrategy[list[float]]:
    """Lists of equity readings that move like an account: noise, flat runs, crashes, rallies.

    The first reading is ``start`` when given (else drawn by `equities`); every reading stays in
    ``[min_value, max_value]``. Crashes go down to 5% of the previous reading, rallies up to 4x.
    """
    _check_range(min_value, max_value)
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size!r}, {max_size!r}")
    if start is not None and not min_value <= start <= max_value:
        raise ValueError(f"start must be in [{min_value!r}, {max_value!r}], got {start!r}")
    return _equity_curves(start, min_size, max_size, min_value, max_value)


def cash_flows(
    equity: float, *, max_withdrawal: float = 0.95, max_deposit: float = 10.0
) -> st.SearchStrategy[float]:
    """Non-zero deposits (> 0) and withdrawals (< 0) that are valid while equity is ``equity``.

    A withdrawal takes at most ``max_withdrawal`` (a fraction < 1) of the equity, so equity stays
    > 0 as `DrawdownTracker.record_cash_flow` requires; a deposit adds at most ``max_deposit``
    times the equity. ``equity`` must be > 0 (no cash flow is valid otherwise).
    """
    if not (math.isfinite(equity) and equity > 0):
        raise ValueError(f"equity must be finite and > 0 for a cash flow, got {equity!r}")
    if not 0 < max_withdrawal < 1 or not max_deposit > 0:
        raise ValueError(f"need 0 < max_withdrawal < 1 and max_deposit > 0, got {max_withdrawal!r}, {max_deposit!r}")
    withdrawals = st.floats(1e-4, max_withdrawal).map(lambda f: -f * equity)
    deposits = st.floats(1e-4, max_deposit).map(lambda f: f * equity)
    return st.one_of(withdrawals, deposits).filter(lambda amount: amount != 0 and equity + amount > 0)


def timezones() -> st.SearchStrategy[str]:
    """IANA names of trading time zones from `TIMEZONES`."""
    return st.sampled_from(TIMEZONES)


def aware_datetimes(
    timezone: str = "UTC", *, min_year: int = 2000, max_year: int = 2037
) -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes in ``timezone`` that exist there (no times skipped by DST)."""
    zone = ZoneInfo(timezone)
    return st.datetimes(
        min_value=datetime(min_year, 1, 1),
        max_value=datetime(max_year, 12, 31, 23, 59, 59),
        timezones=st.just(zone),
        allow_imaginary=False,
    )


def next_midnight(moment: datetime, timezone: str) -> datetime:
    """The first moment of the local day after ``moment``'s local day in ``timezone`` (aware).

    Where DST skips midnight, this is the first moment that exists on that day; where a clock
    change repeats midnight, the first of the two. Compare it as an instant (``.astimezone(UTC)``
    or ``.timestamp()``): Python never calls a repeated local time equal to a time in another zone.
    """
    if moment.tzinfo is None:
        raise ValueError(f"moment must be timezone-aware, got {moment!r}")
    zone = ZoneInfo(timezone)
    day: date = moment.astimezone(zone).date() + timedelta(days=1)
    # Round-tripping through UTC maps a skipped local midnight to the first moment of the day.
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC).astimezone(zone)


@st.composite
def _day_rollovers(
    draw: Any, timezone: str, start: datetime | None, min_size: int, max_size: int, max_step: timedelta
) -> list[datetime]:
    zone = ZoneInfo(timezone)
    first = start if start is not None else draw(aware_datetimes(timezone))
    steps = draw(
        st.lists(
            st.integers(0, int(max_step.total_seconds())).map(lambda s: timedelta(seconds=s)),
            min_size=min_size - 1,
            max_size=max_size - 1,
        )
    )
    moments = [first.astimezone(UTC)]
    for step in steps:
        moments.append(moments[-1] + step)
    if moments[-1].astimezone(zone).date() == first.astimezone(zone).date():
        # Nothing crossed midnight yet: push the last reading into the next local day.
        offset = timedelta(seconds=draw(st.integers(0, 6 * 3600)))
        moments[-1] = max(moments[-1], next_midnight(first, timezone).astimezone(UTC) + offset)
    return [moment.astimezone(zone) for moment in moments]


def day_rollovers(
    timezone: str = "UTC",
    *,
    start: datetime | None = None,
    min_size: int = 2,
    max_size: int = 10,
    max_step: timedelta = timedelta(hours=30),
) -> st.SearchStrategy[list[datetime]]:
    """Non-decreasing lists of aware datetimes in ``timezone`` that cross at least one local midnight.

    The first moment is ``start`` when given; steps between readings are 0 to ``max_step`` and
    may be zero (two readings at one moment), cross several midnights, or land exactly on one.
    The last moment is always on a later local date than the first.

    Non-decreasing means as instants. Around a DST fall-back two of them can read the same wall
    time (``fold`` 0, then 1), and Python compares aware datetimes that share a tzinfo by wall
    time, ignoring ``fold``: compare ``.timestamp()`` or convert to UTC before comparing.
    """
    ZoneInfo(timezone)
    if min_size < 2 or max_size < min_size:
        raise ValueError(f"need 2 <= min_size <= max_size, got {min_size!r}, {max_size!r}")
    if start is not None and start.tzinfo is None:
        raise ValueError(f"start must be timezone-aware, got {start!r}")
    return _day_rollovers(timezone, start, min_size, max_size, max_step)


def bad_readings() -> st.SearchStrategy[Any]:
    """Values a broker may send that are not an equity: NaN, infinities, None, strings, bools."""
    return st.one_of(
        st.sampled_from([math.nan, -math.nan, _PAYLOAD_NAN, math.inf, -math.inf, None, True, False]),
        st.sampled_from(["", "100.0", "nan", "1e3", "equity"]),
        st.text(max_size=8),
    )


# A quiet NaN with a non-zero payload: not the object math.nan, and not equal to anything.
_PAYLOAD_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0001))[0]


def limit_percents(min_value: float = 0.01) -> st.SearchStrategy[float]:
    """Guard limits in percent, in ``[min_value, 100]`` (a subset of the valid (0, 100])."""
    if not 0 < min_value <= 100:
        raise ValueError(f"min_value must be in (0, 100], got {min_value!r}")
    return st.one_of(
        st.floats(min_value, 100.0),
        st.sampled_from([p for p in (1.0, 5.0, 10.0, 20.0, 50.0, 100.0) if p >= min_value]),
    )


def warn_fractions() -> st.SearchStrategy[float]:
    """Warning levels as a fraction of a limit, strictly between 0 and 1."""
    return st.one_of(
        st.floats(1e-3, 1.0, exclude_max=True),
        st.sampled_from([0.5, 0.8, 0.9]),
    )


def min_equities(max_value: float = _MAX_EQUITY) -> st.SearchStrategy[float]:
    """Minimum-equity thresholds: finite, >= 0 (0 included), at most ``max_value``."""
    return st.one_of(st.just(0.0), st.floats(0.0, max_value), st.integers(0, 10**5).map(float))


def _optional_warn(warn: bool | None) -> st.SearchStrategy[float | None]:
    if warn is None:
        return st.none() | warn_fractions()
    return warn_fractions() if warn else st.none()


def max_drawdown_guards(
    *, trailing: bool | None = None, warn: bool | None = None
) -> st.SearchStrategy[MaxDrawdownGuard]:
    """Drawdown guards; trailing or static as asked (either when None), with or without a warning."""
    return st.builds(
        MaxDrawdownGuard,
        limit_percent=limit_percents(),
        trailing=st.booleans() if trailing is None else st.just(trailing),
        warn_at=_optional_warn(warn),
    )


def min_equity_guards(*, warn: bool | None = None) -> st.SearchStrategy[MinEquityGuard]:
    """Minimum-equity guards, with or without a warning level."""
    return st.builds(MinEquityGuard, min_equity=min_equities(), warn_at=_optional_warn(warn))


def daily_loss_guards(timezone: str | None = None, *, warn: bool | None = None) -> st.SearchStrategy[DailyLossGuard]:
    """Daily-loss guards in ``timezone`` (drawn from `timezones` when None)."""
    return st.builds(
        DailyLossGuard,
        limit_percent=limit_percents(),
        timezone=timezones() if timezone is None else st.just(timezone),
        warn_at=_optional_warn(warn),
    )


def guards(timezone: str | None = None) -> st.SearchStrategy[Guard]:
    """Any one guard of the three kinds."""
    return st.one_of(max_drawdown_guards(), min_equity_guards(), daily_loss_guards(timezone))


@st.composite
def _guard_sets(draw: Any, timezone: str | None) -> list[Guard]:
    zone = draw(timezones()) if timezone is None else timezone
    chosen: list[Guard] = []
    for strategy in (max_drawdown_guards(), min_equity_guards(), daily_loss_guards(zone)):
        if draw(st.booleans()):
            chosen.append(draw(strategy))
    if not chosen:
        chosen.append(draw(max_drawdown_guards()))
    return chosen


def guard_sets(timezone: str | None = None) -> st.SearchStrategy[list[Guard]]:
    """Lists of guards for a `RiskMonitor`: at least one, at most one of each kind.

    A daily-loss guard, when present, is in ``timezone`` (drawn when None).
    """
    return _guard_sets(timezone)


@st.composite
def _guard_settings(draw: Any, timezone: str | None) -> Settings:
    return Settings(
        max_drawdown_percent=draw(limit_percents()),
        drawdown_trailing=draw(st.booleans()),
        min_equity=draw(min_equities()),
        daily_loss_percent=draw(st.none() | limit_percents()),
        trading_timezone=draw(timezones()) if timezone is None else timezone,
        guard_warn_fraction=draw(st.none() | warn_fractions()),
    )


def guard_settings(timezone: str | None = None) -> st.SearchStrategy[Settings]:
    """`Settings` with every guard field drawn (limits, trailing, minimum, daily loss, zone, warning).

    Use ``settings.guards()`` for the rules they ask for. Other fields keep their defaults.
    """
    return _guard_settings(timezone)


_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


def event_metadata(max_leaves: int = 20) -> st.SearchStrategy[dict[str, Any]]:
    """Event metadata in its JSON shape: string keys; None, bools, ints, finite floats, strings,
    lists and nested dicts as values."""
    values = st.recursive(
        _JSON_SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=max_leaves,
    )
    return st.dictionaries(st.text(max_size=12), values, max_size=6)


def events(loop_ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Event]:
    """Events of every type with drawn metadata and timestamps given in assorted time zones."""
    return st.builds(
        Event,
        event_type=st.sampled_from(EventType),
        loop_id=st.text(max_size=12) if loop_ids is None else loop_ids,
        metadata=event_metadata(),
        timestamp=timezones().flatmap(lambda tz: aware_datetimes(tz, min_year=1971, max_year=2100)),
        event_id=st.uuids().map(lambda u: u.hex),
    )


def _payload_value(kind: type) -> st.SearchStrategy[Any]:
    simple: dict[type, st.SearchStrategy[Any]] = {
        str: st.text(max_size=20),
        int: st.integers(min_value=0, max_value=2**53),
        float: st.integers(-(10**9), 10**9) | st.floats(allow_nan=False, allow_infinity=False),
        bool: st.booleans(),
        datetime: st.sampled_from(TIMEZONES).flatmap(aware_datetimes),
    }
    return simple[kind] if kind in simple else st.sampled_from(kind)  # an enum class: its members


def _field_value(field: attrs.Attribute) -> st.SearchStrategy[Any]:
    value = _payload_value(kind_of(field))
    return st.none() | value if is_nullable(field) else value


def payloads(kinds: list[type[Payload]] | None = None) -> st.SearchStrategy[Payload]:
    """Any registered event payload (or one of ``kinds``), with every field drawn from its declared kind."""
    def build(kind: type[Payload]) -> st.SearchStrategy[Payload]:
        return st.builds(kind, **{f.name: _field_value(f) for f in attrs.fields(kind)})
    return st.sampled_from(kinds or list(PAYLOAD_TYPES.values())).flatmap(build)


# --- pre-trade limits ---------------------------------------------------------------------------


def prices(min_value: float = 0.01, max_value: float = 10_000.0) -> st.SearchStrategy[float]:
    """A price in [``min_value``, ``max_value``] (finite, > 0)."""
    _check_range(min_value, max_value)
    return st.floats(min_value, max_value)


def _volumes(max_volume: float) -> st.SearchStrategy[float]:
    return st.floats(0.01, max_volume)


def orders(symbols: tuple[str, ...] = SYMBOLS, max_volume: float = 1_000.0) -> st.SearchStrategy[Order]:
    """A market order in one of ``symbols``, either side, of volume in [0.01, ``max_volume``]."""
    return st.builds(Order, st.sampled_from(symbols), st.sampled_from(list(Side)), _volumes(max_volume))


@st.composite
def _open_positions(draw: Any, symbols: tuple[str, ...], max_volume: float) -> list[Position]:
    held = draw(st.lists(st.sampled_from(symbols), unique=True, max_size=len(symbols)))
    return [
        Position(str(index), symbol, draw(st.sampled_from(list(Side))), draw(_volumes(max_volume)), draw(prices()))
        for index, symbol in enumerate(held)
    ]


def open_positions(symbols: tuple[str, ...] = SYMBOLS, max_volume: float = 1_000.0) -> st.SearchStrategy[list[Position]]:
    """The open positions of a netting account: at most one per symbol, each at an entry price."""
    return _open_positions(symbols, max_volume)


@st.composite
def _order_contexts(draw: Any, symbols: tuple[str, ...], timezone: str | None) -> OrderContext:
    positions = draw(open_positions(symbols))
    quoted = draw(st.lists(st.sampled_from(symbols), unique=True))
    now = draw(aware_datetimes(draw(timezones()) if timezone is None else timezone))
    ages = draw(st.lists(st.floats(0.0, 2 * 86_400.0), max_size=50))
    sent = sorted(now.timestamp() - age for age in ages)
    equity = draw(st.none() | equities(1.0, 1e7))
    return OrderContext(positions, {s: draw(prices()) for s in quoted}, equity, now, sent)


def order_contexts(symbols: tuple[str, ...] = SYMBOLS, timezone: str | None = None) -> st.SearchStrategy[OrderContext]:
    """What the limits judge an order against: open positions, latest prices for some symbols
    (others fall back to entry prices or are unknown), an equity (or None), a time (in
    ``timezone``, drawn when None) and up to 50 orders sent in the two days before it."""
    return _order_contexts(symbols, timezone)


@st.composite
def _limit_settings(draw: Any, timezone: str | None) -> Settings:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    money = st.floats(1.0, 1e7)
    return Settings(
        max_order_volume=maybe(st.floats(0.01, 1_000.0)),
        max_order_notional=maybe(money),
        max_open_positions=maybe(st.integers(1, len(SYMBOLS))),
        max_symbol_exposure=maybe(money),
        max_total_exposure=maybe(money),
        max_leverage=maybe(st.floats(0.1, 100.0)),
        max_orders_per_second=maybe(st.integers(1, 10)),
        max_orders_per_day=maybe(st.integers(1, 100)),
        max_trades_per_day=maybe(st.integers(1, 100)),
        runaway_refusals=maybe(st.integers(1, 20)),
        runaway_window_seconds=draw(st.floats(1.0, 3_600.0)),
        trading_timezone=draw(timezones()) if timezone is None else timezone,
    )


def limit_settings(timezone: str | None = None) -> st.SearchStrategy[Settings]:
    """`Settings` with each pre-trade limit either off or drawn, and the runaway detector, in
    ``timezone`` (drawn when None). Use ``settings.gate()`` for a gate with them; other fields
    keep their defaults (``contract_size`` 1, as `order_contexts` draws)."""
    return _limit_settings(timezone)


def position_stops() -> st.SearchStrategy[PositionStop]:
    """A per-position stop at a drawn percentage, on either basis, with a drawn contract size."""
    return st.builds(
        PositionStop, limit_percents(), st.sampled_from(STOP_BASES), st.sampled_from([1.0, 100.0, 100_000.0])
    )


@st.composite
def _priced_positions(draw: Any, symbols: tuple[str, ...], max_volume: float) -> list[Position]:
    held = draw(open_positions(symbols, max_volume))
    pnl = st.floats(-1e6, 1e6) | st.just(0.0)
    return [attrs.evolve(p, unrealised_pnl=draw(pnl)) for p in held]


def priced_positions(symbols: tuple[str, ...] = SYMBOLS, max_volume: float = 1_000.0) -> st.SearchStrategy[list[Position]]:
    """Open positions as `open_positions` draws them, each with an unrealised P&L (a loss, a
    gain or flat) as a broker reports it: what a `PositionStop` judges."""
    return _priced_positions(symbols, max_volume)
