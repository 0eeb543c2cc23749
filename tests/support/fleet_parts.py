"""Factories the fleet tests hand to accounts; shipped to Ray workers by value."""

from __future__ import annotations

from runtime.adapters.paper import PaperBroker

__all__ = ["priced_broker"]


def priced_broker() -> PaperBroker:
    """A paper account of 10,000 with a EURUSD price, so that an order can fill."""
    broker = PaperBroker(10_000)
    broker.update_price("EURUSD", 1.10)
    return broker
