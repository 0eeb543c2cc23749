"""The alert actor tries again, with a capped backoff, an alert whose sink raised: a critical one
until it is delivered, others a few times; in order, within a bounded queue, never twice for a
sink that retries by itself. Real actors, real timers, a sink of the test's own that fails."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import pytest
from actor_helpers import WAIT, LogLines

from actors import start_trading_system
from actors.alerts import ALERT_STEP_ASIDE, AlertActor
from actors.messages import SendAlert
from actors.supervision.context import ChildContext
from runtime import ListSignalSource, MemoryStore, PaperBroker, Settings
from runtime.alerts import Alert, Severity
from runtime.backoff import Backoff
from runtime.metrics import MemoryMetrics

QUICK = Backoff(0.02, 0.1, random_factor=0.0)


class FlakySink:
    """An alert sink that raises for its first ``failures`` sends, then delivers."""

    def __init__(self, failures: int) -> None:
        self.cond = threading.Condition()
        self.failures = failures
        self.calls: list[str] = []
        self.delivered: list[str] = []

    def send(self, alert: Alert) -> None:
        with self.cond:
            self.calls.append(alert.title)
            self.cond.notify_all()
            if len(self.calls) <= self.failures:
                raise ConnectionError("my pager is down")
            self.delivered.append(alert.title)
            self.cond.notify_all()

    def wait_delivered(self, count: int) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.delivered) >= count, WAIT), (self.calls, self.delivered)
            return list(self.delivered)


def _actor(sink: object, **options: object):
    return AlertActor.start(ChildContext.standalone("alerts"), sink=sink, retry=QUICK, **options)


def test_a_critical_alert_whose_sink_raises_is_sent_again_until_it_is_delivered():
    # The embedding trial: a halt's alert met a pager that was down, and nobody was told.
    sink = FlakySink(failures=2)
    system = start_trading_system(
        Settings(), PaperBroker(10_000), ListSignalSource(), store=MemoryStore(), alerts=sink, loop_interval=None
    )
    try:
        with LogLines() as lines:
            system.halt("me", "drill")
            assert sink.wait_delivered(1) == ["Trading halted by hand"]
            lines.wait_for(lambda ls: any("delivered after" in line for line in ls))
        assert sink.calls == ["Trading halted by hand"] * 3
        logged = [line for line in lines.snapshot() if "Trading halted by hand" in line]
        assert logged[:2] == [
            "ERROR alert 'Trading halted by hand' not delivered: my pager is down; retrying in 1.0s (1 failed attempt, 1 waiting)",
            "ERROR alert 'Trading halted by hand' not delivered: my pager is down; retrying in 2.0s (2 failed attempts, 1 waiting)",
        ]
        assert len(logged) == 3
        assert logged[2].startswith("WARNING alert 'Trading halted by hand' delivered after 2 failed attempts (")
        assert logged[2].endswith("s late)")
    finally:
        system.stop(timeout=WAIT)


def test_alerts_behind_a_failing_one_wait_for_it_and_go_out_in_their_order():
    sink = FlakySink(failures=3)
    ref = _actor(sink)
    try:
        for title, severity in (
            ("Trading halted", "critical"),
            ("Slow broker", "warning"),
            ("Trading resumed", "info"),
        ):
            ref.tell(SendAlert(Alert(title, "text", severity)))
        assert sink.wait_delivered(3) == ["Trading halted", "Slow broker", "Trading resumed"]
        assert sink.calls == ["Trading halted"] * 4 + ["Slow broker", "Trading resumed"]
    finally:
        ref.stop()


def test_a_warning_is_given_up_after_its_attempts_counted_and_logged_with_its_text():
    sink, metrics = FlakySink(failures=100), MemoryMetrics()
    ref = _actor(sink, metrics=metrics, attempts=3)
    try:
        with LogLines() as lines:
            ref.tell(SendAlert(Alert("Slow broker", "submit_order took 12.0s", Severity.WARNING)))
            lines.wait_for(lambda ls: any("given up" in line for line in ls))
        assert sink.calls == ["Slow broker"] * 3
        assert [line for line in lines.snapshot() if "given up" in line] == [
            "ERROR alert 'Slow broker' (warning) not delivered: given up after 3 failed attempts; last error: "
            "my pager is down; its text: submit_order took 12.0s"
        ]
        assert metrics.counters["alerts_dropped_total"] == 1
        assert ref.proxy().waiting.get(timeout=WAIT) == []
    finally:
        ref.stop()


def test_a_full_queue_drops_its_oldest_non_critical_alert_and_keeps_every_critical_one():
    sink, metrics = FlakySink(failures=100), MemoryMetrics()
    ref = AlertActor.start(
        ChildContext.standalone("alerts"),
        sink=sink,
        metrics=metrics,
        retry=Backoff(60.0, 60.0, random_factor=0.0),
        queue_limit=3,
    )
    try:
        with LogLines() as lines:
            ref.tell(SendAlert(Alert("Halt 1", "a", Severity.CRITICAL)))
            ref.tell(SendAlert(Alert("Slow 1", "b", Severity.WARNING)))
            ref.tell(SendAlert(Alert("Halt 2", "c", Severity.CRITICAL)))
            ref.tell(SendAlert(Alert("Halt 3", "d", Severity.CRITICAL)))
            ref.tell(SendAlert(Alert("Halt 4", "e", Severity.CRITICAL)))
            waiting = ref.proxy().waiting.get(timeout=WAIT)
        assert [a.title for a in waiting] == ["Halt 1", "Halt 3", "Halt 4"]
        assert sink.calls == ["Halt 1"], "the sink is not hammered: one try, then the backoff"
        assert [line for line in lines.snapshot() if "full" in line] == [
            "ERROR alert 'Slow 1' (warning) not delivered: the queue of alerts waiting for a retry is full (3); its text: b",
            "CRITICAL alert 'Halt 2' (critical) not delivered: the queue of alerts waiting for a retry is full (3); its text: c",
        ]
        assert metrics.counters["alerts_dropped_total"] == 2
        with LogLines() as lines:
            ref.stop()
        behind = "the alert actor stopped while it waited behind an alert the sink refused"
        assert [line for line in lines.snapshot() if "stopped" in line] == [
            "CRITICAL alert 'Halt 1' (critical) not delivered: the alert actor stopped while it waited for a retry "
            "(1 failed attempt; last error: ConnectionError: my pager is down); its text: a",
            f"CRITICAL alert 'Halt 3' (critical) not delivered: {behind}; its text: d",
            f"CRITICAL alert 'Halt 4' (critical) not delivered: {behind}; its text: e",
        ]
        assert metrics.counters["alerts_dropped_total"] == 5
    finally:
        if ref.is_alive():
            ref.stop()


class SelfRetryingSink(FlakySink):
    retries_itself = True


def test_a_sink_that_retries_by_itself_is_never_sent_the_same_alert_again():
    sink, metrics = SelfRetryingSink(failures=1), MemoryMetrics()
    ref = _actor(sink, metrics=metrics)
    try:
        with LogLines() as lines:
            ref.tell(SendAlert(Alert("Trading halted", "drill", Severity.CRITICAL)))
            ref.tell(SendAlert(Alert("Trading resumed", "by me", Severity.INFO)))
            assert sink.wait_delivered(1) == ["Trading resumed"]
        assert sink.calls == ["Trading halted", "Trading resumed"]
        assert [line for line in lines.snapshot() if "Trading halted" in line] == [
            "CRITICAL alert 'Trading halted' (critical) not delivered: my pager is down (the sink retries by itself, "
            "so it is not sent again); its text: drill"
        ]
        assert metrics.counters["alerts_dropped_total"] == 1
    finally:
        ref.stop()


@pytest.mark.parametrize(("field", "value"), [("attempts", 0), ("queue_limit", 0), ("attempts", True)])
def test_bad_limits_are_refused_naming_the_field_and_value(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be a whole number >= 1, got {value!r}$"):
        AlertActor(ChildContext.standalone("alerts"), **{field: value})


class PoisonSink(FlakySink):
    """A sink that can never take one alert (its title ``refused``) and delivers every other."""

    def __init__(self, refused: str) -> None:
        super().__init__(failures=0)
        self.refused = refused

    def send(self, alert: Alert) -> None:
        if alert.title == self.refused:
            with self.cond:
                self.calls.append(alert.title)
            raise ValueError("Bad Request: message is too long")
        super().send(alert)


def test_an_alert_the_sink_can_never_take_steps_aside_and_the_later_ones_go_out():
    # Retried for ever at the head of the queue, it held back every later alert, the next breach's too.
    sink = PoisonSink("Trading halted")
    ref = _actor(sink)
    try:
        with LogLines() as lines:
            for title in ("Trading halted", "Guard breach", "Trading resumed"):
                ref.tell(SendAlert(Alert(title, "text", Severity.CRITICAL)))
            assert sink.wait_delivered(2) == ["Guard breach", "Trading resumed"]
        assert sink.calls[:5] == ["Trading halted"] * 5  # in order until it had been refused that often
        assert "WARNING alert 'Trading halted' still not delivered after 5 failed attempts: the alert after it is tried first" in (
            lines.snapshot())
        assert [alert.title for alert in ref.proxy().waiting.get(timeout=WAIT)] == ["Trading halted"]  # still retried
    finally:
        ref.stop()


class RefusedAtFirst:
    """A sink that refuses one alert (its title ``refused``) ``times`` times, then takes it; it
    takes every other alert at once, and keeps the texts it took in order."""

    def __init__(self, refused: str, times: int) -> None:
        self.cond = threading.Condition()
        self.refused, self.times = refused, times
        self.taken: list[str] = []

    def send(self, alert: Alert) -> None:
        with self.cond:
            if alert.title == self.refused and self.times > 0:
                self.times -= 1
                raise ConnectionError("my pager is down")
            self.taken.append(alert.render())
            self.cond.notify_all()

    def wait_taken(self, count: int) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.taken) >= count, WAIT), self.taken
            return list(self.taken)


def test_an_alert_that_stepped_aside_says_it_is_late_and_when_it_was_raised():
    # It arrived after the alerts raised after it, with nothing to say so: a reader took it as news.
    sink = RefusedAtFirst("Trading halted", times=ALERT_STEP_ASIDE)
    ref = _actor(sink)
    try:
        before = datetime.now(UTC).replace(microsecond=0)
        for title, text in (("Trading halted", "halted by desk: news"), ("Guard breach", "drawdown 12%"),
                            ("Trading resumed", "by desk")):
            ref.tell(SendAlert(Alert(title, text, Severity.CRITICAL)))
        taken = sink.wait_taken(3)
        after = datetime.now(UTC)
    finally:
        ref.stop()
    # Refused five times, it stepped behind the breach, and went out after it, before the resume.
    assert (taken[0], taken[2]) == ("[CRITICAL] Guard breach\ndrawdown 12%", "[CRITICAL] Trading resumed\nby desk")
    late = re.fullmatch(r"\[CRITICAL\] Trading halted\n\(Late: raised at (.+) UTC; alerts raised after it were "
                        r"delivered first\.\)\nhalted by desk: news", taken[1])
    assert late is not None, taken[1]
    assert before <= datetime.strptime(late[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) <= after


def test_alerts_delivered_in_their_order_carry_no_late_mark():
    sink = RefusedAtFirst("Trading halted", times=2)  # fewer refusals than a step aside: the order holds
    ref = _actor(sink)
    try:
        ref.tell(SendAlert(Alert("Trading halted", "halted by desk: news", Severity.CRITICAL)))
        ref.tell(SendAlert(Alert("Trading resumed", "by desk", Severity.CRITICAL)))
        assert sink.wait_taken(2) == ["[CRITICAL] Trading halted\nhalted by desk: news", "[CRITICAL] Trading resumed\nby desk"]
    finally:
        ref.stop()
