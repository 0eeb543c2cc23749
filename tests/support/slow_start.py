"""Starts that take a while: a strategy that loads its history or its model, a store slow to read."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from actor_helpers import WAIT

from runtime.signals import Signal
from runtime.store import MemoryStore

__all__ = ["SlowStart", "SlowToBuild"]


class SlowToBuild:
    """Says "building the strategy" on stdout, then takes ``seconds`` to build, so a test can
    interrupt a `tradewarden run` before it has started; it never signals."""

    def __init__(self, seconds: float = 60.0) -> None:
        print("building the strategy", flush=True)
        threading.Event().wait(seconds)

    def poll(self, now: datetime) -> Sequence[Signal]:
        """Nothing, ever."""
        return []


class SlowStart(MemoryStore):
    """A store whose first read of the guard's record (the system's start) waits until the test
    sets ``release``; ``reading`` is set when that read begins."""

    def __init__(self) -> None:
        super().__init__()
        self.reading, self.release = threading.Event(), threading.Event()

    def load_guard(self, loop_id):
        if not self.reading.is_set():
            self.reading.set()
            assert self.release.wait(WAIT)
        return super().load_guard(loop_id)
