"""The fleet's controller: what Ray's own supervision lacks, in one small detached actor.

Ray restarts a worker that exits, at once and without limit. The controller adds: a restart
window with backoff (each incarnation asks it how to start, see `RestartWindow`), quarantine
after too many restarts (and a fresh start once a person lifts it), re-creating an account Ray gave up on (its actor is gone), and killing
a zombie (alive to Ray, not answering its probes) so that Ray starts it again. The accounts'
specs live in Ray's internal key-value store, and so do the halts it keeps for them (see
`Controller.press`), so a restarted controller knows them all.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
import ray
from loguru import logger
from ray import cloudpickle
from ray.exceptions import ActorDiedError, ActorUnavailableError, ActorUnschedulableError
from ray.experimental import internal_kv
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.fleet._account import AccountActor, account_name
from actors.fleet._incarnation import AccountSpec
from actors.fleet._policy import Admission, Probing, RestartWindow
from actors.fleet.status import NotQuarantined
from runtime.store import PendingHalt

__all__ = ["CONTROLLER_NAME", "Controller"]

CONTROLLER_NAME = "tradewarden-fleet-controller"
_SPEC_PREFIX = b"tradewarden-account:"
_PRESSES_PREFIX = b"tradewarden-pressed-halts:"
# A lift of a quarantine under way refuses another until the account's next start, or this long
# (should the driver that began it be lost before it asked for the restart).
LIFT_CLAIM_SECONDS = 60.0


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
        self._misses: dict[str, tuple[int, int]] = {}  # account -> (Ray's restart count, pings missed; -1: killed)
        # Halts a driver pressed and no incarnation confirmed yet, by account and halt id (see press).
        self._presses: dict[str, dict[str, PendingHalt]] = {}
        self._lifting: dict[str, tuple[str, float]] = {}  # account -> (who lifts its quarantine, since: monotonic)
        self.recreated: dict[str, int] = {}
        self.zombies_killed: dict[str, int] = {}
        for key in internal_kv._internal_kv_list(_SPEC_PREFIX, namespace=namespace):
            blob = internal_kv._internal_kv_get(key, namespace=namespace)
            if blob is not None:
                entry = cloudpickle.loads(blob)
                self._entries[entry.spec.account_id] = entry
        for key in internal_kv._internal_kv_list(_PRESSES_PREFIX, namespace=namespace):
            blob = internal_kv._internal_kv_get(key, namespace=namespace)
            if blob is not None:
                self._presses[key[len(_PRESSES_PREFIX):].decode()] = cloudpickle.loads(blob)
        threading.Thread(target=self._watch, name="fleet-controller-watch", daemon=True).start()

    # --- the accounts ---------------------------------------------------------------------

    def add(self, spec: AccountSpec, node: str | None) -> None:
        """Record ``spec`` and start its account actor (on ``node`` when given: Ray then cannot
        restart it elsewhere when that node goes, so once Ray declares the node dead the
        controller re-creates it at once on any node, and it stays unpinned)."""
        with self._lock:
            if spec.account_id in self._entries:
                raise ValueError(f"account {spec.account_id!r} is already in the fleet")
            entry = _Entry(spec, node)
            # Created first: the watcher must never see an account without its actor.
            self._create(entry)
            internal_kv._internal_kv_put(_key(spec.account_id), cloudpickle.dumps(entry), namespace=self._namespace)
            self._entries[spec.account_id] = entry

    def remove(self, account_id: str, timeout: float) -> None:
        """Stop the account cleanly (within ``timeout``), then end its actor for good."""
        with self._lock:
            entry = self._entries.pop(account_id, None)
            self._presses.pop(account_id, None)
            self._lifting.pop(account_id, None)
            internal_kv._internal_kv_del(_key(account_id), namespace=self._namespace)
            internal_kv._internal_kv_del(_PRESSES_PREFIX + account_id.encode(), namespace=self._namespace)
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

    def begin_lift(self, account_id: str, by: str) -> None:
        """``by`` is about to lift the account's quarantine (see `Fleet.unquarantine`): refused
        with `NotQuarantined`, naming who, while another lift of it is under way (until the
        account's next start, or `LIFT_CLAIM_SECONDS`), so that two people pressing it at once
        get one restart and one halt, not two."""
        now = time.monotonic()
        with self._lock:
            if account_id not in self._entries:
                raise KeyError(account_id)
            lifting = self._lifting.get(account_id)
            if lifting is not None and now - lifting[1] < LIFT_CLAIM_SECONDS:
                raise NotQuarantined(f"account {account_id}'s quarantine is being lifted already, by {lifting[0]}: it"
                                     " restarts HALTED; there is no quarantine left to lift")
            self._lifting[account_id] = (by, now)

    def end_lift(self, account_id: str) -> None:
        """The lift begun for the account did not happen (its halt was not saved): another may begin."""
        with self._lock:
            self._lifting.pop(account_id, None)

    def restart(self, account_id: str) -> None:
        """Start the account afresh, as a person asked (lifting its quarantine): its restarts so
        far are forgotten, so that the next start is a first one, and its worker is killed for
        Ray to start it again."""
        with self._lock:
            if account_id not in self._entries:
                raise KeyError(account_id)
            self._window.forget(account_id)
        logger.warning("account {} restarted by hand: its restart window starts again", account_id)
        try:
            handle = ray.get_actor(account_name(account_id), namespace=self._namespace)
        except ValueError:
            return  # Ray gave up on it meanwhile: the watcher re-creates it, and that start is a first one
        ray.kill(handle, no_restart=False)

    def account_ids(self) -> list[str]:
        """Every account in the fleet, sorted."""
        with self._lock:
            return sorted(self._entries)

    def press(self, account_ids: list[str] | None, halt: PendingHalt) -> None:
        """A driver is about to ask each of ``account_ids`` (None: every account) to carry out
        ``halt``: kept until it confirms (`pressed_done`), and handed to the account's next
        incarnation should its worker be lost first (`admit`), so that one starts HALTED instead
        of trading until the retried halt reaches it. Kept in Ray's internal key-value store too
        (the cluster's GCS, beside the accounts' specs), so a controller restarted meanwhile
        still has them. Not in the accounts' state stores: writing there takes a claim, which
        would fence the very incarnation being halted."""
        with self._lock:
            for account_id in self._entries if account_ids is None else account_ids:
                if account_id in self._entries:
                    self._presses.setdefault(account_id, {})[halt.halt_id] = halt
                    self._keep_presses(account_id)

    def pressed_done(self, account_id: str, *halt_ids: str) -> None:
        """The account carried out (or saved in its state store) the halts ``halt_ids``: forgotten."""
        with self._lock:
            kept = self._presses.get(account_id, {})
            dropped = [kept.pop(halt_id, None) for halt_id in halt_ids]
            if any(halt is not None for halt in dropped):
                self._keep_presses(account_id)

    def resumed(self, account_id: str) -> None:
        """A person resumed the account (`Fleet.resume` succeeded): the halts kept for it are let
        go. Its running guard answered the resume, so it held them or a later one, and the
        resume lifted them: kept, they would halt the account again at its next start. (A halt
        of one still on its way to the account is still asked of it, Ray retrying it.)"""
        with self._lock:
            if self._presses.get(account_id):
                self._presses[account_id] = {}
                self._keep_presses(account_id)

    def admit(self, account_id: str) -> Admission:
        """How an incarnation of ``account_id`` starting now may start (see `RestartWindow`),
        with the halts pressed for it that no incarnation confirmed (see `press`): still kept
        until one confirms it saved them, so that an incarnation lost before its store took them
        (quarantined by a store outage, then killed) hands none of them to oblivion."""
        with self._lock:
            admission = self._window.admit(account_id, time.monotonic())
            halts = tuple(self._presses.get(account_id, {}).values())
            self._lifting.pop(account_id, None)  # a lift under way is done: this is its start
        if halts:
            logger.warning("account {}: starts with {} halt(s) pressed while its worker was lost", account_id, len(halts))
            admission = attrs.evolve(admission, halts=halts)
        if admission.quarantined:
            logger.critical("account {} quarantined: {}", account_id, admission.reason)
        elif admission.restarts:
            logger.warning("account {} restart {} starts in {:.2f}s", account_id, admission.restarts, admission.delay)
        return admission

    def counters(self) -> dict[str, dict[str, int]]:
        """How many times each account was re-created, and killed as a zombie."""
        with self._lock:
            return {"recreated": dict(self.recreated), "zombies_killed": dict(self.zombies_killed)}

    def _keep_presses(self, account_id: str) -> None:
        # Under the lock: the account's kept halts, as they are now, where a restarted controller finds them.
        key, kept = _PRESSES_PREFIX + account_id.encode(), self._presses.get(account_id)
        if kept:
            internal_kv._internal_kv_put(key, cloudpickle.dumps(kept), namespace=self._namespace)
        else:
            self._presses.pop(account_id, None)
            internal_kv._internal_kv_del(key, namespace=self._namespace)

    # --- watching -------------------------------------------------------------------------

    def _create(self, entry: _Entry) -> None:
        spec = entry.spec
        options: dict[str, Any] = {}
        if entry.node is not None:
            # Hard: Ray 2.60 places a soft-pinned zero-CPU actor elsewhere even on a live node.
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(entry.node, soft=False)
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
            try:
                self._probe_all()
            except Exception as exc:  # one round's trouble must not stop the watching
                logger.error("probing the accounts failed: {!r}", exc)

    def _probe_all(self) -> None:
        """One round: every account pinged at once and the answers gathered within the probe's
        timeout, so one silent account costs the others nothing and a round lasts at most that
        timeout however many accounts there are. An account pinned to a node Ray declared dead
        is re-created elsewhere at once, without waiting for Ray to give up on it."""
        with self._lock:
            entries = dict(self._entries)
        dead = _dead_nodes({entry.node for entry in entries.values() if entry.node is not None})
        pings: dict[Any, tuple[str, Any]] = {}
        for account_id, entry in entries.items():
            if entry.node in dead:
                self._lost_node(account_id, entry.node)
                continue
            try:
                handle = ray.get_actor(account_name(account_id), namespace=self._namespace)
            except ValueError:
                self._recreate(account_id, "its actor is gone (Ray gave up on it)")
                continue
            pings[handle.ping.remote()] = (account_id, handle)
        if not pings:
            return
        ready, late = ray.wait(list(pings), num_returns=len(pings), timeout=self._probing.timeout)
        for ref in ready:
            account_id, _ = pings[ref]
            try:
                ray.get(ref)
            except ActorUnavailableError:
                continue  # restarting: Ray is on it
            except ActorUnschedulableError:
                # Pinned to a node that is gone: Ray said so before its node table did. An
                # account pinned nowhere is Ray's to place, not a lost node's.
                node = entries[account_id].node
                if node is not None:
                    self._lost_node(account_id, str(node))
                continue
            except ActorDiedError:
                self._recreate(account_id, "its actor died for good")
                continue
            except Exception as exc:
                logger.error("probing account {} failed: {!r}", account_id, exc)
                continue
            self._misses.pop(account_id, None)
        for ref in late:
            account_id, handle = pings[ref]
            try:
                self._missed(account_id, handle)
            except Exception as exc:
                logger.error("probing account {} failed: {!r}", account_id, exc)

    def _lost_node(self, account_id: str, node: str) -> None:
        # Ray can never place the account on its node again: from now on it may run anywhere.
        with self._lock:
            entry = self._entries.get(account_id)
            if entry is None:
                return  # removed meanwhile
            entry = self._entries[account_id] = attrs.evolve(entry, node=None)
            internal_kv._internal_kv_put(_key(account_id), cloudpickle.dumps(entry), namespace=self._namespace)
        try:
            ray.kill(ray.get_actor(account_name(account_id), namespace=self._namespace), no_restart=True)  # frees its name
        except ValueError:
            pass  # Ray gave up on it already
        self._recreate(account_id, f"its node {node} is dead")

    def _missed(self, account_id: str, handle: Any) -> None:
        # Only an incarnation Ray calls ALIVE (its constructor done) can be a zombie: one
        # still starting, or restarting, is just slow. The count restarts with each incarnation.
        # A zombie already killed stays ALIVE to Ray until its kill lands: it is not counted twice.
        state, incarnation = _ray_state(handle)
        last, misses = self._misses.get(account_id, (incarnation, 0))
        if misses < 0 and last == incarnation:
            return
        misses = misses + 1 if state == "ALIVE" and last == incarnation else 0
        self._misses[account_id] = (incarnation, misses)
        if misses >= self._probing.zombie_after:
            logger.critical("account {} is a zombie ({} pings unanswered): killing it for Ray to restart",
                            account_id, misses)
            self._misses[account_id] = (incarnation, -1)
            with self._lock:
                self.zombies_killed[account_id] = self.zombies_killed.get(account_id, 0) + 1
            ray.kill(handle, no_restart=False)

    def _recreate(self, account_id: str, why: str) -> None:
        with self._lock:
            entry = self._entries.get(account_id)
            if entry is None:
                return  # removed meanwhile
            logger.critical("account {}: {}; re-creating it", account_id, why)
            try:
                self._create(entry)
            except ValueError as exc:  # the name is taken again: it came back meanwhile
                logger.warning("account {} not re-created: {!r}", account_id, exc)
                return
            self.recreated[account_id] = self.recreated.get(account_id, 0) + 1


def _dead_nodes(nodes: set[str]) -> set[str]:
    # Ray's node table, from the cluster's own state: a node its health checks declared dead.
    if not nodes:
        return set()
    return {node["NodeID"] for node in ray.nodes() if node["NodeID"] in nodes and not node["Alive"]}


def _ray_state(handle: Any) -> tuple[str, int]:
    # Ray's public state API needs the dashboard, which a lean cluster runs without; the GCS
    # actor table it reads is there either way.
    from ray._private import state

    info = state.actors(actor_id=handle._actor_id.hex())
    return str(info.get("State", "UNKNOWN")), int(info.get("NumRestarts", 0))


def _key(account_id: str) -> bytes:
    return _SPEC_PREFIX + account_id.encode()
