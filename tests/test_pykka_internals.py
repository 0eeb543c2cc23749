"""pykka's private parts that tradewarden relies on, checked against the installed pykka: if an
upgrade changes one, this fails first and says what to look at in
`actors/supervision/pykka_internals.py`."""

from __future__ import annotations

import threading

import pykka
import pykka.messages
import pytest

from actors.supervision import pykka_internals as internals

WAIT = 5.0


class Parked(pykka.ThreadingActor):
    """Blocks on its first message until released, so later mail stays in its inbox."""

    def __init__(self, release: threading.Event, parked: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.parked = parked

    def on_receive(self, message):
        if message == "park":
            self.parked.set()
            self.release.wait(WAIT)
        return ("got", message)


@pytest.fixture
def parked():
    release, is_parked = threading.Event(), threading.Event()
    ref = Parked.start(release, is_parked)
    ref.tell("park")
    assert is_parked.wait(WAIT)
    yield ref, release
    release.set()
    ref.stop()


def test_the_private_names_still_exist_where_they_are_used():
    assert hasattr(pykka.messages, "_ActorStop"), "pykka.messages._ActorStop is gone: update is_stop_request"
    assert callable(getattr(pykka.Actor, "_handle_failure", None)), (
        "pykka.Actor._handle_failure is gone: FailureTolerantActor can no longer keep an actor alive"
    )
    ref = Parked.start(threading.Event(), threading.Event())
    try:
        inbox = getattr(ref, "actor_inbox", None)
        assert hasattr(inbox, "get_nowait") and hasattr(inbox, "put"), (
            "ActorRef.actor_inbox is no longer a queue: take_waiting_mail and redeliver need another way in"
        )
    finally:
        ref.stop()


def test_waiting_mail_is_taken_with_its_message_and_reply_and_can_be_redelivered_whole(parked):
    ref, release = parked
    ref.tell("told")
    future = ref.ask("asked", block=False)
    ref.stop(block=False)
    taken = internals.take_waiting_mail(ref)
    messages = [internals.message_of(e) for e in taken]
    assert messages[:2] == ["told", "asked"], f"envelope.message changed: {messages!r}"
    assert internals.is_stop_request(messages[2]), f"ActorRef.stop no longer sends _ActorStop: {messages[2]!r}"
    assert [internals.is_ask(e) for e in taken] == [False, True, True], "envelope.reply_to changed"
    other = Parked.start(threading.Event(), threading.Event())
    internals.redeliver(other, taken[1])
    assert future.get(timeout=WAIT) == ("got", "asked"), "a redelivered envelope no longer answers its asker"
    internals.answer(taken[2], None)
    other.stop()
    release.set()


def test_an_asker_can_be_answered_or_failed_through_its_envelope(parked):
    ref, _ = parked
    first, second = ref.ask("one", block=False), ref.ask("two", block=False)
    one, two = internals.take_waiting_mail(ref)
    internals.answer(one, 42)
    internals.fail(two, pykka.ActorDeadError("gone"))
    assert first.get(timeout=WAIT) == 42
    with pytest.raises(pykka.ActorDeadError, match=r"^gone$"):
        second.get(timeout=WAIT)


def test_a_told_failure_reaches_handle_failure_and_a_failure_tolerant_actor_lives_on():
    class Tolerant(internals.FailureTolerantActor):
        survived: list[str] = []

        def survives(self, exception):
            return isinstance(exception, KeyError)

        def on_told_failure_survived(self, exception):
            Tolerant.survived.append(repr(exception))

        def on_receive(self, message):
            if message == "fail":
                raise KeyError("tolerated")
            return "alive"

    ref = Tolerant.start()
    ref.tell("fail")
    assert ref.ask("ping", timeout=WAIT) == "alive", "pykka no longer routes told failures through _handle_failure"
    assert Tolerant.survived == ["KeyError('tolerated')"]
    ref.stop()


def test_a_plain_actors_told_failure_is_recorded_before_it_is_seen_dead():
    class Plain(pykka.ThreadingActor):
        def on_receive(self, message):
            raise RuntimeError(message)

    ref = Plain.start()
    seen: list[tuple[object, bool, bool]] = []
    assert internals.on_told_failure(ref, lambda exc, stopping: seen.append((exc, stopping, ref.is_alive())))
    ref.tell("boom")
    assert ref.actor_stopped.wait(WAIT)
    [(exc, stopping, alive_then)] = seen
    assert (type(exc), str(exc), stopping, alive_then) == (RuntimeError, "boom", False, True)
    assert not internals.on_told_failure(ref, lambda exc, stopping: None), "a dead actor is not hooked"


def test_an_on_stop_failure_is_recorded_as_one_of_an_actor_already_stopping():
    # pykka marks the actor stopped before its on_stop runs: that is how the two are told apart.
    class Plain(pykka.ThreadingActor):
        def on_stop(self):
            raise RuntimeError("not flushed")

    ref = Plain.start()
    seen: list[tuple[str, bool]] = []
    assert internals.on_told_failure(ref, lambda exc, stopping: seen.append((repr(exc), stopping)))
    ref.stop()
    assert seen == [("RuntimeError('not flushed')", True)]


def test_a_failure_tolerant_actor_is_recorded_only_for_a_failure_it_does_not_survive():
    class Tolerant(internals.FailureTolerantActor):
        def survives(self, exception):
            return isinstance(exception, KeyError)

        def on_receive(self, message):
            raise KeyError(message) if message == "tolerated" else RuntimeError(message)

    ref = Tolerant.start()
    seen: list[tuple[str, bool]] = []
    assert internals.on_told_failure(ref, lambda exc, stopping: seen.append((repr(exc), stopping)))
    ref.tell("tolerated")
    ref.tell("fatal")
    assert ref.actor_stopped.wait(WAIT)
    assert seen == [("RuntimeError('fatal')", False)]


def test_what_an_on_start_raised_is_read_from_the_line_pykka_logs():
    # Nothing can hook the actor before its on_start runs: pykka's "Unhandled exception in
    # <actor>:" line is the only place that exception is kept.
    class Plain(pykka.ThreadingActor):
        def on_start(self):
            raise RuntimeError("no feed")

    ref = Plain.start()
    assert ref.actor_stopped.wait(WAIT)
    assert internals.start_failure(ref) == "RuntimeError: no feed"
    assert internals.start_failure(ref) is None, "taken once"
