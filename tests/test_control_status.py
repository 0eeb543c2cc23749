"""`/api/status` answers within its bound while the guard is busy, and says what is stale."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from actor_helpers import WAIT, EventLog, wait_until
from support.control_server import TOKEN, SlowCloseBroker, SlowListBroker, paper_with_positions, served

from actors import TradingSystem
from actors.messages import Halt, RunCycle
from actors.service.hub import EventHub
from actors.service.status import status_text
from runtime import BrokerError, EventType, ListSignalSource, Order, PaperBroker, Settings, TradingState
from runtime.adapters.sqlite import SqliteStore

AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_status_while_the_guard_liquidates_against_a_slow_broker_is_its_last_answer_marked_stale(tmp_path):
    db = str(tmp_path / "state.db")
    broker = SlowCloseBroker(paper_with_positions(3))
    hub, events = EventHub(), EventLog()
    system = TradingSystem(Settings(loop_id="busy"), broker, ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub, events], loop_interval=None)
    try:
        with served(system, hub, db, status_timeout=0.5) as api, httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
            idle = client.get("/api/status").json()
            assert (idle["trading_state"], idle["stale"], len(idle["positions"])) == ("active", {}, 3)

            system.guard.tell(Halt("ops", "drill"))
            assert broker.closing.wait(WAIT)
            busy = client.get("/api/status")
            assert busy.status_code == 200
            body = busy.json()
            # The positions are listed after the guard answers; the supervisor, probing the busy
            # guard from its own thread, may be late too.
            assert set(body["stale"]) - {"supervisor"} == {"guard", "positions"}
            assert body["stale"]["positions"]["reason"] == "read after the guard's answer, and the guard did not answer within 0.5s"
            assert body["stale"].get("supervisor", {"reason": "the supervisor did not answer within 0.5s"})["reason"] == (
                "the supervisor did not answer within 0.5s")
            assert set(body["children"]) == {"emitter", "alerts", "guard", "loop", "heartbeat"}
            stale = body["stale"]["guard"]
            assert stale["reason"] == "the guard did not answer within 0.5s"
            assert stale["as_of"] is not None and stale["age_seconds"] >= 0.5
            # The last answer, from before the halt, is what is shown, and it says so.
            assert (body["trading_state"], body["liquidating"], len(body["positions"])) == ("active", False, 3)
            assert (
                f"  stale: guard (the guard did not answer within 0.5s; shown as of {stale['age_seconds']:.1f}s ago)"
                in status_text(body).splitlines()
            )
            # A second request does not queue a second ask behind the first: still bounded, still stale.
            again = client.get("/api/status")
            assert again.status_code == 200, again.text
            assert "guard" in again.json()["stale"]

            broker.release.set()
            events.wait_count(EventType.POSITION_CLOSED, 3)
            # The read in flight since the halt answers once the guard is done; until then a
            # status already past its bound is answered at once, stale.
            assert wait_until(lambda: client.get("/api/status").json()["stale"] == {})
            after = client.get("/api/status").json()
            assert (after["trading_state"], after["reason"], after["stale"]) == ("halted", "halted by ops: drill", {})
            assert after["positions"] == []
    finally:
        broker.release.set()  # a failed assertion must not leave the guard waiting on the broker


class _PositionsDown(SlowCloseBroker):
    # A trade server that answers equity but fails to list positions, as a half-broken link does.
    def open_positions(self):
        raise BrokerError("positions request timed out")


def test_a_broker_that_cannot_list_positions_is_named_in_stale_and_the_rest_is_answered(tmp_path):
    db = str(tmp_path / "state.db")
    hub = EventHub()
    system = TradingSystem(Settings(loop_id="half"), _PositionsDown(paper_with_positions(1)), ListSignalSource(),
                           store=SqliteStore(db), subscribers=[hub], loop_interval=None)
    with served(system, hub, db) as api, httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
        body = client.get("/api/status").json()
    assert (body["trading_state"], body["positions"]) == ("active", None)
    assert body["stale"] == {"positions": {
        "reason": "the broker could not be read: BrokerError('positions request timed out')",
        "as_of": None, "age_seconds": None,
    }}
    assert status_text(body).splitlines()[-1] == (
        "  stale: positions (the broker could not be read: BrokerError('positions request timed out'); not shown)"
    )


def _position(symbol: str) -> dict:
    # One position of paper_with_positions as the status lists it.
    return {"position_id": "1", "symbol": symbol, "side": "buy", "volume": 10, "entry_price": 100.0,
            "unrealised_pnl": 0.0}


def test_a_status_read_right_after_a_kill_switch_counts_no_position_open_as_its_list_shows_none(tmp_path):
    # The count used to be the loop's, from its last cycle: HALTED with a position still counted
    # beside an empty list, until the loop's next cycle.
    db = str(tmp_path / "state.db")
    hub = EventHub()
    system = TradingSystem(Settings(loop_id="kill"), paper_with_positions(1), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    with served(system, hub, db) as api, httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
        assert system.loop.ask(RunCycle(), timeout=WAIT).metrics.positions_open == 1  # the loop has counted it
        before = client.get("/api/status").json()
        assert (before["trading_state"], before["positions_open"], before["positions"]) == ("active", 1, [_position("S0")])

        assert system.halt("ops", "drill", timeout=WAIT) is TradingState.ACTIVE  # answered once flat
        after = client.get("/api/status").json()
    shown = {key: after[key] for key in ("trading_state", "reason", "liquidating", "positions_open", "positions", "stale")}
    assert shown == {"trading_state": "halted", "reason": "halted by ops: drill", "liquidating": False,
                     "positions_open": 0, "positions": [], "stale": {}}
    assert status_text(after).splitlines()[:3] == [
        "loop kill: HALTED (halted by ops: drill)",
        "  equity 100,000.00  peak 100,000.00  drawdown 0.00%",
        "  open positions 0",
    ]


class _ListedWhileClosing(SlowCloseBroker):
    # A list of positions asked for while the guard's close waits at the trade server (the
    # guard, inside the close, is not the one asking) answers the account as it is, and then
    # the close goes through: a status that listed before the guard's answer would show the
    # position beside a guard that says it is closed.
    def open_positions(self):
        held = self.inner.open_positions()
        if self.closing.is_set():
            self.release.set()
        return held


def test_a_status_lists_positions_only_after_the_guard_has_answered_so_a_halt_and_its_liquidation_agree(tmp_path):
    db = str(tmp_path / "state.db")
    broker = _ListedWhileClosing(paper_with_positions(1))
    hub = EventHub()
    system = TradingSystem(Settings(loop_id="order"), broker, ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    try:
        with served(system, hub, db, status_timeout=1.0) as api, \
                httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
            assert system.loop.ask(RunCycle(), timeout=WAIT).metrics.positions_open == 1
            idle = client.get("/api/status").json()
            assert (idle["trading_state"], idle["positions_open"], idle["positions"], idle["stale"]) == (
                "active", 1, [_position("S0")], {})

            system.guard.tell(Halt("ops", "drill"))
            assert broker.closing.wait(WAIT)
            # The guard is in the close: this status may not list the account before it answers,
            # so both are shown as of the last answer, and say so.
            busy = client.get("/api/status").json()
            assert (busy["trading_state"], busy["liquidating"], busy["positions_open"], busy["positions"]) == (
                "active", False, 1, [_position("S0")])
            assert set(busy["stale"]) - {"supervisor"} == {"guard", "positions"}  # the supervisor probes the busy guard
            assert busy["stale"]["guard"]["reason"] == "the guard did not answer within 1s"
            assert busy["stale"]["positions"]["reason"] == "read after the guard's answer, and the guard did not answer within 1s"
            assert all(why["as_of"] is not None and why["age_seconds"] >= 1.0 for why in busy["stale"].values())

            broker.release.set()
            assert wait_until(lambda: client.get("/api/status").json()["stale"] == {})
            after = client.get("/api/status").json()
            shown = {key: after[key] for key in ("trading_state", "reason", "liquidating", "positions_open", "positions")}
            assert shown == {"trading_state": "halted", "reason": "halted by ops: drill", "liquidating": False,
                             "positions_open": 0, "positions": []}
    finally:
        broker.release.set()  # a failed assertion must not leave the guard waiting on the broker


@contextmanager
def _hung_list_served(tmp_path) -> Iterator[tuple[TradingSystem, SlowListBroker, httpx.Client]]:
    # A served system holding one position, whose broker closes at once and hangs listing
    # positions for a status once ``slow`` is set; a client of its control server.
    broker = SlowListBroker(paper_with_positions(1))
    broker.release.set()
    db, hub = str(tmp_path / "state.db"), EventHub()
    system = TradingSystem(Settings(loop_id="hung"), broker, ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    try:
        with served(system, hub, db, status_timeout=1.0) as api, \
                httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
            yield system, broker, client
    finally:
        broker.unblock.set()  # a failed assertion must not leave a status thread waiting on the broker


_UNKNOWN = {"reason": "the broker did not answer within 1s; its last list was read before the guard's answer shown",
            "as_of": None, "age_seconds": None}


def test_a_kill_switch_pressed_while_the_broker_hangs_listing_shows_halted_at_once(tmp_path):
    # Review finding: the status used to chain the guard's read and the broker's list in one
    # job, reused until both answered, so while the list hung the guard was never asked again
    # and a halt still showed ACTIVE (forever, with a hung MT5 terminal).
    with _hung_list_served(tmp_path) as (system, broker, client):
        idle = client.get("/api/status").json()
        assert (idle["trading_state"], idle["positions_open"], idle["positions"], idle["stale"]) == (
            "active", 1, [_position("S0")], {})

        broker.slow.set()
        # The guard answers; the list asked for after it hangs, and the last one came
        # before that answer: the positions are unknown, not the old list.
        late = client.get("/api/status").json()
        assert (late["trading_state"], late["positions_open"], late["positions"], late["stale"]) == (
            "active", None, None, {"positions": _UNKNOWN})

        assert system.halt("ops", "drill", timeout=WAIT) is TradingState.ACTIVE  # answered once flat
        halted = client.get("/api/status").json()
        shown = {key: halted[key] for key in ("trading_state", "reason", "liquidating", "positions_open", "positions",
                                              "stale")}
        assert shown == {"trading_state": "halted", "reason": "halted by ops: drill", "liquidating": False,
                         "positions_open": None, "positions": None, "stale": {"positions": _UNKNOWN}}
        lines = status_text(halted).splitlines()
        assert (lines[0], lines[2], lines[-1]) == (
            "loop hung: HALTED (halted by ops: drill)",
            "  open positions unknown",
            "  stale: positions (the broker did not answer within 1s; its last list was read before the guard's"
            " answer shown; not shown)",
        )

        broker.unblock.set()
        # The list that hung answers for the guard answer it followed; the next status
        # lists again after its own guard answer.
        assert wait_until(lambda: client.get("/api/status").json()["stale"] == {})
        after = client.get("/api/status").json()
        assert (after["trading_state"], after["positions_open"], after["positions"]) == ("halted", 0, [])


def test_a_late_list_after_a_halt_is_unknown_never_the_pre_halt_list_beside_the_halted_guard(tmp_path):
    # Review finding: a late broker fell back to the last list, read before the halt: HALTED with
    # positions_open 1 and the closed position listed, though the account was flat.
    with _hung_list_served(tmp_path) as (system, broker, client):
        before = client.get("/api/status").json()
        assert (before["positions_open"], before["positions"]) == (1, [_position("S0")])
        assert system.halt("ops", "drill", timeout=WAIT) is TradingState.ACTIVE
        assert broker.inner.open_positions() == []  # flat

        broker.slow.set()
        after = client.get("/api/status").json()
        shown = {key: after[key] for key in ("trading_state", "positions_open", "positions", "stale")}
        assert shown == {"trading_state": "halted", "positions_open": None, "positions": None,
                         "stale": {"positions": _UNKNOWN}}


class StuckAlerts:
    """An alert sink inside a chat service that does not answer, until released."""

    def __init__(self) -> None:
        self.sending, self.release = threading.Event(), threading.Event()

    def send(self, alert):
        self.sending.set()
        self.release.wait(WAIT)


def test_health_stays_ok_while_the_alerts_wait_on_a_dead_chat_service_and_the_guard_still_answers(tmp_path):
    # It said 503 ("the alerts did not answer a ping"), and README's watchdog restarted the bot
    # every minute of a Telegram outage, losing the critical alert it was retrying each time.
    db, hub, alerts = str(tmp_path / "state.db"), EventHub(), StuckAlerts()
    system = TradingSystem(Settings(loop_id="quiet", heartbeat_interval_seconds=3600), paper_with_positions(1),
                           ListSignalSource(), store=SqliteStore(db), alerts=alerts, subscribers=[hub], loop_interval=None)
    try:
        with served(system, hub, db) as api, httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
            assert client.post("/api/halt", json={"reason": "drill"}).status_code == 200
            assert alerts.sending.wait(WAIT)
            health = client.get("/health")
            assert (health.status_code, health.json()) == (200, {"status": "ok", "problems": []})
            assert client.get("/api/status").json()["trading_state"] == "halted"
            alerts.release.set()
    finally:
        alerts.release.set()


def test_a_positions_average_entry_price_is_shown_without_float_noise_and_the_brokers_own_is_untouched(tmp_path):
    # Two buys at 1.1 and 1.3 average to 1.2000000000000002 in floats, which the API showed as it was.
    db = str(tmp_path / "state.db")
    broker = PaperBroker(10_000)
    broker.update_price("EURUSD", 1.1)
    broker.submit_order(Order("EURUSD", "buy", 1))
    broker.update_price("EURUSD", 1.3)
    broker.submit_order(Order("EURUSD", "buy", 1))
    broker.update_price("JPY", 151.234)  # a quote's own digits are all kept
    broker.submit_order(Order("JPY", "buy", 1))
    hub = EventHub()
    system = TradingSystem(Settings(loop_id="avg"), broker, ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub], loop_interval=None)
    with served(system, hub, db) as api, httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
        shown = client.get("/api/status").json()["positions"]
    assert [(p["symbol"], p["volume"], p["entry_price"]) for p in shown] == [("EURUSD", 2, 1.2), ("JPY", 1, 151.234)]
    assert [p.entry_price for p in broker.open_positions()] == [1.2000000000000002, 151.234]  # the core's figure
