"""A strategy that takes a while to build, as one that loads its history or its model does."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from runtime.signals import Signal

__all__ = ["SlowToBuild"]


class SlowToBuild:
    """Says "building the strategy" on stdout, then takes ``seconds`` to build, so a test can
    interrupt a `tradewarden run` before it has started; it never signals."""

    def __init__(self, seconds: float = 60.0) -> None:
        print("building the strategy", flush=True)
        threading.Event().wait(seconds)

    def poll(self, now: datetime) -> Sequence[Signal]:
        """Nothing, ever."""
        return []
