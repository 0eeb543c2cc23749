"""`/api/status` answers within its bound while the guard is busy, and says what is stale."""

from __future__ import annotations

import httpx
from actor_helpers import WAIT, EventLog, wait_until
from support.control_server import TOKEN, SlowCloseBroker, paper_with_positions, served

from actors import TradingSystem
from actors.messages import Halt
from actors.service.hub import EventHub
from actors.service.status import status_text
from runtime import BrokerError, EventType, ListSignalSource, Settings
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
            # The supervisor, probing the busy guard from its own thread, may be late too.
            assert "guard" in body["stale"] and set(body["stale"]) <= {"guard", "supervisor"}
            assert all(why["reason"] == f"the {part} did not answer within 0.5s" for part, why in body["stale"].items())
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
