"""The fleet's parts that need no Ray, in this process: the restart window, one account's
incarnation (quarantine when its store stays down or a factory fails, and the pending halt it
leaves, exit when its supervisor gives up, fencing by a newer incarnation, a halt pressed while
it starts, saved so that it outlives the incarnation), and the STATE_DSN setting that picks
PostgreSQL."""

from __future__ import annotations

import functools
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from actor_helpers import wait_until
from support.bot_api_server import TEST_TOKEN, BotApiServer
from support.postgres import PostgresServer

from actors.fleet import AccountNotTrading, AccountStatus, Admission, HaltNotDurable, HaltPending, Health, RestartWindow
from actors.fleet._incarnation import AccountSpec, Incarnation
from actors.service.config import ConfigError, RunConfig
from actors.system import store_from_settings
from runtime.adapters.paper import PaperBroker
from runtime.adapters.postgres import PostgresStore
from runtime.adapters.sqlite import SqliteStore
from runtime.backoff import Backoff
from runtime.events import Event, EventType
from runtime.risk.guards import TradingState
from runtime.settings import Settings, SettingsError
from runtime.signals import ListSignalSource, Signal
from runtime.store import PendingHalt

PAPER = functools.partial(PaperBroker, 10_000)
BASE = Settings(loop_interval_seconds=0.5, heartbeat_interval_seconds=1.0)


# -- the restart window ------------------------------------------------------------------------


def test_the_restart_window_backs_off_each_restart_and_quarantines_past_its_count() -> None:
    window = RestartWindow(2, 10.0, Backoff(1.0, 8.0, random_factor=0))
    assert window.admit("a", 0.0) == Admission()  # a first start is not a restart
    assert window.admit("a", 1.0) == Admission(delay=1.0, restarts=1)
    assert window.admit("b", 1.5) == Admission()  # each account counts its own
    assert window.admit("a", 2.0) == Admission(delay=2.0, restarts=2)
    assert window.admit("a", 3.0) == Admission(quarantined=True, reason="restarted 3 times within 10s (at most 2)", restarts=3)
    # Once the window has moved past the storm, a restart is the first again.
    assert window.admit("a", 30.0) == Admission(delay=1.0, restarts=1)
    window.forget("a")
    assert window.admit("a", 31.0) == Admission()


def test_an_account_id_the_control_api_could_not_tell_from_its_own_routes_is_refused_naming_field_and_value() -> None:
    # POST /api/fleet/halt halts every account: beside an account named 'halt' (added without a
    # word), /api/fleet/halt reads as that account's path, and a POST to it halts them all.
    with pytest.raises(ValueError, match=r"^account_id 'halt' is reserved \(POST /api/fleet/halt halts every account\);"
                                         r" choose another id$"):
        AccountSpec("halt", BASE, PAPER, ListSignalSource)
    with pytest.raises(ValueError, match=r"^account_id may hold letters, digits, '-', '_' and '.' only, got 'a/b'$"):
        AccountSpec("a/b", BASE, PAPER, ListSignalSource)
    # A URL's path reads '.' and '..' as the folder and its parent: the dashboard's Halt of an
    # account named '.' was sent to /api/fleet/halt (a review).
    for dots in (".", "..", "..."):
        with pytest.raises(ValueError, match=rf"^account_id must hold a letter, digit, '-' or '_', not dots alone, "
                                             rf"got '{re.escape(dots)}'$"):
            AccountSpec(dots, BASE, PAPER, ListSignalSource)
    assert AccountSpec("halt-desk", BASE, PAPER, ListSignalSource).account_id == "halt-desk"
    assert AccountSpec("acct.1", BASE, PAPER, ListSignalSource).account_id == "acct.1"


# -- one incarnation ---------------------------------------------------------------------------


@pytest.fixture
def incarnations() -> Iterator[list[Incarnation]]:
    made: list[Incarnation] = []
    yield made
    for incarnation in made:
        incarnation.stop(10.0)


FIRST_START = Admission()


def _start(made: list[Incarnation], spec: AccountSpec, admission: Admission = FIRST_START,
           on_gave_up=lambda: None) -> Incarnation:
    incarnation = Incarnation(spec, on_gave_up=on_gave_up, node="here")
    made.append(incarnation)
    incarnation.begin(admission)
    assert incarnation.ready.wait(20.0), "the incarnation neither traded nor was quarantined"
    return incarnation


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_store_that_stays_down_quarantines_the_account_halted_and_alerts(
    incarnations: list[Incarnation], bot_api: BotApiServer
) -> None:
    dsn = f"host=127.0.0.1 port={_closed_port()} user=postgres password=s3cret dbname=postgres"
    settings = attrs.evolve(BASE, state_dsn=dsn, telegram_bot_token=TEST_TOKEN, telegram_chat_id="-1001",
                            telegram_api_base_url=bot_api.url)
    spec = AccountSpec("down", settings, PAPER, ListSignalSource, store_attempts=3, store_backoff=Backoff(0.01, 0.02))
    status = _start(incarnations, spec).status()
    shown = dsn.replace("s3cret", "***")
    assert status.detail.startswith(f"state store {shown!r} unreachable after 3 attempts: postgres postgres@127.0.0.1:")
    assert "s3cret" not in status.detail
    assert status == AccountStatus("down", Health.QUARANTINED, TradingState.HALTED, detail=status.detail, node="here",
                                   pid=status.pid, epoch=None)
    [alert] = bot_api.wait_for_requests(1, timeout=10)
    assert alert.text == f"[CRITICAL] Account quarantined: trading halted\ndown: {status.detail}"
    # Its store never opened, and is tried once more for the halt: still down, the halt cannot be
    # kept for whatever starts the account next, and says so.
    with pytest.raises(HaltNotDurable) as unsaved:
        _start(incarnations, spec).halt("ops", "desk closed")
    assert f"): it does not trade, but the halt was not saved (state store {shown!r} unreachable after 1 attempt: " in (
        str(unsaved.value))
    assert str(unsaved.value).endswith(
        "): added again, or started by another process, the account would start without it; halt it again once its "
        "state store can be reached")


def test_a_factory_that_raises_leaves_the_account_quarantined_not_a_raising_constructor(
    incarnations: list[Incarnation], tmp_path: Path
) -> None:
    def broken_broker() -> PaperBroker:
        raise RuntimeError("broker login refused")

    spec = AccountSpec("broken", attrs.evolve(BASE, state_db=str(tmp_path / "s.db")), broken_broker, ListSignalSource)
    incarnation = _start(incarnations, spec)
    status = incarnation.status()
    assert (status.health, status.trading_state, status.detail) == (
        Health.QUARANTINED, TradingState.HALTED, "start failed: RuntimeError('broker login refused')")
    # HALTED already and not trading: a halt is answered with that, not refused as an error, once it is
    # saved for whatever starts the account next (beside the quarantine's own).
    assert incarnation.halt("ops", "desk closed") is TradingState.HALTED
    with SqliteStore(tmp_path / "s.db") as store:
        assert [(h.by, h.reason) for h in store.load_pending_halts("broken")] == [
            ("fleet quarantine", "start failed: RuntimeError('broker login refused')"), ("ops", "desk closed")]
    with pytest.raises(AccountNotTrading, match=(
            r"^account broken is not trading \(quarantined: start failed: RuntimeError\('broker login refused'\)\)$")):
        incarnation.resume("ops", False)


def _halts_changed(incarnation: Incarnation) -> list[tuple[str, str, str]]:
    return [(e.metadata["from"], e.metadata["to"], e.metadata["reason"]) for e in _journal(incarnation)
            if e.event_type is EventType.TRADING_STATE_CHANGED]


def test_a_quarantining_admission_leaves_a_pending_halt_that_the_next_start_takes(
    incarnations: list[Incarnation], tmp_path: Path
) -> None:
    db = str(tmp_path / "s.db")
    spec = AccountSpec("flappy", attrs.evolve(BASE, state_db=db), PAPER, ListSignalSource)
    first = _start(incarnations, spec)
    assert wait_until(lambda: first.status().trading_state is TradingState.ACTIVE)
    first.stop(10.0)
    reason = "restarted 4 times within 60s (at most 3)"
    again = _start(incarnations, spec, Admission(quarantined=True, reason=reason, restarts=4))
    status = again.status()
    assert (status.health, status.trading_state, status.equity, status.peak, status.detail) == (
        Health.QUARANTINED, TradingState.HALTED, 10_000, 10_000, reason)
    again.stop(10.0)
    [pending] = _pending(spec.settings, "flappy")
    assert (pending.by, pending.reason) == ("fleet quarantine", reason)
    later = _start(incarnations, spec)
    assert wait_until(lambda: later.status().trading_state is TradingState.HALTED)
    assert later.status().detail == f"halted by fleet quarantine: {reason}"
    wanted = [("active", "halted", f"halted by fleet quarantine: {reason}")]
    assert wait_until(lambda: _halts_changed(later) == wanted), _halts_changed(later)  # (journaled after the answer)
    assert _pending(spec.settings, "flappy") == []


def test_a_quarantine_on_the_very_first_start_leaves_the_account_halted_for_its_next_start(
    incarnations: list[Incarnation], tmp_path: Path, bot_api: BotApiServer
) -> None:
    def broken_broker() -> PaperBroker:
        raise RuntimeError("broker login refused")

    db = str(tmp_path / "s.db")
    settings = attrs.evolve(BASE, state_db=db, telegram_bot_token=TEST_TOKEN, telegram_chat_id="-1001",
                            telegram_api_base_url=bot_api.url)
    reason = "start failed: RuntimeError('broker login refused')"
    broken = _start(incarnations, AccountSpec("fresh", settings, broken_broker, ListSignalSource))
    assert (broken.status().health, broken.status().detail) == (Health.QUARANTINED, reason)
    broken.stop(10.0)
    with SqliteStore(db) as store:
        assert store.load_guard("fresh") is None  # no guard ever ran: nothing to latch HALTED in
    [pending] = _pending(settings, "fresh")
    assert (pending.by, pending.reason) == ("fleet quarantine", reason)
    # Its broker mended, the account starts HALTED, saying who halted it and why, and trades nothing.
    signal = Signal("EURUSD", "buy", 1_000)
    mended = _start(incarnations, AccountSpec("fresh", settings, _priced, lambda: ListSignalSource([signal])))
    assert _halted_then_refused(mended) == [
        (EventType.TRADING_STATE_CHANGED, "active", "halted", f"halted by fleet quarantine: {reason}", None, None), REFUSED]
    status = mended.status()
    assert (status.health, status.trading_state, status.detail) == (
        Health.OK, TradingState.HALTED, f"halted by fleet quarantine: {reason}")
    texts = [r.text for r in bot_api.wait_for_requests(2, timeout=10)]
    assert texts == [f"[CRITICAL] Account quarantined: trading halted\nfresh: {reason}",
                     f"[CRITICAL] Trading halted by hand\nhalted by fleet quarantine: {reason}"]
    assert _pending(settings, "fresh") == []


def test_a_supervisor_that_gives_up_runs_the_fail_safe_then_asks_for_the_process_to_end(
    incarnations: list[Incarnation], tmp_path: Path
) -> None:
    db = str(tmp_path / "s.db")
    gave_up = threading.Event()
    spec = AccountSpec("storm", attrs.evolve(BASE, state_db=db, max_restarts=0), PAPER, ListSignalSource, drills=True)
    incarnation = _start(incarnations, spec, on_gave_up=gave_up.set)
    assert incarnation.drill("guard", "crash storm") == 1
    assert gave_up.wait(20.0), "the incarnation did not report its supervisor giving up"
    assert incarnation.status().health is Health.STOPPED
    with SqliteStore(db) as store:
        record = store.load_guard("storm")
        changes = [e for e in store.events("storm") if e.event_type is EventType.TRADING_STATE_CHANGED]
    assert record is not None and record.trading_state is TradingState.HALTED
    assert record.reason is not None and record.reason.startswith("supervisor gave up: ")
    assert [(e.metadata["from"], e.metadata["to"]) for e in changes] == [("active", "halted")]


def _gated_broker(building: threading.Event, go: threading.Event, refused: bool = False) -> Callable[[], PaperBroker]:
    def broker() -> PaperBroker:
        building.set()  # the account is starting: its store is open, its trading system not built
        if not go.wait(30.0):
            raise RuntimeError("the test never let the broker be built")
        if refused:
            raise RuntimeError("broker login refused")
        made = PaperBroker(10_000)
        made.update_price("EURUSD", 1.10)
        return made

    return broker


def _journal(incarnation: Incarnation) -> list[Event]:
    return [Event.from_json(text) for text in incarnation.journal(None)]


# The loop's first order, refused by the guard of an account that started HALTED.
REFUSED = (EventType.TRADE_FAILED, None, None, "", "trading halted", "trading_state")


def _halted_then_refused(incarnation: Incarnation) -> list[tuple]:
    # Once the loop's first order has been answered: the account's state changes, its orders sent
    # and their outcomes, in journal order, as (type, from, to, reason, error, refused_by).
    kinds = (EventType.TRADING_STATE_CHANGED, EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED, EventType.TRADE_FAILED)
    assert wait_until(lambda: any(e.event_type in kinds[2:] for e in _journal(incarnation)))
    return [(e.event_type, *(e.metadata.get(key) for key in ("from", "to", "reason", "error", "refused_by")))
            for e in _journal(incarnation) if e.event_type in kinds]


def _priced() -> PaperBroker:
    broker = PaperBroker(10_000)
    broker.update_price("EURUSD", 1.10)
    return broker


def _pending(settings: Settings, account: str) -> list[PendingHalt]:
    # The account's pending halts, read by a store of its own, as an operator would.
    if settings.state_db is not None:
        with SqliteStore(settings.state_db) as store:
            return store.load_pending_halts(account)
    assert settings.state_dsn is not None
    with PostgresStore(settings.state_dsn) as store:
        return store.load_pending_halts(account)


def test_a_halt_pressed_while_the_account_starts_is_saved_and_it_starts_halted_before_any_order(
    incarnations: list[Incarnation], tmp_path: Path, bot_api: BotApiServer
) -> None:
    building, go = threading.Event(), threading.Event()
    settings = attrs.evolve(BASE, state_db=str(tmp_path / "s.db"), telegram_bot_token=TEST_TOKEN,
                            telegram_chat_id="-1001", telegram_api_base_url=bot_api.url)
    signal = Signal("EURUSD", "buy", 1_000)  # the loop's first cycle places it
    spec = AccountSpec("held", settings, _gated_broker(building, go), lambda: ListSignalSource([signal]))
    incarnation = Incarnation(spec, on_gave_up=lambda: None, node="here")
    incarnations.append(incarnation)
    incarnation.begin(FIRST_START)
    assert building.wait(20.0), "the incarnation never built its broker"

    phase = "building its broker and signal source"
    assert incarnation.halt("ops", "desk closed") == HaltPending(
        "held", "ops", "desk closed", f"account held is starting ({phase}): it will start HALTED"
        " (saved in its state store: whichever incarnation starts it takes it first)")
    assert incarnation.halt("risk", "news at 14:30") == HaltPending(
        "held", "risk", "news at 14:30", f"account held is starting ({phase}): it will start HALTED"
        " (saved in its state store: whichever incarnation starts it takes it first)")
    held = f"{phase}; 2 halts pending: it will start HALTED"
    assert incarnation.status() == AccountStatus("held", Health.STARTING, detail=held, node="here",
                                                 pid=incarnation.status().pid)
    # A resume is refused while it starts, and says the halts are still held: it clears nothing.
    with pytest.raises(AccountNotTrading, match=f"^account held is not trading \\(starting: {held}\\)$"):
        incarnation.resume("ops", False)

    go.set()
    assert incarnation.ready.wait(20.0), "the incarnation neither traded nor was quarantined"
    # Both halts, journaled as manual halts in the order pressed, before the loop's order,
    # which the guard refused: it never reached the broker.
    assert _halted_then_refused(incarnation) == [
        (EventType.TRADING_STATE_CHANGED, "active", "halted", "halted by ops: desk closed", None, None),
        (EventType.TRADING_STATE_CHANGED, "halted", "halted", "halted by risk: news at 14:30", None, None),
        REFUSED,
    ]
    status = incarnation.status()
    # The account's halt is the first pressed; the second is journaled, not its reason.
    assert (status.health, status.trading_state, status.detail) == (Health.OK, TradingState.HALTED,
                                                                   "halted by ops: desk closed")
    # The second alert has the first's title: the Telegram sink merges it into its next message.
    first = bot_api.wait_for_requests(1, timeout=10)[0]
    assert first.text == "[CRITICAL] Trading halted by hand\nhalted by ops: desk closed"
    # Started: the halts are the guard's, and a halt now is asked of it as on any running account.
    assert incarnation.halt("ops", "still closed") is TradingState.HALTED


def test_a_halt_held_while_starting_is_named_when_the_account_is_quarantined_instead(
    incarnations: list[Incarnation], tmp_path: Path, bot_api: BotApiServer
) -> None:
    building, go = threading.Event(), threading.Event()
    settings = attrs.evolve(BASE, state_db=str(tmp_path / "s.db"), telegram_bot_token=TEST_TOKEN,
                            telegram_chat_id="-1001", telegram_api_base_url=bot_api.url)
    incarnation = Incarnation(AccountSpec("refused", settings, _gated_broker(building, go, refused=True), ListSignalSource),
                              on_gave_up=lambda: None, node="here")
    incarnations.append(incarnation)
    incarnation.begin(FIRST_START)
    assert building.wait(20.0), "the incarnation never built its broker"
    assert isinstance(incarnation.halt("ops", "desk closed"), HaltPending)
    go.set()
    assert incarnation.ready.wait(20.0), "the incarnation neither traded nor was quarantined"
    status = incarnation.status()
    reason = "start failed: RuntimeError('broker login refused')"
    assert (status.health, status.trading_state, status.detail) == (Health.QUARANTINED, TradingState.HALTED, reason)
    [alert] = bot_api.wait_for_requests(1, timeout=10)
    assert alert.text == (f"[CRITICAL] Account quarantined: trading halted\nrefused: {reason}; "
                          "halted by ops while starting: desk closed")


@pytest.mark.parametrize("backing", ["sqlite", "postgres"])
def test_a_halt_saved_while_the_account_starts_outlives_its_incarnation_and_the_next_start_is_halted(
    backing: str, incarnations: list[Incarnation], tmp_path: Path, bot_api: BotApiServer, request: pytest.FixtureRequest
) -> None:
    account = f"lost-{uuid.uuid4().hex[:6]}"
    where = ({"state_db": str(tmp_path / "s.db")} if backing == "sqlite"
             else {"state_dsn": request.getfixturevalue("postgres_dsn")})
    settings = attrs.evolve(BASE, **where, telegram_bot_token=TEST_TOKEN, telegram_chat_id="-1001",
                            telegram_api_base_url=bot_api.url)
    building, go = threading.Event(), threading.Event()
    lost = Incarnation(AccountSpec(account, settings, _gated_broker(building, go, refused=True), ListSignalSource),
                       on_gave_up=lambda: None, node="here")
    incarnations.append(lost)
    lost.begin(FIRST_START)
    assert building.wait(20.0), "the incarnation never built its broker"
    answer = lost.halt("ops", "desk closed")
    try:
        # Its process is lost before the account has started: that incarnation never goes on,
        # and the next one (a restart, after its backoff) starts the account.
        signal = Signal("EURUSD", "buy", 1_000)  # the loop's first cycle places it
        spec = AccountSpec(account, settings, _priced, lambda: ListSignalSource([signal]))
        restarted = _start(incarnations, spec, Admission(delay=0.01, restarts=1))
        # The halt, journaled as the manual halt pressed, before the loop's order, which the guard
        # refused: it never reached the broker.
        assert _halted_then_refused(restarted) == [
            (EventType.TRADING_STATE_CHANGED, "active", "halted", "halted by ops: desk closed", None, None), REFUSED]
        status = restarted.status()
        assert (status.health, status.trading_state, status.detail) == (Health.OK, TradingState.HALTED,
                                                                       "halted by ops: desk closed")
        first = bot_api.wait_for_requests(1, timeout=10)[0]
        assert first.text == "[CRITICAL] Trading halted by hand\nhalted by ops: desk closed"
        assert _pending(settings, account) == []  # taken, and cleared once HALTED was saved
        # What the answer promised is what happened.
        assert answer == HaltPending(account, "ops", "desk closed", f"account {account} is starting (building its broker"
                                     " and signal source): it will start HALTED (saved in its state store: whichever"
                                     " incarnation starts it takes it first)")
    finally:
        go.set()  # the lost incarnation's thread ends: its broker is refused, it is quarantined
        assert lost.ready.wait(20.0), "the lost incarnation's thread did not end"


def test_halts_handed_over_during_a_store_outage_are_kept_through_the_quarantine_and_saved_before_its_lift(
    incarnations: list[Incarnation], postgres_server: PostgresServer
) -> None:
    # Pressed while the last worker was lost, they were dropped by the quarantine the outage
    # caused: the account came back halted by whoever lifted it, the desk's halts gone.
    own = PostgresServer(postgres_server.bin_dir).start()
    own.down()
    try:
        settings = attrs.evolve(BASE, state_dsn=own.dsn)
        confirmed: list[list[str]] = []
        incarnation = Incarnation(AccountSpec("outage", settings, PAPER, ListSignalSource, store_attempts=2,
                                              store_backoff=Backoff(0.01, 0.02)),
                                  on_gave_up=lambda: None, node="here", on_halts_saved=lambda ids: confirmed.append(list(ids)))
        incarnations.append(incarnation)
        handed = (PendingHalt("desk", "market gone wrong"), PendingHalt("risk", "limits breached"))
        incarnation.begin(Admission(delay=0.01, restarts=1, halts=handed))
        assert incarnation.ready.wait(20.0), "the incarnation was not quarantined"
        status = incarnation.status()
        assert status.health is Health.QUARANTINED
        assert status.detail.endswith("; 2 halts not saved yet (kept until its state store takes it)")
        assert confirmed == []  # nothing saved: the controller keeps them
        own.up()
        incarnation.hold_for_restart("ops")
        assert [(h.by, h.reason) for h in _pending(settings, "outage")] == [
            ("desk", "market gone wrong"), ("risk", "limits breached"),
            ("ops", f"quarantine lifted: {incarnation.status().detail}")]
        assert confirmed == [[halt.halt_id for halt in handed]]
    finally:
        own.stop()  # (up or down)


def test_a_halt_that_cannot_be_saved_is_answered_as_not_durable_and_still_held_by_the_process(
    incarnations: list[Incarnation]
) -> None:
    building, go = threading.Event(), threading.Event()
    signal = Signal("EURUSD", "buy", 1_000)
    incarnation = Incarnation(AccountSpec("memory", BASE, _gated_broker(building, go), lambda: ListSignalSource([signal])),
                              on_gave_up=lambda: None, node="here")
    incarnations.append(incarnation)
    incarnation.begin(FIRST_START)
    assert building.wait(20.0), "the incarnation never built its broker"
    phase = "building its broker and signal source"
    with pytest.raises(HaltNotDurable) as refused:
        incarnation.halt("ops", "desk closed")
    assert str(refused.value) == (
        f"account memory is starting ({phase}): the halt was not saved (it keeps its state in this process's memory:"
        f" give it a state_db or a state_dsn); only its starting process (pid {os.getpid()}) holds it, and saves it"
        " once it can, but it is lost if that process is lost first: halt it again once the account has started")
    assert incarnation.status().detail == f"{phase}; 1 halt pending: it will start HALTED (1 not saved: held by this process only)"
    go.set()
    assert incarnation.ready.wait(20.0), "the incarnation neither traded nor was quarantined"
    assert _halted_then_refused(incarnation) == [
        (EventType.TRADING_STATE_CHANGED, "active", "halted", "halted by ops: desk closed", None, None), REFUSED]
    status = incarnation.status()
    assert (status.health, status.trading_state, status.detail) == (Health.OK, TradingState.HALTED,
                                                                   "halted by ops: desk closed")


def test_a_halt_without_who_or_why_is_refused_naming_the_field_and_the_value(incarnations: list[Incarnation]) -> None:
    incarnation = _start(incarnations, AccountSpec("calm", BASE, PAPER, ListSignalSource))
    with pytest.raises(ValueError, match=r"^by must be a non-empty string, got ' '$"):
        incarnation.halt(" ", "desk closed")
    with pytest.raises(TypeError, match=r"^reason must be a non-empty string, got None \(NoneType\)$"):
        incarnation.halt("ops", None)  # type: ignore[arg-type]
    assert incarnation.status().trading_state is TradingState.ACTIVE


def test_drills_are_refused_unless_the_account_was_added_with_them(incarnations: list[Incarnation]) -> None:
    incarnation = _start(incarnations, AccountSpec("calm", BASE, PAPER, ListSignalSource))
    with pytest.raises(PermissionError, match=r"^account calm was added without drills=True: drills are refused$"):
        incarnation.drill("guard", "no")


def test_a_newer_incarnation_fences_the_older_whose_halt_is_refused_and_which_stops_itself(
    incarnations: list[Incarnation], postgres_dsn: str
) -> None:
    account = f"fenced-{uuid.uuid4().hex[:6]}"
    spec = AccountSpec(account, attrs.evolve(BASE, state_dsn=postgres_dsn), PAPER, ListSignalSource)
    older = _start(incarnations, spec)
    newer = _start(incarnations, spec)
    assert (older.status().epoch, newer.status().epoch) == (1, 2)
    refused = (f"saving the guard record of loop {account!r} refused: loop {account!r} was claimed by a newer "
               "incarnation (epoch 2, this store holds epoch 1)")
    # Its guard latches in memory, the save is refused: the halt did not reach the newer incarnation.
    with pytest.raises(RuntimeError, match=rf"^account {account} is not trading \(fenced: .*{re.escape(refused)}\)$"):
        older.halt("ops", "from the stale one")
    assert wait_until(lambda: older.status().health is Health.FENCED)
    status = older.status()
    assert status.trading_state is TradingState.HALTED
    assert status.detail.endswith(refused)
    with pytest.raises(RuntimeError, match=rf"^account {account} is not trading \(fenced: "):
        older.halt("ops", "again")
    assert newer.status().trading_state is TradingState.ACTIVE
    with PostgresStore(postgres_dsn) as store:
        record = store.load_guard(account)
    assert record is None or record.trading_state is TradingState.ACTIVE  # the stale halt did not land


# -- STATE_DSN ---------------------------------------------------------------------------------


def test_state_dsn_takes_a_connection_string_or_uri_and_refuses_anything_else_naming_field_and_value() -> None:
    assert Settings.load(environ={"STATE_DSN": "host=db user=tw"}).state_dsn == "host=db user=tw"
    assert Settings(state_dsn="postgresql://tw:pw@db/tw").state_dsn == "postgresql://tw:pw@db/tw"
    assert "pw" not in repr(Settings(state_dsn="postgresql://tw:pw@db/tw"))
    with pytest.raises(SettingsError, match=(
        r"^STATE_DSN='sqlite:///x.db': state_dsn must be a PostgreSQL connection string \('host=\.\.\. dbname=\.\.\.'\) "
        r"or a postgresql:// URI, got 'sqlite:///x.db'$")):
        Settings.load(environ={"STATE_DSN": "sqlite:///x.db"})
    with pytest.raises(SettingsError, match=(
        r"^argument state_dsn: state_dsn \('host=db password=\*\*\*'\) and state_db \('s.db'\) are both set: "
        r"an account's state lives in one store, unset one of them$")):
        Settings.load(environ={}, state_db="s.db", state_dsn="host=db password=hunter2")


def test_a_run_config_names_a_bad_state_dsn_and_sends_a_good_one_to_the_fleet(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[tradewarden]\nstate_dsn = "db.example:5432"\n')
    with pytest.raises(ConfigError, match=rf"^{bad}: state_dsn: state_dsn must be a PostgreSQL connection string"):
        RunConfig.load(bad)
    good = tmp_path / "good.toml"
    good.write_text('[tradewarden]\nstate_dsn = "host=db dbname=tw"\n')
    with pytest.raises(ConfigError, match=(
        rf"^{good}: tradewarden.state_dsn is for accounts in a fleet \(actors.fleet\); `tradewarden run` keeps its "
        r"state and journal in tradewarden.state_db$")):
        RunConfig.load(good)


def test_a_system_built_from_state_dsn_uses_postgres_and_claims_its_loop(postgres_dsn: str) -> None:
    settings = Settings(loop_id=f"dsn-{uuid.uuid4().hex[:6]}", state_dsn=postgres_dsn)
    first = store_from_settings(settings)
    second = store_from_settings(settings)
    try:
        assert isinstance(first, PostgresStore) and isinstance(second, PostgresStore)
        assert second.claim(settings.loop_id) == 3  # each store claimed once already: epochs 1 and 2
    finally:
        first.close()  # type: ignore[union-attr]
        second.close()  # type: ignore[union-attr]
