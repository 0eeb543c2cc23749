"""What an operator of a fleet does over its control API, against a real fleet on the session's
Ray cluster: halt every account at once (the fleet's kill switch), lift the quarantine that
a PostgreSQL outage during a restart left (the account restarts HALTED from its saved state),
an account Ray cannot reach answered 503 naming it, and an account added that comes up
quarantined.

One fleet for the module, in a namespace of its own and served on a real port; each test adds
its own accounts and removes them, so that a fleet-wide halt meets only the test's accounts.
The controller probes once an hour: nothing here waits for it; a second restart within its
window quarantines an account.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from support.fleet_parts import BuyEveryPoll, gated_broker, priced_broker, refusing_broker
from support.postgres import PostgresServer
from support.ray_cluster import FLEET_TOKEN, RayCluster, fleet_fail, fleet_wait

from actors.fleet import (
    AccountQuarantined,
    AccountStatus,
    Fleet,
    FleetError,
    HaltNotDurable,
    Health,
    Probing,
    RestartWindow,
)
from actors.fleet._controller import CONTROLLER_NAME, _ray_state
from runtime.adapters.paper import PaperBroker
from runtime.adapters.sqlite import SqliteStore
from runtime.backoff import Backoff
from runtime.events import EventType
from runtime.risk.guards import TradingState
from runtime.settings import Settings, masked_dsn
from runtime.signals import ListSignalSource

AUTH = {"authorization": f"Bearer {FLEET_TOKEN}"}
WAIT = 100.0  # an upper bound for a loaded 2-core machine, under the suite's 120 s a test; nothing waits for it to pass
PAPER = functools.partial(PaperBroker, 10_000)
BASE = Settings(loop_interval_seconds=2.0, heartbeat_interval_seconds=10.0)
# One restart within the window is allowed and a second quarantines.
WINDOW = RestartWindow(1, 600.0, Backoff(0.05, 0.1))


@attrs.frozen
class Served:
    fleet: Fleet
    url: str

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, headers=kwargs.pop("headers", AUTH), timeout=60.0, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=AUTH, timeout=60.0)

    def pids(self) -> list[int | None]:
        return [s.pid for s in self.fleet.accounts(timeout=10.0)]


@pytest.fixture(scope="module")
def served(ray_cluster: RayCluster) -> Iterator[Served]:
    from actors.service.auth import BearerToken
    from actors.service.fleet_api import fleet_app
    from actors.service.server import ControlServer, bind

    fleet = Fleet.connect(ray_cluster.address, namespace=f"ops-{uuid.uuid4().hex[:6]}", window=WINDOW,
                          probing=Probing(interval=3600.0))
    server = ControlServer(fleet_app(fleet, BearerToken(FLEET_TOKEN)), bind("127.0.0.1", 0, token=FLEET_TOKEN)).start()
    host, port = server.address
    try:
        yield Served(fleet, f"http://{host}:{port}")
    finally:
        server.stop()
        fleet.dissolve(timeout=10.0)


def _remove_all(fleet: Fleet, accounts: list[str]) -> None:
    for account in accounts:
        try:
            fleet.remove(account, timeout=30.0)
        except FleetError as exc:  # never added: the test failed before
            if f"account {account!r} is not in the fleet" not in str(exc):
                raise


def test_the_fleet_halt_halts_every_account_at_once_and_names_those_whose_halt_does_not_hold(
    served: Served, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    fleet = served.fleet
    run = uuid.uuid4().hex[:6]
    # Sorted as listed: the account whose halt cannot be saved comes before two that are halted.
    trading, starting, in_memory, quarantined = (f"{n}-{run}" for n in ("a-trading", "b-starting", "c-memory",
                                                                        "d-quarantined"))
    on_disk = {a: attrs.evolve(BASE, state_db=str(tmp_path / f"{a}.db")) for a in (trading, starting, quarantined)}
    head = ray_cluster.head.node_id
    added: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        try:
            for account, settings, broker in (
                (trading, on_disk[trading], PAPER),
                (starting, on_disk[starting], functools.partial(gated_broker, listener.getsockname()[1])),
                (in_memory, BASE, refusing_broker),
                (quarantined, on_disk[quarantined], refusing_broker),
            ):
                fleet.add(account, settings, broker, ListSignalSource, node=head, ready_timeout=None)
                added.append(account)
            gate, _ = listener.accept()  # its worker is building the broker: the account is starting
            with gate:
                late = fleet.wait_ready([trading, in_memory, quarantined], WAIT)
                if late:
                    fleet_fail(served.pids, f"accounts {late} did not start within {WAIT}s")
                refused = "start failed: RuntimeError('broker login refused')"
                assert {s.account_id: s.health for s in fleet.accounts(timeout=10.0)} == {
                    trading: Health.OK, starting: Health.STARTING, in_memory: Health.QUARANTINED,
                    quarantined: Health.QUARANTINED}

                pressed = served.post("/api/fleet/halt", json={"reason": "market gone wrong", "by": "desk"})
                phase = "building its broker and signal source"
                assert (pressed.status_code, pressed.json()) == (503, {
                    "done": "not_saved", "by": "desk", "reason": "market gone wrong",
                    "accounts": [
                        {"account_id": trading, "done": "halted", "previous_state": "active"},
                        {"account_id": starting, "done": "halt_pending",
                         "detail": f"account {starting} is starting ({phase}): it will start HALTED (saved in its"
                                   " state store: whichever incarnation starts it takes it first)"},
                        {"account_id": in_memory, "done": "not_saved",
                         "error": f"account {in_memory} is quarantined ({refused}): it does not trade, but the halt"
                                  " was not saved (it keeps its state in this process's memory: give it a state_db"
                                  " or a state_dsn): added again, or started by another process, the account would"
                                  " start without it; halt it again once its state store can be reached"},
                        {"account_id": quarantined, "done": "halted", "previous_state": "halted"},
                    ],
                    "error": f"the halt does not hold for 1 of 4 accounts: {in_memory} (not_saved); each one's error"
                             " says why: halt them again"})
                gate.sendall(b"g")

            one = served.get(f"/api/fleet/{trading}").json()
            assert (one["trading_state"], one["detail"]) == ("halted", "halted by desk: market gone wrong")
            # Saved for whatever starts the quarantined account next, beside the quarantine's own.
            with SqliteStore(str(on_disk[quarantined].state_db)) as store:
                assert [(h.by, h.reason) for h in store.load_pending_halts(quarantined)] == [
                    ("fleet quarantine", refused), ("desk", "market gone wrong")]
            # The starting account took the halt before anything else.
            fleet_wait(lambda: fleet.status(starting).health is Health.OK, WAIT, served.pids, f"{starting} trading")
            started = fleet.status(starting, timeout=10.0)
            assert (started.trading_state, started.detail) == (TradingState.HALTED, "halted by desk: market gone wrong")

            # Without the account whose state is in memory, every halt holds: 200.
            fleet.remove(in_memory, timeout=30.0)
            again = served.post("/api/fleet/halt", json={"reason": "still wrong"})
            assert (again.status_code, again.json()) == (200, {
                "done": "halted", "by": "fleet control API", "reason": "still wrong",
                "accounts": [{"account_id": a, "done": "halted", "previous_state": "halted"}
                             for a in (trading, starting, quarantined)]})
            # A bad request halts nothing and names what was wrong.
            assert (served.post("/api/fleet/halt", json={}).json(), served.post(
                "/api/fleet/halt", json={"reason": "x"}, headers={}).status_code) == (
                {"error": "field 'reason' is required"}, 401)
            with pytest.raises(ValueError, match=r"^by must be a non-empty string, got ' '$"):
                fleet.halt_all(" ", "x")
        finally:
            _remove_all(fleet, added)


def test_a_fleet_halt_waits_one_timeout_for_all_frozen_workers_together_and_names_each(
    served: Served, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    fleet = served.fleet
    run = uuid.uuid4().hex[:6]
    accounts = [f"{n}-{run}" for n in ("a-frozen", "b-trading", "c-frozen")]
    frozen: list[int] = []
    try:
        for account in accounts:
            fleet.add(account, attrs.evolve(BASE, state_db=str(tmp_path / f"{account}.db")), PAPER, ListSignalSource,
                      node=ray_cluster.head.node_id, ready_timeout=None)
        late = fleet.wait_ready(accounts, WAIT)
        if late:
            fleet_fail(served.pids, f"accounts {late} did not start within {WAIT}s")
        pids = {s.account_id: s.pid for s in fleet.accounts(timeout=10.0)}
        for account in (accounts[0], accounts[2]):
            os.kill(pids[account], signal.SIGSTOP)
            frozen.append(pids[account])
        started = time.monotonic()
        pressed = served.post("/api/fleet/halt", json={"reason": "market gone wrong", "by": "desk"})
        took = time.monotonic() - started
        print(f"fleet halt with 2 frozen workers answered in {took:.1f}s")
        silent = "no answer within 10s: the halt may still land; ask its status"
        assert (pressed.status_code, pressed.json()) == (503, {
            "done": "not_saved", "by": "desk", "reason": "market gone wrong",
            "accounts": [
                {"account_id": accounts[0], "done": "unknown", "error": f"account {accounts[0]!r}: {silent}"},
                {"account_id": accounts[1], "done": "halted", "previous_state": "active"},
                {"account_id": accounts[2], "done": "unknown", "error": f"account {accounts[2]!r}: {silent}"},
            ],
            "error": f"the halt does not hold for 2 of 3 accounts: {accounts[0]} (unknown), {accounts[2]} (unknown);"
                     " each one's error says why: halt them again"})
        # Each account's halt was asked at once and awaited together: one timeout, not one per frozen account.
        assert took < 18.0, took
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        _remove_all(fleet, accounts)


def test_the_fleet_halt_reaches_an_account_whose_worker_was_just_lost_and_it_starts_halted(
    served: Served, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    fleet = served.fleet
    account = f"restarting-{uuid.uuid4().hex[:6]}"
    try:
        fleet.add(account, attrs.evolve(BASE, state_db=str(tmp_path / "s.db")), PAPER, ListSignalSource,
                  node=ray_cluster.head.node_id, ready_timeout=WAIT)
        lost = fleet.status(account, timeout=10.0).pid
        assert lost is not None
        os.kill(lost, signal.SIGKILL)  # Ray restarts it; the halt meets it dying, restarting or starting
        pressed = served.post("/api/fleet/halt", json={"reason": "market gone wrong", "by": "desk"})
        [outcome] = pressed.json()["accounts"]
        # Never lost with the worker: asked of the next one, which holds it (saved once its store
        # is open, should it not be yet) and starts HALTED. On a slow machine the restart can take
        # longer than the answer's wait ("unknown": Ray still delivers it once the worker is up).
        assert outcome["done"] in ("halted", "halt_pending", "not_saved", "unknown"), outcome
        fleet_wait(lambda: fleet.status(account).pid != lost and fleet.status(account).health is Health.OK, WAIT,
                   served.pids, f"{account} restarted")
        fleet_wait(lambda: fleet.status(account).trading_state is TradingState.HALTED, WAIT, served.pids,
                   f"{account} halted")
        after = fleet.status(account, timeout=10.0)
        assert (after.trading_state, after.detail) == (TradingState.HALTED, "halted by desk: market gone wrong")
    finally:
        _remove_all(fleet, [account])


def test_an_account_whose_worker_dies_as_the_fleet_is_halted_sends_no_order_before_the_halt(
    served: Served, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    # Its next incarnation started from its saved ACTIVE state and traded (3 to 6 orders on a
    # 0.05 s loop) until Ray's retry of the halt reached it (the fleet trial).
    fleet = served.fleet
    account = f"trading-{uuid.uuid4().hex[:6]}"
    try:
        fleet.add(account, attrs.evolve(BASE, state_db=str(tmp_path / "s.db"), loop_interval_seconds=0.05),
                  priced_broker, BuyEveryPoll, node=ray_cluster.head.node_id, ready_timeout=WAIT)
        lost = fleet.status(account, timeout=10.0).pid
        assert lost is not None
        os.kill(lost, signal.SIGKILL)
        pressed = served.post("/api/fleet/halt", json={"reason": "market gone wrong", "by": "desk"})
        assert pressed.status_code in (200, 503), pressed.text
        fleet_wait(lambda: fleet.status(account).pid != lost and fleet.status(account).health is Health.OK, WAIT,
                   served.pids, f"{account} restarted")
        fleet_wait(lambda: fleet.status(account).trading_state is TradingState.HALTED, WAIT, served.pids,
                   f"{account} halted")
        journal = fleet.journal(account)
        last_start = max(i for i, e in enumerate(journal) if e.event_type is EventType.LOOP_STARTED)
        sent = [e.metadata["client_order_id"] for e in journal[last_start:] if e.event_type is EventType.ORDER_SUBMITTED]
        assert sent == []  # the new incarnation started HALTED: its orders were refused, none sent
    finally:
        _remove_all(fleet, [account])


@contextmanager
def _on_a_store_of_its_own(
    served: Served, ray_cluster: RayCluster, postgres_server: PostgresServer, prefix: str
) -> Iterator[tuple[str, PostgresServer]]:
    # An account added on a PostgreSQL server of its own (its test takes it down): the account's
    # id and that server, removed and stopped afterwards, whether the server is up or down.
    account = f"{prefix}-{uuid.uuid4().hex[:6]}"
    own = PostgresServer(postgres_server.bin_dir).start()
    try:
        served.fleet.add(account, attrs.evolve(BASE, state_dsn=own.dsn), PAPER, ListSignalSource,
                         node=ray_cluster.head.node_id, ready_timeout=WAIT)
        yield account, own
    finally:
        _remove_all(served.fleet, [account])
        own.stop()


def test_a_halt_kept_for_a_worker_that_might_die_is_let_go_once_a_person_resumes_the_account(
    served: Served, ray_cluster: RayCluster, postgres_server: PostgresServer
) -> None:
    # The controller kept a halt answered not_saved (the store was down) until the account's next
    # start: resumed meanwhile, the account was halted again by it at its next restart.
    fleet = served.fleet
    with _on_a_store_of_its_own(served, ray_cluster, postgres_server, "resumed") as (account, own):
        own.down()
        with pytest.raises(HaltNotDurable, match=f"^account {account} is trading: it is halted in this process"):
            fleet.halt(account, "desk", "market gone wrong")
        own.up()
        # The desk looked, and resumed it once its store was back (a resume saves ACTIVE).
        fleet_wait(lambda: fleet.resume(account, "desk") is TradingState.HALTED, WAIT, served.pids, f"{account} resumed")
        first = fleet.status(account, timeout=10.0)
        assert (first.trading_state, first.detail) == (TradingState.ACTIVE, "")
        os.kill(first.pid, signal.SIGKILL)
        fleet_wait(lambda: fleet.status(account).pid not in (first.pid, None) and fleet.status(account).health is Health.OK,
                   WAIT, served.pids, f"{account} restarted")
        after = fleet.status(account, timeout=10.0)
        assert (after.trading_state, after.detail) == (TradingState.ACTIVE, "")


def test_a_quarantine_left_by_a_store_outage_is_lifted_on_purpose_and_the_account_restarts_halted(
    served: Served, ray_cluster: RayCluster, postgres_server: PostgresServer
) -> None:
    fleet = served.fleet
    with _on_a_store_of_its_own(served, ray_cluster, postgres_server, "outage") as (account, own):
        first = fleet.status(account, timeout=10.0)
        assert (first.health, first.trading_state, first.peak) == (Health.OK, TradingState.ACTIVE, 10_000)
        trading = served.post(f"/api/fleet/{account}/unquarantine", json={"by": "ops"})
        assert (trading.status_code, trading.json()) == (409, {
            "account_id": account, "done": "refused",
            "error": f"account {account} is not quarantined (ok): there is no quarantine to lift"})

        # PostgreSQL goes down while the account's worker restarts: it comes up quarantined, and
        # nothing could be saved.
        own.down()
        os.kill(first.pid, signal.SIGKILL)
        fleet_wait(lambda: fleet.status(account).health is Health.QUARANTINED, WAIT, served.pids, f"{account} quarantined")
        quarantined = fleet.status(account, timeout=10.0)
        unreachable = f"state store {masked_dsn(own.dsn)!r} unreachable after 5 attempts: "
        assert quarantined.detail.startswith(unreachable)
        # Still down: the quarantine stays, since nothing could keep the account HALTED as it starts.
        refused = served.post(f"/api/fleet/{account}/unquarantine", json={"by": "ops"})
        assert (refused.status_code, refused.json()["account_id"], refused.json()["done"]) == (503, account, "not_saved")
        assert refused.json()["error"].startswith(
            f"account {account} is quarantined ({quarantined.detail}): the quarantine was not lifted, since the halt"
            f" that keeps it HALTED as it starts again was not saved (state store {masked_dsn(own.dsn)!r} unreachable"
            " after 1 attempt: ")
        still = fleet.status(account, timeout=10.0)
        assert (still.health, still.pid) == (Health.QUARANTINED, quarantined.pid)

        # The outage is over: lifted, the account restarts from its saved state (ACTIVE, peak
        # 10,000), HALTED by the person who lifted it, and trades only once resumed.
        own.up()
        # A halt of the quarantined account is saved now that the store is back (it answered
        # not_saved for good, the store never reopened: the fleet trial).
        halted = served.post(f"/api/fleet/{account}/halt", json={"by": "desk", "reason": "after the outage"})
        assert (halted.status_code, halted.json()["done"], halted.json()["previous_state"]) == (200, "halted", "halted")
        lifted = served.post(f"/api/fleet/{account}/unquarantine", json={"by": "ops"})
        reason = f"quarantine lifted: {quarantined.detail}"
        assert (lifted.status_code, lifted.json()) == (202, {
            "account_id": account, "done": "restarting", "by": "ops",
            "detail": f"account {account} restarts from its saved state: it starts HALTED (halted by ops: {reason}),"
                      " and trades once resumed"})

        def restarted() -> bool:
            status = fleet.status(account)
            return status.pid != quarantined.pid and status.health is Health.OK

        fleet_wait(restarted, WAIT, served.pids, f"{account} restarted")
        after = fleet.status(account, timeout=10.0)
        # The desk's halt, saved first, is the one in force; the lift's is taken after it.
        desk = "halted by desk: after the outage"
        assert (after.trading_state, after.detail, after.peak) == (TradingState.HALTED, desk, 10_000)
        changes = [(e.metadata["from"], e.metadata["to"], e.metadata["reason"]) for e in fleet.journal(account)
                   if e.event_type is EventType.TRADING_STATE_CHANGED]
        assert changes == [("active", "halted", desk), ("halted", "halted", f"halted by ops: {reason}")]
        assert fleet.resume(account, "ops") is TradingState.HALTED
        assert fleet.status(account, timeout=10.0).trading_state is TradingState.ACTIVE


def test_a_fleet_halt_pressed_during_a_store_outage_outlives_the_worker_that_held_it(
    served: Served, ray_cluster: RayCluster, postgres_server: PostgresServer
) -> None:
    # The fleet trial: the halt was held only by the account's process (the 503 said so), its
    # worker died before the store came back, and the account came back without the desk's halt.
    # Here the fleet's controller restarts too, and the account's next worker dies as well.
    fleet = served.fleet
    with _on_a_store_of_its_own(served, ray_cluster, postgres_server, "held") as (account, own):
        first = fleet.status(account, timeout=10.0)
        assert (first.health, first.trading_state) == (Health.OK, TradingState.ACTIVE)
        own.down()
        pressed = served.post("/api/fleet/halt", json={"reason": "market gone wrong", "by": "desk"})
        [outcome] = pressed.json()["accounts"]
        assert (pressed.status_code, outcome["done"]) == (503, "not_saved"), pressed.json()
        assert outcome["error"].startswith(f"account {account} is trading: it is halted in this process"), outcome
        # The controller, which keeps that halt for the account's next incarnation, is restarted.
        ray = ray_cluster.ray
        controller = ray.get_actor(CONTROLLER_NAME, namespace=fleet.namespace)
        ray.kill(controller, no_restart=False)
        fleet_wait(lambda: _ray_state(controller) == ("ALIVE", 1) and fleet.account_ids() == [account], WAIT,
                   served.pids, "the controller restarted")

        # Its worker dies before the store is back: the next one cannot open the store and is quarantined.
        os.kill(first.pid, signal.SIGKILL)
        fleet_wait(lambda: fleet.status(account).health is Health.QUARANTINED, WAIT, served.pids, f"{account} quarantined")
        quarantined = fleet.status(account, timeout=10.0)
        assert quarantined.pid != first.pid
        assert quarantined.detail.startswith(f"state store {masked_dsn(own.dsn)!r} unreachable after 5 attempts: ")
        assert quarantined.detail.endswith("; 1 halt not saved yet (kept until its state store takes it)")

        # The store is back, and that worker dies too before anything saved the halt: the next one
        # (a first restart to the restarted controller) is handed it, and starts HALTED.
        own.up()
        os.kill(quarantined.pid, signal.SIGKILL)
        fleet_wait(lambda: fleet.status(account).pid not in (quarantined.pid, None)
                   and fleet.status(account).health is Health.OK, WAIT, served.pids, f"{account} back")
        desk = "halted by desk: market gone wrong"
        after = fleet.status(account, timeout=10.0)
        assert (after.trading_state, after.detail, after.peak) == (TradingState.HALTED, desk, 10_000)
        changes = [(e.metadata["from"], e.metadata["to"], e.metadata["reason"]) for e in fleet.journal(account)
                   if e.event_type is EventType.TRADING_STATE_CHANGED]
        assert changes == [("active", "halted", desk)]


def test_a_quarantine_for_too_many_restarts_is_lifted_with_its_restart_window_and_the_account_starts_halted(
    served: Served, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    fleet = served.fleet
    account = f"flappy-{uuid.uuid4().hex[:6]}"
    try:
        fleet.add(account, attrs.evolve(BASE, state_db=str(tmp_path / "s.db")), PAPER, ListSignalSource,
                  node=ray_cluster.head.node_id, ready_timeout=WAIT)

        def killed_and_back(pid: int | None) -> AccountStatus:
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            fleet_wait(lambda: fleet.status(account).pid not in (pid, None) and fleet.wait_ready([account], 5.0) == [],
                       WAIT, served.pids, f"{account} restarted")
            return fleet.status(account, timeout=10.0)

        again = killed_and_back(fleet.status(account, timeout=10.0).pid)
        assert again.health is Health.OK
        quarantined = killed_and_back(again.pid)  # the second restart within the window
        why = "restarted 2 times within 600s (at most 1)"
        assert (quarantined.health, quarantined.detail) == (Health.QUARANTINED, why)

        # Two people lift it at once: one lift restarts it, the other is told so (both were 202,
        # with two halts journaled). An empty body is the control API's, as for a halt or a resume.
        barrier = threading.Barrier(2)

        def lift(body: dict[str, Any]) -> httpx.Response:
            barrier.wait(10.0)
            return served.post(f"/api/fleet/{account}/unquarantine", **body)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            empty = {"content": b"", "headers": {**AUTH, "content-type": "application/json"}}  # (every POST is JSON)
            answers = list(pool.map(lift, [{"json": {"by": "ops"}}, empty]))
        [lifted] = [a for a in answers if a.status_code == 202]
        [other] = [a for a in answers if a is not lifted]
        lifter = lifted.json()["by"]
        assert lifter in ("ops", "fleet control API"), lifted.json()
        assert (other.status_code, other.json()) == (409, {
            "account_id": account, "done": "refused",
            "error": f"account {account}'s quarantine is being lifted already, by {lifter}: it restarts HALTED;"
                     " there is no quarantine left to lift"})
        # Its restarts forgotten, its next start is a first one: not quarantined again, and HALTED
        # by the lift, as its answer said (the status named the quarantine's own halt).
        lift_halt = f"halted by {lifter}: quarantine lifted: {why}"
        assert lifted.json()["detail"] == (f"account {account} restarts from its saved state: it starts HALTED"
                                           f" ({lift_halt}), and trades once resumed")
        fleet_wait(lambda: fleet.status(account).pid != quarantined.pid and fleet.status(account).health is Health.OK,
                   WAIT, served.pids, f"{account} restarted")
        after = fleet.status(account, timeout=10.0)
        assert (after.trading_state, after.detail) == (TradingState.HALTED, lift_halt)
        changes = [(e.metadata["from"], e.metadata["to"], e.metadata["reason"]) for e in fleet.journal(account)
                   if e.event_type is EventType.TRADING_STATE_CHANGED]
        assert changes == [("active", "halted", lift_halt)]
    finally:
        _remove_all(fleet, [account])


def test_an_account_ray_cannot_reach_is_answered_503_naming_it_as_its_other_answers_do(
    served: Served, ray_cluster: RayCluster
) -> None:
    fleet = served.fleet
    account = f"gone-{uuid.uuid4().hex[:6]}"
    try:
        fleet.add(account, BASE, PAPER, ListSignalSource, node=ray_cluster.head.node_id, ready_timeout=WAIT)
        # Ray gives up on its worker; this module's controller would re-create it within the hour.
        ray = ray_cluster.ray
        ray.kill(ray.get_actor(f"account:{account}", namespace=fleet.namespace), no_restart=True)
        gone = f"account {account!r} has no actor in namespace {fleet.namespace!r}"

        def no_actor() -> bool:
            try:
                fleet.status(account)
            except FleetError as exc:
                return str(exc) == gone
            return False

        fleet_wait(no_actor, WAIT, served.pids, f"{account}'s actor gone")
        for action, body in (("halt", {"reason": "desk closed", "by": "ops"}), ("resume", {"by": "ops"}),
                             ("unquarantine", {"by": "ops"})):
            answer = served.post(f"/api/fleet/{account}/{action}", json=body)
            assert (answer.status_code, answer.json()) == (503, {"account_id": account, "done": "unknown", "error": gone})
    finally:
        _remove_all(fleet, [account])


def test_adding_an_account_that_comes_up_quarantined_says_so_and_leaves_it_in_the_fleet(
    served: Served, ray_cluster: RayCluster
) -> None:
    fleet = served.fleet
    account = f"refused-{uuid.uuid4().hex[:6]}"
    try:
        with pytest.raises(AccountQuarantined, match=(
                f"^account {account!r} was added but came up quarantined \\(HALTED, not trading\\): start failed: "
                r"RuntimeError\('broker login refused'\); it stays in the fleet: mend the cause and unquarantine it, "
                r"or remove it$")):
            fleet.add(account, BASE, refusing_broker, ListSignalSource, node=ray_cluster.head.node_id, ready_timeout=WAIT)
        assert account in fleet.account_ids()
        assert fleet.status(account, timeout=10.0).health is Health.QUARANTINED
    finally:
        _remove_all(fleet, [account])
