"""One incarnation of one account, inside whatever process hosts it (a Ray worker, or a test).

It never raises from its constructor or `begin`: a store that stays down, or a factory that
fails, makes the account come up quarantined and HALTED, with an alert. Nothing here imports Ray.

A halt pressed while the account starts, and a quarantine, are kept in the account's state store
as pending halts (`runtime.store.PendingHalt`), which the next guard of the account takes before
anything else: they outlive this process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from loguru import logger

from actors.fleet._policy import Admission
from actors.fleet.status import AccountNotTrading, AccountStatus, HaltNotDurable, HaltPending, Health, NotQuarantined
from actors.messages import HaltNotSaved, OrderOutcome, PlaceOrder
from actors.supervision.messages import Crash
from actors.system import TradingSystem
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.telegram import TelegramAlerts
from runtime.alerts import Alert, AlertSink, LogAlerts, Severity
from runtime.backoff import Backoff
from runtime.broker import Broker, Order
from runtime.risk.guards import TradingState
from runtime.risk.monitor import GuardRecord
from runtime.settings import Settings, masked_dsn
from runtime.signals import SignalSource
from runtime.store import MemoryStore, PendingHalt, StateStore
from runtime.validation import attrs_text, attrs_whole

__all__ = ["QUARANTINE_BY", "AccountSpec", "Incarnation"]

QUARANTINE_BY = "fleet quarantine"  # who a quarantine's pending halt says halted the account
_DRILL_ACTORS = ("emitter", "alerts", "guard", "loop", "heartbeat")


def _callable(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{attribute.name} must be a factory (a callable taking no arguments), got {value!r}")


# Ids the fleet's control API uses for itself beside /api/fleet/{account}: an account of that name
# would read as the route (POST /api/fleet/halt halts every account).
_RESERVED_IDS = {"halt": "POST /api/fleet/halt halts every account"}


def _account_id(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    attrs_text(instance, attribute, value)
    if not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(f"{attribute.name} may hold letters, digits, '-', '_' and '.' only, got {value!r}")
    if value in _RESERVED_IDS:
        raise ValueError(f"{attribute.name} {value!r} is reserved ({_RESERVED_IDS[value]}); choose another id")
    if not value.strip("."):
        # A URL's path reads "." and ".." as the folder itself and its parent: /api/fleet/./halt
        # is sent as /api/fleet/halt, which halts every account.
        raise ValueError(f"{attribute.name} must hold a letter, digit, '-' or '_', not dots alone, got {value!r}")


def _settings_for(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, Settings):
        raise TypeError(f"settings must be Settings, got {type(value).__name__}")


@attrs.frozen
class AccountSpec:
    """Everything needed to (re)start one account anywhere: its id (its ``loop_id`` too), its
    settings, and factories for its broker and signal source, called inside the worker.
    ``options`` go to `start_trading_system` (loop_interval, backoff, ...); ``drills`` lets it
    obey `Fleet.drill`. A store that is down is tried ``store_attempts`` times, ``store_backoff``
    apart, before the account comes up quarantined."""

    account_id: str = attrs.field(validator=_account_id)
    settings: Settings = attrs.field(validator=_settings_for)
    broker: Callable[[], Broker] = attrs.field(validator=_callable)
    signals: Callable[[], SignalSource] = attrs.field(validator=_callable)
    options: Mapping[str, Any] = attrs.field(factory=dict)
    drills: bool = False
    store_attempts: int = attrs.field(default=5, validator=attrs_whole)
    store_backoff: Backoff = attrs.field(factory=lambda: Backoff(0.2, 2.0))

    @property
    def account_settings(self) -> Settings:
        """The settings with ``loop_id`` set to the account's id."""
        return attrs.evolve(self.settings, loop_id=self.account_id)


class Incarnation:
    """The account's trading system in this process, started by `begin` on a thread of its own.

    ``on_gave_up`` is called (on the watcher's thread) when the system's own supervisor gives
    up after its fail-safe has run: a Ray worker turns that into a process exit that Ray restarts.
    ``on_halts_saved`` is called with the ids of the halts the fleet's controller keeps for it
    (handed over by its admission, or pressed while it could not save them) once its state
    store holds them: the controller then stops keeping them.

    A halt pressed while it starts is saved in the account's state store before it is
    acknowledged, so that it outlives this process: whichever incarnation starts the account
    next takes it before any order (see `halt`).
    """

    def __init__(self, spec: AccountSpec, *, on_gave_up: Callable[[], None], node: str | None = None,
                 on_halts_saved: Callable[[Sequence[str]], None] = lambda halt_ids: None) -> None:
        self.spec = spec
        self.settings = spec.account_settings
        self._on_gave_up = on_gave_up
        self._on_halts_saved = on_halts_saved
        self._node = node
        self._lock = threading.Lock()
        self._health = Health.STARTING
        self._detail = "starting"
        self._epoch: int | None = None
        self._store: StateStore | None = None
        self._system: TradingSystem | None = None
        self._record: GuardRecord | None = None  # what a quarantined account shows
        # A halt pressed while starting is saved, or the system built, one at a time: a halt
        # is either in the store before the guard reads it, or asked of the guard. Reentrant:
        # a quarantine while building takes it again.
        self._pressing = threading.RLock()
        self._pressed: list[PendingHalt] = []  # pressed while starting (for the status and a quarantine's alert)
        self._unsaved: list[PendingHalt] = []  # of those, the ones its store could not keep yet
        self._quarantine_halt: PendingHalt | None = None  # the quarantine's own, once saved (a lift replaces it)
        self._handed: set[str] = set()  # ids of unsaved halts the fleet's controller keeps too (see _save_held)
        self._client_ids: set[str] = set()  # placed through this incarnation
        self._stopping = threading.Event()
        self.ready = threading.Event()  # set once the account trades, or is quarantined
        self._alerts: AlertSink
        try:
            self._alerts = TelegramAlerts.from_settings(self.settings)
        except Exception as exc:  # a bad alert setting must not keep the account down
            logger.error("account {}: alert sink not built ({!r}); alerts are logged", spec.account_id, exc)
            self._alerts = LogAlerts()

    # --- starting -------------------------------------------------------------------------

    def begin(self, admission: Admission) -> None:
        """Start in the background as ``admission`` says (after its delay, or quarantined)."""
        threading.Thread(target=self._start, args=(admission,), name=f"account-{self.spec.account_id}", daemon=True).start()

    def _start(self, admission: Admission) -> None:
        if admission.halts:  # pressed while the last worker was lost: saved before the system starts
            with self._lock:
                self._pressed.extend(admission.halts)
                self._unsaved.extend(admission.halts)
                self._handed.update(halt.halt_id for halt in admission.halts)
        try:
            self._start_or_quarantine(admission)
        except BaseException as exc:  # whatever happens, the account comes up: quarantined
            self._quarantine(f"start failed: {exc!r}")
        finally:
            self.ready.set()

    def _start_or_quarantine(self, admission: Admission) -> None:
        # The store first, before a restart's backoff: from then on a halt pressed while the
        # account starts is saved in it, not only held by this process.
        self._starting("opening its state store")
        opened = self._open_store()
        if isinstance(opened, str):
            self._quarantine(opened)
            return
        if admission.quarantined:
            self._quarantine(admission.reason)
            return
        if admission.delay:
            self._starting(f"waiting {admission.delay:g}s before restart {admission.restarts}")
            if self._stopping.wait(admission.delay):
                return
        spec = self.spec
        self._starting("building its broker and signal source")
        broker, signals = spec.broker(), spec.signals()
        with self._pressing:
            try:
                self._save_held(opened)  # pressed before its store was open: the guard reads them there
            except Exception as exc:
                self._quarantine(f"a halt pressed while it started could not be saved: {exc}")
                return
            with self._lock:
                system = TradingSystem(self.settings, broker, signals, store=opened, drills=spec.drills,
                                       **dict(spec.options))
                self._system = system
                self._detail = "starting its trading system"
        system.start()
        with self._lock:
            self._pressed = []  # the guard has taken them
            if self._health is Health.STARTING:  # not fenced meanwhile
                self._health, self._detail = Health.OK, ""
        threading.Thread(target=self._watch, args=(system,), name=f"account-{spec.account_id}-watch", daemon=True).start()

    def _starting(self, detail: str) -> None:
        with self._lock:
            self._detail = detail

    def _open_store(self, attempts: int | None = None) -> StateStore | str:
        """The account's store, claimed, or the reason it could not be opened (after ``attempts``
        on PostgreSQL, the spec's ``store_attempts`` unless given)."""
        s, spec = self.settings, self.spec
        if s.state_dsn is None:
            self._store = SqliteStore.from_settings(s)
            return self._store
        attempts = attempts or spec.store_attempts
        error: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                self._store = self._claimed_postgres(s.state_dsn)
                return self._store
            except Exception as exc:
                error = exc
                logger.warning("account {}: state store attempt {} of {} failed: {!r}", spec.account_id, attempt,
                               attempts, exc)
            if attempt < attempts and self._stopping.wait(spec.store_backoff.delay(attempt)):
                break
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        return f"state store {masked_dsn(s.state_dsn)!r} unreachable after {tries}: {error}"

    def _claimed_postgres(self, dsn: str) -> StateStore:
        from actors.fleet._fencing import FencedStore  # psycopg only for an account on PostgreSQL
        from runtime.adapters.postgres import PostgresStore

        store = PostgresStore(dsn)
        try:
            epoch = store.claim(self.spec.account_id)
        except BaseException:
            store.close()
            raise
        self._epoch = epoch
        return FencedStore(store, epoch, self._fenced)

    def _quarantine(self, reason: str) -> None:
        """Come up HALTED without trading. When its store can be reached, leave behind as
        pending halts the halts pressed while it started that were not saved yet and the
        quarantine itself (by `QUARANTINE_BY`, for ``reason``): whichever incarnation starts the
        account next, on its first start too (no guard record yet), starts HALTED, journaled
        and alerted with who halted it and why. When they could not be saved (its store is the
        outage), this process keeps the pressed ones and saves them first once its store is
        reached again (a halt of it, or the lift of its quarantine)."""
        with self._pressing:  # a halt pressed meanwhile is in this list or sees the quarantine
            account, store = self.spec.account_id, self._store
            record: GuardRecord | None = None
            if store is not None:
                try:
                    record = store.load_guard(account)  # what its status shows
                except Exception as exc:
                    logger.error("account {}: its guard record not read while quarantining: {!r}", account, exc)
                try:
                    self._save_held(store)
                    own = PendingHalt(QUARANTINE_BY, reason)
                    store.save_pending_halt(account, own)
                    self._quarantine_halt = own
                except Exception as exc:
                    logger.error("account {}: HALTED not saved while quarantining: {!r}", account, exc)
            with self._lock:
                self._record = record
                self._health, self._detail = Health.QUARANTINED, reason
                held, self._pressed = self._pressed, []
        # A halt pressed while it started is not dropped unsaid: quarantined, it is HALTED as asked.
        pressed = "".join(f"; halted by {halt.by} while starting: {halt.reason}" for halt in held)
        logger.critical("account {} quarantined (HALTED, not trading): {}{}", account, reason, pressed)
        self._alert("Account quarantined: trading halted", f"{account}: {reason}{pressed}")

    def _alert(self, title: str, text: str) -> None:
        try:
            self._alerts.send(Alert(title, text, Severity.CRITICAL, key=f"fleet:{self.spec.account_id}:{title}"))
        except Exception as exc:
            logger.error("account {}: alert {!r} not sent: {!r}", self.spec.account_id, title, exc)

    # --- ending ---------------------------------------------------------------------------

    def _watch(self, system: TradingSystem) -> None:
        system.wait()
        if self._stopping.is_set() or self._health is Health.FENCED:
            return
        with self._lock:
            self._health, self._detail = Health.STOPPED, "its supervisor gave up (fail-safe ran)"
        logger.critical("account {}: the trading system ended (gave up: {})", self.spec.account_id, system.gave_up)
        try:
            system.stop(10.0)  # journal what is left and close the store before the process goes
        finally:
            self._on_gave_up()

    def _fenced(self, error: Exception) -> None:
        # A newer incarnation owns the account: stop trading here at once (no liquidation: the
        # positions are the newer incarnation's to manage, and every order of ours is refused).
        with self._lock:
            self._health, self._detail = Health.FENCED, str(error)
            system = self._system
        logger.critical("account {}: fenced by a newer incarnation, halting itself: {}", self.spec.account_id, error)
        self._alert("Stale account incarnation halted", f"{self.spec.account_id} on pid {os.getpid()}: {error}")
        if system is not None:
            system.stop(10.0)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop trading cleanly (LOOP_STOPPED journaled) and close the store."""
        self._stopping.set()
        with self._lock:
            system, store = self._system, self._store
        if system is not None:
            system.stop(timeout)
        close = getattr(store, "close", None)  # the store is ours, not the system's
        if close is not None:
            close()

    # --- asking ---------------------------------------------------------------------------

    def status(self, timeout: float = 2.0) -> AccountStatus:
        """The account's status now; the guard is asked within ``timeout``."""
        with self._lock:
            (health, detail, system), record = self._described(), self._record
        here = AccountStatus(self.spec.account_id, health, detail=detail, node=self._node, pid=os.getpid(), epoch=self._epoch)
        if health is Health.OK and system is not None:
            try:
                state = system.guard_status(timeout).state
            except Exception as exc:
                return attrs.evolve(here, health=Health.UNREACHABLE, detail=f"guard did not answer: {exc!r}")
            return attrs.evolve(here, trading_state=state.trading_state, equity=state.current_equity,
                                peak=state.peak_equity, detail=state.reason or "")
        if health in (Health.QUARANTINED, Health.FENCED):
            here = attrs.evolve(here, trading_state=TradingState.HALTED)
            if record is not None:
                here = attrs.evolve(here, equity=record.drawdown.latest_equity, peak=record.drawdown.peak_equity)
        return here

    def _described(self) -> tuple[Health, str, TradingSystem | None]:
        # Under the lock: its health, what it is doing (with the halts pressed while it starts,
        # and how many only this process holds, or a quarantined one could not save yet, so that
        # neither a status nor a refused resume reads as if none were), and its system.
        detail = self._detail
        if self._health is Health.STARTING and self._pressed:
            pressed, unsaved = len(self._pressed), len(self._unsaved)
            detail += f"; {pressed} halt{'s' if pressed > 1 else ''} pending: it will start HALTED"
            if unsaved:
                detail += f" ({unsaved} not saved: held by this process only)"
        elif self._health is Health.QUARANTINED and self._unsaved:  # (its store is the outage)
            unsaved = len(self._unsaved)
            detail += f"; {unsaved} halt{'s' if unsaved > 1 else ''} not saved yet (kept until its state store takes it)"
        return self._health, detail, self._system

    def _running(self) -> TradingSystem:
        with self._lock:
            health, detail, system = self._described()
        if health is not Health.OK or system is None:
            raise AccountNotTrading(f"account {self.spec.account_id} is not trading ({health.value}: {detail})")
        return system

    def halt(self, by: str, reason: str, halt_id: str | None = None) -> TradingState | HaltPending:
        """The kill switch (see `TradingSystem.halt`): returns the state before, for an account
        whose trading system runs or is being started (then the ask waits for its guard, which
        takes every pending halt first). For an account still starting (waiting out a restart
        backoff, building its broker), the halt is saved in its state store as a pending halt
        and a `HaltPending` returned once it is durable: whichever incarnation starts the
        account next, this one or another should this process be lost, takes it before any
        order, so the account starts HALTED, journaled and alerted as this manual halt.
        `HaltNotDurable` when it could not be saved (its store not open yet, failing, or in
        memory): this process holds it and saves it once it can, but it is lost with this
        process. A quarantined account is HALTED and does not trade: HALTED is returned, and
        nothing changes. `AccountNotTrading` for a fenced or stopped one; ``by`` and ``reason``
        must be non-blank strings (else `ValueError` or `TypeError` naming the field and the
        value). ``halt_id`` is the fleet controller's id for it, which it keeps until told the
        halt is saved (see `Controller.press`)."""
        pending = PendingHalt(by, reason) if halt_id is None else PendingHalt(by, reason, halt_id)
        account = self.spec.account_id
        with self._pressing:
            with self._lock:
                health, detail, system, store = self._health, self._detail, self._system, self._store
            if system is None and health is Health.STARTING:
                return self._press(pending, detail, store)
        if system is not None and health in (Health.OK, Health.STARTING):
            try:
                return system.halt(by, reason)
            except HaltNotSaved as exc:
                stale = getattr(store, "stale", None)  # (a FencedStore's: imported only for PostgreSQL)
                if stale is not None:
                    # Not this incarnation's account any more: the halt never reached the one trading it.
                    raise AccountNotTrading(f"account {account} is not trading (fenced: {stale})") from None
                raise HaltNotDurable(f"account {account} is trading: it is {exc}") from None
        if health is Health.QUARANTINED:
            # HALTED and not trading here; saved, the halt also holds for whatever starts the account next.
            # A store that never opened (the outage that quarantined it) is tried again now: it may be back.
            with self._pressing:
                opened = store if store is not None else self._opened_now()
                why = opened if isinstance(opened, str) else self._save_halt(pending, opened, held_first=True)
            if why is None:
                logger.warning("account {}: halt by {} of a quarantined account saved: {}", account, by, reason)
                return TradingState.HALTED
            logger.error("account {}: halt by {} of a quarantined account not saved ({}): {}", account, by, why, reason)
            raise HaltNotDurable(
                f"account {account} is quarantined ({detail}): it does not trade, but the halt was not saved ({why}):"
                " added again, or started by another process, the account would start without it; halt it again once"
                " its state store can be reached"
            )
        raise AccountNotTrading(f"account {account} is not trading ({health.value}: {detail})")

    def _press(self, halt: PendingHalt, detail: str, store: StateStore | None) -> HaltPending:
        # Under _pressing, while the account starts and has no trading system yet.
        account = self.spec.account_id
        with self._lock:
            self._pressed.append(halt)
        why = self._save_halt(halt, store)
        if why is None:
            logger.warning("account {}: halt by {} saved until it starts: {}", account, halt.by, halt.reason)
            return HaltPending(account, halt.by, halt.reason, f"account {account} is starting ({detail}): it will"
                               " start HALTED (saved in its state store: whichever incarnation starts it takes it first)")
        with self._lock:
            self._unsaved.append(halt)
            self._handed.add(halt.halt_id)  # (the driver that pressed it left it with the controller)
        logger.error("account {}: halt by {} not saved ({}), held by this process: {}", account, halt.by, why, halt.reason)
        raise HaltNotDurable(
            f"account {account} is starting ({detail}): the halt was not saved ({why}); only its starting process"
            f" (pid {os.getpid()}) holds it, and saves it once it can, but it is lost if that process is lost first:"
            " halt it again once the account has started"
        )

    def _save_halt(self, halt: PendingHalt, store: StateStore | None, *, held_first: bool = False) -> str | None:
        # Keeps ``halt`` for whichever incarnation starts the account next (after the halts this
        # process holds unsaved, when ``held_first``: pressed earlier, they come first); None once
        # saved, else why not.
        if store is None:
            return "its state store is not open"
        if isinstance(store, MemoryStore):
            return "it keeps its state in this process's memory: give it a state_db or a state_dsn"
        try:
            if held_first:
                self._save_held(store)
            store.save_pending_halt(self.spec.account_id, halt)
        except Exception as exc:
            return f"its state store failed: {exc}"
        return None

    def _save_held(self, store: StateStore) -> None:
        # Under _pressing: the halts this process holds unsaved go to ``store`` in the order they
        # were pressed (raises what the store raised, keeping those not saved), and the
        # controller is told of those its admission handed over.
        with self._lock:
            held = list(self._unsaved)
        for halt in held:
            store.save_pending_halt(self.spec.account_id, halt)
            with self._lock:
                self._unsaved.remove(halt)
        with self._lock:
            confirmed = [halt.halt_id for halt in held if halt.halt_id in self._handed]
            self._handed.difference_update(confirmed)
        if confirmed:
            try:
                self._on_halts_saved(confirmed)
            except Exception as exc:  # the controller keeps them: the next start saves them again, once
                logger.warning("account {}: the controller not told its halts were saved: {!r}", self.spec.account_id, exc)

    def hold_for_restart(self, by: str) -> str:
        """Before a person lifts this account's quarantine (see `Fleet.unquarantine`): save in its
        state store a pending halt by ``by`` (a non-blank string), so that the incarnation that
        starts next starts HALTED, however the quarantine came about (one because the store
        stayed down left none): lifting a quarantine never resumes trading by itself. A store
        that never opened is opened now (the outage may be over). Returns what the next start
        will do. `NotQuarantined` when it is not quarantined, `HaltNotDurable` when the halt
        could not be saved: then the quarantine must stay."""
        account = self.spec.account_id
        with self._lock:
            health, detail, store = self._health, self._detail, self._store
        if health is not Health.QUARANTINED:  # (for good: a quarantined incarnation never starts trading)
            raise NotQuarantined(f"account {account} is not quarantined ({health.value}): there is no quarantine to lift")
        halt = PendingHalt(by, f"quarantine lifted: {detail}")
        with self._pressing:  # the halts it holds unsaved first: pressed before, they are the ones in force
            opened = store if store is not None else self._opened_now()
            why = opened if isinstance(opened, str) else self._save_halt(halt, opened, held_first=True)
        if why is not None:
            logger.error("account {}: quarantine not lifted by {}: its halt not saved ({})", account, by, why)
            raise HaltNotDurable(f"account {account} is quarantined ({detail}): the quarantine was not lifted, since the halt"
                                 f" that keeps it HALTED as it starts again was not saved ({why})")
        self._replace_quarantine_halt(opened)
        logger.warning("account {}: quarantine lifted by {}: it restarts HALTED ({})", account, by, detail)
        return (f"account {account} restarts from its saved state: it starts HALTED (halted by {by}: {halt.reason}),"
                " and trades once resumed")

    def _replace_quarantine_halt(self, store: StateStore | str) -> None:
        # The lift's halt names the quarantine's reason and who lifted it: it takes the place of
        # the quarantine's own, so that the account starts HALTED by the lift, as its answer says.
        own = self._quarantine_halt
        if own is None or isinstance(store, str):
            return
        try:
            store.clear_pending_halts(self.spec.account_id, [own.halt_id])
        except Exception as exc:  # still HALTED as it starts: by the quarantine, then by the lift
            logger.error("account {}: the quarantine's own halt not cleared at its lift: {!r}", self.spec.account_id, exc)

    def _opened_now(self) -> StateStore | str:
        # The store of an account quarantined before it could open it, or why it still cannot be:
        # tried once, so that a person asking is answered within a connection's timeout.
        try:
            return self._open_store(attempts=1)
        except Exception as exc:  # (a state file that cannot be opened)
            return f"its state store failed: {exc}"

    def resume(self, by: str, rebaseline: bool, sent_at: datetime | None = None) -> TradingState:
        """Lift HALTED (see `TradingSystem.resume`, ``sent_at`` included); returns the state
        before. Refused with `AccountNotTrading` while the account is not trading, starting
        included: a halt pressed while starting stays held (the refusal says so)."""
        return self._running().resume(by, rebaseline=rebaseline, sent_at=sent_at)

    def place_order(self, order: Order, timeout: float) -> OrderOutcome:
        """Hand ``order`` to the guard once; an order whose client id this account's journal
        already holds (from any incarnation) is refused as a duplicate, never sent again."""
        system = self._running()
        if not isinstance(order, Order):
            raise TypeError(f"order must be an Order, got {order!r}")
        with self._lock:
            # This incarnation's ids first (one asked twice at once), then the journal's index.
            duplicate = order.client_id in self._client_ids or system.store.order_placed(
                self.spec.account_id, order.client_id
            )
            self._client_ids.add(order.client_id)
        if duplicate:
            raise ValueError(f"duplicate client id {order.client_id!r}: the journal of {self.spec.account_id} already holds that order")
        deadline = time.monotonic() + timeout
        outcome: OrderOutcome = system.guard.ask(PlaceOrder(order, datetime.now(UTC)), timeout=timeout)
        # Answered once the journal holds it, so that an incarnation started after this one is
        # lost still refuses it as a duplicate (a paper account's orders are journaled after
        # the guard answers them).
        if not system.journaled(max(0.0, deadline - time.monotonic())):
            logger.warning("account {}: order {} answered before the journal took it (within {}s)",
                           self.spec.account_id, order.client_id, timeout)
        return outcome

    def journal(self, limit: int | None) -> list[str]:
        """The account's journaled events as JSON, oldest first (the last ``limit`` of them)."""
        with self._lock:
            store = self._store
        if store is None:
            raise RuntimeError(f"account {self.spec.account_id} has no store open ({self._detail})")
        events = store.events(self.spec.account_id)
        if limit is not None:
            events = events[-limit:] if limit else []
        return [event.to_json() for event in events]

    def drill(self, actor: str, reason: str) -> int:
        """Crash ``actor`` of the trading system (drills only); returns its incarnation before."""
        if not self.spec.drills:
            raise PermissionError(f"account {self.spec.account_id} was added without drills=True: drills are refused")
        if actor not in _DRILL_ACTORS:
            raise ValueError(f"actor must be one of {', '.join(_DRILL_ACTORS)}, got {actor!r}")
        system = self._running()
        before = system.children()[actor].incarnation
        system.address(actor).tell(Crash(reason))
        return before
