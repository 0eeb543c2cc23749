"""Restart: a supervised child crashes until its replacement answers through the same address."""

from __future__ import annotations

import time

import pykka

from actors import ChildContext, ChildSpec, GuardActor, Supervisor
from actors.messages import Crash, Ping
from benchmarks.baselines import Latency
from runtime.adapters.paper import PaperBroker
from runtime.settings import Settings
from runtime.store import MemoryStore

__all__ = ["restart_latencies"]


def restart_latencies(trials: int) -> tuple[Latency, int]:
    """Time from telling the guard child `Crash` until ``Address.ask(Ping())`` is answered by
    the next incarnation (its `Pong` carries the incarnation), under a one-for-one `Supervisor`
    with room for every restart. An ask that reaches the dying incarnation is retried: that
    retry is part of the time. Returns (latencies, asks retried)."""
    broker = PaperBroker(1_000_000.0)
    store = MemoryStore()
    guards = Settings().guards()

    def start_guard(context: ChildContext) -> pykka.ActorRef[GuardActor]:
        return GuardActor.start(context, guards=guards, broker=broker, store=store)

    handle = Supervisor.launch(
        [ChildSpec("guard", start_guard)], name="bench-restart", max_restarts=trials + 1, within_seconds=3600.0, drills=True
    )
    address = handle.address("guard")
    samples, retried = [], 0
    clock = time.perf_counter
    try:
        incarnation = address.ask(Ping()).incarnation
        for _ in range(trials):
            started = clock()
            address.tell(Crash("benchmark"))
            while True:
                try:
                    pong = address.ask(Ping(), timeout=1.0)
                except (pykka.ActorDeadError, pykka.Timeout):
                    retried += 1
                    continue
                if pong.incarnation > incarnation:
                    break
            samples.append(clock() - started)
            incarnation = pong.incarnation
    finally:
        handle.stop()
    return Latency(tuple(samples)), retried
