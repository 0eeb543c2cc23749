"""The fleet on a real two-node Ray cluster on this machine: an account's worker killed, a crash
storm until its supervisor gives up, a zombie, an account Ray gave up on, too many restarts, and
a whole node lost (PostgreSQL). One cluster for the module; the node is lost last."""

from __future__ import annotations

import functools
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest
from support.fleet_parts import priced_broker
from support.postgres import PostgresServer
from support.ray_cluster import RayCluster, fleet_wait

from actors.fleet import AccountStatus, Fleet, Health, Probing, RestartWindow
from runtime.adapters.paper import PaperBroker
from runtime.adapters.postgres import PostgresStore
from runtime.adapters.sqlite import SqliteStore
from runtime.backoff import Backoff
from runtime.broker import Order
from runtime.events import EventType
from runtime.risk.guards import TradingState
from runtime.risk.monitor import RiskMonitor
from runtime.settings import Settings
from runtime.signals import ListSignalSource

# Generous: on a loaded 2-core CI machine a worker that imports Ray, pykka and tradewarden can take
# tens of seconds to start; a probe waits 3 s for an answer before counting a silence.
WAIT = 90.0
PAPER = functools.partial(PaperBroker, 10_000)
BASE = Settings(loop_interval_seconds=0.5, heartbeat_interval_seconds=1.0)


def _id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:6]}"


def _seed_peak(store: SqliteStore | PostgresStore, account: str) -> None:
    """A saved guard record with a peak of 12,000 (the paper account holds 10,000: 16.7% down,
    inside the 20% limit), so that a restart that lost the state would show a peak of 10,000."""
    monitor = RiskMonitor(12_000, BASE.guards())
    monitor.observe(11_000, datetime.now(UTC))
    store.save_guard(account, monitor.record())


def _dissolve(ray_cluster: RayCluster, namespace: str) -> None:
    # Every actor of the namespace ends now, the controller first (else it re-creates the rest):
    # the accounts must not outlive the session's PostgreSQL server.
    ray = ray_cluster.ray
    names = sorted(ray.util.list_named_actors(all_namespaces=True), key=lambda a: a["name"].startswith("account:"))
    for actor in names:
        if actor["namespace"] == namespace:
            ray.kill(ray.get_actor(actor["name"], namespace=namespace), no_restart=True)


@pytest.fixture(scope="module")
def fleet(ray_cluster: RayCluster) -> Iterator[Fleet]:
    namespace = f"fleet-{uuid.uuid4().hex[:6]}"
    yield Fleet.connect(
        ray_cluster.address,
        namespace=namespace,
        window=RestartWindow(5, 60.0, Backoff(0.05, 0.5)),
        probing=Probing(interval=0.5, timeout=3.0, zombie_after=4),
    )
    _dissolve(ray_cluster, namespace)


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.dsn


def _pids(fleet: Fleet):
    def pids() -> list[int | None]:
        return [s.pid for s in fleet.accounts(timeout=5.0)]

    return pids


def _add_all(fleet: Fleet, settings: dict[str, Settings], **options) -> None:
    """Add the accounts at once (their workers start side by side), then wait until all trade."""
    for account, its in settings.items():
        fleet.add(account, its, PAPER, ListSignalSource, ready_timeout=None, **options)
    fleet_wait(lambda: all(fleet.status(a).health is Health.OK for a in settings), WAIT, _pids(fleet),
               f"accounts {sorted(settings)} trading")


def _restarted(fleet: Fleet, account: str, old_pid: int | None) -> AccountStatus | None:
    status = fleet.status(account, timeout=5.0)
    return status if status.pid != old_pid and status.health is not Health.STARTING else None


def _wait_restarted(fleet: Fleet, account: str, old_pid: int | None, what: str) -> AccountStatus:
    found: list[AccountStatus] = []

    def restarted() -> bool:
        status = _restarted(fleet, account, old_pid)
        if status is not None:
            found.append(status)
        return status is not None

    fleet_wait(restarted, WAIT, _pids(fleet), what)
    return found[-1]


def test_a_killed_worker_comes_back_with_its_peak_and_halted_latch_and_the_others_keep_answering(
    fleet: Fleet, tmp_path: Path
) -> None:
    killed, other = _id("killed"), _id("other")
    for account in (killed, other):
        with SqliteStore(tmp_path / f"{account}.db") as store:
            _seed_peak(store, account)
    _add_all(fleet, {a: attrs.evolve(BASE, state_db=str(tmp_path / f"{a}.db")) for a in (killed, other)})
    assert fleet.halt(killed, "ops", "drill: hold it") is TradingState.ACTIVE
    before = fleet.status(killed)
    assert (before.health, before.trading_state, before.peak) == (Health.OK, TradingState.HALTED, 12_000)
    other_pid = fleet.status(other).pid

    errors: list[BaseException] = []
    answers = 0
    done = threading.Event()

    def ask_the_other() -> None:
        nonlocal answers
        while not done.is_set():
            try:
                status = fleet.status(other, timeout=5.0)
                assert (status.health, status.trading_state, status.pid) == (Health.OK, TradingState.ACTIVE, other_pid)
                answers += 1
            except BaseException as exc:  # every failure is counted and shown
                errors.append(exc)
            done.wait(0.02)

    asker = threading.Thread(target=ask_the_other, daemon=True)
    asker.start()
    os.kill(before.pid, signal.SIGKILL)
    after = _wait_restarted(fleet, killed, before.pid, f"restart of {killed} after SIGKILL")
    done.set()
    asker.join(WAIT)
    assert after.health is Health.OK
    assert (after.trading_state, after.peak) == (TradingState.HALTED, 12_000)  # 10,000 would be a lost peak
    assert after.detail == "halted by ops: drill: hold it"
    assert errors == [] and answers > 0


def test_a_crash_storm_ends_in_the_fail_safe_then_the_account_is_back_halted_and_the_others_are_untouched(
    fleet: Fleet, dsn: str
) -> None:
    storm, calm = _id("storm"), _id("calm")
    settings = attrs.evolve(BASE, state_dsn=dsn, max_restarts=1, within_seconds=60.0)
    _add_all(fleet, {storm: settings, calm: settings}, drills=True)
    first, calm_before = fleet.status(storm), fleet.status(calm)
    assert (first.trading_state, first.epoch) == (TradingState.ACTIVE, 1)

    def storm_until_restarted() -> bool:
        if _restarted(fleet, storm, first.pid) is not None:
            return True
        fleet.drill(storm, "guard", "crash storm")
        return False

    fleet_wait(storm_until_restarted, WAIT, _pids(fleet), f"process restart of {storm} after its supervisor gave up")
    after = fleet.status(storm)
    assert (after.health, after.trading_state, after.epoch) == (Health.OK, TradingState.HALTED, 2)
    assert after.detail.startswith("supervisor gave up: ")
    halted = [e for e in fleet.journal(storm) if e.event_type is EventType.TRADING_STATE_CHANGED]
    assert [(e.metadata["from"], e.metadata["to"]) for e in halted] == [("active", "halted")]
    assert halted[0].metadata["reason"] == after.detail.removeprefix("supervisor gave up: ")
    calm_after = fleet.status(calm)
    assert (calm_after.health, calm_after.trading_state, calm_after.pid, calm_after.epoch) == (
        Health.OK, TradingState.ACTIVE, calm_before.pid, 1)


def test_an_order_through_the_fleet_is_placed_once_even_after_ray_gave_up_on_the_account_and_it_was_recreated(
    fleet: Fleet, ray_cluster: RayCluster, dsn: str
) -> None:
    account = _id("orders")
    fleet.add(account, attrs.evolve(BASE, state_dsn=dsn), priced_broker, ListSignalSource)
    order = Order("EURUSD", "buy", 1_000)
    outcome = fleet.place_order(account, order)
    assert (outcome.client_id, outcome.executed, outcome.refusal, outcome.error) == (order.client_id, True, None, None)
    duplicate = f"duplicate client id {order.client_id!r}: the journal of {account} already holds that order"
    with pytest.raises(ValueError, match=f"^{duplicate}$"):
        fleet.place_order(account, order)

    before = fleet.status(account)
    ray = ray_cluster.ray
    ray.kill(ray.get_actor(f"account:{account}", namespace=fleet.namespace), no_restart=True)  # Ray gives up on it
    after = _wait_restarted(fleet, account, before.pid, f"re-creation of {account} by the controller")
    assert (after.health, after.trading_state, after.epoch) == (Health.OK, TradingState.ACTIVE, 2)
    assert fleet.counters()["recreated"] == {account: 1}
    with pytest.raises(ValueError, match=f"^{duplicate}$"):
        fleet.place_order(account, order)  # the new incarnation's guard never saw it: the journal did
    submitted = [e for e in fleet.journal(account) if e.event_type is EventType.ORDER_SUBMITTED]
    assert [e.metadata["client_order_id"] for e in submitted] == [order.client_id]


def test_a_zombie_alive_to_ray_but_not_answering_is_killed_by_the_controller_and_restarted(fleet: Fleet, dsn: str) -> None:
    account = _id("zombie")
    fleet.add(account, attrs.evolve(BASE, state_dsn=dsn), PAPER, ListSignalSource)
    fleet.halt(account, "ops", "before it froze")
    frozen = fleet.status(account)
    os.kill(frozen.pid, signal.SIGSTOP)  # the process is there, Ray sees it alive; it answers nothing
    after = _wait_restarted(fleet, account, frozen.pid, f"zombie {account} killed and restarted")
    assert (after.health, after.trading_state, after.epoch) == (Health.OK, TradingState.HALTED, 2)
    assert fleet.counters()["zombies_killed"] == {account: 1}


def test_too_many_restarts_within_the_window_quarantine_the_account_halted(
    ray_cluster: RayCluster, dsn: str, request: pytest.FixtureRequest
) -> None:
    namespace = f"strict-{uuid.uuid4().hex[:6]}"
    strict = Fleet.connect(ray_cluster.address, namespace=namespace, window=RestartWindow(1, 60.0, Backoff(0.05, 0.1)),
                           probing=Probing(0.5, 1.0, 3))
    request.addfinalizer(lambda: _dissolve(ray_cluster, namespace))
    account = _id("flappy")
    with PostgresStore(dsn) as store:
        store.claim(account)
        _seed_peak(store, account)
    strict.add(account, attrs.evolve(BASE, state_dsn=dsn), PAPER, ListSignalSource)
    pid = strict.status(account).pid
    os.kill(pid, signal.SIGKILL)
    again = _wait_restarted(strict, account, pid, f"first restart of {account}")
    assert (again.health, again.trading_state) == (Health.OK, TradingState.ACTIVE)
    os.kill(again.pid, signal.SIGKILL)
    quarantined = _wait_restarted(strict, account, again.pid, f"quarantine of {account}")
    with PostgresStore(dsn) as store:
        record = store.load_guard(account)
    assert record is not None and record.trading_state is TradingState.HALTED
    # A quarantined account shows its last saved reading (the guard saves when a reading matters).
    assert quarantined == AccountStatus(
        account, Health.QUARANTINED, TradingState.HALTED, equity=record.drawdown.latest_equity, peak=12_000,
        detail="restarted 2 times within 60s (at most 1)", node=quarantined.node, pid=quarantined.pid, epoch=4,
    )
    assert record.reason == "quarantined: restarted 2 times within 60s (at most 1)"


def test_a_lost_node_moves_its_accounts_to_the_other_node_with_their_peaks_and_latches(
    fleet: Fleet, ray_cluster: RayCluster, dsn: str
) -> None:
    halted, active = _id("moved-halted"), _id("moved-active")
    worker_node = ray_cluster.worker.node_id
    for account in (halted, active):
        with PostgresStore(dsn) as store:
            store.claim(account)
            _seed_peak(store, account)
    _add_all(fleet, {a: attrs.evolve(BASE, state_dsn=dsn) for a in (halted, active)}, node=worker_node)
    fleet.halt(halted, "ops", "latched before the node went")
    before = {s.account_id: s for s in fleet.accounts() if s.account_id in (halted, active)}
    assert {s.node for s in before.values()} == {worker_node}

    ray_cluster.cluster.remove_node(ray_cluster.worker, allow_graceful=False)
    head = ray_cluster.head.node_id

    def moved() -> bool:
        now = {s.account_id: s for s in fleet.accounts(timeout=5.0)}
        return all(now[a].node == head and now[a].health is Health.OK for a in (halted, active))

    fleet_wait(moved, 60.0, _pids(fleet), "both accounts running on the head node")
    after = {s.account_id: s for s in fleet.accounts()}
    assert (after[halted].trading_state, after[halted].peak, after[halted].detail) == (
        TradingState.HALTED, 12_000, "halted by ops: latched before the node went")
    assert (after[active].trading_state, after[active].peak) == (TradingState.ACTIVE, 12_000)
    assert after[halted].epoch == before[halted].epoch + 1 and after[active].epoch == before[active].epoch + 1
    # Pinned to the lost node, Ray could not restart them: the controller re-created them.
    recreated = fleet.counters()["recreated"]
    assert {a: recreated.get(a) for a in (halted, active)} == {halted: 1, active: 1}

