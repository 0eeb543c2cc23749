"""Busy is not hung (busy sections, their bound, progress on start), asks keep their promise across
a dying incarnation, and a restart names the exception that caused it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka
import pytest
from actor_helpers import WAIT, Journal, LogLines, Recorder, wait_until

from actors import ChildSpec, Supervisor
from actors.messages import Crash, Hang
from actors.supervision.address import Slot
from actors.supervision.base import SupervisedActor
from actors.supervision.context import BusySection, ChildContext, IncarnationRevoked
from actors.supervision.supervisor import Overdue, Restarted


class Heard:
    """Collects what a supervisor hook hears, with a way to wait for it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait(self, count: int = 1) -> list[Any]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= count, WAIT), self.items
            return list(self.items)


class Slow(SupervisedActor):
    """A child whose ("busy", what, bound, entered, release) waits for ``release`` inside a busy
    section, as a slow broker call would; ("echo", x) answers x with its incarnation."""

    def handle(self, message: Any) -> Any:
        if message[0] == "busy":
            _, what, bound, entered, release = message
            with self.context.busy(what, bound):
                entered.set()
                release.wait(WAIT)
            return self.context.incarnation
        return (message[1], self.context.incarnation)


class SlowStart(Slow):
    """A child whose start waits inside a busy section until ``release`` is set."""

    release = threading.Event()

    def prepare(self) -> None:
        with self.context.busy("broker.account_equity", bound=0.5):
            SlowStart.release.wait(WAIT)


class SlowCleanup(Recorder):
    """A Recorder whose cleanup waits for ``release``: its exit report comes late, so the
    liveness probe finds it dead first."""

    release = threading.Event()

    def cleanup(self) -> None:
        SlowCleanup.release.wait(WAIT)
        super().cleanup()


def test_a_child_inside_a_busy_section_is_not_abandoned_however_long_its_probe_waits():
    overdue = Heard()
    handle = Supervisor.launch(
        [ChildSpec("slow", Slow.start, liveness_timeout=0.05)], probe_interval=0.02, on_overdue=overdue
    )
    try:
        slow = handle.address("slow")
        entered, release = threading.Event(), threading.Event()
        slow.tell(("busy", "broker.submit_order", 0.5, entered, release))
        assert entered.wait(WAIT)
        # Past the bound, ten times the probe's timeout has gone by with the probe unanswered.
        assert overdue.wait()[0].what == "broker.submit_order"
        assert handle.children()["slow"].incarnation == 1
        release.set()
        assert slow.ask(("echo", "after")) == ("after", 1)
        assert handle.children()["slow"].restarts == 0
    finally:
        handle.stop()


def test_a_busy_section_past_its_bound_is_reported_once_at_critical_and_the_child_lives_on():
    overdue = Heard()
    handle = Supervisor.launch(
        [ChildSpec("slow", Slow.start, liveness_timeout=0.05)], probe_interval=0.02, on_overdue=overdue
    )
    try:
        entered, release = threading.Event(), threading.Event()
        with LogLines("CRITICAL") as lines:
            handle.address("slow").tell(("busy", "broker.close_position", 0.2, entered, release))
            (heard,) = overdue.wait()
            assert isinstance(heard, Overdue)
            assert (heard.actor, heard.incarnation, heard.what, heard.bound) == ("slow", 1, "broker.close_position", 0.2)
            assert heard.seconds > 0.2
            # A few more probe rounds while it is still inside: no second report.
            assert not wait_until(lambda: len(overdue.items) > 1, timeout=0.3)
            release.set()
            assert handle.address("slow").ask(("echo", 1)) == (1, 1)
        reports = [line for line in lines.snapshot() if "past its" in line]
        assert len(reports) == 1
        assert reports[0].startswith("CRITICAL slow incarnation 1 has been inside broker.close_position for ")
        assert reports[0].endswith("s, past its 0.2s bound; not abandoned")
    finally:
        handle.stop()


def test_a_section_past_its_bound_is_reported_within_a_probe_interval_not_after_the_probes_timeout():
    # The embedding trial: "Call overdue" for a 1 s bound came at 5.5 s, because each probe
    # waited the whole liveness timeout for the busy child's answer before it looked at bounds.
    overdue = Heard()
    handle = Supervisor.launch(
        [ChildSpec("slow", Slow.start, liveness_timeout=3.0)], probe_interval=0.02, on_overdue=overdue
    )
    try:
        entered, release = threading.Event(), threading.Event()
        handle.address("slow").tell(("busy", "broker.submit_order", 0.2, entered, release))
        (heard,) = overdue.wait()
        assert (heard.what, heard.bound) == ("broker.submit_order", 0.2)
        assert 0.2 < heard.seconds < 3.0, heard
        release.set()
        assert handle.address("slow").ask(("echo", 1)) == (1, 1)
    finally:
        handle.stop()


def test_a_hung_child_outside_any_busy_section_is_still_abandoned():
    journal = Journal()
    restarts = Heard()
    handle = Supervisor.launch(
        [ChildSpec("r", lambda ctx: Recorder.start(ctx, journal), liveness_timeout=0.1)],
        probe_interval=0.02, on_restart=restarts, drills=True,
    )
    try:
        release = threading.Event()
        handle.address("r").tell(Hang(release))
        assert restarts.wait()[0].cause == "no answer to a liveness probe within 0.1s"
        release.set()
    finally:
        handle.stop()


def test_a_start_inside_a_busy_section_is_not_a_failed_start():
    SlowStart.release.clear()
    overdue = Heard()

    def release_when_overdue(item: Overdue) -> None:
        overdue(item)
        SlowStart.release.set()

    # The start takes longer than its timeout (0.1s) and its bound (0.5s), busy all the while.
    handle = Supervisor.launch(
        [ChildSpec("slow", SlowStart.start, liveness_timeout=0.05)],
        probe_interval=0.02, start_timeout=0.1, max_restarts=0, on_overdue=release_when_overdue,
    )
    try:
        assert overdue.wait()[0].what == "broker.account_equity"
        assert handle.address("slow").ask(("echo", "up")) == ("up", 1)
    finally:
        handle.stop()


def test_a_guarded_busy_port_runs_each_call_in_a_section_and_reports_a_slow_one_when_it_returns():
    context = ChildContext.standalone("guard")
    slow_calls: list[BusySection] = []

    class Port:
        def quick(self) -> str:
            return context.busy_sections()[0].what

        def slow(self) -> str:
            assert wait_until(lambda: context.busy_sections()[0].overdue())
            return "done"

        def fails_slowly(self) -> None:
            assert wait_until(lambda: context.busy_sections()[0].overdue())
            raise RuntimeError("broker down")

    port = context.guarded(Port(), busy="broker", bound=0.05, on_slow=slow_calls.append)
    assert port.quick() == "broker.quick"
    assert slow_calls == [] and context.busy_sections() == [] and context.progress == 1
    assert port.slow() == "done"
    with pytest.raises(RuntimeError, match=r"^broker down$"):
        port.fails_slowly()
    assert [s.what for s in slow_calls] == ["broker.slow", "broker.fails_slowly"]
    assert all(s.elapsed() > 0.05 for s in slow_calls)
    context.revoke()
    with pytest.raises(IncarnationRevoked, match=r"^guard incarnation 1 was abandoned; call 'quick' refused$"):
        port.quick()


def test_a_busy_section_refuses_a_bound_that_is_not_positive():
    with pytest.raises(ValueError, match=r"^bound must be > 0 seconds or None, got 0$"):
        with ChildContext.standalone("x").busy("call", 0):
            pass


def test_an_ask_after_a_crash_waits_for_the_next_incarnation_thousands_of_times_without_actor_dead():
    journal = Journal()
    handle = Supervisor.launch(
        [ChildSpec("r", lambda ctx: Recorder.start(ctx, journal), liveness_timeout=1.0)],
        probe_interval=0.01, max_restarts=1_000_000, within_seconds=1.0, drills=True,
    )
    address = handle.address("r")
    dead: list[BaseException] = []
    pairs = 0
    deadline = time.monotonic() + 40.0
    try:
        while pairs < 3000 and time.monotonic() < deadline:
            address.tell(Crash("crash-and-ask"))
            try:
                answer, _ = address.ask(("echo", pairs), timeout=WAIT)
            except pykka.ActorDeadError as exc:
                dead.append(exc)
            else:
                assert answer == pairs
            pairs += 1
    finally:
        handle.stop()
    assert dead == []
    assert pairs >= 500, f"only {pairs} crash-and-ask pairs ran in 40s"
    handled = [e for e in journal.snapshot() if e[0] == "got"]
    assert handled == []  # every echo was answered, none was taken as something else


def test_a_restart_names_the_exception_even_when_the_probe_finds_the_child_dead_first():
    SlowCleanup.release.clear()
    journal = Journal()
    restarts = Heard()
    handle = Supervisor.launch(
        [ChildSpec("r", lambda ctx: SlowCleanup.start(ctx, journal), liveness_timeout=0.5)],
        probe_interval=0.02, on_restart=restarts, drills=True,
    )
    try:
        handle.address("r").tell(Crash("boom in a told message"))
        (restarted,) = restarts.wait()
        assert isinstance(restarted, Restarted)
        # Its cleanup still holds its report back: the probe saw it dead first.
        assert not SlowCleanup.release.is_set()
        assert restarted.cause == "RuntimeError: boom in a told message"
    finally:
        SlowCleanup.release.set()
        handle.stop()


class _DiesBetweenLookupAndDelivery:
    """A dead ref that still looks alive to the slot's first look, as one dying at that moment
    would; its second look says it is dead and sets ``looked_twice``."""

    def __init__(self, dead: pykka.ActorRef[Any]) -> None:
        self._dead = dead
        self._looks = 0
        self.looked_twice = threading.Event()

    def is_alive(self) -> bool:
        self._looks += 1
        if self._looks >= 2:
            self.looked_twice.set()
        return self._looks == 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dead, name)


class Echo(pykka.ThreadingActor):
    """A plain pykka actor: ("echo", x) answers x; ("block", entered, release) waits, then fails
    (a told failure stops it before its waiting mail); ("raise_dead",) raises ActorDeadError from the handler, counting each time."""

    raised = 0

    def on_receive(self, message: Any) -> Any:
        if message[0] == "block":
            message[1].set()
            message[2].wait(WAIT)
            raise RuntimeError("a told failure stops it at once, mail and all")
        if message[0] == "raise_dead":
            Echo.raised += 1
            raise pykka.ActorDeadError("some other actor not found")
        return message[1]


def _ask_in_background(slot: Slot, message: Any) -> tuple[threading.Event, list[Any]]:
    done, result = threading.Event(), []

    def run() -> None:
        try:
            result.append(slot.ask(message, WAIT))
        except Exception as exc:
            result.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, result


def test_an_ask_whose_ref_dies_between_lookup_and_delivery_goes_to_the_next_incarnation():
    dead = Echo.start()
    dead.stop()
    slot = Slot("echo")
    dying = _DiesBetweenLookupAndDelivery(dead)
    slot.install(dying, 1)  # type: ignore[arg-type]
    done, result = _ask_in_background(slot, ("echo", "hello"))
    assert dying.looked_twice.wait(WAIT)
    successor = Echo.start()
    try:
        slot.install(successor, 2)
        assert done.wait(WAIT)
        assert result == ["hello"]
    finally:
        successor.stop()


def test_an_ask_left_unhandled_in_a_stopping_inbox_is_sent_to_the_next_incarnation():
    first = Echo.start()
    slot = Slot("echo")
    slot.install(first, 1)
    entered, release = threading.Event(), threading.Event()
    first.tell(("block", entered, release))
    assert entered.wait(WAIT)
    done, result = _ask_in_background(slot, ("echo", "queued"))
    assert wait_until(lambda: first.actor_inbox.qsize() == 1)
    release.set()  # it stops with the ask still in its inbox: pykka fails it, unhandled
    assert first.actor_stopped.wait(WAIT)
    successor = Echo.start()
    try:
        slot.install(successor, 2)
        assert done.wait(WAIT)
        assert result == ["queued"]
    finally:
        successor.stop()


def test_an_ask_whose_handler_raised_actor_dead_is_not_sent_again():
    Echo.raised = 0
    ref = Echo.start()
    slot = Slot("echo")
    slot.install(ref, 1)
    try:
        with pytest.raises(pykka.ActorDeadError, match=r"^some other actor not found$"):
            slot.ask(("raise_dead",), WAIT)
        assert Echo.raised == 1
    finally:
        ref.stop()
