"""The Ray actor hosting one account: a thin shell over `Incarnation`, one worker process each."""

from __future__ import annotations

import faulthandler
import os
import signal
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import ray
from loguru import logger

from actors.fleet._incarnation import AccountSpec, Incarnation
from actors.fleet._policy import Admission
from actors.fleet.status import AccountStatus, HaltPending
from actors.messages import OrderOutcome
from runtime.broker import Order
from runtime.risk.guards import TradingState

__all__ = ["GAVE_UP_EXIT_CODE", "AccountActor", "account_name"]

# The exit status of a worker whose trading system's supervisor gave up (EX_SOFTWARE).
GAVE_UP_EXIT_CODE = 70
_ADMISSION_TIMEOUT = 5.0


def account_name(account_id: str) -> str:
    """The Ray actor name of ``account_id``."""
    return f"account:{account_id}"


def _exit_for_a_restart() -> None:
    # Never a graceful exit: Ray does not restart an actor that exits gracefully, and it must.
    logger.complete()
    os._exit(GAVE_UP_EXIT_CODE)


class AccountActor:
    """One account in its own worker process. Its constructor never raises (a failure leaves
    the account quarantined and HALTED); it asks the controller how to start (backoff, or
    quarantine after too many restarts), and exits the process when its supervisor gives up so
    that Ray starts it again, HALTED from its store."""

    def __init__(self, spec: AccountSpec, controller: str, namespace: str) -> None:
        # `kill -USR1 <pid>` writes every thread's stack to the worker's stderr: for a zombie.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        node = None
        try:
            node = ray.get_runtime_context().get_node_id()
        except Exception as exc:  # only where it runs is lost
            logger.warning("account {}: node id unknown: {!r}", spec.account_id, exc)
        self._incarnation = Incarnation(spec, on_gave_up=_exit_for_a_restart, node=node,
                                        on_halts_saved=_confirming(spec.account_id, controller, namespace))
        self._incarnation.begin(_admission(spec.account_id, controller, namespace))

    def ping(self) -> int:
        """This worker's pid: it answers at all."""
        return os.getpid()

    def status(self, timeout: float) -> AccountStatus:
        """See `Incarnation.status`."""
        return self._incarnation.status(timeout)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the account trades or is quarantined; False on timeout."""
        return self._incarnation.ready.wait(timeout)

    @ray.method(max_task_retries=-1)
    def halt(self, by: str, reason: str, halt_id: str | None = None) -> TradingState | HaltPending:
        """See `Incarnation.halt`. Sent again to each new incarnation until one answers, when a
        worker is lost before answering (restarting, or killed as a zombie): a halt asked twice
        changes nothing more, one lost with a worker would leave the account trading; the
        caller's timeout bounds the wait."""
        return self._incarnation.halt(by, reason, halt_id)

    def hold_for_restart(self, by: str) -> str:
        """See `Incarnation.hold_for_restart`."""
        return self._incarnation.hold_for_restart(by)

    def resume(self, by: str, rebaseline: bool, sent_at: datetime | None = None) -> TradingState:
        """See `Incarnation.resume`."""
        return self._incarnation.resume(by, rebaseline, sent_at)

    @ray.method(max_task_retries=0)
    def place_order(self, order: Order, timeout: float) -> OrderOutcome:
        """See `Incarnation.place_order`; never retried by Ray (a retry could send it twice)."""
        return self._incarnation.place_order(order, timeout)

    def journal(self, limit: int | None) -> list[str]:
        """See `Incarnation.journal`."""
        return self._incarnation.journal(limit)

    def drill(self, actor: str, reason: str) -> int:
        """See `Incarnation.drill`."""
        return self._incarnation.drill(actor, reason)

    def stop(self, timeout: float) -> None:
        """Stop trading cleanly; the fleet then removes the actor."""
        self._incarnation.stop(timeout)


def _confirming(account_id: str, controller: str, namespace: str) -> Callable[[Sequence[str]], None]:
    # Tells the controller that the account's store holds these halts, so that it stops keeping them.
    def confirm(halt_ids: Sequence[str]) -> None:
        ray.get_actor(controller, namespace=namespace).pressed_done.remote(account_id, *halt_ids)  # (told)

    return confirm


def _admission(account_id: str, controller: str, namespace: str) -> Admission:
    # Without an answer the account starts at once: the controller is a helper, not a gate that
    # could keep every account down.
    try:
        handle = ray.get_actor(controller, namespace=namespace)
        admission: Any = ray.get(handle.admit.remote(account_id), timeout=_ADMISSION_TIMEOUT)
        return admission
    except Exception as exc:
        logger.warning("account {}: no admission from the controller ({!r}); starting now", account_id, exc)
        return Admission()
