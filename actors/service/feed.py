"""Live price feeds for a paper broker: bars made on wall-clock time and told to the loop."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from loguru import logger

from actors.messages import MarketData
from actors.service.config import FeedConfig
from actors.supervision.address import Address, ChildUnavailable, StashOverflow
from runtime.replay.prices import Bar, load_bars

__all__ = ["LiveFeed", "bar_source", "random_walk", "csv_bars"]

_log = logger.bind(component="feed")


def random_walk(config: FeedConfig, now: Callable[[], datetime]) -> Iterator[tuple[float, Bar]]:
    """Endless bars of a seeded geometric random walk, one every ``interval_seconds``: each close
    is the last times ``exp(N(drift, volatility))``. Yields (seconds to wait first, bar); the same
    seed always gives the same prices."""
    rng = random.Random(config.seed)
    price = config.start_price
    while True:
        close = price * math.exp(rng.gauss(config.drift, config.volatility))
        yield config.interval_seconds, Bar(now(), price, max(price, close), min(price, close), close)
        price = close


def csv_bars(bars: Sequence[Bar], speed: float) -> Iterator[tuple[float, Bar]]:
    """The bars of a file paced at ``speed`` data seconds per real second: each is yielded with
    the real seconds to wait after the one before (the first at once), and ends with the file."""
    previous: Bar | None = None
    for bar in bars:
        wait = 0.0 if previous is None else (bar.time - previous.time).total_seconds() / speed
        yield wait, bar
        previous = bar


def _utc_now() -> datetime:
    return datetime.now(UTC)


def bar_source(config: FeedConfig) -> Iterator[tuple[float, Bar]]:
    """The bars ``config`` describes, for `LiveFeed`; a CSV is read now, so one that cannot be
    read raises `PriceDataError` naming the file and the line before anything starts."""
    if config.kind == "csv":
        assert config.path is not None
        return csv_bars(load_bars(config.path, symbol=config.symbol, timezone=config.timezone, symbol_field="feed.symbol"), config.speed)
    return random_walk(config, _utc_now)


class LiveFeed:
    """Tells the loop `MarketData(now, bar)` for each bar of a feed, on its own daemon thread.

    The thread waits before each bar (so `stop` ends it at once, between bars), and a loop that
    is restarting has the bar stashed by its address; a loop that has stopped ends the feed.
    """

    def __init__(self, loop: Address, bars: Iterator[tuple[float, Bar]], now: Callable[[], datetime] = _utc_now) -> None:
        self._loop = loop
        self._bars = bars
        self._now = now
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tradewarden-feed", daemon=True)
        self.played = 0

    def start(self) -> LiveFeed:
        """Start telling bars; returns self."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop before the next bar and wait for the thread to end."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        started = time.monotonic()
        due = started
        for wait, bar in self._bars:
            due += wait
            if self._stopping.wait(max(0.0, due - time.monotonic())):
                return
            try:
                self._loop.tell(MarketData(self._now(), bar))
            except ChildUnavailable:
                _log.warning("the loop has stopped; the feed ends")
                return
            except StashOverflow:
                _log.warning("the loop's stash is full; bar at {} dropped", bar.time.isoformat())
                continue
            self.played += 1
        _log.info("the feed ended after {} bars", self.played)
