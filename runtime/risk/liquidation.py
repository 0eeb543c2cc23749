"""Closing every open position: the one routine the guard and the supervisor's fail-safe share."""

from __future__ import annotations

from typing import Any

from runtime.broker import Broker, Fill, Position
from runtime.payloads import PositionClosed

__all__ = ["close_every_position", "position_closed_metadata"]


def close_every_position(
    broker: Broker,
) -> tuple[list[tuple[Position, Fill]], list[str]]:
    """Close each open position, one broker call each, carrying on past failures.

    Returns the positions closed with their fills, and a description of each failure (empty when
    the account is flat). A failure to list the positions raises: nothing was closed.
    """
    closed: list[tuple[Position, Fill]] = []
    failed: list[str] = []
    for position in broker.open_positions():
        try:
            closed.append((position, broker.close_position(position.position_id)))
        except Exception as exc:
            failed.append(f"{position.position_id}: {exc!r}")
    return closed, failed


def position_closed_metadata(position: Position, fill: Fill, reason: str, attempt: int) -> dict[str, Any]:
    """The metadata of a POSITION_CLOSED event for ``position`` closed by ``fill``.

    Kept for the actors that still call it; new code builds `PositionClosed.of` directly.
    """
    return PositionClosed.of(position, fill, reason, attempt).metadata()
