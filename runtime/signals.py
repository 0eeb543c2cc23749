"""Where trade ideas come from and who approves them: the signal source and approval ports."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import attrs

from runtime.broker import Order, Side, to_side
from runtime.validation import attrs_positive, attrs_text

__all__ = ["Signal", "SignalSource", "ApprovalPolicy", "AutoApprove", "ListSignalSource"]


@attrs.frozen
class Signal:
    """A trade idea: buy or sell ``volume`` of ``symbol``, with why and when."""

    symbol: str = attrs.field(validator=attrs_text)
    side: Side = attrs.field(converter=to_side)
    volume: float = attrs.field(validator=attrs_positive)
    at: datetime | None = None
    reason: str = ""
    signal_id: str = attrs.field(factory=lambda: uuid.uuid4().hex[:12])

    def order(self) -> Order:
        """A new market order that carries out this signal, with its own client order id."""
        return Order(self.symbol, self.side, self.volume)


class SignalSource(Protocol):
    """Gives the loop the signals that are new since it last asked."""

    def poll(self, now: datetime) -> Sequence[Signal]:
        """Signals new at ``now``; an empty sequence when there are none."""
        ...


class ApprovalPolicy(Protocol):
    """Decides whether a received signal may go on to execution. It is a strategy's filter, not a
    risk control: the guard checks every approved order against the trading state on its own."""

    def approve(self, signal: Signal) -> bool:
        """True to pass the signal on to the guard as an order (anything but True or False is
        an error, and the signal is not approved)."""
        ...


class AutoApprove:
    """Approves every signal (the default); the guard still gates every order."""

    def approve(self, signal: Signal) -> bool:
        """Always True."""
        return True


class ListSignalSource:
    """A signal source fed by hand: `push` signals, and the next `poll` hands them over once."""

    def __init__(self, signals: Sequence[Signal] = ()) -> None:
        self._pending = list(signals)

    def push(self, *signals: Signal) -> None:
        """Queue signals for the next poll."""
        self._pending.extend(signals)

    def poll(self, now: datetime) -> Sequence[Signal]:
        """Every queued signal, once."""
        pending, self._pending = self._pending, []
        return pending
