"""A host's own children under tradewarden's Supervisor: a plain pykka actor that waits in an
ask is not taken for hung, and one that crashes is restarted naming its exception. Real actors,
real threads, real probes."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest
from actor_helpers import WAIT, wait_until

from actors import ChildSpec, Supervisor
from actors.supervision.context import ChildContext
from actors.supervision.pykka_internals import FailureTolerantActor
from actors.supervision.supervisor import DEFAULT_LIVENESS_TIMEOUT, Restarted


class Venue(pykka.ThreadingActor):
    """Answers an ask only once ``release`` is set: a slow order at the other end."""

    use_daemon_thread = True

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.entered, self.release = entered, release

    def on_receive(self, message: Any) -> Any:
        self.entered.set()
        assert self.release.wait(WAIT)
        return "filled"


class Strategy(pykka.ThreadingActor):
    """A host's plain pykka actor: "order" waits in an ask to the venue; "bug" raises; with a
    context, "busy order" waits inside a busy section."""

    use_daemon_thread = True

    def __init__(self, venue: pykka.ActorRef[Any], context: ChildContext | None = None) -> None:
        super().__init__()
        self.venue, self.context = venue, context

    def on_receive(self, message: Any) -> Any:
        if message == "order":
            return self.venue.ask("buy", timeout=WAIT)
        if message == "busy order":
            assert self.context is not None
            with self.context.busy("venue.ask"):
                return self.venue.ask("buy", timeout=WAIT)
        if message == "bug":
            raise RuntimeError("strategy bug while holding a guard future")
        return None


class Heard:
    def __init__(self) -> None:
        self.items: list[Restarted] = []

    def __call__(self, restarted: Restarted) -> None:
        self.items.append(restarted)


@pytest.fixture
def venue():
    entered, release = threading.Event(), threading.Event()
    ref = Venue.start(entered, release)
    yield ref, entered, release
    release.set()
    ref.stop()


def test_a_plain_actor_waiting_in_an_ask_longer_than_the_probe_timeout_is_not_restarted(venue):
    # The embedding trial: a strategy asking the guard for an order behind a slow broker was
    # abandoned as hung after 2 s while its order still executed.
    ref, entered, release = venue
    heard = Heard()
    host = Supervisor.launch(
        [ChildSpec("strategy", lambda ctx: Strategy.start(ref))], probe_interval=0.05, on_restart=heard
    )
    try:
        answer = host.address("strategy").ref.ask("order", block=False)
        assert entered.wait(WAIT)
        # Longer than a probe of a supervised child may wait: nothing is restarted meanwhile.
        assert not wait_until(lambda: bool(heard.items), timeout=DEFAULT_LIVENESS_TIMEOUT + 0.5)
        release.set()
        assert answer.get(timeout=WAIT) == "filled"
        assert heard.items == []
        assert host.children()["strategy"].incarnation == 1
    finally:
        host.stop()


def test_a_plain_actor_that_crashes_is_restarted_naming_its_exception(venue):
    ref, _, _ = venue
    heard = Heard()
    host = Supervisor.launch(
        [ChildSpec("strategy", lambda ctx: Strategy.start(ref))], probe_interval=0.05, on_restart=heard
    )
    try:
        host.address("strategy").tell("bug")
        assert wait_until(lambda: bool(heard.items))
        assert heard.items == [Restarted("strategy", "RuntimeError: strategy bug while holding a guard future", 1, 2)]
    finally:
        host.stop()


def test_a_plain_actor_that_stops_on_its_own_is_still_found_dead_and_restarted(venue):
    ref, _, _ = venue
    heard = Heard()
    host = Supervisor.launch(
        [ChildSpec("strategy", lambda ctx: Strategy.start(ref))], probe_interval=0.05, on_restart=heard
    )
    try:
        host.slots["strategy"].ref.stop()
        assert wait_until(lambda: bool(heard.items))
        assert heard.items == [Restarted("strategy", "found dead by the liveness probe", 1, 2)]
    finally:
        host.stop()


def test_a_plain_actor_with_a_liveness_timeout_marks_its_long_waits_busy(venue):
    ref, entered, release = venue
    heard = Heard()
    spec = ChildSpec("strategy", lambda ctx: Strategy.start(ref, ctx), liveness_timeout=0.2)
    host = Supervisor.launch([spec], probe_interval=0.05, on_restart=heard)
    try:
        answer = host.address("strategy").ref.ask("busy order", block=False)
        assert entered.wait(WAIT)
        assert not wait_until(lambda: bool(heard.items), timeout=0.6)
        release.set()
        assert answer.get(timeout=WAIT) == "filled"
        assert heard.items == []
    finally:
        host.stop()


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "soon", True])
def test_a_liveness_timeout_that_is_no_timeout_is_refused_naming_the_value(value):
    with pytest.raises(ValueError, match=r"^liveness_timeout must be seconds > 0, None or 'default', got "):
        ChildSpec("strategy", lambda ctx: Strategy.start(None), liveness_timeout=value)


class Feed(pykka.ThreadingActor):
    """A host's plain pykka actor whose ``on_start`` fails the first ``bad_starts`` times, whose
    ``on_stop`` fails when ``bad_stop``, and which stops itself on "quit"."""

    use_daemon_thread = True
    starts = 0

    def __init__(self, bad_starts: int = 0, bad_stop: bool = False) -> None:
        super().__init__()
        self.bad_starts, self.bad_stop = bad_starts, bad_stop

    def on_start(self) -> None:
        Feed.starts += 1
        if Feed.starts <= self.bad_starts:
            raise RuntimeError("no connection to the price feed")

    def on_stop(self) -> None:
        if self.bad_stop:
            raise RuntimeError("last prices not flushed")

    def on_receive(self, message: Any) -> Any:
        if message == "quit":
            self.actor_ref.stop(block=False)
        return "alive"


def test_a_plain_actor_whose_on_start_raises_is_reported_as_failed_to_start_naming_its_exception():
    # Reported as "ActorDeadError: Feed (urn:...) stopped before handling the message" (or "not
    # found"): nothing said what had failed.
    Feed.starts = 0
    heard = Heard()
    host = Supervisor.launch([ChildSpec("feed", lambda ctx: Feed.start(bad_starts=1))], probe_interval=0.05,
                             on_restart=heard)
    try:
        assert heard.items == [Restarted("feed", "failed to start: RuntimeError: no connection to the price feed", 1, 2)]
        assert host.address("feed").ask("ping", timeout=WAIT) == "alive"
    finally:
        host.stop()


def test_a_plain_actor_whose_on_stop_raises_is_reported_as_failed_to_stop_not_as_a_crash():
    heard = Heard()
    host = Supervisor.launch([ChildSpec("feed", lambda ctx: Feed.start(bad_stop=True))], probe_interval=0.05,
                             on_restart=heard)
    try:
        host.address("feed").tell("quit")
        assert wait_until(lambda: bool(heard.items))
        assert heard.items == [Restarted("feed", "failed to stop: RuntimeError: last prices not flushed", 1, 2)]
    finally:
        host.stop()


class Tolerant(FailureTolerantActor):
    """A host's pykka actor that survives a bad told message, as its `survives` says."""

    use_daemon_thread = True

    def survives(self, exception: BaseException) -> bool:
        return isinstance(exception, ValueError)

    def on_receive(self, message: Any) -> Any:
        if message == "bad":
            raise ValueError("unreadable quote")
        return "alive"


def test_a_failure_tolerant_actor_that_survives_a_told_failure_is_not_reported_or_restarted():
    # Reported as crashed and restarted, while the incarnation that survived went on running.
    heard = Heard()
    host = Supervisor.launch([ChildSpec("quotes", lambda ctx: Tolerant.start())], probe_interval=0.05, on_restart=heard)
    try:
        first = host.slots["quotes"].ref
        host.address("quotes").tell("bad")
        assert host.address("quotes").ask("ping", timeout=WAIT) == "alive"
        assert (host.children()["quotes"].incarnation, heard.items) == (1, [])
        assert host.slots["quotes"].ref is first
    finally:
        host.stop()
