"""Closing every open position: the one routine the guard and the supervisor's fail-safe share."""

from __future__ import annotations

from runtime.broker import Broker, Fill, Position

__all__ = ["close_every_position"]


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
