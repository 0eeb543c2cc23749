"""The dead man's switch against a real local HTTP server: pings while healthy, none while the
loop is wedged, the guard does not answer or the system has stopped, `/fail` on a halt and when
the supervisor gives up; a failing endpoint is logged and counted; a bad URL is refused."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from actor_helpers import WAIT, EventLog, LogLines, wait_until
from support.ping_server import CHECK, PingServer

from actors import TradingSystem
from actors.healthcheck import GetHealthcheckStats, HealthcheckStats
from actors.messages import Crash, GetGuardState, Hang
from actors.service.config import ConfigError, RunConfig
from actors.supervision.address import ChildUnavailable
from runtime import EventType, ListSignalSource, MemoryStore, PaperBroker, Settings
from runtime.adapters.healthcheck import HealthcheckPing, fail_url
from runtime.metrics import MemoryMetrics
from runtime.settings import SettingsError

INTERVAL = 0.2


@pytest.fixture
def pings() -> Iterator[PingServer]:
    with PingServer() as server:
        yield server


@pytest.fixture
def systems() -> Iterator[list[TradingSystem]]:
    started: list[TradingSystem] = []
    yield started
    for system in started:
        system.stop()


def start(systems: list[TradingSystem], url: str, events: EventLog, **settings: object) -> TradingSystem:
    system = TradingSystem(
        Settings(healthcheck_ping_url=url, heartbeat_interval_seconds=INTERVAL, loop_interval_seconds=0.05, **settings),
        PaperBroker(10_000), ListSignalSource(), store=MemoryStore(), subscribers=[events], drills=True,
    )
    systems.append(system.start())
    return system


def stats(system: TradingSystem) -> HealthcheckStats:
    # An answer comes after every event told before it: the pings they caused have been answered.
    answer: HealthcheckStats = system.address("healthcheck").ask(GetHealthcheckStats(), timeout=WAIT)
    return answer


def test_pings_arrive_while_healthy_and_stop_while_the_loop_is_wedged(pings, systems):
    events = EventLog()
    system = start(systems, pings.url, events)
    healthy = pings.wait_for(3)
    assert {(p.method, p.path, p.body) for p in healthy} == {("GET", CHECK, "")}

    release = threading.Event()
    system.loop.tell(Hang(release, seconds=WAIT))
    try:
        events.wait_for(lambda seen: any(e.event_type is EventType.STALL_DETECTED for e in seen))
        # The test's log is told each event before the switch is: what it saw before the stall
        # has reached the switch, and every ping it caused has been answered.
        first = stats(system)
        before = len(pings.pings)
        stall_at = next(i for i, e in enumerate(events.events) if e.event_type is EventType.STALL_DETECTED)
        # The wedged loop makes no heartbeat; the first one after the stall (the restarted loop's)
        # is not pinged either. Two heartbeats on, the switch has judged the first.
        events.wait_for(lambda seen: sum(e.event_type is EventType.HEARTBEAT for e in seen[stall_at:]) >= 2)
        after = stats(system)
        assert after.skipped == {"stalled": 1}
        assert after.pinged - first.pinged == len(pings.pings) - before <= 1
        # The heartbeat restarted the wedged loop; the new one beats and is pinged again.
        pings.wait_for(before + 1)
        restarted = [e.metadata["actor"] for e in events.of(EventType.ACTOR_RESTARTED)]
        assert restarted == ["loop"]
    finally:
        release.set()


def test_no_ping_while_the_guard_does_not_answer(pings, systems):
    events = EventLog()
    system = start(systems, pings.url, events)
    pings.wait_for(2)
    release = threading.Event()
    system.guard.tell(Hang(release, seconds=WAIT))
    try:
        # Wait until the switch has judged a heartbeat against the hung guard, then two more.
        assert wait_until(lambda: stats(system).skipped.get("guard", 0) >= 1)
        judged, sent = stats(system), len(pings.pings)
        # Three heartbeats on, the switch has been told the first two (the log is told first).
        events.wait_count(EventType.HEARTBEAT, len(events.of(EventType.HEARTBEAT)) + 3)
        assert stats(system).skipped["guard"] >= judged.skipped["guard"] + 2
        assert len(pings.pings) == sent
    finally:
        release.set()
    # Once the guard answers (released, or restarted by its supervisor), the pings come back.
    pings.wait_for(len(pings.pings) + 1)


def test_pings_stop_when_the_system_stops(pings, systems):
    system = start(systems, pings.url, EventLog())
    pings.wait_for(2)
    systems.remove(system)
    system.stop()
    stopped = len(pings.pings)
    with pytest.raises(ChildUnavailable):
        system.address("healthcheck").tell(GetHealthcheckStats())
    with pytest.raises(AssertionError, match="timed out"):
        pings.wait_for(stopped + 1, timeout=5 * INTERVAL)


def test_a_halt_is_signalled_at_once_on_fail_and_no_success_ping_follows_until_resumed(pings, systems):
    events = EventLog()
    system = start(systems, pings.url, events)
    pings.wait_for(1)
    system.halt("ops", "maintenance")
    failed = pings.wait_for(1, path=CHECK + "/fail")
    assert [(p.method, p.body) for p in failed] == [("POST", "trading halted: halted by ops: maintenance")]
    # Heartbeats go on while halted, but none is pinged, and the failure is not repeated.
    at_halt = len([p for p in pings.pings if p.path == CHECK])
    events.wait_count(EventType.HEARTBEAT, len(events.of(EventType.HEARTBEAT)) + 3)
    judged = stats(system)
    assert judged.skipped["halted"] >= 2, judged
    assert judged.failures_signalled == 1
    assert len([p for p in pings.pings if p.path == CHECK]) == at_halt
    assert len(pings.wait_for(1, path=CHECK + "/fail")) == 1
    system.resume("ops")
    pings.wait_for(at_halt + 1)


def test_when_the_supervisor_gives_up_the_failure_is_pinged(pings, systems):
    system = start(systems, pings.url, EventLog(), max_restarts=1, within_seconds=60)
    pings.wait_for(1)
    for attempt in range(2):
        system.guard.tell(Crash("broken guard"))
        if attempt == 0:
            assert wait_until(lambda: system.children()["guard"].restarts == 1)
            system.guard.ask(GetGuardState(), timeout=WAIT)
    assert system.wait(WAIT)
    assert system.gave_up
    failed = pings.wait_for(1, path=CHECK + "/fail")
    assert len(failed) == 1 and failed[0].method == "POST"
    assert failed[0].body.startswith("supervisor gave up, trading halted: ")
    assert "broken guard" in failed[0].body


def test_a_failing_endpoint_is_logged_and_counted_and_the_switch_keeps_going(pings, systems):
    pings.answer_with(500)
    metrics = MemoryMetrics()
    events = EventLog()
    system = TradingSystem(
        Settings(healthcheck_ping_url=pings.url, heartbeat_interval_seconds=INTERVAL, loop_interval_seconds=0.05),
        PaperBroker(10_000), ListSignalSource(), store=MemoryStore(), metrics=metrics, subscribers=[events],
    )
    host = pings.url.split("/ping/")[0]
    with LogLines() as lines:
        systems.append(system.start())
        pings.wait_for(2)
        lines.wait_for(lambda seen: f"WARNING healthcheck success ping to {host} failed: answered 500" in seen)
        assert all(CHECK not in line for line in lines.snapshot())
    judged = stats(system)
    assert judged.pinged >= 2 and judged.taken == 0
    assert metrics.counters["healthcheck_ping_failures_total"] >= 2
    pings.answer_with(200)
    assert wait_until(lambda: stats(system).taken >= 1)
    assert system.children()["healthcheck"].restarts == 0


def test_an_endpoint_that_refuses_connections_costs_a_warning_not_a_crash():
    metrics = MemoryMetrics()
    with PingServer() as gone:
        url = gone.url
    ping = HealthcheckPing(url, timeout=1.0, metrics=metrics)
    with LogLines() as lines:
        assert ping.success() is False
        assert ping.fail("why") is False
    assert metrics.counters == {
        "healthcheck_pings_total.success": 1, "healthcheck_pings_total.fail": 1, "healthcheck_ping_failures_total": 2,
    }
    assert [re.sub(r": .*", "", line.split(" failed")[0]) for line in lines.snapshot()] == [
        f"WARNING healthcheck success ping to {url.split('/ping/')[0]}",
        f"WARNING healthcheck fail ping to {url.split('/ping/')[0]}",
    ]
    assert CHECK not in "".join(lines.snapshot()) and CHECK not in repr(ping)
    ping.close()


def test_fail_url_appends_fail_to_the_path_and_keeps_the_query():
    assert fail_url("https://hc-ping.com/abc") == "https://hc-ping.com/abc/fail"
    assert fail_url("https://hc-ping.com/key/slug/?create=1") == "https://hc-ping.com/key/slug/fail?create=1"


@pytest.mark.parametrize("url", ["hc-ping.com/abc", "ftp://hc-ping.com/abc", "https:///abc", "https://hc-ping.com/a#b"])
def test_a_bad_ping_url_is_refused_naming_the_variable_and_the_value(url):
    with pytest.raises(SettingsError) as refused:
        Settings.load(environ={"HEALTHCHECK_PING_URL": url})
    assert str(refused.value) == (
        f"HEALTHCHECK_PING_URL={url!r}: healthcheck_ping_url must be an http:// or https:// URL "
        f"with a host and no #fragment, got {url!r}"
    )


@pytest.mark.parametrize(
    ("url", "why"), [("http://[::1/x", "Invalid IPv6 URL"), ("https://hc-ping.com:99999/x", "Port out of range 0-65535")]
)
def test_a_ping_url_that_cannot_be_parsed_is_refused_naming_the_variable_the_value_and_why(url, why):
    with pytest.raises(SettingsError) as refused:
        Settings.load(environ={"HEALTHCHECK_PING_URL": url})
    assert str(refused.value) == (
        f"HEALTHCHECK_PING_URL={url!r}: healthcheck_ping_url must be an http:// or https:// URL "
        f"with a host and no #fragment, got {url!r} ({why})"
    )


def test_a_bad_ping_url_in_the_run_config_is_refused_naming_the_file_and_the_key(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'[tradewarden]\nstate_db = "{tmp_path / "s.db"}"\nhealthcheck_ping_url = "hc-ping.com/x"\n')
    with pytest.raises(ConfigError) as refused:
        RunConfig.load(config)
    assert str(refused.value) == (
        f"{config}: healthcheck_ping_url: healthcheck_ping_url must be an http:// or https:// URL "
        f"with a host and no #fragment, got 'hc-ping.com/x'"
    )


def test_the_ping_url_is_off_by_default_and_never_shown():
    assert Settings().healthcheck_ping_url is None
    shown = repr(Settings(healthcheck_ping_url="https://hc-ping.com/0c8f3c4e-secret"))
    assert "healthcheck_ping_url='***'" in shown and "secret" not in shown
