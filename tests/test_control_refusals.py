"""Where the control APIs meet the trading system: a value it refuses is a 400 naming the field
and the value, never a 500, and a system that does not answer is a 503. The single system's API
and the fleet's answer through the same `calling`, whichever process raised the error. A
defect's own TypeError or ValueError is a 500 with its traceback logged, never the client's bad
request."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import attrs
import httpx
import pykka
import pytest
from actor_helpers import WAIT, AlertInbox, LogLines, wait_until
from support.control_server import TOKEN, SlowCloseBroker, paper_with_positions, served
from support.live_bot import TRADEWARDEN
from support.processes import run

from actors import TradingSystem
from actors.messages import Crash, Halt, HaltNotSaved, Resume
from actors.service.control import BadRequest, calling
from actors.service.hub import EventHub
from runtime import Event, EventType, ListSignalSource, ManualClock, PaperBroker, Settings, TradingState
from runtime.adapters.sqlite import SqliteStore
from runtime.payloads import Heartbeat


def _answer(call: Callable[[], Any]) -> Any:
    try:
        return asyncio.run(calling(call, (pykka.Timeout,), "the trading system did not answer: "))
    except BadRequest as exc:
        return exc.status, str(exc)


def _no_answer() -> None:
    raise pykka.Timeout("'guard' did not come back within 5.0s")


def _broken() -> None:
    raise RuntimeError("a defect, not a refusal")


def _defect() -> None:
    len(None)  # type: ignore[arg-type]  # a TypeError of our own making, as a bug raises it


def test_a_refused_value_is_a_400_with_its_message_and_no_answer_a_503() -> None:
    assert _answer(lambda: Halt(" ", "desk closed")) == (400, "by must be a non-empty string, got ' '")
    assert _answer(lambda: Halt("ops", 3)) == (400, "reason must be a non-empty string, got 3 (int)")
    assert _answer(_no_answer) == (503, "the trading system did not answer: 'guard' did not come back within 5.0s")
    assert _answer(lambda: "halted") == "halted"
    with pytest.raises(RuntimeError, match=r"^a defect, not a refusal$"):  # any other error is not a refusal
        _answer(_broken)


def test_a_type_or_value_error_of_a_defect_is_not_taken_for_a_refused_value() -> None:
    with pytest.raises(TypeError, match=r"^object of type 'NoneType' has no len\(\)$"):
        _answer(_defect)
    with pytest.raises(ValueError, match=r"^heartbeat metadata is missing 'signals_processed'$"):
        _answer(lambda: Heartbeat.from_metadata({}))


def test_a_defect_behind_the_control_api_is_a_500_with_its_traceback_logged_never_the_clients_bad_request(tmp_path):
    db = str(tmp_path / "state.db")
    hub = EventHub()
    system = TradingSystem(Settings(loop_id="flawed"), PaperBroker(10_000.0), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    # A heartbeat no actor of ours would publish, as a defect would: the status cannot read it.
    hub(Event(EventType.HEARTBEAT, "flawed", {"beat": 1}))
    wanted = {"error": "internal error: ValueError(\"heartbeat metadata is missing 'signals_processed'\"); "
                       "its traceback is in the log"}
    with served(system, hub, db) as api, LogLines("ERROR") as lines:
        answer = httpx.get(api.url + "/api/status", headers={"authorization": f"Bearer {TOKEN}"}, timeout=WAIT)
        assert (answer.status_code, answer.json()) == (500, wanted)
        shown = run([*TRADEWARDEN, "status", "--url", api.url], timeout=60,
                    env={**os.environ, "CONTROL_TOKEN": TOKEN, "STATE_DB": db})
        assert (shown.returncode, shown.stdout, shown.stderr) == (3, "", f"status failed (500): {wanted['error']}\n")
        logged = lines.wait_for(lambda entries: len(entries) >= 2)  # the request's and the command's
    for entry in logged:
        shown_lines = entry.splitlines()
        assert shown_lines[:2] == ["ERROR control: GET /api/status failed: "
                                   "ValueError(\"heartbeat metadata is missing 'signals_processed'\")",
                                   "Traceback (most recent call last):"]
        assert shown_lines[-1] == "ValueError: heartbeat metadata is missing 'signals_processed'"
    assert len(logged) == 2


def test_a_halt_reason_utf8_cannot_carry_is_a_400_naming_it_and_nothing_is_halted(tmp_path):
    # "\ud800" is valid JSON for a lone surrogate: accepted, it halted the account and then made
    # every status a 500 (the guard's reason could not be written out).
    db, hub = str(tmp_path / "state.db"), EventHub()
    system = TradingSystem(Settings(loop_id="odd"), PaperBroker(10_000.0), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    auth = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    with served(system, hub, db) as api:
        answer = httpx.post(api.url + "/api/halt", content=b'{"reason": "drill \\ud800"}', headers=auth, timeout=WAIT)
        assert (answer.status_code, answer.json()) == (400, {
            "error": "reason must be text that UTF-8 can carry (no lone surrogate), got 'drill \\ud800'"})
        status = httpx.get(api.url + "/api/status", headers=auth, timeout=WAIT)
        assert (status.status_code, status.json()["trading_state"]) == (200, "active")


@pytest.mark.parametrize("body", [
    b"[" * 16_000,  # (what a fuzzer sends)
    b'{"reason": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",  # (well formed, nested past what the parser follows)
])
def test_a_body_nested_too_deeply_is_a_400_as_any_malformed_body_and_nothing_is_logged_as_an_error(tmp_path, body):
    # json.loads raises RecursionError on it: that was a 500 "internal error" with a traceback.
    db, hub = str(tmp_path / "state.db"), EventHub()
    system = TradingSystem(Settings(loop_id="deep"), PaperBroker(10_000.0), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    auth = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    with served(system, hub, db) as api, LogLines("ERROR") as lines:
        for path in ("/api/halt", "/api/resume"):
            answer = httpx.post(api.url + path, content=body, headers=auth, timeout=WAIT)
            assert (answer.status_code, answer.json()) == (400, {"error": "the body is not valid JSON: nested too deeply"})
        status = httpx.get(api.url + "/api/status", headers=auth, timeout=WAIT)
        assert (status.status_code, status.json()["trading_state"]) == (200, "active")
    assert lines.snapshot() == []


def _waits_in_the_guards_inbox(system: TradingSystem, kind: type) -> bool:
    # A message of ``kind`` queued for the guard (pykka's inbox is a queue.Queue of envelopes).
    ref = system.guard.ref
    if ref is None:
        return False
    inbox = ref.actor_inbox
    with inbox.mutex:
        return any(isinstance(getattr(envelope, "message", None), kind) for envelope in inbox.queue)


def test_a_resume_that_arrived_before_a_halt_made_while_it_waited_is_a_409_saying_when_each_happened(tmp_path):
    # The guard is busy closing positions for alice's halt when bob's resume arrives: bob had not
    # seen that halt, and his resume lifted it as soon as the guard got to it.
    db, hub = str(tmp_path / "state.db"), EventHub()
    clock = ManualClock(datetime(2024, 5, 2, 9, 30, tzinfo=UTC))
    broker = SlowCloseBroker(paper_with_positions(1))
    system = TradingSystem(Settings(loop_id="late"), broker, ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None, clock=clock)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with served(system, hub, db) as api, ThreadPoolExecutor(2) as pool:
        halting = pool.submit(httpx.post, api.url + "/api/halt", json={"by": "alice", "reason": "news at 14:30"},
                              headers=auth, timeout=WAIT)
        assert broker.closing.wait(WAIT)
        resuming = pool.submit(httpx.post, api.url + "/api/resume", json={"by": "bob"}, headers=auth, timeout=WAIT)
        assert wait_until(lambda: _waits_in_the_guards_inbox(system, Resume))  # it arrived at 09:30:00
        clock.advance(10)  # the close takes ten seconds
        broker.release.set()
        assert halting.result(WAIT).status_code == 200
        answer = resuming.result(WAIT)
        assert (answer.status_code, answer.json()) == (409, {"done": "refused", "error": (
            "resume refused: it was sent at 2024-05-02 09:30:00.000 UTC, before the halt in force began at "
            "2024-05-02 09:30:10.000 UTC (halted by alice: news at 14:30); send the resume again if you still mean to "
            "lift it"), "rebaseline_helps": False})
        status = httpx.get(api.url + "/api/status", headers=auth, timeout=WAIT).json()
        assert (status["trading_state"], status["state_since"]) == ("halted", "2024-05-02T09:30:10+00:00")
        again = httpx.post(api.url + "/api/resume", json={"by": "bob"}, headers=auth, timeout=WAIT)
        assert (again.status_code, again.json()["done"]) == (200, "resumed")


def test_the_event_stream_refuses_a_since_or_a_limit_it_cannot_honour_and_names_only_what_it_takes(tmp_path):
    # It replays nothing: it used to answer 200 to ?since= and ?limit= and ignore them, so a
    # client reconnecting with since= believed it had caught up, while the refusal of an unknown
    # parameter listed both as known.
    db, hub = str(tmp_path / "state.db"), EventHub()
    system = TradingSystem(Settings(loop_id="streamed"), PaperBroker(10_000.0), ListSignalSource(),
                           store=SqliteStore(db), subscribers=[hub], loop_interval=None)
    refused = {
        "since=2024-01-01T00:00:00Z": "since is not taken by the event stream, which sends only the events that "
                                      "come after it connects: read earlier ones from the journal with "
                                      "GET /api/events?since=...",
        "limit=5": "limit is not taken by the event stream, which sends only the events that come after it "
                   "connects: read earlier ones from the journal with GET /api/events?limit=...",
        "type=heartbeat&since=2024-01-01": "since is not taken by the event stream, which sends only the events "
                                           "that come after it connects: read earlier ones from the journal with "
                                           "GET /api/events?since=...",
        "bogus=1": "unknown query parameter 'bogus'; known: type",
    }
    with served(system, hub, db) as api, httpx.Client(base_url=api.url, headers={"authorization": f"Bearer {TOKEN}"},
                                                       timeout=WAIT) as client:
        for query, error in refused.items():
            with client.stream("GET", f"/api/events/stream?{query}") as answer:
                assert answer.status_code == 400, query  # (checked first: a stream would never end)
                assert json.loads(answer.read()) == {"error": error}
        assert hub.listeners == 0
        with client.stream("GET", "/api/events/stream?type=heartbeat") as stream:  # what it takes
            assert (stream.status_code, next(stream.iter_lines())) == (200, ": connected")


@pytest.mark.parametrize(("url", "why"), [
    ("notaurl", ""), ("ftp://127.0.0.1:8787", ""), ("http://127.0.0.1:99999", " (Port out of range 0-65535)"),
])
def test_a_url_that_is_no_control_api_is_a_bad_request_exit_2_naming_it(url, why):
    done = run([*TRADEWARDEN, "status", "--url", url], timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", (
        f"tradewarden status: --url must be an http:// or https:// URL of the control API, got {url!r}{why}\n"))


def test_an_unknown_endpoint_a_wrong_method_and_a_field_given_twice_are_answered_as_json_errors(tmp_path):
    db, hub = str(tmp_path / "state.db"), EventHub()
    system = TradingSystem(Settings(loop_id="strict"), PaperBroker(10_000.0), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with served(system, hub, db) as api, httpx.Client(base_url=api.url, headers=auth, timeout=WAIT) as client:
        missing = client.get("/api/nope")
        assert (missing.status_code, missing.json()) == (404, {"error": "no such endpoint: GET /api/nope"})
        wrong = client.post("/api/status")
        assert (wrong.status_code, wrong.json()) == (405, {"error": "method not allowed: POST /api/status (allowed: GET, HEAD)"})
        # json would keep the last without a word: a client that meant the first would never know.
        twice = client.post("/api/halt", content=b'{"reason": "drill", "reason": "news"}',
                            headers={"content-type": "application/json"})
        assert (twice.status_code, twice.json()) == (400, {"error": "the body gives field 'reason' twice"})
        assert client.get("/api/status").json()["trading_state"] == "active"


class OutageStore(SqliteStore):
    """A state file whose guard-record writes fail while ``down`` is set (a disk that filled up,
    a database restarting), then work again."""

    down = False

    def save_guard(self, loop_id: str, record: Any) -> None:
        if self.down:
            raise OSError("No space left on device")
        super().save_guard(loop_id, record)


def test_a_halt_the_store_did_not_take_is_a_503_and_the_guard_saves_it_once_the_store_is_back(tmp_path):
    # The control API answered 200 "halted" while the halt was only in this process: a restart
    # before the next change of equity came back ACTIVE. Now the answer says it is not saved,
    # and the guard saves it again on its own until the store takes it, with no reading needed.
    db, hub, alerts = str(tmp_path / "state.db"), EventHub(), AlertInbox()
    store = OutageStore(db)
    system = TradingSystem(Settings(loop_id="outage"), paper_with_positions(1), ListSignalSource(), store=store,
                           subscribers=[hub], alerts=alerts, loop_interval=None)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with served(system, hub, db) as api:
        store.down = True
        answer = httpx.post(api.url + "/api/halt", json={"by": "ops", "reason": "disk full"}, headers=auth, timeout=WAIT)
        assert (answer.status_code, answer.json()) == (503, {
            "done": "not_saved", "previous_state": "active", "by": "ops", "reason": "disk full",
            "error": "halted in this process, its positions being closed, but the halt was not saved in the state "
                     "store (OSError('No space left on device')): a restart before it is saved would start without "
                     "it; the guard saves it again until the store takes it"})
        assert system.guard_status().state.trading_state is TradingState.HALTED
        assert store.load_guard("outage").trading_state is TradingState.ACTIVE
        store.down = False
        assert wait_until(lambda: store.load_guard("outage").trading_state is TradingState.HALTED)
        assert store.load_guard("outage").reason == "halted by ops: disk full"
        alerts.wait_for("Guard state saved")
        lost, back = [a for a in alerts.sent if a.title.startswith("Guard state")]  # said once each
        assert (lost.title, lost.text) == ("Guard state not saved", "OSError('No space left on device'); the guard "
                                           "keeps acting on what it holds, and saves it again until the store takes it")
        assert back.title == "Guard state saved"  # (the tries it took depend on when the store came back)
        assert re.fullmatch(r"the state store took the guard's state again \(halted\) after \d+ failed tries", back.text)


def test_a_halt_still_unsaved_when_the_system_stops_is_said_at_critical_level_and_alerted(tmp_path):
    # A clean stop (systemd, Ctrl-C) is exactly the restart the halt did not survive: it used to
    # end with "stopped cleanly" and nothing else, and the next start traded.
    alerts = AlertInbox()
    store = OutageStore(str(tmp_path / "state.db"))
    system = TradingSystem(Settings(loop_id="outage"), paper_with_positions(1), ListSignalSource(), store=store,
                           alerts=alerts, loop_interval=None).start()
    store.down = True
    with LogLines(level="CRITICAL") as lines:
        try:
            with pytest.raises(HaltNotSaved):
                system.halt("ops", "disk full")
        finally:
            system.stop()
    assert ("CRITICAL ending (normal) with its state not saved (OSError('No space left on device')): a guard that "
            "starts from the state store will not know it was halted: halted by ops: disk full") in lines.snapshot()
    lost = alerts.wait_for("Guard state lost")
    assert lost.text == (
        "the guard ended (normal) with its state (halted: halted by ops: disk full) not saved: OSError('No space left "
        "on device'); the next start will not know it: press the kill switch again once it runs")
    store.down = False
    assert store.load_guard("outage").trading_state is TradingState.ACTIVE  # what the next start will find


def _halted_while_the_store_is_down(tmp_path) -> tuple[TradingSystem, OutageStore, AlertInbox]:
    # A running system whose kill switch was pressed while its store refused every guard record.
    alerts = AlertInbox()
    store = OutageStore(str(tmp_path / "state.db"))
    system = TradingSystem(Settings(loop_id="outage"), paper_with_positions(1), ListSignalSource(), store=store,
                           alerts=alerts, loop_interval=None, drills=True).start()
    store.down = True
    with pytest.raises(HaltNotSaved):
        system.halt("ops", "disk full")
    return system, store, alerts


def _crash_the_guard(system: TradingSystem) -> None:
    system.guard.tell(Crash("drill"))
    assert wait_until(lambda: (guard := system.children()["guard"]).incarnation == 2 and guard.alive)


def test_a_halt_the_store_refused_survives_a_crash_of_the_guard_and_is_saved_once_the_store_is_back(tmp_path):
    # The next incarnation started from the store's last record: the halt, held only in memory,
    # was gone, and the account came back ACTIVE and traded. It is carried over now.
    system, store, alerts = _halted_while_the_store_is_down(tmp_path)
    try:
        since = system.guard_status().state_since
        with LogLines(level="CRITICAL") as lines:
            _crash_the_guard(system)
        status = system.guard_status()
        assert (status.state.trading_state, status.state.reason, status.state_since) == (
            TradingState.HALTED, "halted by ops: disk full", since)
        assert ("CRITICAL ending (crashed) with its state not saved (OSError('No space left on device')): the next "
                "guard of this process carries it over, and a new process would not know it was halted: halted by "
                "ops: disk full") in lines.snapshot()
        carried = alerts.wait_for("Guard state carried over")
        assert carried.text == (
            "the guard ended (crashed) with its state (halted: halted by ops: disk full) not saved: OSError('No space "
            "left on device'); the next guard of this process carries it over and saves it again until the store "
            "takes it; a new process would not know it")
        assert store.load_guard("outage").trading_state is TradingState.ACTIVE  # still not saved
        store.down = False
        assert wait_until(lambda: store.load_guard("outage").trading_state is TradingState.HALTED)
        saved = store.load_guard("outage")
        assert (saved.reason, saved.state_since) == ("halted by ops: disk full", since)
        back = alerts.wait_for("Guard state saved")
        assert re.fullmatch(r"the state store took the guard's state again \(halted\) after \d+ failed tries", back.text)
        assert [a.title for a in alerts.sent if a.title.startswith("Guard state")] == [
            "Guard state not saved", "Guard state carried over", "Guard state saved"]  # the outage is said once
    finally:
        system.stop()


def test_a_halt_carried_over_is_laid_over_a_record_another_process_saved_meanwhile(tmp_path):
    # The store's record changed while this guard could not write: that one is newer (its peak
    # is taken), but its writer never saw the halt held here, so its ACTIVE does not lift it.
    system, store, alerts = _halted_while_the_store_is_down(tmp_path)
    try:
        theirs = store.load_guard("outage")
        theirs = attrs.evolve(theirs, drawdown=attrs.evolve(theirs.drawdown, peak_equity=150_000.0))
        SqliteStore.save_guard(store, "outage", theirs)  # as another process on the same file would
        since = system.guard_status().state_since
        _crash_the_guard(system)
        status = system.guard_status()
        assert (status.state.trading_state, status.state.reason, status.state_since, status.state.peak_equity) == (
            TradingState.HALTED, "halted by ops: disk full", since, 150_000.0)
        store.down = False
        assert wait_until(lambda: store.load_guard("outage").trading_state is TradingState.HALTED)
        saved = store.load_guard("outage")
        assert (saved.reason, saved.drawdown.peak_equity) == ("halted by ops: disk full", 150_000.0)
    finally:
        system.stop()


def test_the_status_dates_a_halt_from_the_guards_record_when_the_journal_has_not_the_change(tmp_path):
    # The status took state_since from the journal's last state change only: one the journal
    # lost (a full disk) or that a new process has not seen showed a halt with no date.
    db, clock = str(tmp_path / "state.db"), ManualClock(datetime(2024, 5, 2, 9, 30, tzinfo=UTC))
    first = TradingSystem(Settings(loop_id="dated"), PaperBroker(10_000.0), ListSignalSource(), store=SqliteStore(db),
                          loop_interval=None, clock=clock).start()
    try:
        first.halt("ops", "news at 14:30")
    finally:
        first.stop()
    with SqliteStore(db) as store:  # the change as if the journal had lost it
        store._connection().execute("DELETE FROM events WHERE event LIKE '%trading_state_changed%'")
    hub = EventHub()
    second = TradingSystem(Settings(loop_id="dated"), PaperBroker(10_000.0), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None, clock=ManualClock(datetime(2024, 5, 3, tzinfo=UTC)))
    with served(second, hub, db) as api:
        status = httpx.get(api.url + "/api/status", headers={"authorization": f"Bearer {TOKEN}"}, timeout=WAIT).json()
    assert (status["trading_state"], status["reason"], status["state_since"]) == (
        "halted", "halted by ops: news at 14:30", "2024-05-02T09:30:00+00:00")
