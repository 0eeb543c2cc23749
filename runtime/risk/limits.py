"""Pre-trade limits: one small pure class per rule, the account view they judge an order against,
and the detector of a runaway order loop.

Every rule is a pure function of the order and an `OrderContext` (positions, prices, equity, the
clock's time and the times of the orders already sent), so Hypothesis can drive it directly. A
rule answers None when the order may go out, else the reason, stating the numbers. The gate
(`runtime.risk.gate.Gate`) runs them in order and names the first that refuses.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from datetime import datetime, time
from typing import ClassVar, Protocol
from zoneinfo import ZoneInfo

import attrs

from runtime.broker import Order, Position
from runtime.risk.guards import LIMIT_TOLERANCE
from runtime.validation import attrs_positive, attrs_timezone, whole_number

__all__ = [
    "Limit",
    "OrderContext",
    "exceeds",
    "MaxOrderVolume",
    "MaxOrderNotional",
    "MaxOpenPositions",
    "MaxSymbolExposure",
    "MaxTotalExposure",
    "MaxLeverage",
    "OrderRate",
    "MaxTradesPerDay",
    "RunawayLoop",
]

_FLAT = 1e-12  # relative: what is left of a position closed by an equal and opposite order is rounding


def exceeds(value: float, limit: float) -> bool:
    """True when ``value`` is past ``limit`` by more than rounding (`LIMIT_TOLERANCE`, relative):
    a notional that is exactly the limit in decimal must not be refused for its last binary digit."""
    return value > limit * (1.0 + LIMIT_TOLERANCE)


def _money(value: float) -> str:
    return f"{value:,.2f}"


@attrs.frozen
class OrderContext:
    """What the limits judge an order against, read by the guard just before it is checked.

    ``positions``: the account's open positions; ``prices``: the latest price per symbol where the
    broker has one (`price` falls back to the entry price of a held position); ``equity``: the
    latest equity (None when unknown); ``now``: the clock's time; ``sent``: the times (epoch
    seconds, ascending) of the orders already sent to the broker; ``contract_size``: units of the
    asset per unit of volume, so notional is volume × price × contract size, in the currency the
    prices are quoted in; ``in_doubt``: orders sent whose outcome is not known yet (the venue
    timed out): the account may hold them or not.

    ``net`` is the signed net volume per symbol: what the positions hold, moved by the orders in
    doubt the way that leaves it largest (all those that buy filled, or all those that sell), so
    that a limit is judged on the most the account may hold; so is `net_after`.
    """

    positions: Sequence[Position]
    prices: Mapping[str, float]
    equity: float | None
    now: datetime
    sent: Sequence[float] = ()
    contract_size: float = attrs.field(default=1.0, validator=attrs_positive)
    in_doubt: Sequence[Order] = ()
    _held: dict[str, float] = attrs.field(init=False)  # the positions' own net per symbol
    _doubt: dict[str, tuple[float, float]] = attrs.field(init=False)  # per symbol: in doubt to buy, to sell
    net: dict[str, float] = attrs.field(init=False)  # (made from the two above, so after them)

    @_held.default
    def _held_net(self) -> dict[str, float]:
        net: dict[str, float] = {}
        for p in self.positions:
            net[p.symbol] = net.get(p.symbol, 0.0) + p.side.sign * p.volume
        return net

    @_doubt.default
    def _in_doubt(self) -> dict[str, tuple[float, float]]:
        doubt: dict[str, tuple[float, float]] = {}
        for o in self.in_doubt:
            buys, sells = doubt.get(o.symbol, (0.0, 0.0))
            doubt[o.symbol] = (buys + o.volume, sells) if o.side.sign > 0 else (buys, sells - o.volume)
        return doubt

    @net.default
    def _net(self) -> dict[str, float]:
        if not self._doubt:  # the usual case, on every order's path
            return self._held
        return {symbol: self._worst(symbol, 0.0)[0] for symbol in {*self._held, *self._doubt}}

    def _worst(self, symbol: str, change: float) -> tuple[float, float]:
        # The largest net in ``symbol`` once ``change`` (signed volume) has filled, whichever
        # orders in doubt filled, and the net it was reached from.
        held = self._held.get(symbol, 0.0)
        doubt = self._doubt.get(symbol)
        if doubt is None:
            return held + change, held
        buys, sells = doubt
        before = held + buys if abs(held + buys + change) >= abs(held + sells + change) else held + sells
        return before + change, before

    def price(self, symbol: str) -> float | None:
        """The latest price of ``symbol``, else the volume-weighted entry price of its positions,
        else None: nothing is known of it, or what is known is no price (not a finite number
        above 0: a broker's NaN or 0 would value any volume at nothing; `unpriced` says why)."""
        price = self._raw_price(symbol)
        return price if _usable(price) else None

    def _raw_price(self, symbol: str) -> float | None:
        latest = self.prices.get(symbol)
        if latest is not None:
            return latest
        held = [p for p in self.positions if p.symbol == symbol]
        volume = sum(p.volume for p in held)
        return sum(p.entry_price * p.volume for p in held) / volume if volume else None

    def unpriced(self, symbol: str) -> str:
        """Why ``symbol``'s notional cannot be checked (its `price` is None), naming the value."""
        if symbol in self.prices:
            return f"the price of {symbol} is {self.prices[symbol]!r}, not a number above 0, so its notional cannot be checked"
        raw = self._raw_price(symbol)
        if raw is not None:
            return (f"the entry price of the {symbol} held is {raw!r}, not a number above 0, and no price is known, "
                    "so its notional cannot be checked")
        return f"no price known for {symbol}, so its notional cannot be checked"

    def net_after(self, order: Order) -> dict[str, float]:
        """Signed net volume per symbol once ``order`` has filled; a symbol left flat is dropped."""
        after = dict(self.net)
        value, before = self._worst(order.symbol, order.side.sign * order.volume)
        if abs(value) <= _FLAT * max(abs(before), order.volume):
            after.pop(order.symbol, None)
        else:
            after[order.symbol] = value
        return {symbol: v for symbol, v in after.items() if v != 0.0}

    def notional(self, symbol: str, volume: float) -> float | None:
        """``|volume|`` of ``symbol`` in money, at `price`; None when no price is known."""
        price = self.price(symbol)
        return None if price is None else abs(volume) * price * self.contract_size

    def exposure_after(self, order: Order) -> tuple[float, str | None]:
        """Total notional held once ``order`` has filled, and the symbol whose price is unknown
        (the total is then meaningless), else None."""
        total = 0.0
        for symbol, volume in self.net_after(order).items():
            notional = self.notional(symbol, volume)
            if notional is None:
                return 0.0, symbol
            total += notional
        return total, None

    @property
    def timestamp(self) -> float:
        """``now`` in epoch seconds, as ``sent`` holds times."""
        return self.now.timestamp()


def _usable(price: object) -> bool:
    return isinstance(price, (int, float)) and not isinstance(price, bool) and math.isfinite(price) and price > 0


class Limit(Protocol):
    """A pre-trade rule: ``check`` answers None when the order may go out, else the reason.

    ``name`` is what a refusal is attributed to (`TradeFailed.refused_by`, the metric
    ``order_refused_total.<name>``); ``uses_prices`` tells the guard to read prices for it;
    ``counts_rate`` marks the order-rate rules whose refusals feed the runaway detector;
    ``lookback`` is how many seconds of sent orders it needs to see (0 for none). A rule may also
    say, as ``keeps``, how many of the latest sent orders are enough for it; the gate then keeps
    no more than the largest such number (without it, every order within the lookback is kept).
    """

    @property
    def name(self) -> str:
        """The rule's name, as in the settings."""
        ...

    @property
    def uses_prices(self) -> bool:
        """True when the rule values positions, so the guard must read prices for it."""
        ...

    @property
    def counts_rate(self) -> bool:
        """True for an order-rate rule, whose refusals feed the runaway detector."""
        ...

    @property
    def lookback(self) -> float:
        """Seconds of sent orders the rule looks back over (0 for none)."""
        ...

    def check(self, order: Order, context: OrderContext) -> str | None:
        """None when ``order`` may go out under this rule, else the reason with the numbers."""
        ...


def _count(instance: object, attribute: attrs.Attribute, value: int) -> None:
    whole_number(attribute.name, value, 1)


@attrs.frozen
class MaxOrderVolume:
    """Refuses an order whose volume is over ``limit`` (a volume typo: 1e9 lots)."""

    limit: float = attrs.field(validator=attrs_positive)
    name: ClassVar[str] = "max_order_volume"
    uses_prices: ClassVar[bool] = False
    counts_rate: ClassVar[bool] = False
    lookback: ClassVar[float] = 0.0

    def check(self, order: Order, context: OrderContext) -> str | None:
        """The order's volume against the limit."""
        if exceeds(order.volume, self.limit):
            return f"volume {_money(order.volume)} > limit {_money(self.limit)} for {order.symbol}"
        return None


@attrs.frozen
class MaxOrderNotional:
    """Refuses an order whose notional (volume × price × contract size) is over ``limit``, and an
    order in a symbol with no known price (its notional cannot be checked)."""

    limit: float = attrs.field(validator=attrs_positive)
    name: ClassVar[str] = "max_order_notional"
    uses_prices: ClassVar[bool] = True
    counts_rate: ClassVar[bool] = False
    lookback: ClassVar[float] = 0.0

    def check(self, order: Order, context: OrderContext) -> str | None:
        """The order's own notional against the limit."""
        notional = context.notional(order.symbol, order.volume)
        if notional is None:
            return context.unpriced(order.symbol)
        if exceeds(notional, self.limit):
            return f"notional {_money(notional)} > limit {_money(self.limit)} for {order.symbol}"
        return None


@attrs.frozen
class MaxOpenPositions:
    """Refuses an order that would open a position in one more symbol while ``limit`` symbols are
    already held (positions are counted per symbol, as a netting account holds them)."""

    limit: int = attrs.field(validator=_count)
    name: ClassVar[str] = "max_open_positions"
    uses_prices: ClassVar[bool] = False
    counts_rate: ClassVar[bool] = False
    lookback: ClassVar[float] = 0.0

    def check(self, order: Order, context: OrderContext) -> str | None:
        """The number of symbols held after the order, when it grows, against the limit."""
        after = len(context.net_after(order))
        if after > self.limit and after > len([v for v in context.net.values() if v != 0.0]):
            return f"open positions {after} > limit {self.limit} with {order.symbol}"
        return None


@attrs.frozen
class MaxSymbolExposure:
    """Refuses an order that leaves the notional held in its symbol over ``limit``, and one in a
    symbol with no known price."""

    limit: float = attrs.field(validator=attrs_positive)
    name: ClassVar[str] = "max_symbol_exposure"
    uses_prices: ClassVar[bool] = True
    counts_rate: ClassVar[bool] = False
    lookback: ClassVar[float] = 0.0

    def check(self, order: Order, context: OrderContext) -> str | None:
        """The symbol's net notional after the order against the limit."""
        notional = context.notional(order.symbol, context.net_after(order).get(order.symbol, 0.0))
        if notional is None:
            return context.unpriced(order.symbol)
        if exceeds(notional, self.limit):
            return f"exposure {_money(notional)} > limit {_money(self.limit)} for {order.symbol}"
        return None


@attrs.frozen
class MaxTotalExposure:
    """Refuses an order that leaves the notional held over every symbol over ``limit``, and one
    in a symbol with no known price."""

    limit: float = attrs.field(validator=attrs_positive)
    name: ClassVar[str] = "max_total_exposure"
    uses_prices: ClassVar[bool] = True
    counts_rate: ClassVar[bool] = False
    lookback: ClassVar[float] = 0.0

    def check(self, order: Order, context: OrderContext) -> str | None:
        """The account's total notional after the order against the limit."""
        total, unknown = context.exposure_after(order)
        if unknown is not None:
            return context.unpriced(unknown)
        if exceeds(total, self.limit):
            return f"total exposure {_money(total)} > limit {_money(self.limit)} after {order.symbol}"
        return None


@attrs.frozen
class MaxLeverage:
    """Refuses an order that leaves total notional over equity above ``limit``, one in a symbol
    with no known price, and any order while the equity is unknown or not a finite number above 0."""

    limit: float = attrs.field(validator=attrs_positive)
    name: ClassVar[str] = "max_leverage"
    uses_prices: ClassVar[bool] = True
    counts_rate: ClassVar[bool] = False
    lookback: ClassVar[float] = 0.0

    def check(self, order: Order, context: OrderContext) -> str | None:
        """Total notional after the order, over the latest equity, against the limit."""
        equity = context.equity
        if equity is None or not (math.isfinite(equity) and equity > 0):
            return f"equity {'unknown' if equity is None else _money(equity)}, so leverage cannot be checked"
        total, unknown = context.exposure_after(order)
        if unknown is not None:
            return context.unpriced(unknown)
        leverage = total / equity
        if exceeds(leverage, self.limit):
            return (
                f"leverage {leverage:.2f} > limit {self.limit:.2f} after {order.symbol} "
                f"(exposure {_money(total)}, equity {_money(equity)})"
            )
        return None


@attrs.frozen
class OrderRate:
    """Refuses an order that would be more than ``max_orders`` sent within the last
    ``window_seconds`` (a sliding window); ``name`` tells a per-second rule from a per-day one."""

    max_orders: int = attrs.field(validator=_count)
    window_seconds: float = attrs.field(validator=attrs_positive)
    name: str = "order_rate"
    uses_prices: ClassVar[bool] = False
    counts_rate: ClassVar[bool] = True

    @property
    def lookback(self) -> float:
        """The window."""
        return self.window_seconds

    @property
    def keeps(self) -> int:
        """How many of the latest orders sent it needs to see: past ``max_orders`` of them in
        the window, older ones cannot change its answer."""
        return self.max_orders

    def check(self, order: Order, context: OrderContext) -> str | None:
        """The orders sent within the window, with this one, against the limit."""
        sent = context.sent
        count = len(sent) - bisect_right(sent, context.timestamp - self.window_seconds) + 1
        if count > self.max_orders:
            return f"orders {count} in {self.window_seconds:g}s > limit {self.max_orders} for {order.symbol}"
        return None


@attrs.frozen
class MaxTradesPerDay:
    """Refuses an order that would be more than ``limit`` sent since midnight of the trading day
    in ``timezone`` (a runaway loop's daily ceiling)."""

    limit: int = attrs.field(validator=_count)
    timezone: str = attrs.field(default="UTC", validator=attrs_timezone)
    name: ClassVar[str] = "max_trades_per_day"
    uses_prices: ClassVar[bool] = False
    counts_rate: ClassVar[bool] = True
    lookback: ClassVar[float] = 26 * 3600.0  # a trading day is 25 hours long when the clocks go back

    @property
    def keeps(self) -> int:
        """How many of the latest orders sent it needs to see (``limit``: older ones cannot
        change its answer)."""
        return self.limit

    def day_start(self, now: datetime) -> datetime:
        """Midnight of the trading day ``now`` falls in, in the rule's zone."""
        zone = ZoneInfo(self.timezone)
        return datetime.combine(now.astimezone(zone).date(), time(), tzinfo=zone)

    def check(self, order: Order, context: OrderContext) -> str | None:
        """The orders sent since the trading day began, with this one, against the limit."""
        start = self.day_start(context.now)
        sent = context.sent
        count = len(sent) - bisect_left(sent, start.timestamp()) + 1
        if count > self.limit:
            return f"trades {count} on {start.date()} ({self.timezone}) > limit {self.limit} for {order.symbol}"
        return None


@attrs.define
class RunawayLoop:
    """Tells a burst from a runaway loop: ``refusals`` order-rate refusals within
    ``window_seconds`` mean the signal source is flooding, and trading should only reduce.

    `refused` takes the time of each order-rate refusal and answers the reason once the flood is
    found (every refusal after that answers it again, until `reset`)."""

    refusals: int = attrs.field(validator=_count)
    window_seconds: float = attrs.field(default=60.0, validator=attrs_positive)
    _times: list[float] = attrs.field(factory=list, init=False)

    def refused(self, at: float) -> str | None:
        """Count one order-rate refusal at ``at`` (epoch seconds); the runaway's reason or None."""
        times = self._times
        times.append(at)
        del times[: bisect_right(times, at - self.window_seconds)]
        if len(times) >= self.refusals:
            return (
                f"runaway order loop: {len(times)} orders refused by rate limits within "
                f"{self.window_seconds:g}s (limit {self.refusals})"
            )
        return None

    def reset(self) -> None:
        """Forget the refusals counted so far (after an operator's resume)."""
        self._times.clear()

    @property
    def times(self) -> tuple[float, ...]:
        """The times of the refusals still counted, oldest first (for the guard's record)."""
        return tuple(self._times)

    def restore(self, times: Sequence[float]) -> None:
        """Count again the refusals at ``times`` (a restarted guard's record), in order."""
        self._times[:] = sorted(times)

