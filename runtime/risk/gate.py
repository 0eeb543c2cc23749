"""The order gate: whether one order may go out, given the trading state and what is held.

Pure and synchronous. The guard actor asks its `Gate` for every order before it reaches the
broker; it is the only place that decides. The gate checks the trading state (`check_order`), then
every pre-trade limit (`runtime.risk.limits`) over the orders it has let out, and latches
REDUCING when the order-rate refusals show a runaway loop.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right, insort
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from runtime.broker import Order, Position
from runtime.risk.guards import TradingState
from runtime.risk.limits import Limit, OrderContext, RunawayLoop

__all__ = [
    "Gate", "GateRecord", "Refusal", "TRADING_STATE", "POSITIONS_UNREAD", "ACCOUNT_UNREAD", "check_order", "net_volume",
    "reduces_exposure",
]

TRADING_STATE = "trading_state"
"""What a refusal by the trading state (HALTED, or REDUCING and the order adds exposure) is named."""

POSITIONS_UNREAD = "positions_unread"
"""What a refusal is named when limits are set but the open positions could not be read."""

ACCOUNT_UNREAD = "account_unread"
"""What a refusal is named when the account could not be read just before an order that adds
exposure: the guard cannot tell whether the account is already past a limit."""

_VOLUME_TOLERANCE = 1e-12  # relative: a close of exactly the held volume must not count as a reversal


def net_volume(symbol: str, positions: Sequence[Position]) -> float:
    """Signed exposure in ``symbol`` over ``positions``: positive long, negative short, 0 flat."""
    return sum(p.side.sign * p.volume for p in positions if p.symbol == symbol)


def reduces_exposure(order: Order, positions: Sequence[Position], in_doubt: Sequence[Order] = ()) -> bool:
    """True when ``order`` only shrinks the net position in its symbol: it never opens, adds
    to, or reverses one, whichever of the orders ``in_doubt`` (sent, their outcome unknown yet)
    filled. The worst case for it is taken: those on its own side filled, the others not."""
    net = net_volume(order.symbol, positions)
    if in_doubt:
        net += sum(o.side.sign * o.volume for o in in_doubt if o.symbol == order.symbol and o.side is order.side)
    return net != 0 and order.side.sign * net < 0 and order.volume <= abs(net) * (1 + _VOLUME_TOLERANCE)


def check_order(
    order: Order, state: TradingState, positions: Sequence[Position] | None, in_doubt: Sequence[Order] = ()
) -> str | None:
    """None when ``order`` may go out now, else the refusal's reason.

    HALTED refuses every order. REDUCING allows only an order that reduces exposure, judged on
    ``positions`` (the account's open positions; None when they could not be read, which refuses)
    and the orders ``in_doubt`` (see `reduces_exposure`). ACTIVE allows any order.
    """
    if state is TradingState.ACTIVE:
        return None
    if state is TradingState.HALTED:
        return "trading halted"
    if positions is None:
        return "reducing, and the open positions could not be read"
    if not reduces_exposure(order, positions, in_doubt):
        return "reducing: only orders that reduce exposure are allowed"
    return None


@attrs.frozen
class Refusal:
    """An order the gate refused: ``rule`` is the name of what refused it (a limit's name,
    `TRADING_STATE` or `POSITIONS_UNREAD`), ``reason`` states the numbers, ``runaway`` is the
    reason of the runaway loop this refusal revealed (None when it revealed none), and
    ``counted`` is true when the runaway detector counted it (the gate's record changed)."""

    rule: str
    reason: str
    runaway: str | None = None
    counted: bool = False


def _times(field: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{field} must be a sequence of epoch seconds, got {value!r}")
    for t in value:
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise TypeError(f"{field} must be a sequence of epoch seconds, got {value!r}")
        if not math.isfinite(t):
            raise ValueError(f"{field} must hold finite epoch seconds, got {t!r}")
    return tuple(float(t) for t in value)


def _moment(field: str, value: Any) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise ValueError(f"{field} must be finite epoch seconds or None, got {value!r}")
    return None if value is None else float(value)


def _reason(field: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{field} must be a reason or None, got {value!r}")
    return value


def _names(field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(name, str) for name in value):
        raise TypeError(f"{field} must be a sequence of rule names, got {value!r}")
    return tuple(value)


_FIELD_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "sent": _times, "refusals": _times, "latched": _reason, "latched_at": _moment, "halted_by": _names, "halted_at": _moment,
}


@attrs.frozen
class GateRecord:
    """What the guard's gate and latches must get back after a restart; what the store keeps
    beside the guard's record.

    ``sent``: the times (epoch seconds, ascending) of the orders sent within the rate rules'
    lookback; ``refusals``: the times of the order-rate refusals the runaway detector still
    counts; ``latched``: the runaway loop's reason while it holds REDUCING (None when it does
    not), latched at ``latched_at``; ``halted_by``: the rules whose breach halted trading (for a
    cooldown to lift), at ``halted_at`` (empty and None when no such halt is held).

    Made by the gate on every order it counts, so making one checks nothing (a copy of the
    history, no more); what comes back from a store is checked by `from_json`.
    """

    sent: tuple[float, ...] = ()
    refusals: tuple[float, ...] = ()
    latched: str | None = None
    latched_at: float | None = None
    halted_by: tuple[str, ...] = ()
    halted_at: float | None = None

    def to_json(self) -> str:
        """The record as one line of JSON; `from_json` gives back an equal record (floats in
        their shortest exact form). A non-finite time raises ``ValueError``."""
        data = {
            "sent": list(self.sent), "refusals": list(self.refusals), "latched": self.latched,
            "latched_at": self.latched_at, "halted_by": list(self.halted_by), "halted_at": self.halted_at,
        }
        return json.dumps(data, allow_nan=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> GateRecord:
        """The record `to_json` wrote; a malformed text (not JSON, an unknown key, a value of
        the wrong kind, a time that is not finite) raises ``ValueError`` quoting it."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"a gate record is a JSON object, got {data!r}")
            unknown = sorted(set(data) - set(_FIELD_CHECKS))
            if unknown:
                raise TypeError(f"unknown key {unknown[0]!r}; known: {', '.join(_FIELD_CHECKS)}")
            checked: dict[str, Any] = {key: _FIELD_CHECKS[key](key, value) for key, value in data.items()}
            return cls(**checked)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a gate record's JSON: {text[:200]!r} ({type(exc).__name__}: {exc})") from exc


class Gate:
    """Whether an order may go out: the trading state, then every limit in order, the first
    refusal winning; an order that only reduces exposure passes every limit.

    The gate remembers the times of the orders it was told were sent (`sent`), as far back as its
    rate rules look and no more of them than they need (their ``keeps``). With a ``runaway`` detector, order-rate refusals are counted, and a flood
    latches REDUCING (`latched`, since `latched_at`) until `release`. `record` and `restore`
    carry all of that across a guard's restart. ``contract_size`` is the units of the asset per
    unit of volume, for notional. Not thread-safe: one guard owns it.
    """

    def __init__(
        self, limits: Sequence[Limit] = (), *, runaway: RunawayLoop | None = None, contract_size: float = 1.0
    ) -> None:
        names = [limit.name for limit in limits]
        if len(set(names)) != len(names):
            raise ValueError(f"limits must have distinct names, got {names!r}")
        self._limits = tuple(limits)
        self._runaway = runaway
        self._contract = contract_size
        self._sent: list[float] = []
        self._lookback = max((limit.lookback for limit in limits), default=0.0)
        # The history a restart must get back is saved with every order: bounded by the rules.
        looking: list[int | None] = [getattr(limit, "keeps", None) for limit in limits if limit.lookback]
        counts = [keep for keep in looking if keep is not None]
        self._keep = max(counts) if counts and len(counts) == len(looking) else None
        self.latched: str | None = None
        """The runaway loop's reason while REDUCING is latched by it, else None."""
        self.latched_at: float | None = None
        """When (epoch seconds) the runaway latched, while it holds; else None."""

    @property
    def limits(self) -> tuple[Limit, ...]:
        """The limits, in the order they are checked."""
        return self._limits

    @property
    def remembers(self) -> bool:
        """True when the gate holds anything a restart must not lose (a rate rule's order
        history or a runaway detector), so the guard saves its `record`."""
        return bool(self._lookback) or self._runaway is not None

    def record(self) -> GateRecord:
        """The order history and the runaway's refusals and latch, for the store."""
        refusals = self._runaway.times if self._runaway is not None else ()
        return GateRecord(tuple(self._sent), refusals, self.latched, self.latched_at)

    def restore(self, record: GateRecord) -> None:
        """Carry on from ``record`` (what a previous incarnation's gate saved)."""
        self._sent = sorted(record.sent)
        if self._runaway is not None:
            self._runaway.restore(record.refusals)
        self.latched, self.latched_at = record.latched, record.latched_at

    @property
    def needs_positions(self) -> bool:
        """True when some limit is set, so the positions must be read for every order."""
        return bool(self._limits)

    @property
    def needs_prices(self) -> bool:
        """True when some limit values positions, so prices must be read for every order."""
        return any(limit.uses_prices for limit in self._limits)

    def state(self, state: TradingState) -> TradingState:
        """The trading state the gate applies: ``state``, made REDUCING while a runaway is latched."""
        if self.latched is not None and state is TradingState.ACTIVE:
            return TradingState.REDUCING
        return state

    def check(
        self,
        order: Order,
        state: TradingState,
        positions: Sequence[Position] | None,
        *,
        now: datetime,
        prices: Mapping[str, float] | None = None,
        equity: float | None = None,
        in_doubt: Sequence[Order] = (),
    ) -> Refusal | None:
        """None when ``order`` may go out at ``now``, else the `Refusal`.

        ``positions`` are the open positions (None when unread: refused in REDUCING, and by any
        limit); ``prices`` the latest price per symbol; ``equity`` the latest equity; ``in_doubt``
        the orders sent whose outcome is not known yet, which the reducing check and every limit
        count the way that is worst for this order (see `reduces_exposure` and `OrderContext`).
        """
        reason = check_order(order, self.state(state), positions, in_doubt)
        if reason is not None:
            return Refusal(TRADING_STATE, reason)
        if not self._limits:
            return None
        if positions is None:
            return Refusal(POSITIONS_UNREAD, "the open positions could not be read, so the limits cannot be checked")
        if reduces_exposure(order, positions, in_doubt):
            return None
        context = OrderContext(positions, prices or {}, equity, now, self._sent, self._contract, in_doubt)
        for limit in self._limits:
            reason = limit.check(order, context)
            if reason is not None:
                if self._runaway is None or not limit.counts_rate:
                    return Refusal(limit.name, reason)
                return Refusal(limit.name, reason, self._count_rate(context.timestamp), counted=True)
        return None

    def _count_rate(self, at: float) -> str | None:
        assert self._runaway is not None
        runaway = self._runaway.refused(at)
        if runaway is not None and self.latched is None:
            self.latched, self.latched_at = runaway, at
            return runaway
        return None

    def sent(self, at: datetime) -> bool:
        """Remember that an order went to the broker at ``at``; True when that changed the
        `record` (some rate rule counts orders), so it must be saved again."""
        if not self._lookback:
            return False
        moment = at.timestamp()
        insort(self._sent, moment)  # a clock set back must not unsort the history
        del self._sent[: bisect_right(self._sent, moment - self._lookback)]
        if self._keep is not None and len(self._sent) > self._keep:
            del self._sent[: len(self._sent) - self._keep]
        return True

    def release(self) -> str | None:
        """Lift a latched runaway (an operator resumed) and forget its refusals; returns its reason."""
        latched, self.latched, self.latched_at = self.latched, None, None
        if self._runaway is not None:
            self._runaway.reset()
        return latched
