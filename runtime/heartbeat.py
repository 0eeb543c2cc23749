"""The loop's health figures that every heartbeat carries."""

from __future__ import annotations

import attrs

from runtime.validation import attrs_non_negative, attrs_whole, finite_number

__all__ = ["HeartbeatMetrics"]


def _count_field() -> int:
    return attrs.field(default=0, validator=attrs_whole)


@attrs.frozen
class HeartbeatMetrics:
    """The loop's figures at one moment: counts since start, lifetime totals, last cycle time.

    Counts are non-negative integers; ``loop_duration_ms`` is finite and >= 0; ``account_equity``
    is finite (it may be negative).
    """

    signals_processed: int = _count_field()
    trades_executed: int = _count_field()
    error_count: int = _count_field()
    loop_duration_ms: float = attrs.field(
        default=0.0, converter=lambda v: finite_number("loop_duration_ms", v), validator=attrs_non_negative
    )
    positions_open: int = _count_field()
    account_equity: float = attrs.field(default=0.0, converter=lambda v: finite_number("account_equity", v))
    total_signals_lifetime: int = _count_field()
    total_trades_lifetime: int = _count_field()

    def as_dict(self) -> dict[str, float | int]:
        """The figures as a plain dict, for event metadata and logs."""
        return attrs.asdict(self)
