"""The per-position stop: one open position losing too much is closed on its own, without halting
the account."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs

from runtime.broker import Position
from runtime.risk.guards import LIMIT_TOLERANCE
from runtime.validation import attrs_percent, attrs_positive

__all__ = ["PositionStop", "STOP_BASES"]

STOP_BASES = ("equity", "entry")
"""What a position's loss is measured against: the account's equity, or the position's entry value."""


def _basis(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value not in STOP_BASES:
        raise ValueError(f"{attribute.name} must be 'equity' or 'entry', got {value!r}")


@attrs.frozen
class PositionStop:
    """Fires for an open position whose unrealised loss (its broker-reported ``unrealised_pnl``,
    negated) reaches ``percent`` % of the account's latest equity (``basis="equity"``), or of the
    position's entry value, volume × entry price × ``contract_size`` (``basis="entry"``).

    The guard closes each position it fires for and leaves the account's trading state alone.
    It never fires for a position in profit or flat, nor, on the equity basis, while the equity
    is unknown or not positive (the account-level guards own that case).
    """

    percent: float = attrs.field(validator=attrs_percent)
    basis: str = attrs.field(default="equity", validator=_basis)
    contract_size: float = attrs.field(default=1.0, validator=attrs_positive)
    name: ClassVar[str] = "position_stop"

    def check(self, position: Position, equity: float | None) -> str | None:
        """None while ``position`` may stay open, else the reason it is closed, with the numbers."""
        loss = -position.unrealised_pnl
        if loss <= 0.0:
            return None
        if self.basis == "equity":
            if equity is None or equity <= 0.0:
                return None
            base, of = equity, f"equity {equity:,.2f}"
        else:
            base = position.volume * position.entry_price * self.contract_size
            of = f"entry value {base:,.2f}"
        threshold = abs(base) * self.percent / 100.0
        if loss < threshold * (1.0 - LIMIT_TOLERANCE):  # a loss of exactly the limit in decimal reaches it
            return None
        return (
            f"position stop: {position.symbol} {position.side.value} {position.volume:g} (position "
            f"{position.position_id}) unrealised loss {loss:,.2f} >= {self.percent:g}% of {of} ({threshold:,.2f})"
        )

    def fired(self, positions: Sequence[Position], equity: float | None) -> list[tuple[Position, str]]:
        """Each of ``positions`` the stop fires for, with its reason, in the order given."""
        found = []
        for position in positions:
            reason = self.check(position, equity)
            if reason is not None:
                found.append((position, reason))
        return found
