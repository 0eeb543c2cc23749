"""The fleet's control API over real HTTP, against a real fleet on the session's Ray cluster:
every account in one call, one account, its journal, halt and resume, and every refusal naming
what was wrong (a wrong token, an account not in the fleet, a bad body or query)."""

from __future__ import annotations

import re
import signal
import sys

import httpx
from support.live_bot import free_port
from support.processes import Child
from support.ray_cluster import FLEET_TOKEN, RayCluster, ServedFleet
from test_examples import clean_env

from actors.fleet import AccountStatus, Health
from actors.service.fleet_api import account_json
from runtime.risk.guards import TradingState

AUTH = {"authorization": f"Bearer {FLEET_TOKEN}"}


def _get(served: ServedFleet, path: str, **kwargs) -> httpx.Response:
    return httpx.get(served.url + path, headers=kwargs.pop("headers", AUTH), timeout=30.0, **kwargs)


def _post(served: ServedFleet, path: str, **kwargs) -> httpx.Response:
    return httpx.post(served.url + path, headers=kwargs.pop("headers", AUTH), timeout=30.0, **kwargs)


def test_account_json_shows_every_field_and_the_drawdown_from_the_peak() -> None:
    status = AccountStatus("a", Health.OK, TradingState.REDUCING, equity=9_000.0, peak=12_000.0, detail="warning",
                           node="n1", pid=42, epoch=3)
    assert account_json(status) == {
        "account_id": "a", "health": "ok", "trading_state": "reducing", "equity": 9_000.0, "peak": 12_000.0,
        "drawdown": 0.25, "detail": "warning", "node": "n1", "pid": 42, "epoch": 3,
    }
    assert account_json(AccountStatus("b", Health.UNREACHABLE, detail="no answer within 5s")) == {
        "account_id": "b", "health": "unreachable", "trading_state": None, "equity": None, "peak": None,
        "drawdown": None, "detail": "no answer within 5s", "node": None, "pid": None, "epoch": None,
    }


def test_the_fleet_api_lists_every_account_and_halts_and_resumes_one(served_fleet: ServedFleet) -> None:
    alpha, beta = served_fleet.accounts
    fleet = served_fleet.fleet
    health = _get(served_fleet, "/health", headers={})
    assert (health.status_code, health.json()) == (200, {"status": "ok", "problems": [], "accounts": 3})

    listed = _get(served_fleet, "/api/fleet")
    assert listed.status_code == 200
    body = listed.json()
    assert (body["namespace"], [a["account_id"] for a in body["accounts"]]) == (
        fleet.namespace, [alpha, beta, served_fleet.below_minimum])
    assert body["counters"] == {"recreated": {}, "zombies_killed": {}}
    here = fleet.status(alpha, timeout=10.0)
    assert body["accounts"][0] == {
        "account_id": alpha, "health": "ok", "trading_state": "active", "equity": 10_000.0, "peak": 10_000.0,
        "drawdown": 0.0, "detail": "", "node": here.node, "pid": here.pid, "epoch": None,
    }

    halted = _post(served_fleet, f"/api/fleet/{alpha}/halt", json={"reason": "desk closed", "by": "ops"})
    assert (halted.status_code, halted.json()) == (200, {
        "account_id": alpha, "done": "halted", "previous_state": "active", "by": "ops", "reason": "desk closed"})
    one = _get(served_fleet, f"/api/fleet/{alpha}").json()
    assert (one["trading_state"], one["detail"], one["pid"]) == ("halted", "halted by ops: desk closed", here.pid)

    resumed = _post(served_fleet, f"/api/fleet/{alpha}/resume", json={"by": "ops"})
    assert (resumed.status_code, resumed.json()) == (200, {
        "account_id": alpha, "done": "resumed", "previous_state": "halted", "by": "ops", "rebaseline": False})
    assert _get(served_fleet, f"/api/fleet/{alpha}").json()["trading_state"] == "active"

    events = _get(served_fleet, f"/api/fleet/{alpha}/events", params={"limit": "1000"})
    assert events.status_code == 200 and events.json()["account_id"] == alpha
    changes = [e["metadata"] for e in events.json()["events"] if e["event_type"] == "trading_state_changed"]
    assert [(c["from"], c["to"]) for c in changes] == [("active", "halted"), ("halted", "active")]
    assert changes[0]["reason"] == "halted by ops: desk closed"
    latest = _get(served_fleet, f"/api/fleet/{alpha}/events", params={"limit": "1"}).json()["events"]
    assert len(latest) == 1


def test_the_fleet_api_refuses_a_wrong_token_an_unknown_account_and_a_bad_request_naming_them(
    served_fleet: ServedFleet,
) -> None:
    alpha, beta = served_fleet.accounts
    gamma = served_fleet.below_minimum
    namespace = served_fleet.fleet.namespace
    cases = [
        (_get(served_fleet, "/api/fleet", headers={}), 401,
         "no bearer token (send 'Authorization: Bearer <CONTROL_TOKEN>')"),
        (_get(served_fleet, "/api/fleet", headers={"authorization": "Bearer nope"}), 401, "wrong bearer token"),
        (_get(served_fleet, "/api/fleet/nope"), 404,
         f"account 'nope' is not in the fleet (namespace {namespace!r}); its accounts: {alpha}, {beta}, {gamma}"),
        (_post(served_fleet, "/api/fleet/nope/halt", json={"reason": "x"}), 404,
         f"account 'nope' is not in the fleet (namespace {namespace!r}); its accounts: {alpha}, {beta}, {gamma}"),
        (_get(served_fleet, "/api/fleet/nope/events"), 404,
         f"account 'nope' is not in the fleet (namespace {namespace!r}); its accounts: {alpha}, {beta}, {gamma}"),
        (_post(served_fleet, f"/api/fleet/{alpha}/halt", json={}), 400, "field 'reason' is required"),
        (_post(served_fleet, f"/api/fleet/{alpha}/halt", json={"reason": "x", "whom": "me"}), 400,
         "unknown field 'whom'; known: by, reason"),
        (_post(served_fleet, f"/api/fleet/{alpha}/halt", json={"reason": " "}), 400,
         'field \'reason\' must be a non-empty string, got " "'),
        (_post(served_fleet, f"/api/fleet/{alpha}/resume", json={"rebaseline": "yes"}), 400,
         'field \'rebaseline\' must be true or false, got "yes"'),
        (_post(served_fleet, f"/api/fleet/{alpha}/halt", json=["x"]), 400, "the body must be a JSON object, got list"),
        (_get(served_fleet, f"/api/fleet/{alpha}/events", params={"limit": "0"}), 400,
         "limit must be a whole number in 1..1000, got '0'"),
        (_get(served_fleet, f"/api/fleet/{alpha}/events", params={"since": "x"}), 400,
         "unknown query parameter 'since'; known: limit"),
    ]
    for response, status, error in cases:
        assert (response.status_code, response.json()) == (status, {"error": error}), response.request.url
    malformed = _post(served_fleet, f"/api/fleet/{alpha}/halt", content=b"{reason", headers={**AUTH})
    assert malformed.status_code == 400
    assert re.fullmatch(r"the body is not valid JSON: Expecting property name enclosed in double quotes: line 1 "
                        r"column 2 \(char 1\)", malformed.json()["error"])
    refused = _post(served_fleet, f"/api/fleet/{gamma}/resume", json={"rebaseline": True, "by": "ops"})
    assert (refused.status_code, refused.json()) == (409, {
        "account_id": gamma, "done": "refused",
        "error": "resume refused, even with a rebaseline: equity 10000.00 < minimum 20000.00"})
    # Nothing was changed by a refused request.
    assert _get(served_fleet, f"/api/fleet/{alpha}").json()["trading_state"] == "active"


def test_tradewarden_fleet_serves_the_fleet_until_sigterm_then_lets_go_and_every_account_trades_on(
    served_fleet: ServedFleet, ray_cluster: RayCluster
) -> None:
    fleet = served_fleet.fleet
    before = {s.account_id: s.pid for s in fleet.accounts(timeout=10.0)}
    port = free_port()
    env = clean_env(CONTROL_PORT=str(port), CONTROL_TOKEN="cli-token", LOG_LEVEL="WARNING")
    command = [sys.executable, "-m", "actors.service", "fleet", "--address", ray_cluster.address,
               "--namespace", fleet.namespace]
    with Child(command, env=env) as child:
        child.wait_for(f"fleet {fleet.namespace!r} on http://127.0.0.1:{port}/ (Ctrl-C stops serving; the accounts "
                       "keep trading)", timeout=120.0)
        listed = httpx.get(f"http://127.0.0.1:{port}/api/fleet", headers={"authorization": "Bearer cli-token"},
                           timeout=30.0)
        assert listed.status_code == 200
        assert {a["account_id"]: (a["health"], a["pid"]) for a in listed.json()["accounts"]} == {
            account: ("ok", pid) for account, pid in before.items()}
        child.send_signal(signal.SIGTERM)
        finished = child.finish(timeout=60.0)
    assert finished.returncode == 0, finished.stderr
    # Released, not dissolved: the same workers answer.
    assert {s.account_id: (s.health.value, s.pid) for s in fleet.accounts(timeout=10.0)} == {
        account: ("ok", pid) for account, pid in before.items()}
