"""The fleet's control API over real HTTP, against a real fleet on the session's Ray cluster:
every account in one call, one account, its journal, halt and resume (a halt of an account still
starting saved until it starts HALTED, even in another worker, or answered 503 when it cannot be
saved; one of a quarantined account answered HALTED), and every
refusal naming what was wrong (a wrong token, an account not in the fleet, a bad body or query,
a value the account itself refuses)."""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import attrs
import httpx
import pytest
from support.fleet_parts import gated_broker, refusing_broker
from support.live_bot import free_port
from support.processes import Child
from support.ray_cluster import FLEET_TOKEN, RayCluster, ServedFleet, fleet_wait
from test_examples import clean_env

from actors.fleet import AccountStatus, FleetError, Health
from actors.service.fleet_api import account_json
from runtime.risk.guards import TradingState
from runtime.risk.monitor import ResumeRefused
from runtime.settings import Settings
from runtime.signals import ListSignalSource, Signal

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
    # A resume decided before that halt (its sender had not seen it) does not lift it.
    with pytest.raises(ResumeRefused) as late:
        fleet.resume(alpha, "ops", sent_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), timeout=10.0)
    assert re.fullmatch(
        r"resume refused: it was sent at 2024-01-02 03:04:05\.000 UTC, before the halt in force began at "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \(halted by ops: desk closed\); send the resume again if you "
        r"still mean to lift it", str(late.value))

    resumed = _post(served_fleet, f"/api/fleet/{alpha}/resume", json={"by": "ops"})
    assert (resumed.status_code, resumed.json()) == (200, {
        "account_id": alpha, "done": "resumed", "previous_state": "halted", "by": "ops", "rebaseline": False,
        "message": "resumed (was halted)"})
    assert _get(served_fleet, f"/api/fleet/{alpha}").json()["trading_state"] == "active"
    again = _post(served_fleet, f"/api/fleet/{alpha}/resume", json={"by": "ops"})
    assert (again.status_code, again.json()) == (200, {
        "account_id": alpha, "done": "already_active", "previous_state": "active", "by": "ops", "rebaseline": False,
        "message": "already active: nothing to resume"})

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
        (_post(served_fleet, f"/api/fleet/{alpha}/halt", json=["x"]), 400, "the body must be a JSON object, got an array"),
        (_get(served_fleet, f"/api/fleet/{alpha}/events", params={"limit": "0"}), 400,
         "limit must be a whole number in 1..1000, got '0'"),
        (_get(served_fleet, f"/api/fleet/{alpha}/events", params={"since": "x"}), 400,
         "unknown query parameter 'since'; known: limit"),
    ]
    for response, status, error in cases:
        assert (response.status_code, response.json()) == (status, {"error": error}), response.request.url
    malformed = _post(served_fleet, f"/api/fleet/{alpha}/halt", content=b"{reason",
                      headers={**AUTH, "content-type": "application/json"})
    assert malformed.status_code == 400
    assert re.fullmatch(r"the body is not valid JSON: Expecting property name enclosed in double quotes: line 1 "
                        r"column 2 \(char 1\)", malformed.json()["error"])
    refused = _post(served_fleet, f"/api/fleet/{gamma}/resume", json={"rebaseline": True, "by": "ops"})
    assert (refused.status_code, refused.json()) == (409, {
        "account_id": gamma, "done": "refused", "rebaseline_helps": False,
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


def test_the_fleet_api_saves_a_halt_for_a_starting_account_that_outlives_its_worker_and_answers_a_quarantined_one(
    served_fleet: ServedFleet, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    fleet = served_fleet.fleet
    run = uuid.uuid4().hex[:6]
    starting, in_memory, quarantined = f"starting-{run}", f"in-memory-{run}", f"quarantined-{run}"
    settings = Settings(loop_interval_seconds=1.0, heartbeat_interval_seconds=10.0)
    order = Signal("EURUSD", "buy", 1_000)  # its loop's first cycle places it
    phase = "building its broker and signal source"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(240.0)
        gated = functools.partial(gated_broker, listener.getsockname()[1])
        fleet.add(starting, attrs.evolve(settings, state_db=str(tmp_path / "starting.db")), gated,
                  functools.partial(ListSignalSource, [order]), node=ray_cluster.head.node_id, ready_timeout=None)
        fleet.add(quarantined, settings, refusing_broker, ListSignalSource, node=ray_cluster.head.node_id,
                  ready_timeout=None)
        try:
            gate, _ = listener.accept()  # its worker is building the broker: the account is starting
            with gate:
                held = _post(served_fleet, f"/api/fleet/{starting}/halt", json={"reason": "desk closed", "by": "ops"})
                assert (held.status_code, held.json()) == (202, {
                    "account_id": starting, "done": "halt_pending", "by": "ops", "reason": "desk closed",
                    "detail": f"account {starting} is starting ({phase}): it will start HALTED"
                              " (saved in its state store: whichever incarnation starts it takes it first)"})
                shown = _get(served_fleet, f"/api/fleet/{starting}").json()
                pending = f"{phase}; 1 halt pending: it will start HALTED"
                assert (shown["health"], shown["trading_state"], shown["detail"]) == ("starting", None, pending)
                refused = _post(served_fleet, f"/api/fleet/{starting}/resume", json={"by": "ops"})
                assert (refused.status_code, refused.json()) == (409, {
                    "account_id": starting, "done": "refused",
                    "error": f"account {starting} is not trading (starting: {pending})"})
                # Its worker is lost before the account has started; Ray starts another.
                lost = shown["pid"]
                os.kill(lost, signal.SIGKILL)
            gate, _ = listener.accept()  # the new worker is building the broker
            with gate:
                gate.sendall(b"g")
            fleet_wait(lambda: fleet.status(starting).pid != lost and fleet.wait_ready([starting], 5.0) == [], 240.0,
                       lambda: [fleet.status(starting).pid], "the account restarted")
            assert fleet.wait_ready([quarantined], 240.0) == []

            def refused_order_journaled() -> bool:
                events = _get(served_fleet, f"/api/fleet/{starting}/events", params={"limit": "1000"}).json()["events"]
                return any(e["event_type"] == "trade_failed" for e in events)

            fleet_wait(refused_order_journaled, 120.0, lambda: [fleet.status(starting).pid], "the order refused")
            one = _get(served_fleet, f"/api/fleet/{starting}").json()
            assert (one["health"], one["trading_state"], one["detail"]) == ("ok", "halted", "halted by ops: desk closed")
            events = _get(served_fleet, f"/api/fleet/{starting}/events", params={"limit": "1000"}).json()["events"]
            journal = [(e["event_type"], e["metadata"].get("reason"), e["metadata"].get("refused_by")) for e in events
                       if e["event_type"] in ("trading_state_changed", "order_submitted", "trade_failed")]
            assert journal == [("trading_state_changed", "halted by ops: desk closed", None),
                               ("trade_failed", "", "trading_state")]

            # An account whose state is in memory cannot keep a halt beyond its worker: not claimed held.
            fleet.add(in_memory, settings, gated, ListSignalSource, node=ray_cluster.head.node_id, ready_timeout=None)
            gate, _ = listener.accept()
            with gate:
                pid = fleet.status(in_memory).pid
                unsaved = _post(served_fleet, f"/api/fleet/{in_memory}/halt", json={"reason": "desk closed", "by": "ops"})
                assert (unsaved.status_code, unsaved.json()) == (503, {
                    "account_id": in_memory, "done": "not_saved",
                    "error": f"account {in_memory} is starting ({phase}): the halt was not saved (it keeps its state in"
                             " this process's memory: give it a state_db or a state_dsn); only its starting process"
                             f" (pid {pid}) holds it, and saves it once it can, but it is lost if that process is lost"
                             " first: halt it again once the account has started"})
                gate.sendall(b"g")

            # A quarantined account is HALTED and does not trade; kept in memory, its halt cannot hold for
            # whatever starts the account next (added again), and says so (it answered 200 "halted").
            assert fleet.status(quarantined).health is Health.QUARANTINED
            halted = _post(served_fleet, f"/api/fleet/{quarantined}/halt", json={"reason": "desk closed", "by": "ops"})
            assert (halted.status_code, halted.json()) == (503, {
                "account_id": quarantined, "done": "not_saved",
                "error": f"account {quarantined} is quarantined (start failed: RuntimeError('broker login refused')): it"
                         " does not trade, but the halt was not saved (it keeps its state in this process's memory: give"
                         " it a state_db or a state_dsn): added again, or started by another process, the account would"
                         " start without it; halt it again once its state store can be reached"})
            resumed = _post(served_fleet, f"/api/fleet/{quarantined}/resume", json={"by": "ops"})
            assert (resumed.status_code, resumed.json()) == (409, {
                "account_id": quarantined, "done": "refused",
                "error": f"account {quarantined} is not trading (quarantined: start failed: "
                         "RuntimeError('broker login refused'))"})
        finally:
            for account in (starting, in_memory, quarantined):
                try:
                    fleet.remove(account, timeout=30.0)
                except FleetError as exc:  # never added: the test failed before
                    if f"account {account!r} is not in the fleet" not in str(exc):
                        raise


def test_a_value_an_account_refuses_comes_back_through_ray_as_itself(served_fleet: ServedFleet) -> None:
    alpha, _ = served_fleet.accounts
    with pytest.raises(ValueError, match=r"^by must be a non-empty string, got ' '$"):
        served_fleet.fleet.halt(alpha, " ", "desk closed")
    with pytest.raises(TypeError, match=r"^reason must be a non-empty string, got 3 \(int\)$"):
        served_fleet.fleet.halt(alpha, "ops", 3)
    assert _get(served_fleet, f"/api/fleet/{alpha}").json()["trading_state"] == "active"
