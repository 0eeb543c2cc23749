"""The fleet's controller: what Ray's own supervision lacks, in one small detached actor.

Ray restarts a worker that exits, at once and without limit. The controller adds: a restart
window with backoff (each incarnation asks it how to start, see `RestartWindow`), quarantine
after too many restarts, re-creating an account Ray gave up on (its actor is gone), and killing
a zombie (alive to Ray, not answering its probes) so that Ray starts it again. The accounts'
specs live in Ray's internal key-value store, so a restarted controller knows them all.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
import ray
from loguru import logger
from ray import cloudpickle
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError
from ray.experimental import internal_kv
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.fleet._account import AccountActor, account_name
from actors.fleet._incarnation import AccountSpec
from actors.fleet._policy import Admission, Probing, RestartWindow

__all__ = ["CONTROLLER_NAME", "Controller"]

CONTROLLER_NAME = "tradewarden-fleet-controller"
_SPEC_PREFIX = b"tradewarden-account:"


@attrs.frozen
class _Entry:
    spec: AccountSpec
    node: str | None


class Controller:
    """The detached controller actor (one per namespace); see the module's docstring."""

    def __init__(self, namespace: str, window: RestartWindow, probing: Probing) -> None:
        self._namespace = namespace
        self._window = window
        self._probing = probing
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._misses: dict[str, int] = {}
        self.recreated: dict[str, int] = {}
        self.zombies_killed: dict[str, int] = {}
        for key in internal_kv._internal_kv_list(_SPEC_PREFIX, namespace=namespace):
            blob = internal_kv._internal_kv_get(key, namespace=namespace)
            if blob is not None:
                entry = cloudpickle.loads(blob)
                self._entries[entry.spec.account_id] = entry
        threading.Thread(target=self._watch, name="fleet-controller-watch", daemon=True).start()

    # --- the accounts ---------------------------------------------------------------------

    def add(self, spec: AccountSpec, node: str | None) -> None:
        """Record ``spec`` and start its account actor (on ``node`` if alive, else anywhere)."""
        with self._lock:
            if spec.account_id in self._entries:
                raise ValueError(f"account {spec.account_id!r} is already in the fleet")
            entry = _Entry(spec, node)
            internal_kv._internal_kv_put(_key(spec.account_id), cloudpickle.dumps(entry), namespace=self._namespace)
            self._entries[spec.account_id] = entry
        self._create(entry)

    def remove(self, account_id: str, timeout: float) -> None:
        """Stop the account cleanly (within ``timeout``), then end its actor for good."""
        with self._lock:
            entry = self._entries.pop(account_id, None)
            internal_kv._internal_kv_del(_key(account_id), namespace=self._namespace)
            self._window.forget(account_id)
        if entry is None:
            raise KeyError(account_id)
        try:
            handle = ray.get_actor(account_name(account_id), namespace=self._namespace)
        except ValueError:
            return
        try:
            ray.get(handle.stop.remote(timeout), timeout=timeout + 5)
        except Exception as exc:
            logger.error("account {} did not stop cleanly ({!r}); killing it", account_id, exc)
        ray.kill(handle, no_restart=True)

    def account_ids(self) -> list[str]:
        """Every account in the fleet, sorted."""
        with self._lock:
            return sorted(self._entries)

    def admit(self, account_id: str) -> Admission:
        """How an incarnation of ``account_id`` starting now may start (see `RestartWindow`)."""
        with self._lock:
            admission = self._window.admit(account_id, time.monotonic())
        if admission.quarantined:
            logger.critical("account {} quarantined: {}", account_id, admission.reason)
        elif admission.restarts:
            logger.warning("account {} restart {} starts in {:.2f}s", account_id, admission.restarts, admission.delay)
        return admission

    def counters(self) -> dict[str, dict[str, int]]:
        """How many times each account was re-created, and killed as a zombie."""
        with self._lock:
            return {"recreated": dict(self.recreated), "zombies_killed": dict(self.zombies_killed)}

    # --- watching -------------------------------------------------------------------------

    def _create(self, entry: _Entry) -> None:
        spec = entry.spec
        options: dict[str, Any] = {}
        if entry.node is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(entry.node, soft=True)
        ray.remote(AccountActor).options(
            name=account_name(spec.account_id),
            namespace=self._namespace,
            lifetime="detached",
            max_restarts=-1,  # Ray restarts at once; the window above adds the backoff and the bound
            max_task_retries=0,  # nothing is retried blindly: a caller decides
            max_concurrency=16,  # status answers while an order or a stop is in progress
            num_cpus=0,
            **options,
        ).remote(spec, CONTROLLER_NAME, self._namespace)

    def _watch(self) -> None:
        pause = threading.Event()
        while not pause.wait(self._probing.interval):
            for account_id in self.account_ids():
                try:
                    self._probe(account_id)
                except Exception as exc:  # one account's trouble must not stop the watching
                    logger.error("probing account {} failed: {!r}", account_id, exc)

    def _probe(self, account_id: str) -> None:
        name = account_name(account_id)
        try:
            handle = ray.get_actor(name, namespace=self._namespace)
        except ValueError:
            self._recreate(account_id, "its actor is gone (Ray gave up on it)")
            return
        try:
            ray.get(handle.ping.remote(), timeout=self._probing.timeout)
        except GetTimeoutError:
            misses = self._misses.get(account_id, 0) + 1
            self._misses[account_id] = misses
            if misses >= self._probing.zombie_after:
                logger.critical("account {} is a zombie ({} pings unanswered): killing it for Ray to restart",
                                account_id, misses)
                self._misses[account_id] = 0
                with self._lock:
                    self.zombies_killed[account_id] = self.zombies_killed.get(account_id, 0) + 1
                ray.kill(handle, no_restart=False)
            return
        except ActorUnavailableError:
            return  # restarting: Ray is on it
        except ActorDiedError:
            self._recreate(account_id, "its actor died for good")
            return
        self._misses[account_id] = 0

    def _recreate(self, account_id: str, why: str) -> None:
        with self._lock:
            entry = self._entries.get(account_id)
            if entry is None:
                return  # removed meanwhile
            self.recreated[account_id] = self.recreated.get(account_id, 0) + 1
        logger.critical("account {}: {}; re-creating it", account_id, why)
        try:
            self._create(entry)
        except ValueError as exc:  # the name is taken again: someone else re-created it
            logger.warning("account {} not re-created: {!r}", account_id, exc)


def _key(account_id: str) -> bytes:
    return _SPEC_PREFIX + account_id.encode()
