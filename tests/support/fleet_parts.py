"""Factories the fleet tests hand to accounts; shipped to Ray workers by value."""

from __future__ import annotations

import socket
from datetime import datetime

from runtime.adapters.paper import PaperBroker
from runtime.signals import Signal

__all__ = ["BuyEveryPoll", "gated_broker", "priced_broker", "refusing_broker"]


def priced_broker() -> PaperBroker:
    """A paper account of 10,000 with a EURUSD price, so that an order can fill."""
    broker = PaperBroker(10_000)
    broker.update_price("EURUSD", 1.10)
    return broker


def gated_broker(port: int) -> PaperBroker:
    """`priced_broker`, built only once the test listening on 127.0.0.1:``port`` sends a byte:
    until then the account is starting (its store open, its trading system not yet built)."""
    with socket.create_connection(("127.0.0.1", port), timeout=240.0) as gate:
        gate.settimeout(240.0)
        if gate.recv(1) != b"g":
            raise RuntimeError(f"the gate on port {port} closed without opening")
    return priced_broker()


def refusing_broker() -> PaperBroker:
    """A broker whose login is refused: the account comes up quarantined."""
    raise RuntimeError("broker login refused")


class BuyEveryPoll:
    """A signal source that asks for one EURUSD lot at every poll: an account that trades on
    every cycle, so that any cycle it runs unhalted shows as an order."""

    def poll(self, now: datetime) -> list[Signal]:
        """One buy of 1, every time."""
        return [Signal("EURUSD", "buy", 1.0, reason="every poll")]
