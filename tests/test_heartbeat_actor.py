"""The heartbeat and its watchdog, with real actors, a manual clock for the beat and real time for
the loop's answers; including the old system's silent death with an async metrics provider."""

from __future__ import annotations

import asyncio
import threading

import pytest
from actor_helpers import WAIT, EventLog, Journal, Recorder, wait_until

from actors import ChildSpec, EmitterActor, HeartbeatActor, Supervisor, start_trading_system
from actors.heartbeat import GetHeartbeatStats
from actors.messages import Hang, RestartChild, RunCycle, SendAlert
from actors.supervision.address import Slot
from actors.supervision.context import ChildContext
from runtime import EventType, HeartbeatMetrics, ListSignalSource, ManualClock, MemoryMetrics, PaperBroker, Settings

FIGURES = dict(signals_processed=3, trades_executed=2, error_count=0, loop_duration_ms=1.5, positions_open=1,
               account_equity=10_250.0, total_signals_lifetime=30, total_trades_lifetime=20)


def heartbeat_tree(provider, clock, *, interval=10.0, timeout=0.5, stall_after=30.0):
    events, journal, metrics = EventLog(), Journal(), MemoryMetrics()
    specs = [
        ChildSpec("emitter", lambda ctx: EmitterActor.start(ctx, sinks=[events])),
        ChildSpec("alerts", lambda ctx: Recorder.start(ctx, journal)),
        ChildSpec(
            "heartbeat",
            lambda ctx: HeartbeatActor.start(
                ctx, provider=provider, interval=interval, timeout=timeout, stall_after=stall_after, metrics=metrics
            ),
        ),
    ]
    handle = Supervisor.launch(specs, child_clock=clock)
    return handle, events, journal, metrics


def beat(clock: ManualClock, handle, seconds: float) -> None:
    clock.advance(seconds)
    handle.address("heartbeat").ask(GetHeartbeatStats(), timeout=WAIT)


def test_a_coroutine_function_provider_is_awaited_and_its_figures_reach_the_heartbeat():
    # The old asyncio backend called an async provider without await: the heartbeat got a
    # coroutine object instead of figures and died silently. Here it must beat with the figures.
    calls = []

    async def provider() -> HeartbeatMetrics:
        await asyncio.sleep(0)
        calls.append(1)
        return HeartbeatMetrics(**FIGURES)

    clock = ManualClock()
    handle, events, journal, metrics = heartbeat_tree(provider, clock)
    for _ in range(3):
        beat(clock, handle, 10.0)
    beats = events.wait_count(EventType.HEARTBEAT, 3)
    assert len(calls) == 3
    assert {k: beats[-1].metadata[k] for k in FIGURES} == FIGURES
    assert metrics.counters["heartbeat_total"] == 3
    assert events.of(EventType.STALL_DETECTED) == []
    handle.stop()


def test_a_plain_function_provider_returning_a_mapping_is_validated_into_figures():
    clock = ManualClock()
    handle, events, journal, metrics = heartbeat_tree(lambda: dict(FIGURES), clock)
    beat(clock, handle, 10.0)
    [one] = events.wait_count(EventType.HEARTBEAT, 1)
    assert one.metadata["account_equity"] == 10_250.0
    handle.stop()


def test_a_provider_that_returns_garbage_or_raises_is_reported_as_a_stall_not_a_silent_death():
    answers = iter([object(), RuntimeError("db down")])

    def provider():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = ManualClock()
    handle, events, journal, metrics = heartbeat_tree(provider, clock)
    beat(clock, handle, 10.0)
    beat(clock, handle, 10.0)
    stalls = events.wait_count(EventType.STALL_DETECTED, 2)
    assert "expected HeartbeatMetrics" in stalls[0].metadata["reason"]
    assert "db down" in stalls[1].metadata["reason"]
    journal.wait_for(lambda es: sum(isinstance(e[-1], SendAlert) for e in es) == 2)
    handle.stop()


def test_an_async_provider_slower_than_the_timeout_is_a_stall():
    async def slow() -> HeartbeatMetrics:
        await asyncio.sleep(5)
        return HeartbeatMetrics()

    clock = ManualClock()
    handle, events, journal, metrics = heartbeat_tree(slow, clock, timeout=0.1)
    beat(clock, handle, 10.0)
    [stall] = events.wait_count(EventType.STALL_DETECTED, 1)
    assert stall.metadata["reason"] == "loop did not answer within 0.1s"
    handle.stop()


def test_the_timeout_must_be_shorter_than_the_interval():
    with pytest.raises(ValueError, match="timeout must be > 0 and shorter than interval"):
        HeartbeatActor(ChildContext.standalone("hb"), provider=lambda: {}, interval=1.0, timeout=1.0, stall_after=3)


@pytest.fixture
def system():
    clock = ManualClock()
    events = EventLog()
    broker = PaperBroker(10_000)
    settings = Settings(heartbeat_interval_seconds=10, heartbeat_timeout_seconds=0.3, stall_after_seconds=25)
    system = start_trading_system(
        settings, broker, ListSignalSource(), clock=clock, loop_interval=None, subscribers=[events], drills=True
    )
    yield system, clock, events
    system.stop()


def test_the_heartbeat_reports_the_loops_figures_every_interval(system):
    system, clock, events = system
    for _ in range(3):
        system.loop.ask(RunCycle())
        clock.advance(10)
        system.heartbeat.ask(GetHeartbeatStats())
    beats = events.wait_count(EventType.HEARTBEAT, 3)
    assert beats[-1].metadata["account_equity"] == 10_000
    assert [b.metadata["beat"] for b in beats] == [1, 2, 3]
    assert events.of(EventType.STALL_DETECTED) == []


def test_a_loop_that_does_not_answer_is_a_stall_and_is_replaced(system):
    system, clock, events = system
    system.loop.ask(RunCycle())
    release = threading.Event()
    system.loop.tell(Hang(release, seconds=WAIT))
    clock.advance(10)
    [stall] = events.wait_count(EventType.STALL_DETECTED, 1)
    assert stall.metadata["reason"] == "loop did not answer within 0.3s"
    restarted = events.wait_for(lambda es: any(e.event_type is EventType.ACTOR_RESTARTED for e in es))
    [restart] = [e for e in restarted if e.event_type is EventType.ACTOR_RESTARTED]
    assert restart.metadata == {"actor": "loop", "cause": "loop did not answer within 0.3s", "attempt": 1, "incarnation": 2}
    assert system.loop.ask(RunCycle()).metrics.account_equity == 10_000
    release.set()


def test_a_loop_that_answers_but_completes_no_cycle_is_still_a_stall(system):
    system, clock, events = system
    system.loop.ask(RunCycle())
    for _ in range(3):  # 30 s without a cycle, past the 25 s limit
        clock.advance(10)
        system.heartbeat.ask(GetHeartbeatStats())
    [stall] = events.wait_count(EventType.STALL_DETECTED, 1)
    assert stall.metadata["reason"].startswith("no completed cycle for 30.0s")
    events.wait_for(lambda es: any(e.event_type is EventType.ACTOR_RESTARTED for e in es))
    assert len(events.wait_count(EventType.HEARTBEAT, 3)) == 3, "it still beat while the loop idled"


def watched_loop_tree(clock):
    """A heartbeat whose supervisor is a recording test actor and whose loop (at incarnation 1)
    answers the metrics ask with nothing, which the heartbeat reports as a stall."""
    supervisor_journal, loop_journal = Journal(), Journal()
    supervisor = Recorder.start(ChildContext.standalone("supervisor"), supervisor_journal)
    loop_slot = Slot("loop")
    loop_slot.install(Recorder.start(ChildContext.standalone("loop"), loop_journal), 1)
    context = ChildContext("heartbeat", 1, supervisor=supervisor, slots={"loop": loop_slot}, clock=clock)
    heartbeat = HeartbeatActor.start(
        context, provider=context.address("loop"), interval=10.0, timeout=0.5, stall_after=30.0
    )
    return context, heartbeat, supervisor, supervisor_journal, loop_slot


NOT_METRICS = "TypeError('metrics provider returned None; expected HeartbeatMetrics, LoopStatus or a mapping')"


def test_a_stalled_loop_is_restarted_by_a_request_to_the_heartbeats_own_supervisor_naming_the_watched_incarnation():
    clock = ManualClock()
    _, heartbeat, supervisor, journal, _ = watched_loop_tree(clock)
    clock.advance(10.0)
    assert heartbeat.ask(GetHeartbeatStats(), timeout=WAIT).stalls == 1
    reason = f"metrics provider failed: {NOT_METRICS}"
    journal.wait_for(lambda es: len(es) == 2)
    assert journal.snapshot()[1] == ("got", "supervisor", 1, RestartChild("loop", reason, True, 1))
    heartbeat.stop()
    supervisor.stop()


def test_an_abandoned_heartbeat_restarts_nothing():
    clock = ManualClock()
    context, heartbeat, supervisor, journal, loop_slot = watched_loop_tree(clock)
    context.revoke()
    clock.advance(10.0)
    assert heartbeat.ask(GetHeartbeatStats(), timeout=WAIT).stalls == 1
    # Anything the heartbeat had told the supervisor would be ahead of this ask in its mailbox.
    assert supervisor.ask(("echo", "after"), timeout=WAIT) == ("after", 1)
    assert journal.snapshot() == [("started", "supervisor", 1)]
    assert loop_slot.incarnation == 1
    heartbeat.stop()
    supervisor.stop()


def test_the_loops_address_tells_which_incarnation_it_reaches(system):
    system, _, _ = system
    assert system.loop.incarnation == 1
    system.restart("loop", "drill", incarnation=1)
    assert wait_until(lambda: system.loop.incarnation == 2)
    assert system.children()["loop"].incarnation == 2
