"""The fleet on a real two-node Ray cluster on this machine: an account's worker killed, a crash
storm until its supervisor gives up, a zombie, an account Ray gave up on, too many restarts, a
stale incarnation fenced off, a driver that lets go, and a whole node lost (PostgreSQL).

One cluster for the session and one fleet for the module: every account the tests need is added
at once when the module starts (their workers start side by side, which is most of the cost on
a loaded 2-core machine), each test owns its own accounts, and one bystander account, that no
test touches, must stay up, ACTIVE and on the same worker throughout. The node is lost last.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import attrs
import pytest
from support.fleet_parts import priced_broker
from support.postgres import PostgresServer
from support.ray_cluster import RayCluster, fleet_fail, fleet_wait

from actors.fleet import AccountNotTrading, AccountStatus, Fleet, FleetError, Health, Probing, RestartWindow
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

# Upper bounds only: on a loaded 2-core CI machine a worker that imports Ray, pykka and
# tradewarden can take tens of seconds to start. Nothing here waits for a bound to pass.
WAIT = 120.0
SETUP_WAIT = 240.0  # nine workers starting at once took 80 s on this 2-core machine at a load of 23
ASK = 10.0  # a status call's timeout (its guard gets half): answered in milliseconds when idle
PAPER = functools.partial(PaperBroker, 10_000)
# A slow heartbeat: its timeout (half the interval) must hold on a loaded machine, where a missed
# beat would restart an account's loop and spend its restarts.
BASE = Settings(loop_interval_seconds=2.0, heartbeat_interval_seconds=5.0)
# Each account restarts at most once in this module, so one restart within the window is allowed
# and a second quarantines (the quarantine test does exactly that).
WINDOW = RestartWindow(1, 600.0, Backoff(0.05, 0.1))
# A zombie is silent for 3 rounds of 2 s; a healthy account answers a ping in milliseconds.
PROBING = Probing(interval=0.5, timeout=2.0, zombie_after=3)


def _seed_peak(store: SqliteStore | PostgresStore, account: str) -> None:
    """A saved guard record with a peak of 12,000 (the paper account holds 10,000: 16.7% down,
    inside the 20% limit), so that a restart that lost the state would show a peak of 10,000."""
    monitor = RiskMonitor(12_000, BASE.guards())
    monitor.observe(11_000, datetime.now(UTC))
    store.save_guard(account, monitor.record())


@attrs.frozen
class Accounts:
    """The module's accounts, by the test that owns each (ids unique per run)."""

    bystander: str
    killed: str
    storm: str
    orders: str
    zombie: str
    flappy: str
    fenced: str
    moved_halted: str
    moved_active: str


def _kill_namespace(ray_cluster: RayCluster, namespace: str) -> None:
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
    yield Fleet.connect(ray_cluster.address, namespace=namespace, window=WINDOW, probing=PROBING)
    _kill_namespace(ray_cluster, namespace)


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.dsn


def _pids(fleet: Fleet) -> Callable[[], list[int | None]]:
    def pids() -> list[int | None]:
        return [s.pid for s in fleet.accounts(timeout=ASK)]

    return pids


@pytest.fixture(scope="module")
def accounts(fleet: Fleet, ray_cluster: RayCluster, dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Accounts:
    """Every account of the module, added at once; returns when all of them trade."""
    run = uuid.uuid4().hex[:6]
    ids = Accounts(*(f"{field.name.replace('_', '-')}-{run}" for field in attrs.fields(Accounts)))
    folder = tmp_path_factory.mktemp("fleet")
    on_sqlite = {a: attrs.evolve(BASE, state_db=str(folder / f"{a}.db")) for a in (ids.bystander, ids.killed)}
    for account, its in on_sqlite.items():
        with SqliteStore(str(its.state_db)) as store:
            _seed_peak(store, account)
    on_postgres = attrs.evolve(BASE, state_dsn=dsn)
    with PostgresStore(dsn) as store:
        for account in (ids.flappy, ids.moved_halted, ids.moved_active):
            store.claim(account)
            _seed_peak(store, account)
    worker_node = ray_cluster.worker.node_id
    added = [
        *((a, its, PAPER, {}) for a, its in on_sqlite.items()),
        (ids.storm, attrs.evolve(on_postgres, max_restarts=1, within_seconds=60.0), PAPER, {"drills": True}),
        (ids.orders, on_postgres, priced_broker, {}),
        *((a, on_postgres, PAPER, {}) for a in (ids.zombie, ids.flappy, ids.fenced)),
        *((a, on_postgres, PAPER, {"node": worker_node}) for a in (ids.moved_halted, ids.moved_active)),
    ]
    for account, settings, broker, options in added:
        fleet.add(account, settings, broker, ListSignalSource, ready_timeout=None, **options)
    everyone = [account for account, *_ in added]
    late = fleet.wait_ready(everyone, SETUP_WAIT)
    if late:
        fleet_fail(_pids(fleet), f"accounts {late} did not start within {SETUP_WAIT}s (all {len(everyone)} started at once)")
    statuses = {s.account_id: s.health for s in fleet.accounts(timeout=ASK)}
    assert {a: statuses[a] for a in everyone} == {a: Health.OK for a in everyone}
    return ids


@pytest.fixture
def bystander(fleet: Fleet, accounts: Accounts) -> Iterator[AccountStatus]:
    """The untouched account as the test starts; after the test it must be exactly as it was."""
    before = fleet.status(accounts.bystander, timeout=ASK)
    assert (before.health, before.trading_state, before.peak) == (Health.OK, TradingState.ACTIVE, 12_000)
    yield before
    after = fleet.status(accounts.bystander, timeout=ASK)
    assert (after.health, after.trading_state, after.pid, after.node, after.peak) == (
        Health.OK, TradingState.ACTIVE, before.pid, before.node, 12_000)


def _status(fleet: Fleet, account: str) -> AccountStatus:
    return fleet.status(account, timeout=ASK)


def _wait_restarted(fleet: Fleet, account: str, old_pid: int | None, what: str) -> AccountStatus:
    """The account's status once a new incarnation (another pid) is past starting."""
    found: list[AccountStatus] = []

    def restarted() -> bool:
        status = _status(fleet, account)
        if status.pid != old_pid and status.health is not Health.STARTING:
            found.append(status)
            return True
        return False

    fleet_wait(restarted, WAIT, _pids(fleet), what)
    return found[-1]


def test_a_killed_worker_comes_back_with_its_peak_and_halted_latch_and_the_others_keep_answering(
    fleet: Fleet, accounts: Accounts, bystander: AccountStatus
) -> None:
    killed = accounts.killed
    assert fleet.halt(killed, "ops", "drill: hold it") is TradingState.ACTIVE
    before = _status(fleet, killed)
    assert (before.health, before.trading_state, before.peak) == (Health.OK, TradingState.HALTED, 12_000)

    errors: list[BaseException] = []
    answers = 0
    done = threading.Event()

    def ask_the_other() -> None:
        nonlocal answers
        while not done.is_set():
            try:
                status = _status(fleet, accounts.bystander)
                assert (status.health, status.trading_state, status.pid) == (Health.OK, TradingState.ACTIVE, bystander.pid)
                answers += 1
            except BaseException as exc:  # every failure is counted and shown
                errors.append(exc)
            done.wait(0.1)

    asker = threading.Thread(target=ask_the_other, daemon=True)
    asker.start()
    os.kill(before.pid, signal.SIGKILL)
    after = _wait_restarted(fleet, killed, before.pid, f"restart of {killed} after SIGKILL")
    done.set()
    asker.join(WAIT)
    assert (after.health, after.trading_state, after.peak, after.epoch) == (Health.OK, TradingState.HALTED, 12_000, None)
    assert after.detail == "halted by ops: drill: hold it"  # 10,000 above would be a lost peak
    assert errors == [] and answers > 0


def test_a_crash_storm_ends_in_the_fail_safe_then_the_account_is_back_halted_and_the_others_are_untouched(
    fleet: Fleet, accounts: Accounts, bystander: AccountStatus
) -> None:
    storm = accounts.storm
    first = _status(fleet, storm)
    assert (first.health, first.trading_state, first.epoch) == (Health.OK, TradingState.ACTIVE, 1)

    def storm_until_restarted() -> bool:
        status = _status(fleet, storm)
        if status.pid != first.pid and status.health is not Health.STARTING:
            return True
        if status.pid == first.pid and status.health is Health.OK:
            fleet.drill(storm, "guard", "crash storm")
        return False

    fleet_wait(storm_until_restarted, WAIT, _pids(fleet), f"process restart of {storm} after its supervisor gave up")
    after = _status(fleet, storm)
    assert (after.health, after.trading_state, after.epoch) == (Health.OK, TradingState.HALTED, 2)
    assert after.detail.startswith("supervisor gave up: ")
    halted = [e for e in fleet.journal(storm) if e.event_type is EventType.TRADING_STATE_CHANGED]
    assert [(e.metadata["from"], e.metadata["to"]) for e in halted] == [("active", "halted")]
    assert halted[0].metadata["reason"] == after.detail.removeprefix("supervisor gave up: ")


def test_an_order_through_the_fleet_is_placed_once_even_after_ray_gave_up_on_the_account_and_it_was_recreated(
    fleet: Fleet, accounts: Accounts, ray_cluster: RayCluster, bystander: AccountStatus
) -> None:
    account = accounts.orders
    order = Order("EURUSD", "buy", 1_000)
    outcome = fleet.place_order(account, order, timeout=ASK)
    assert (outcome.client_id, outcome.executed, outcome.refusal, outcome.error) == (order.client_id, True, None, None)
    duplicate = f"duplicate client id {order.client_id!r}: the journal of {account} already holds that order"
    with pytest.raises(ValueError, match=f"^{duplicate}$"):
        fleet.place_order(account, order, timeout=ASK)

    before = _status(fleet, account)
    ray = ray_cluster.ray
    ray.kill(ray.get_actor(f"account:{account}", namespace=fleet.namespace), no_restart=True)  # Ray gives up on it
    after = _wait_restarted(fleet, account, before.pid, f"re-creation of {account} by the controller")
    assert (after.health, after.trading_state, after.epoch) == (Health.OK, TradingState.ACTIVE, 2)
    assert fleet.counters()["recreated"].get(account) == 1
    with pytest.raises(ValueError, match=f"^{duplicate}$"):
        fleet.place_order(account, order, timeout=ASK)  # the new incarnation's guard never saw it: the journal did
    submitted = [e for e in fleet.journal(account) if e.event_type is EventType.ORDER_SUBMITTED]
    assert [e.metadata["client_order_id"] for e in submitted] == [order.client_id]


def test_a_zombie_alive_to_ray_but_not_answering_is_killed_by_the_controller_and_restarted(
    fleet: Fleet, accounts: Accounts, bystander: AccountStatus
) -> None:
    account = accounts.zombie
    fleet.halt(account, "ops", "before it froze")
    frozen = _status(fleet, account)
    os.kill(frozen.pid, signal.SIGSTOP)  # the process is there, Ray sees it alive; it answers nothing
    try:
        after = _wait_restarted(fleet, account, frozen.pid, f"zombie {account} killed and restarted")
    finally:
        try:
            os.kill(frozen.pid, signal.SIGKILL)  # never left stopped, whatever happened
        except ProcessLookupError:
            pass
    assert (after.health, after.trading_state, after.epoch, after.detail) == (
        Health.OK, TradingState.HALTED, 2, "halted by ops: before it froze")
    assert fleet.counters()["zombies_killed"] == {account: 1}  # and no healthy account was taken for one


def test_too_many_restarts_within_the_window_quarantine_the_account_halted(
    fleet: Fleet, accounts: Accounts, dsn: str, bystander: AccountStatus
) -> None:
    account = accounts.flappy
    pid = _status(fleet, account).pid
    os.kill(pid, signal.SIGKILL)
    again = _wait_restarted(fleet, account, pid, f"first restart of {account}")
    assert (again.health, again.trading_state) == (Health.OK, TradingState.ACTIVE)
    os.kill(again.pid, signal.SIGKILL)
    quarantined = _wait_restarted(fleet, account, again.pid, f"quarantine of {account}")
    with PostgresStore(dsn) as store:
        record = store.load_guard(account)
        pending = store.load_pending_halts(account)
    assert record is not None
    # A quarantined account shows its last saved reading (the guard saves when a reading matters).
    assert quarantined == AccountStatus(
        account, Health.QUARANTINED, TradingState.HALTED, equity=record.drawdown.latest_equity, peak=12_000,
        detail="restarted 2 times within 600s (at most 1)", node=quarantined.node, pid=quarantined.pid, epoch=4,
    )
    # Left for whichever incarnation starts it next: it starts HALTED, saying who and why.
    assert [(halt.by, halt.reason) for halt in pending] == [
        ("fleet quarantine", "restarted 2 times within 600s (at most 1)")]


def test_a_stale_incarnation_in_the_cluster_has_its_saves_refused_and_halts_itself(
    fleet: Fleet, accounts: Accounts, dsn: str, bystander: AccountStatus
) -> None:
    account = accounts.fenced
    stale = _status(fleet, account)
    assert (stale.health, stale.trading_state, stale.epoch) == (Health.OK, TradingState.ACTIVE, 1)
    with PostgresStore(dsn) as newer:
        # A newer incarnation claims the account, as one re-created on another node would while
        # this worker, cut off from Ray, still runs.
        assert newer.claim(account) == 2
        refused = (f"postgres {newer.server}: saving the guard record of loop {account!r} refused: loop {account!r} "
                   "was claimed by a newer incarnation (epoch 2, this store holds epoch 1)")
        # Its guard latches in memory, the save is refused: the halt never reached the incarnation
        # trading the account, and says so (it used to answer as if it had).
        with pytest.raises(AccountNotTrading, match=f"^account {account} is not trading \\(fenced: {re.escape(refused)}\\)$"):
            fleet.halt(account, "ops", "from the stale one")
        fleet_wait(lambda: _status(fleet, account).health is Health.FENCED, WAIT, _pids(fleet), f"{account} fenced")
        assert _status(fleet, account) == AccountStatus(
            account, Health.FENCED, TradingState.HALTED, detail=refused, node=stale.node, pid=stale.pid, epoch=1)
        record = newer.load_guard(account)
    assert record is None or record.trading_state is TradingState.ACTIVE  # the stale halt did not land
    with pytest.raises(AccountNotTrading, match=f"^account {account} is not trading \\(fenced: {re.escape(refused)}\\)$"):
        fleet.halt(account, "ops", "again")
    assert fleet.counters()["zombies_killed"].get(account) is None  # fenced is not dead: it still answers


def test_a_driver_that_releases_the_fleet_leaves_every_account_running(
    fleet: Fleet, accounts: Accounts, ray_cluster: RayCluster, bystander: AccountStatus
) -> None:
    other = Fleet.connect(ray_cluster.address, namespace=fleet.namespace)  # a second driver view on the same fleet
    assert _status(other, accounts.bystander).pid == bystander.pid
    other.release()
    other.release()  # twice does nothing
    released = f"this Fleet on namespace {fleet.namespace!r} was released or closed: connect again"
    with pytest.raises(FleetError, match=f"^{released}$"):
        other.status(accounts.bystander)
    with pytest.raises(FleetError, match=f"^{released}$"):
        other.account_ids()
    assert ray_cluster.ray.is_initialized()  # it did not connect this process, so it does not disconnect it
    assert accounts.bystander in fleet.account_ids()


def test_a_local_fleet_cannot_be_released_only_closed() -> None:
    local = Fleet("local-view", controller=object(), started=True)  # as Fleet.local makes it; no cluster needed
    with pytest.raises(FleetError, match=(
            r"^a local fleet's cluster ends with this process: close\(\) it \(every account stops cleanly\)$")):
        local.release()


def test_a_lost_node_moves_its_accounts_to_the_other_node_with_their_peaks_and_latches(
    fleet: Fleet, accounts: Accounts, ray_cluster: RayCluster
) -> None:
    halted, active = accounts.moved_halted, accounts.moved_active
    worker_node, head = ray_cluster.worker.node_id, ray_cluster.head.node_id
    fleet.halt(halted, "ops", "latched before the node went")
    before = {s.account_id: s for s in fleet.accounts(timeout=ASK) if s.account_id in (halted, active)}
    assert {s.node for s in before.values()} == {worker_node}

    ray_cluster.cluster.remove_node(ray_cluster.worker, allow_graceful=False)

    def moved() -> bool:
        now = {s.account_id: s for s in fleet.accounts(timeout=ASK)}
        return all(now[a].node == head and now[a].health is Health.OK for a in (halted, active))

    fleet_wait(moved, WAIT, _pids(fleet), "both accounts running on the head node")
    after = {s.account_id: s for s in fleet.accounts(timeout=ASK)}
    assert (after[halted].trading_state, after[halted].peak, after[halted].detail) == (
        TradingState.HALTED, 12_000, "halted by ops: latched before the node went")
    assert (after[active].trading_state, after[active].peak) == (TradingState.ACTIVE, 12_000)
    assert after[halted].epoch == before[halted].epoch + 1 and after[active].epoch == before[active].epoch + 1
    # Pinned to the lost node, Ray could not restart them: the controller re-created them.
    recreated = fleet.counters()["recreated"]
    assert {a: recreated.get(a) for a in (halted, active)} == {halted: 1, active: 1}
