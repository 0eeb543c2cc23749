"""The order gate: whether one order may go out, given the trading state and what is held.

Pure and synchronous. The guard actor calls `check_order` for every order before it reaches the
broker; it is the only place that decides. Pre-trade limits are added here as further rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime.broker import Order, Position
from runtime.risk.guards import TradingState

__all__ = ["check_order", "net_volume", "reduces_exposure"]

_VOLUME_TOLERANCE = 1e-12  # relative: a close of exactly the held volume must not count as a reversal


def net_volume(symbol: str, positions: Sequence[Position]) -> float:
    """Signed exposure in ``symbol`` over ``positions``: positive long, negative short, 0 flat."""
    return sum(p.side.sign * p.volume for p in positions if p.symbol == symbol)


def reduces_exposure(order: Order, positions: Sequence[Position]) -> bool:
    """True when ``order`` only shrinks the net position in its symbol: it never opens, adds
    to, or reverses one."""
    net = net_volume(order.symbol, positions)
    return net != 0 and order.side.sign * net < 0 and order.volume <= abs(net) * (1 + _VOLUME_TOLERANCE)


def check_order(order: Order, state: TradingState, positions: Sequence[Position] | None) -> str | None:
    """None when ``order`` may go out now, else the refusal's reason.

    HALTED refuses every order. REDUCING allows only an order that reduces exposure, judged on
    ``positions`` (the account's open positions; None when they could not be read, which refuses).
    ACTIVE allows any order.
    """
    if state is TradingState.ACTIVE:
        return None
    if state is TradingState.HALTED:
        return "trading halted"
    if positions is None:
        return "reducing, and the open positions could not be read"
    if not reduces_exposure(order, positions):
        return "reducing: only orders that reduce exposure are allowed"
    return None
