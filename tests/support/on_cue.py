"""A signal source a test cues from outside the process: it buys once a file appears."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from runtime.signals import Signal

__all__ = ["BuyOnCue"]


class BuyOnCue:
    """Emits one buy of ``volume`` ``symbol`` on the first poll after ``cue`` (a path) exists, so
    a test decides when a position opens (and, on a falling feed, when a breach comes)."""

    def __init__(self, symbol: str, cue: str, volume: float) -> None:
        self.symbol = symbol
        self.cue = Path(cue)
        self.volume = volume
        self.bought = False

    def poll(self, now: datetime) -> Sequence[Signal]:
        """The buy once the cue exists, then nothing ever again."""
        if self.bought or not self.cue.exists():
            return []
        self.bought = True
        return [Signal(self.symbol, "buy", self.volume, at=now, reason="cued by the test")]
