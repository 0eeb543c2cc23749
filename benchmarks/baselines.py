"""Raw pykka and queue.Queue figures: the floor every actor figure is compared with."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import attrs
import pykka

from benchmarks.stats import percentile

__all__ = [
    "COUNT",
    "Counter",
    "Latency",
    "tell_throughput",
    "ask_latencies",
    "queue_handoff_throughput",
    "queue_round_trips",
    "spawn_latencies",
]

_STOP = object()
COUNT = object()
"""Ask a `Counter` this to get its count (an identity check keeps the baseline's hot path bare)."""


class Counter(pykka.ThreadingActor):
    """A plain pykka actor that counts what it is told and answers an ask of `COUNT` with the count."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        """Count a told message; answer an ask (`COUNT`) with the count."""
        if message is COUNT:
            return self.count
        self.count += 1
        return None


@attrs.frozen
class Latency:
    """Latency samples in seconds, with their p50 and p99 in milliseconds."""

    samples: tuple[float, ...]

    @property
    def p50_ms(self) -> float:
        """Median, in milliseconds."""
        return percentile(self.samples, 50) * 1000.0

    @property
    def p99_ms(self) -> float:
        """99th percentile, in milliseconds."""
        return percentile(self.samples, 99) * 1000.0


def tell_throughput(messages: int) -> float:
    """Messages per second told into a counting `Counter`, until an ask at the end returns."""
    ref = Counter.start()
    try:
        ref.ask(COUNT)
        message = object()
        tell = ref.tell
        started = time.perf_counter()
        for _ in range(messages):
            tell(message)
        counted = ref.ask(COUNT)
        elapsed = time.perf_counter() - started
    finally:
        ref.stop()
    if counted != messages:
        raise AssertionError(f"counter saw {counted} of {messages} messages")
    return messages / elapsed


def ask_latencies(trials: int) -> Latency:
    """Round trips of ``ref.ask`` to a `Counter`, one at a time."""
    ref = Counter.start()
    try:
        samples = []
        clock = time.perf_counter
        for _ in range(trials):
            started = clock()
            ref.ask(COUNT)
            samples.append(clock() - started)
    finally:
        ref.stop()
    return Latency(tuple(samples))


def queue_handoff_throughput(messages: int) -> float:
    """Items per second put on a ``queue.Queue`` by one thread and taken by another."""
    inbox: queue.Queue[Any] = queue.Queue()
    done = threading.Event()

    def consume() -> None:
        get = inbox.get
        while get() is not _STOP:
            pass
        done.set()

    consumer = threading.Thread(target=consume, name="bench-queue-consumer", daemon=True)
    consumer.start()
    item = object()
    put = inbox.put
    started = time.perf_counter()
    for _ in range(messages):
        put(item)
    put(_STOP)
    done.wait()
    elapsed = time.perf_counter() - started
    consumer.join()
    return messages / elapsed


def queue_round_trips(trials: int) -> Latency:
    """Ping-pong between two threads over a pair of ``queue.Queue``: the floor under an ask."""
    requests: queue.Queue[Any] = queue.Queue()
    replies: queue.Queue[Any] = queue.Queue()

    def echo() -> None:
        while (item := requests.get()) is not _STOP:
            replies.put(item)

    worker = threading.Thread(target=echo, name="bench-queue-echo", daemon=True)
    worker.start()
    samples = []
    clock = time.perf_counter
    item = object()
    for _ in range(trials):
        started = clock()
        requests.put(item)
        replies.get()
        samples.append(clock() - started)
    requests.put(_STOP)
    worker.join()
    return Latency(tuple(samples))


def spawn_latencies(trials: int) -> Latency:
    """Start a plain pykka actor until it answers its first ask: the floor under a restart."""
    samples = []
    clock = time.perf_counter
    for _ in range(trials):
        started = clock()
        ref = Counter.start()
        ref.ask(COUNT)
        samples.append(clock() - started)
        ref.stop()
    return Latency(tuple(samples))
