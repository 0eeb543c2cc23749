"""The supervisor, tested with real pykka actors and real threads: every way a child can end,
the three strategies, restart intensity, the fail-safe, escalation, backoff and the stash."""

from __future__ import annotations

import threading

import pykka
import pytest
from actor_helpers import WAIT, Journal, LogLines, Recorder, wait_until

from actors import Address, Backoff, ChildSpec, Restart, StashOverflow, Strategy, Supervisor
from actors.messages import Crash, Hang, Ping
from actors.supervision.supervisor import Restarted


@pytest.fixture(autouse=True)
def _reset_start_failures():
    Recorder.start_failures.clear()
    yield
    Recorder.start_failures.clear()


def recorder_spec(name: str, journal: Journal, **kw) -> ChildSpec:
    return ChildSpec(name, lambda ctx: Recorder.start(ctx, journal), **kw)


class Notes:
    """Collects what the supervisor's ``on_restart`` hook hears."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[Restarted] = []

    def __call__(self, restarted: Restarted) -> None:
        with self.cond:
            self.items.append(restarted)
            self.cond.notify_all()

    def wait(self, count: int) -> list[Restarted]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= count, WAIT), self.items
            return list(self.items)


def launch(names, journal, notes=None, **options):
    specs = [recorder_spec(n, journal, liveness_timeout=0.3) for n in names]
    options.setdefault("probe_interval", 0.05)
    return Supervisor.launch(specs, on_restart=notes, drills=True, **options)


def incarnation(address: Address) -> int:
    return address.ask(("echo", None))[1]


def test_children_start_in_order_and_stop_in_reverse_order():
    journal = Journal()
    handle = launch("abc", journal)
    assert [e[1] for e in journal.snapshot() if e[0] == "started"] == ["a", "b", "c"]
    handle.stop()
    assert [e[1] for e in journal.snapshot() if e[0] == "ended"] == ["c", "b", "a"]
    assert handle.wait(WAIT)


def test_a_child_that_crashes_on_a_told_message_is_restarted_and_later_mail_reaches_the_new_one():
    journal, notes = Journal(), Notes()
    handle = launch("ab", journal, notes)
    address = handle.address("a")
    address.tell(Crash("boom"))
    address.tell("after-crash-1")
    address.tell("after-crash-2")
    journal.wait_for(lambda es: ("got", "a", 2, "after-crash-2") in es)
    got = [e for e in journal.snapshot() if e[0] == "got"]
    assert got == [("got", "a", 2, "after-crash-1"), ("got", "a", 2, "after-crash-2")]
    [restart] = notes.wait(1)
    assert restart == Restarted(actor="a", cause="RuntimeError: boom", attempt=1, incarnation=2)
    assert incarnation(handle.address("b")) == 1, "one_for_one restarts only the failed child"
    handle.stop()


def test_an_ask_waiting_in_a_crashed_childs_mailbox_is_answered_by_the_next_incarnation():
    journal = Journal()
    handle = launch("a", journal)
    address = handle.address("a")
    hold = threading.Event()
    address.tell(Hang(hold, seconds=WAIT))  # keeps the mailbox full while we queue behind it
    address.tell(Crash("boom"))
    future = pykka.ThreadingFuture()
    answer = {}

    def ask() -> None:
        answer["value"] = address.ask(("echo", "still here"), timeout=WAIT)
        future.set(None)

    threading.Thread(target=ask, daemon=True).start()
    hold.set()
    future.get(timeout=WAIT)
    assert answer["value"] == ("still here", 2)
    handle.stop()


def test_a_child_whose_start_fails_is_started_again():
    journal, notes = Journal(), Notes()
    handle = launch("ab", journal, notes)
    Recorder.start_failures["a"] = 1
    handle.address("a").tell(Crash("first"))
    assert incarnation(handle.address("a")) == 3
    assert ("start_failed", "a", 2) in journal.snapshot()
    [note] = notes.wait(1)
    assert note == Restarted(actor="a", cause="RuntimeError: a refuses to start", attempt=2, incarnation=3)
    handle.stop()


def test_a_permanent_child_that_stops_on_its_own_is_restarted():
    journal = Journal()
    handle = launch("a", journal)
    handle.address("a").tell("stop_self")
    journal.wait_for(lambda es: ("started", "a", 2) in es)
    handle.stop()


def test_a_transient_child_that_stops_normally_stays_stopped_but_one_that_crashes_restarts():
    journal = Journal()
    specs = [
        ChildSpec("t1", lambda ctx: Recorder.start(ctx, journal), restart=Restart.TRANSIENT),
        ChildSpec("t2", lambda ctx: Recorder.start(ctx, journal), restart=Restart.TRANSIENT),
    ]
    handle = Supervisor.launch(specs, probe_interval=0.05, drills=True)
    handle.address("t1").tell("stop_self")
    handle.address("t2").tell(Crash())
    journal.wait_for(lambda es: ("started", "t2", 2) in es)
    # t1's own exit report may reach the supervisor after t2's restart: wait for it, not for time.
    assert wait_until(lambda: handle.children()["t1"].alive is False)
    children = handle.children()
    assert children["t1"].alive is False and children["t1"].incarnation == 1
    assert children["t2"].alive is True
    with pytest.raises(Exception, match="stopped"):
        handle.address("t1").tell("anything")
    handle.stop()


def test_a_temporary_child_is_never_restarted():
    journal = Journal()
    handle = Supervisor.launch([ChildSpec("tmp", lambda ctx: Recorder.start(ctx, journal), restart="temporary")], drills=True)
    handle.address("tmp").tell(Crash())
    journal.wait_for(lambda es: ("ended", "tmp", 1, "crashed") in es)
    assert handle.children()["tmp"].alive is False
    assert [e for e in journal.snapshot() if e[0] == "started"] == [("started", "tmp", 1)]
    handle.stop()


def test_a_hung_child_is_abandoned_replaced_and_can_do_no_harm_when_it_wakes():
    journal = Journal()
    handle = launch("ab", journal)
    hung = handle.address("a")
    release = threading.Event()
    hung.tell(Hang(release, seconds=WAIT))
    hung.tell("queued-behind-the-hang")
    journal.wait_for(lambda es: ("started", "a", 2) in es)
    # the message that waited behind the hang went to the new incarnation, not the old one
    journal.wait_for(lambda es: ("got", "a", 2, "queued-behind-the-hang") in es)
    assert incarnation(hung) == 2
    release.set()
    journal.wait_for(lambda es: ("ended", "a", 1, "normal") in es)
    assert not any(e[:3] == ("got", "a", 1) for e in journal.snapshot())
    handle.stop()


def test_an_abandoned_incarnations_ports_and_addresses_refuse_to_act():
    from actors.supervision.context import ChildContext, IncarnationRevoked

    class Port:
        def send(self) -> str:
            return "sent"

    journal = Journal()
    handle = launch("a", journal)
    context = ChildContext("x", 1, slots=handle.slots)
    port = context.guarded(Port())
    sibling = context.address("a")
    assert port.send() == "sent"
    context.revoke()
    with pytest.raises(IncarnationRevoked, match="abandoned"):
        port.send()
    sibling.tell("from a ghost")
    assert incarnation(handle.address("a")) == 1
    assert not any(e[0] == "got" for e in journal.snapshot())
    handle.stop()


def test_one_for_all_restarts_every_child_in_start_order():
    journal = Journal()
    handle = launch("abc", journal, strategy=Strategy.ONE_FOR_ALL)
    handle.address("b").tell(Crash())
    entries = journal.wait_for(lambda es: ("started", "c", 2) in es)
    after = entries[entries.index(("started", "c", 1)) + 1 :]
    assert [e for e in after if e[0] == "ended"] == [("ended", "b", 1, "crashed"), ("ended", "c", 1, "normal"), ("ended", "a", 1, "normal")]
    assert [e for e in after if e[0] == "started"] == [("started", "a", 2), ("started", "b", 2), ("started", "c", 2)]
    handle.stop()


def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it_only():
    journal = Journal()
    handle = launch("abcd", journal, strategy=Strategy.REST_FOR_ONE)
    handle.address("b").tell(Crash())
    entries = journal.wait_for(lambda es: ("started", "d", 2) in es)
    restarted = [e[1] for e in entries if e[0] == "started" and e[2] == 2]
    assert restarted == ["b", "c", "d"]
    stopped = [e[1] for e in entries if e[0] == "ended" and e[3] == "normal"]
    assert stopped == ["d", "c"], "siblings stop in reverse order"
    assert incarnation(handle.address("a")) == 1
    handle.stop()


def test_past_the_restart_intensity_the_supervisor_stops_everything_runs_its_fail_safe_and_ends():
    journal = Journal()
    fail_safe_causes = []
    handle = launch("ab", journal, max_restarts=2, within_seconds=60, fail_safe=fail_safe_causes.append)
    address = handle.address("a")
    for expected in (2, 3):
        address.tell(Crash())
        journal.wait_for(lambda es, n=expected: ("started", "a", n) in es)
    address.tell(Crash())
    assert handle.wait(WAIT), "the supervisor ends when it gives up"
    assert handle.gave_up.is_set()
    assert len(fail_safe_causes) == 1 and "exceeded 2 within 60" in fail_safe_causes[0]
    ended = [e for e in journal.snapshot() if e[0] == "ended" and e[3] == "normal"]
    assert ended == [("ended", "b", 1, "normal")]
    with pytest.raises(Exception, match="stopped"):
        address.tell("after giving up")


def test_restarts_older_than_the_period_do_not_count_towards_the_intensity():
    from actors.supervision.context import ChildContext
    from runtime.clock import ManualClock

    clock = ManualClock()
    journal = Journal()
    specs = [recorder_spec("a", journal)]
    handle = Supervisor.launch(specs, context=ChildContext.standalone("sup", clock), max_restarts=1, within_seconds=10, drills=True)
    address = handle.address("a")
    for n in range(2, 6):
        address.tell(Crash())
        journal.wait_for(lambda es, n=n: ("started", "a", n) in es)
        clock.advance(11)
    assert not handle.gave_up.is_set()
    handle.stop()


def test_escalation_reaches_the_parent_which_restarts_the_whole_child_supervisor():
    journal, parent_notes = Journal(), Notes()
    inner_specs = [recorder_spec("worker", journal)]
    inner_slots = {}

    def start_inner(ctx):
        handle = Supervisor.launch(inner_specs, context=ctx, max_restarts=0, slots=inner_slots or None, drills=True)
        inner_slots.update(handle.slots)
        return handle.ref

    parent = Supervisor.launch([ChildSpec("inner", start_inner)], on_restart=parent_notes, probe_interval=0.05)
    Address(inner_slots["worker"]).tell(Crash("fatal"))
    [note] = parent_notes.wait(1)
    assert note.actor == "inner" and "exceeded 0 within" in note.cause
    journal.wait_for(lambda es: ("started", "worker", 1) in es and es.count(("started", "worker", 1)) == 2)
    assert Address(inner_slots["worker"]).ask(("echo", "back"), timeout=WAIT) == ("back", 1)
    parent.stop()


def test_backoff_delays_the_restart():
    journal = Journal()
    handle = launch("a", journal, backoff=Backoff(min_seconds=0.3, max_seconds=1.0, random_factor=0.0))
    import time

    crashed_at = time.monotonic()
    handle.address("a").tell(Crash())
    journal.wait_for(lambda es: ("started", "a", 2) in es)
    assert time.monotonic() - crashed_at >= 0.3
    handle.stop()


def test_backoff_grows_exponentially_and_is_capped():
    import random

    backoff = Backoff(min_seconds=0.1, max_seconds=1.0, random_factor=0.0)
    rng = random.Random(1)
    assert [backoff.delay(n, rng) for n in (1, 2, 3, 4, 5, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    jittered = Backoff(min_seconds=1.0, max_seconds=1.0, random_factor=0.5)
    assert all(1.0 <= jittered.delay(1, rng) <= 1.5 for _ in range(100))


def test_messages_sent_while_a_child_waits_to_restart_are_stashed_and_delivered_in_order():
    journal = Journal()
    handle = launch("a", journal, backoff=Backoff(min_seconds=0.3, max_seconds=0.3, random_factor=0.0))
    address = handle.address("a")
    address.tell(Crash())
    slot = handle.slots["a"]
    assert wait_until(lambda: slot.ref is None)
    for i in range(5):
        address.tell(("m", i))
    journal.wait_for(lambda es: ("got", "a", 2, ("m", 4)) in es)
    assert [e[3] for e in journal.snapshot() if e[0] == "got"] == [("m", i) for i in range(5)]
    handle.stop()


def test_a_full_stash_refuses_the_message_with_a_clear_error_and_counts_it():
    from actors.supervision.address import Slot

    slot = Slot("guard", stash_limit=2)
    slot.suspend()
    address = Address(slot)
    address.tell(1)
    address.tell(2)
    with pytest.raises(StashOverflow, match="stash for 'guard' is full \\(2 messages\\)"):
        address.tell(3)
    assert slot.overflowed == 1 and slot.stashed == 2


def test_a_plain_pykka_child_found_dead_by_the_probe_is_restarted():
    started = Journal()

    class Plain(pykka.ThreadingActor):
        def on_start(self) -> None:
            started.add("started")

    handle = Supervisor.launch([ChildSpec("plain", lambda ctx: Plain.start(), liveness_timeout=0.5)], probe_interval=0.05)
    handle.slots["plain"].ref.stop()
    started.wait_for(lambda es: len(es) == 2)
    handle.stop()


def test_ping_is_answered_by_every_supervised_actor_with_its_incarnation():
    journal = Journal()
    handle = launch("a", journal)
    pong = handle.address("a").ask(Ping())
    assert (pong.name, pong.incarnation) == ("a", 1)
    handle.stop()


class SlowStarter(Recorder):
    """Blocks its start until released: a child too slow to come up."""

    gate = threading.Event()

    def prepare(self) -> None:
        if self.context.incarnation == 1:
            SlowStarter.gate.wait(WAIT)
        super().prepare()


def test_a_child_too_slow_to_start_is_replaced_and_the_slow_one_stopped_when_it_wakes():
    journal = Journal()
    SlowStarter.gate = threading.Event()
    handle = Supervisor.launch(
        [ChildSpec("slow", lambda ctx: SlowStarter.start(ctx, journal))], start_timeout=0.3, probe_interval=0.05
    )
    assert incarnation(handle.address("slow")) == 2
    SlowStarter.gate.set()
    journal.wait_for(lambda es: ("ended", "slow", 1, "normal") in es)
    handle.stop()


def test_a_failed_first_start_under_rest_for_one_starts_the_later_children_once():
    journal = Journal()
    Recorder.start_failures["b"] = 1
    handle = launch("abc", journal, strategy=Strategy.REST_FOR_ONE)
    assert incarnation(handle.address("c")) == 1
    handle.stop()
    started_c = [e for e in journal.snapshot() if e[:2] == ("started", "c")]
    assert started_c == [("started", "c", 1)]
    assert ("ended", "c", 1, "normal") in journal.snapshot()


def test_a_child_that_keeps_failing_to_start_is_retried_without_exhausting_the_stack():
    journal = Journal()
    handle = launch("a", journal, max_restarts=2_000)
    Recorder.start_failures["a"] = 1_200
    handle.address("a").tell(Crash())
    assert handle.address("a").ask(("echo", "up"), timeout=60)[0] == "up"
    assert not handle.gave_up.is_set()
    handle.stop()


def test_a_restart_request_for_an_unknown_child_is_refused_and_harms_nothing():
    from actors.messages import RestartChild

    journal = Journal()
    handle = launch("ab", journal)
    with pytest.raises(KeyError, match="no child named 'A'"):
        handle.restart("A", "typo")
    handle.ref.tell(RestartChild("A", "typo"))
    assert all(child.alive for child in handle.children().values())
    handle.stop()


def test_a_supervisor_whose_options_are_wrong_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="probe_interval must be > 0, got 0"):
        Supervisor.launch([recorder_spec("a", Journal())], probe_interval=0)


def test_a_temporary_child_that_fails_its_first_start_does_not_keep_the_later_ones_from_starting():
    journal = Journal()
    Recorder.start_failures["t"] = 1
    specs = [
        ChildSpec("t", lambda ctx: Recorder.start(ctx, journal), restart=Restart.TEMPORARY),
        recorder_spec("b", journal),
    ]
    handle = Supervisor.launch(specs, probe_interval=0.05, drills=True)
    assert incarnation(handle.address("b")) == 1
    assert handle.children()["t"].alive is False
    handle.stop()


def test_backoff_stays_finite_however_many_restarts_came_before():
    import random

    assert Backoff(min_seconds=0.1, max_seconds=5.0).delay(100_000, random.Random(1)) <= 5.0 * 1.2


def test_each_child_keeps_its_own_backoff_when_another_fails_meanwhile():
    import time

    journal = Journal()
    handle = launch("ab", journal, backoff=Backoff(min_seconds=0.1, max_seconds=5.0, random_factor=0.0))
    a = handle.address("a")
    for n in (2, 3, 4):  # three crashes: the fourth restart of a waits 0.8 s
        a.tell(Crash())
        journal.wait_for(lambda es, n=n: ("started", "a", n) in es)
    crashed_at = time.monotonic()
    a.tell(Crash())
    handle.address("b").tell(Crash())  # b's first restart waits 0.1 s: neither may move the other's
    journal.wait_for(lambda es: ("started", "b", 2) in es)
    assert time.monotonic() - crashed_at < 0.6, "b waited for a's backoff"
    journal.wait_for(lambda es: ("started", "a", 5) in es)
    assert time.monotonic() - crashed_at >= 0.8, "a came back before its backoff"
    handle.stop()


def test_a_stale_restart_request_for_an_earlier_incarnation_restarts_nothing():
    journal, notes = Journal(), Notes()
    handle = launch("ab", journal, notes)
    address = handle.address("a")
    address.tell(Crash("boom"))
    notes.wait(1)
    assert incarnation(address) == 2
    with LogLines("WARNING") as lines:
        handle.restart("a", "stalled long ago", incarnation=1)
        lines.wait_for(lambda ls: any("stale restart" in line for line in ls))
    assert [line for line in lines.snapshot() if "stale restart" in line] == [
        "WARNING stale restart of a ignored: it was for incarnation 1, the current one is 2"
    ]
    assert incarnation(address) == 2
    assert handle.children()["a"].restarts == 1 and len(notes.items) == 1
    handle.restart("a", "stalled now", incarnation=2)
    assert notes.wait(2)[1] == Restarted(actor="a", cause="stalled now", attempt=2, incarnation=3)
    assert incarnation(address) == 3
    handle.stop()
