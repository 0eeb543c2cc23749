"""`Fleet`: many accounts as named, detached Ray actors, found by id from any driver."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import ModuleType
from typing import Any

from loguru import logger

from actors.fleet._incarnation import AccountSpec
from actors.fleet._policy import Probing, RestartWindow
from actors.fleet.status import AccountNotTrading, AccountStatus, HaltNotDurable, HaltOutcome, HaltPending, Health
from actors.messages import OrderOutcome
from runtime.broker import Broker, Order
from runtime.errors import TradewardenError
from runtime.events import Event
from runtime.risk.guards import TradingState
from runtime.settings import Settings
from runtime.signals import SignalSource
from runtime.store import PendingHalt

__all__ = ["DEFAULT_NAMESPACE", "AccountQuarantined", "Fleet", "FleetError"]

DEFAULT_NAMESPACE = "tradewarden"
_INSTALL_HINT = "pip install 'tradewarden[ray]'"
_PRESS_TIMEOUT = 2.0  # the controller's ack of a halt kept for an account's next incarnation


class FleetError(TradewardenError, RuntimeError):
    """A fleet operation failed: the message names the account and what happened."""


class _NoAnswer(Exception):
    """An account did not answer a call within the time given (see `Fleet._ask_every`)."""


class AccountQuarantined(FleetError):
    """`Fleet.add` waited for an account that came up quarantined (HALTED, not trading): it is
    in the fleet all the same. The message names the account and why it was quarantined."""


def _ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise FleetError(f"the fleet runs on Ray, which is not installed: {_INSTALL_HINT}") from None
    return ray


def local_auth_token() -> None:
    """Give a local cluster started from this process token authentication with a fresh
    random token in the environment (inherited by every Ray process), unless the environment
    already chooses (``RAY_AUTH_MODE``): Ray 2.60 would otherwise write one to ~/.ray."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", uuid.uuid4().hex)
    if "ray" in sys.modules:
        # Ray reads its mode once, on import: a process that imported it already must reread it
        # (what Ray itself does when it turns token auth on).
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")


class Fleet:
    """A driver's view of the fleet in one Ray namespace. Build it with `connect` (an existing
    cluster) or `local` (a one-machine cluster, for trying it and for tests). Accounts outlive
    the driver: another `Fleet` on the same namespace finds them by id. `release` lets go of
    them from this driver, `dissolve` stops them all and ends the controller, and `close` does
    whichever suits how the fleet was built."""

    def __init__(self, namespace: str, controller: Any, *, started: bool, joined: bool = False) -> None:
        self._ray = _ray()
        self.namespace = namespace
        self._controller_handle: Any = controller
        self._started = started  # this process started the cluster (`local`)
        self._joined = joined  # this Fleet connected the process to Ray (`connect` without Ray up)

    # --- connecting -----------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        address: str = "auto",
        *,
        namespace: str = DEFAULT_NAMESPACE,
        window: RestartWindow | None = None,
        probing: Probing | None = None,
        **init_options: Any,
    ) -> Fleet:
        """Join the Ray cluster at ``address`` and the fleet in ``namespace``, starting its
        controller (with ``window`` and ``probing``) if it is not running yet."""
        ray = _ray()
        joined = not ray.is_initialized()
        if joined:
            ray.init(address=address, namespace=namespace, **init_options)
        return cls(namespace, _start_controller(ray, namespace, window, probing), started=False, joined=joined)

    @classmethod
    def local(
        cls,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        num_cpus: int = 2,
        object_store_mb: int = 100,
        window: RestartWindow | None = None,
        probing: Probing | None = None,
    ) -> Fleet:
        """Start a one-machine Ray cluster (no dashboard, a small object store, token auth with a
        random token) and its fleet; `close` stops every account cleanly and shuts the cluster down."""
        local_auth_token()
        ray = _ray()
        ray.init(num_cpus=num_cpus, namespace=namespace, include_dashboard=False,
                 object_store_memory=object_store_mb * 1024 * 1024, log_to_driver=False)
        return cls(namespace, _start_controller(ray, namespace, window, probing), started=True)

    def release(self) -> None:
        """Let go of the fleet from this driver, stopping nothing: the accounts and the controller
        are detached and keep trading and watching, and any driver finds them again with `connect`
        on the same namespace. Disconnects this process from Ray when this `Fleet` connected it
        (a host that had started Ray itself stays connected). Every later call on this `Fleet`
        raises `FleetError`; releasing twice does nothing. A `local` fleet cannot be released:
        its cluster ends with this process (`close` it)."""
        if self._started:
            raise FleetError("a local fleet's cluster ends with this process: close() it (every account stops cleanly)")
        self._let_go()

    def _let_go(self) -> None:
        if self._controller_handle is None:
            return
        self._controller_handle = None
        if self._joined:
            self._ray.shutdown()

    def dissolve(self, timeout: float = 30.0) -> None:
        """Stop every account cleanly (as `remove`, each within ``timeout``), then end the fleet's
        controller: nothing of the fleet is left in its namespace or holds the cluster's
        resources. This `Fleet` is then released (a `local` fleet's cluster keeps running until
        `close`)."""
        for account_id in self.account_ids():
            try:
                self.remove(account_id, timeout)
            except FleetError as exc:
                if f"account {account_id!r} is not in the fleet" not in str(exc):  # removed meanwhile: done
                    raise
        from actors.fleet._controller import CONTROLLER_NAME

        try:
            self._ray.kill(self._ray.get_actor(CONTROLLER_NAME, namespace=self.namespace), no_restart=True)
        except ValueError:
            pass  # ended already
        self._let_go()

    def close(self) -> None:
        """Done with the fleet from this driver: a `local` fleet is dissolved (every account
        stopped cleanly, LOOP_STOPPED journaled) and its cluster shut down; a fleet joined with
        `connect` is released (its accounts keep running)."""
        if not self._started:
            self.release()
            return
        try:
            if self._controller_handle is not None:
                self.dissolve()
        finally:
            self._controller_handle = None
            self._ray.shutdown()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- accounts -------------------------------------------------------------------------

    def add(
        self,
        account_id: str,
        settings: Settings,
        broker: Callable[[], Broker],
        signals: Callable[[], SignalSource],
        *,
        options: Mapping[str, Any] | None = None,
        drills: bool = False,
        node: str | None = None,
        ready_timeout: float | None = 60.0,
    ) -> None:
        """Add an account: its actor starts (on ``node``, a Ray node id, when given; should that
        node go, the controller re-creates the account on another) and builds its broker and
        signal source there by calling the factories. Waits up to ``ready_timeout`` until it
        trades (None: no wait); one that came up quarantined instead raises `AccountQuarantined`,
        and one not started in time `FleetError`: either way it is in the fleet (`unquarantine`
        or `remove` it). An id already in the fleet is a ValueError, and so is one that is not
        letters, digits, '-', '_' and '.', or is ``halt`` (the control API's fleet-wide halt)."""
        spec = AccountSpec(account_id, settings, broker, signals, options=dict(options or {}), drills=drills)
        self._call(self._controller().add.remote(spec, node), account_id, "adding", 30.0)
        if ready_timeout is None:
            return
        if self.wait_ready([account_id], ready_timeout):
            raise FleetError(f"account {account_id!r} did not start within {ready_timeout:g}s")
        status = self.status(account_id)
        if status.health is Health.QUARANTINED:
            raise AccountQuarantined(
                f"account {account_id!r} was added but came up quarantined (HALTED, not trading): {status.detail}; it"
                " stays in the fleet: mend the cause and unquarantine it, or remove it"
            )

    def wait_ready(self, account_ids: Iterable[str], timeout: float) -> list[str]:
        """Wait, at most ``timeout`` seconds for all of them together, until each account trades
        or is quarantined (see `status`), without polling: each account says so itself. Returns
        the ids that were not ready in time, or whose actor failed meanwhile (empty when all were)."""
        ray = self._ray
        pending: dict[Any, str] = {}
        late: list[str] = []
        for account_id in account_ids:
            try:
                pending[self._handle(account_id).wait_ready.remote(timeout)] = account_id
            except FleetError:
                late.append(account_id)
        done, waiting = ray.wait(list(pending), num_returns=len(pending), timeout=timeout + 5) if pending else ([], [])
        for ref in done:
            try:
                ready = ray.get(ref)
            except Exception:  # the actor died meanwhile: not ready
                ready = False
            if not ready:
                late.append(pending[ref])
        late.extend(pending[ref] for ref in waiting)
        return sorted(late)

    def account_ids(self) -> list[str]:
        """Every account's id, sorted."""
        return self._call(self._controller().account_ids.remote(), "(all)", "listing", 10.0)

    def accounts(self, timeout: float = 5.0) -> list[AccountStatus]:
        """Every account's status, asked of all at once and gathered within ``timeout``: an
        account that does not answer in time is listed as `Health.UNREACHABLE`."""
        answers = self._ask_every(lambda handle: handle.status.remote(timeout / 2), timeout, cancel_late=True)
        return [_reached(account_id, answer) for account_id, answer in answers.items()]

    def status(self, account_id: str, timeout: float = 5.0) -> AccountStatus:
        """One account's status (see `accounts`); its guard is given half the ``timeout`` to answer."""
        return self._call(self._handle(account_id).status.remote(timeout / 2), account_id, "status", timeout)

    def halt(self, account_id: str, by: str, reason: str, timeout: float = 10.0) -> TradingState | HaltPending:
        """The kill switch for one account; returns its state before (HALTED for a quarantined
        account, which does not trade). For an account still starting, a `HaltPending` once the
        halt is saved in the account's state store: the account starts HALTED with it journaled
        and alerted as a manual halt, even should its worker be lost first; `HaltNotDurable`
        when it could not be saved (only the starting worker holds it: halt it again).
        `AccountNotTrading` for a fenced or stopped account (HALTED already, and not trading);
        a blank ``by`` or ``reason`` is a `ValueError` naming it (see `Incarnation.halt`)."""
        halt = PendingHalt(by, reason)  # (refused here, naming the field, before anything is asked)
        self._press([account_id], halt)
        answer = self._call(self._handle(account_id).halt.remote(by, reason, halt.halt_id), account_id, "halting", timeout)
        self._pressed_done(account_id, halt)
        return answer

    def halt_all(self, by: str, reason: str, timeout: float = 10.0) -> list[HaltOutcome]:
        """The kill switch for the whole fleet: every account it knows (quarantined, starting and
        restarting ones too) is asked at once to halt, as `halt` does for one, and the answers are
        gathered within ``timeout``, so that one account's refusal, failure or silence stops no
        other's halt. Returns each account's `HaltOutcome`, sorted by id; the fleet is halted when
        every one is ``saved``. A blank ``by`` or ``reason`` is a `ValueError` (or `TypeError`)
        naming it, raised before any account is asked."""
        halt = PendingHalt(by, reason)  # the accounts' own check, once: a bad value halts none of them
        self._press(None, halt)  # (every account the controller knows: no second round trip for their ids)
        # Late halts are not cancelled: one that lands late is still a halt.
        answers = self._ask_every(lambda handle: handle.halt.remote(by, reason, halt.halt_id), timeout, cancel_late=False)
        outcomes = [_halt_outcome(account_id, answer) for account_id, answer in answers.items()]
        for outcome in outcomes:
            if outcome.saved:
                self._pressed_done(outcome.account_id, halt)
        return outcomes

    def _press(self, account_ids: list[str] | None, halt: PendingHalt) -> None:
        # The controller keeps the halt for an account whose worker is lost before it carries it
        # out: its next incarnation starts HALTED (see `Controller.press`). Best effort: without
        # the controller the accounts are still asked, and Ray retries an ask a lost worker missed.
        try:
            self._ray.get(self._controller().press.remote(account_ids, halt), timeout=_PRESS_TIMEOUT)
        except Exception as exc:
            logger.warning("halt by {} not kept by the fleet's controller ({}): asked of the accounts all the same",
                           halt.by, _why(exc))

    def _pressed_done(self, account_id: str, halt: PendingHalt) -> None:
        try:
            self._controller().pressed_done.remote(account_id, halt.halt_id)  # (told: nothing waits on it)
        except Exception as exc:
            logger.warning("account {}: the controller not told its halt was carried out ({})", account_id, _why(exc))

    def resume(
        self, account_id: str, by: str = "operator", *, rebaseline: bool = False, timeout: float = 10.0,
        sent_at: datetime | None = None,
    ) -> TradingState:
        """Lift one account's HALTED latch; `ResumeRefused` while it is past a hard limit, or when
        the latch began after ``sent_at`` (timezone-aware: when the resume was decided; None, no
        such check; see `TradingSystem.resume`), `AccountNotTrading` when it has no trading
        system running. Once resumed, the halts the fleet's controller kept for the account (see
        `halt`) are let go: they would halt it again at its next start."""
        before: TradingState = self._call(self._handle(account_id).resume.remote(by, rebaseline, sent_at), account_id,
                                          "resuming", timeout)
        try:
            # Waited for (briefly): a worker lost right after must not be handed them.
            self._ray.get(self._controller().resumed.remote(account_id), timeout=_PRESS_TIMEOUT)
        except Exception as exc:
            logger.warning("account {}: the controller not told it was resumed ({})", account_id, _why(exc))
        return before

    def unquarantine(self, account_id: str, by: str, timeout: float = 30.0) -> str:
        """Lift a quarantine on purpose (the cause is mended: the store is back, the broker's
        login fixed): the account restarts from its saved state, its restart window starting
        again, and starts HALTED, by ``by``, whatever its saved state says: a pending halt is
        saved in its state store first (see `Incarnation.hold_for_restart`), so lifting a
        quarantine never resumes trading by itself; resume it once it trades. Returns what it
        will do (it restarts in the background: see `status`). `NotQuarantined` when the
        account is not quarantined, `HaltNotDurable` when that halt could not be saved (the
        store still down): the quarantine stays. Two lifts at once: the second raises
        `NotQuarantined` naming who lifts it, and nothing more is done."""
        PendingHalt(by, "quarantine lifted")  # (refused here, naming the field, before anything is asked)
        try:
            self._call(self._controller().begin_lift.remote(account_id, by), account_id, "lifting its quarantine", timeout)
        except KeyError:
            raise FleetError(f"account {account_id!r} is not in the fleet") from None
        try:
            held: str = self._call(self._handle(account_id).hold_for_restart.remote(by), account_id,
                                   "lifting its quarantine", timeout)
        except BaseException:
            self._controller().end_lift.remote(account_id)  # (told) not lifted: another may try
            raise
        try:
            self._call(self._controller().restart.remote(account_id), account_id, "restarting", timeout)
        except KeyError:
            raise FleetError(f"account {account_id!r} is not in the fleet") from None
        return held

    def place_order(self, account_id: str, order: Order, timeout: float = 10.0) -> OrderOutcome:
        """Hand ``order`` to the account's guard, once: Ray never retries it. When the account
        did not answer, its outcome is unknown: the error says so and names the client id,
        whose ORDER_SUBMITTED in the journal tells whether it was sent; placing the same
        order again is refused as a duplicate."""
        ref = self._handle(account_id).place_order.remote(order, timeout)
        try:
            return self._ray.get(ref, timeout=timeout + 5)
        except Exception as exc:
            refusal = self._refusal(exc, (TypeError, ValueError, TradewardenError))
            if refusal is not None:
                raise refusal from None
            raise FleetError(
                f"order {order.client_id!r} for account {account_id!r}: outcome unknown ({_why(exc)}); it was not "
                "retried; its client id in the journal says whether it was sent"
            ) from None

    def journal(self, account_id: str, limit: int | None = None, timeout: float = 10.0) -> list[Event]:
        """The account's journaled events, oldest first (the last ``limit`` of them)."""
        texts = self._call(self._handle(account_id).journal.remote(limit), account_id, "reading the journal", timeout)
        return [Event.from_json(text) for text in texts]

    def drill(self, account_id: str, actor: str, reason: str = "fleet drill", timeout: float = 10.0) -> int:
        """Crash one actor of an account added with ``drills=True``; its incarnation before."""
        return self._call(self._handle(account_id).drill.remote(actor, reason), account_id, "drilling", timeout)

    def remove(self, account_id: str, timeout: float = 30.0) -> None:
        """Stop the account cleanly and remove it from the fleet for good."""
        try:
            self._call(self._controller().remove.remote(account_id, timeout), account_id, "removing", timeout + 10)
        except KeyError:
            raise FleetError(f"account {account_id!r} is not in the fleet") from None

    def counters(self) -> dict[str, dict[str, int]]:
        """The controller's counts: accounts re-created, zombies killed."""
        return self._call(self._controller().counters.remote(), "(all)", "counting", 10.0)

    # --- plumbing -------------------------------------------------------------------------

    def _ask_every(self, ask: Callable[[Any], Any], timeout: float, *, cancel_late: bool) -> dict[str, Any]:
        # Every account asked at once (``ask`` sends the call to one's actor and returns its ref),
        # the answers gathered within ``timeout``, so that a silent account delays no other's:
        # by id, sorted, what its call returned or raised (a FleetError for an account without
        # an actor, a _NoAnswer for one that did not answer in time, its call then cancelled
        # when ``cancel_late``).
        ray = self._ray
        ids = self.account_ids()
        answers: dict[str, Any] = {}
        pending: dict[Any, str] = {}
        for account_id in ids:
            try:
                pending[ask(self._handle(account_id))] = account_id
            except FleetError as exc:
                answers[account_id] = exc
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout) if pending else ([], [])
        for ref in ready:
            try:
                answers[pending[ref]] = ray.get(ref)
            except Exception as exc:
                answers[pending[ref]] = exc
        for ref in late:
            answers[pending[ref]] = _NoAnswer(f"no answer within {timeout:g}s")
            if cancel_late:
                ray.cancel(ref)
        return {account_id: answers[account_id] for account_id in ids}

    def _controller(self) -> Any:
        if self._controller_handle is None:
            raise FleetError(f"this Fleet on namespace {self.namespace!r} was released or closed: connect again")
        return self._controller_handle

    def _handle(self, account_id: str) -> Any:
        from actors.fleet._account import account_name

        self._controller()  # a released Fleet finds nothing
        try:
            return self._ray.get_actor(account_name(account_id), namespace=self.namespace)
        except ValueError:
            raise FleetError(f"account {account_id!r} has no actor in namespace {self.namespace!r}") from None

    def _call(self, ref: Any, account_id: str, what: str, timeout: float) -> Any:
        try:
            return self._ray.get(ref, timeout=timeout)
        except self._ray.exceptions.GetTimeoutError:
            raise FleetError(f"account {account_id!r}: no answer within {timeout:g}s {what}: it may still be carried out;"
                             " ask its status") from None
        except Exception as exc:
            refusal = self._refusal(exc, (TypeError, ValueError, KeyError, PermissionError, TradewardenError))
            if refusal is not None:
                raise refusal from None
            raise FleetError(f"account {account_id!r}: {what} failed: {_why(exc)}") from None

    def _refusal(self, exc: Exception, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
        # What the account's own code raised, when it is one of ``kinds``: raised here as itself,
        # so a bad value is a ValueError naming it, whichever process found it. Ray's own errors
        # are not the account's answer, even those that are ValueErrors (a handle not found).
        cause = _cause(exc)
        if isinstance(cause, kinds) and not isinstance(cause, self._ray.exceptions.RayError):
            return cause
        return None


def _reached(account_id: str, answer: Any) -> AccountStatus:
    # An account's status as `Fleet._ask_every` gathered it: what it said, or why it is unreachable.
    if isinstance(answer, AccountStatus):
        return answer
    detail = str(answer) if isinstance(answer, (FleetError, _NoAnswer)) else _why(answer)
    return AccountStatus(account_id, Health.UNREACHABLE, detail=detail)


def _halt_outcome(account_id: str, answer: Any) -> HaltOutcome:
    # An account's halt as `Fleet._ask_every` gathered it, worded as the control API's.
    if isinstance(answer, HaltPending):
        return HaltOutcome(account_id, "halt_pending", detail=answer.detail)
    if isinstance(answer, TradingState):
        return HaltOutcome(account_id, "halted", previous_state=answer)
    if isinstance(answer, _NoAnswer):
        return HaltOutcome(account_id, "unknown", error=f"account {account_id!r}: {answer}: the halt may still land;"
                                                        " ask its status")
    if isinstance(answer, FleetError):  # no actor now (Ray gave up on it; the controller re-creates it)
        return HaltOutcome(account_id, "unknown", error=str(answer))
    cause = _cause(answer)
    if isinstance(cause, HaltNotDurable):
        return HaltOutcome(account_id, "not_saved", error=str(cause))
    if isinstance(cause, AccountNotTrading):
        return HaltOutcome(account_id, "refused", error=str(cause))
    return HaltOutcome(account_id, "unknown", error=f"account {account_id!r}: halting failed: {_why(answer)}")


def _cause(exc: BaseException) -> BaseException:
    # A RayTaskError carries the remote exception as its cause.
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _why(exc: BaseException) -> str:
    cause = _cause(exc)
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"


def _start_controller(ray: ModuleType, namespace: str, window: RestartWindow | None, probing: Probing | None) -> Any:
    from actors.fleet._controller import CONTROLLER_NAME, Controller

    return ray.remote(Controller).options(
        name=CONTROLLER_NAME,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_concurrency=16,
        num_cpus=0,
        resources={"node:__internal_head__": 0.001},  # beside the cluster's own state, not on a node that may go
    ).remote(namespace, window or RestartWindow(), probing or Probing())
