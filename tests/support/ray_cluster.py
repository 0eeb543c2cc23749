"""A two-node Ray cluster on this machine for the fleet tests, and waits that show the workers'
threads when they time out.

`ray_cluster` starts a head node and one worker node with `ray.cluster_utils.Cluster` (short
health checks so a killed node is declared dead in about 2 s, a short kill timeout, a small
object store, no dashboard) and connects this process as the driver. Ray 2.60 turns token authentication on by
default and would write a token to ~/.ray: the cluster gets a fresh random token through the
environment instead (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``). Without Ray the fleet tests
are skipped on a developer machine and FAIL under CI (``CI`` set), where the ``test`` extra
installs it.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

__all__ = ["RayCluster", "fleet_wait", "ray_cluster"]

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
    """Wait for ``predicate`` (looked at every 50 ms; an exception counts as not yet) for at
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
        pause.wait(0.05)
    for pid in pids():
        if pid:
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    pause.wait(1.0)  # the workers' dumps travel to this process's stderr
    pytest.fail(f"no {what} within {timeout}s (last error: {last!r})", pytrace=False)
