"""A two-node Ray cluster on this machine for the fleet tests, and waits that show the workers'
threads when they time out.

`ray_cluster` starts a head node and one worker node with `ray.cluster_utils.Cluster` (short
health checks so a killed node is declared dead in about 2 s, a short kill timeout, a small
object store, no dashboard) and connects this process as the driver. Ray 2.60 turns token authentication on by
default and would write a token to ~/.ray: the cluster gets a fresh random token through the
environment instead (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``). Without Ray the fleet tests
are skipped on a developer machine and FAIL under CI (``CI`` set), where the ``test`` extra
installs it.

`served_fleet` is a small fleet of three idle paper accounts on the head node, served by the
fleet's control API (`tradewarden fleet`'s app) on a real port, for the control API's and the
dashboard's fleet views.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

import attrs
import pytest

__all__ = ["FLEET_TOKEN", "RayCluster", "ServedFleet", "fleet_fail", "fleet_wait", "ray_cluster", "served_fleet"]

INSTALL_HINT = "pip install -e '.[test]' (or 'tradewarden[ray]')"
_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
    # A zombie's kill waits this long for the worker to exit by itself (default 5 s); a stopped one never does.
    "kill_worker_timeout_milliseconds": 500,
    # No idle workers started for the driver: on 2 cores they slow the accounts' own start.
    "prestart_worker_first_driver": False,
}
_OBJECT_STORE = 80 * 1024 * 1024


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"Ray is not installed; CI must install it: {INSTALL_HINT}")
        pytest.skip(f"Ray is not installed; install it with: {INSTALL_HINT}")
    return ray


class RayCluster:
    """The running cluster: ``head`` and ``worker`` are `ray.cluster_utils` nodes."""

    def __init__(self, ray: Any, cluster: Any, head: Any, worker: Any) -> None:
        self.ray = ray
        self.cluster = cluster
        self.head = head
        self.worker = worker

    @property
    def address(self) -> str:
        """The GCS address drivers connect to."""
        return str(self.cluster.address)

    def add_worker(self) -> Any:
        """Start another worker node and wait until it is up."""
        node = self.cluster.add_node(num_cpus=4, object_store_memory=_OBJECT_STORE)
        self.cluster.wait_for_nodes()
        return node


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """The session's two-node cluster, this process its driver (log lines of the workers at
    INFO reach this process's stderr, shown by pytest when a test fails)."""
    from actors.fleet.fleet import local_auth_token

    local_auth_token()  # before Ray is imported: it reads the mode once
    ray = _import_ray()
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 4,  # logical: each node may start 4 worker processes at once
            "include_dashboard": False,
            "object_store_memory": _OBJECT_STORE,
            "_system_config": _HEALTH_CHECKS,
        },
    )
    head = cluster.head_node
    worker = cluster.add_node(num_cpus=4, object_store_memory=_OBJECT_STORE)
    cluster.wait_for_nodes()
    # Test parts shipped by value: the workers need not import this test folder.
    from ray import cloudpickle

    import support.fleet_parts

    cloudpickle.register_pickle_by_value(support.fleet_parts)
    ray.init(address=cluster.address, runtime_env={"env_vars": {"LOGURU_LEVEL": "INFO"}})
    try:
        yield RayCluster(ray, cluster, head, worker)
    finally:
        ray.shutdown()
        cluster.shutdown()


def fleet_wait(predicate: Callable[[], bool], timeout: float, pids: Callable[[], Iterable[int | None]], what: str) -> None:
    """Wait for ``predicate`` (looked at every 100 ms; an exception counts as not yet) for at
    most ``timeout`` seconds. On timeout the workers ``pids`` names dump their threads (SIGUSR1,
    to their stderr, which reaches this test's output) and so does this process, and the test
    fails saying ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    pause = threading.Event()
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:
            last = exc
        pause.wait(0.1)
    fleet_fail(pids, f"no {what} within {timeout}s (last error: {last!r})")


def fleet_fail(pids: Callable[[], Iterable[int | None]], why: str) -> NoReturn:
    """Fail the test saying ``why``, after the workers ``pids`` names and this process dumped
    their threads (the workers' dumps reach this test's output through Ray's log monitor)."""
    pause = threading.Event()
    try:
        named = list(pids())
    except Exception as exc:  # the fleet itself not answering is part of what is shown
        print(f"the workers' pids are unknown: {exc!r}", file=sys.stderr)
        named = []
    for pid in named:
        if pid:
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    pause.wait(1.0)  # the workers' dumps travel to this process's stderr
    pytest.fail(why, pytrace=False)


FLEET_TOKEN = "fleet-control-test-token"


@attrs.frozen
class ServedFleet:
    """A fleet and the control server serving it at ``url`` (bearer `FLEET_TOKEN`); ``accounts``
    are its two trading accounts' ids, sorted; ``below_minimum`` an account whose equity (10,000)
    is under its minimum (20,000): HALTED from its first reading, and every resume refused."""

    fleet: Any
    url: str
    accounts: tuple[str, str]
    below_minimum: str


@pytest.fixture(scope="session")
def served_fleet(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedFleet]:
    """Three paper accounts on SQLite (pinned to the head node, which no test removes) in a
    namespace of their own, served on 127.0.0.1; dissolved at the end (every account stopped
    cleanly)."""
    import functools
    import uuid

    from actors.fleet import Fleet, Health
    from actors.service.auth import BearerToken
    from actors.service.fleet_api import fleet_app
    from actors.service.server import ControlServer, bind
    from runtime.adapters.paper import PaperBroker
    from runtime.settings import Settings
    from runtime.signals import ListSignalSource

    run = uuid.uuid4().hex[:6]
    fleet = Fleet.connect(ray_cluster.address, namespace=f"served-{run}")
    folder = tmp_path_factory.mktemp("served-fleet")
    accounts = (f"alpha-{run}", f"beta-{run}")
    below_minimum = f"gamma-{run}"
    for account in (*accounts, below_minimum):
        settings = Settings(state_db=str(folder / f"{account}.db"), loop_interval_seconds=5.0, heartbeat_interval_seconds=10.0,
                            min_equity=20_000 if account == below_minimum else 500)
        fleet.add(account, settings, functools.partial(PaperBroker, 10_000), ListSignalSource,
                  node=ray_cluster.head.node_id, ready_timeout=None)

    def pids() -> list[int | None]:
        return [s.pid for s in fleet.accounts(timeout=10.0)]

    late = fleet.wait_ready([*accounts, below_minimum], 240.0)  # an upper bound for a heavily loaded machine
    if late:
        fleet_fail(pids, f"the served fleet's accounts {late} did not start within 240s")
    fleet_wait(lambda: all(s.health is Health.OK for s in fleet.accounts(timeout=10.0)), 120.0, pids,
               "the served fleet's accounts trading")
    server = ControlServer(fleet_app(fleet, BearerToken(FLEET_TOKEN)), bind("127.0.0.1", 0, token=FLEET_TOKEN)).start()
    host, port = server.address
    try:
        yield ServedFleet(fleet, f"http://{host}:{port}", accounts, below_minimum)
    finally:
        server.stop()
        fleet.dissolve(timeout=10.0)
