"""The `StateStore` port's contract, held by every store: memory, SQLite and PostgreSQL.

Each test gets `Backing`: ``open()`` gives a store on the same data (for SQLite the same file, for
PostgreSQL the same schema, claiming the loops the tests write, as a new incarnation would), and
``durable`` says whether a store opened again sees what an earlier one wrote.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from test_sqlite_store import _event, _outcome, _submitted, guard_record

from runtime import Event, EventType, LoopTotals, MemoryStore
from runtime.adapters.sqlite import SqliteStore
from runtime.risk.gate import GateRecord
from runtime.store import HeldOrder, PendingHalt, UnreadableOrder

LOOPS = ("main", "other", "a", "b")


@attrs.define
class Backing:
    """Opens stores on one backing and closes them all at the end of the test."""

    kind: str
    factory: Callable[[], Any]
    path: Any = None  # the SQLite file, or the PostgreSQL DSN
    schema: str | None = None  # the PostgreSQL schema
    opened: list[Any] = attrs.field(factory=list)

    @property
    def durable(self) -> bool:
        """Whether a store opened again sees what an earlier one wrote (not so for memory)."""
        return self.kind != "memory"

    def open(self) -> Any:
        """A store on this backing, ready for writes to every loop in `LOOPS`."""
        store = self.factory()
        self.opened.append(store)
        return store


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    if request.param == "memory":
        memory = MemoryStore()
        made = Backing("memory", lambda: memory)
    elif request.param == "sqlite":
        made = Backing("sqlite", lambda: SqliteStore(tmp_path / "state.db"), tmp_path / "state.db")
    else:
        from runtime.adapters.postgres import PostgresStore

        dsn, schema = request.getfixturevalue("postgres_dsn"), request.getfixturevalue("pg_schema")

        def claimed() -> PostgresStore:
            store = PostgresStore(dsn, schema=schema)
            for loop_id in LOOPS:
                store.claim(loop_id)
            return store

        made = Backing("postgres", claimed, dsn, schema)
    yield made
    for store in made.opened:
        getattr(store, "close", lambda: None)()


# -- state -----------------------------------------------------------------------------------------


def test_guard_records_round_trip_exactly_and_are_replaced(backing: Backing) -> None:
    store = backing.open()
    assert store.load_guard("main") is None
    for i in range(5):
        store.save_guard("main", guard_record(i))
        assert store.load_guard("main") == guard_record(i)
    assert store.load_guard("other") is None


def test_loop_totals_round_trip_and_are_replaced(backing: Backing) -> None:
    store = backing.open()
    assert store.load_loop_totals("main") is None
    store.save_loop_totals("main", LoopTotals(3, 1))
    store.save_loop_totals("main", LoopTotals(10, 4))
    assert store.load_loop_totals("main") == LoopTotals(10, 4)
    assert store.load_loop_totals("other") is None


def test_everything_survives_closing_and_reopening(backing: Backing) -> None:
    if not backing.durable:
        pytest.skip("a MemoryStore lives as long as its process, by design")
    store = backing.open()
    store.save_guard("main", guard_record(7))
    store.save_loop_totals("main", LoopTotals(5, 2))
    for i in range(3):
        store.append_event(_event(i))
    store.open_order(_submitted("c1"))
    store.close()
    reopened = backing.open()
    assert reopened.load_guard("main") == guard_record(7)
    assert reopened.load_loop_totals("main") == LoopTotals(5, 2)
    assert reopened.events() == [*(_event(i) for i in range(3)), _submitted("c1")]
    assert reopened.unsettled_orders("main") == [_submitted("c1")]
    assert reopened.append_event(_event(1)) is False


def gate_record(i: int) -> GateRecord:
    """The i-th gate record of a series whose floats have no short decimal form."""
    base = 1_700_000_000.0 + i / 3.0
    return GateRecord(
        sent=tuple(base + k / 7.0 for k in range(i + 1)),
        refusals=tuple(base + k / 11.0 for k in range(i)),
        latched=None if i % 2 == 0 else f"runaway order loop: {i} orders refused",
        latched_at=None if i % 2 == 0 else base + 0.1,
        halted_by=("daily_loss", "max_drawdown")[: i % 3],
        halted_at=None if i % 3 == 0 else base + 0.2,
    )


def test_gate_records_round_trip_exactly_are_replaced_and_survive_reopening(backing: Backing) -> None:
    store = backing.open()
    assert store.load_gate("main") is None
    for i in range(4):
        store.save_gate("main", gate_record(i))
        assert store.load_gate("main") == gate_record(i)
    assert store.load_gate("other") is None
    with pytest.raises(TypeError, match=r"^record must be a GateRecord, got 'x'$"):
        store.save_gate("main", "x")
    if backing.durable:
        store.close()
        assert backing.open().load_gate("main") == gate_record(3)


def test_a_store_written_before_gate_records_existed_is_upgraded_and_keeps_everything(backing: Backing) -> None:
    if not backing.durable:
        pytest.skip("a MemoryStore has no schema to upgrade")
    store = backing.open()
    store.save_guard("main", guard_record(4))
    store.open_order(_submitted("c1"))
    store.close()
    _as_written_before_gate_records(backing)
    upgraded = backing.open()
    assert upgraded.load_guard("main") == guard_record(4)
    assert upgraded.unsettled_orders("main") == [_submitted("c1")]
    assert upgraded.load_gate("main") is None
    upgraded.save_gate("main", gate_record(2))
    upgraded.close()
    assert backing.open().load_gate("main") == gate_record(2)


def _as_written_before_gate_records(backing: Backing) -> None:
    # The file (schema version 2: no gate_state or pending_halts, orders without sent_at and
    # watch_until) or the PostgreSQL schema (without the table, added within its version) an
    # earlier tradewarden wrote.
    _as_written_by_an_earlier_tradewarden(
        backing,
        ("DROP INDEX events_by_order", "DROP TABLE gate_state", "DROP TABLE pending_halts", "ALTER TABLE orders DROP COLUMN sent_at",
         "ALTER TABLE orders DROP COLUMN watch_until", "PRAGMA user_version = 2"),
        ("DROP TABLE {schema}.gate_state",),
    )


def _as_written_by_an_earlier_tradewarden(backing: Backing, sqlite: tuple[str, ...], postgres: tuple[str, ...]) -> None:
    # Runs the statements that make the backing's file (``sqlite``) or schema (``postgres``, in
    # which {schema} names the test's schema) what an earlier tradewarden wrote.
    if backing.kind == "sqlite":
        conn = sqlite3.connect(backing.path)
        for statement in sqlite:
            conn.execute(statement)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(backing.path, autocommit=True) as pg:
            for statement in postgres:
                pg.execute(statement.format(schema=backing.schema))


# -- pending halts ---------------------------------------------------------------------------------


def test_pending_halts_are_kept_per_loop_in_the_order_saved_each_id_once_until_cleared(backing: Backing) -> None:
    store = backing.open()
    assert store.load_pending_halts("main") == []
    first, second = PendingHalt("ops", "desk closed", halt_id="h1"), PendingHalt("risk", "news at 14:30", halt_id="h2")
    store.save_pending_halt("main", first)
    store.save_pending_halt("other", first)  # the same halt pressed for two accounts: each keeps it
    store.save_pending_halt("other", PendingHalt("ops", "another account", halt_id="h3"))
    store.save_pending_halt("main", second)
    store.save_pending_halt("main", PendingHalt("ops", "a retry of the first", halt_id="h1"))  # kept once, as first saved
    assert store.load_pending_halts("main") == [first, second]
    with pytest.raises(TypeError, match=r"^halt must be a PendingHalt, got 'desk closed'$"):
        store.save_pending_halt("main", "desk closed")
    if backing.durable:
        store.close()
        store = backing.open()
        assert store.load_pending_halts("main") == [first, second]
    # Cleared by id: a halt saved after its guard read the others is kept for the next one.
    read = store.load_pending_halts("main")
    later = PendingHalt("ops", "pressed after the guard read the others", halt_id="h4")
    store.save_pending_halt("main", later)
    store.clear_pending_halts("main", [halt.halt_id for halt in read] + ["unknown"])
    assert store.load_pending_halts("main") == [later]
    assert store.load_pending_halts("other") == [first, PendingHalt("ops", "another account", halt_id="h3")]


def test_a_pending_halt_names_who_and_why_and_gets_an_id_of_its_own() -> None:
    assert PendingHalt("ops", "desk closed").halt_id != PendingHalt("ops", "desk closed").halt_id
    with pytest.raises(ValueError, match=r"^by must be a non-empty string, got ' '$"):
        PendingHalt(" ", "desk closed")
    with pytest.raises(TypeError, match=r"^reason must be a non-empty string, got None \(NoneType\)$"):
        PendingHalt("ops", None)  # type: ignore[arg-type]


def test_a_store_written_before_pending_halts_existed_is_upgraded_and_keeps_everything(backing: Backing) -> None:
    if not backing.durable:
        pytest.skip("a MemoryStore has no schema to upgrade")
    store = backing.open()
    store.save_guard("main", guard_record(4))
    store.save_gate("main", gate_record(1))
    store.close()
    _as_written_before_pending_halts(backing)
    upgraded = backing.open()
    assert (upgraded.load_guard("main"), upgraded.load_gate("main")) == (guard_record(4), gate_record(1))
    assert upgraded.load_pending_halts("main") == []
    upgraded.save_pending_halt("main", PendingHalt("ops", "desk closed", halt_id="h1"))
    upgraded.close()
    assert backing.open().load_pending_halts("main") == [PendingHalt("ops", "desk closed", halt_id="h1")]


def _as_written_before_pending_halts(backing: Backing) -> None:
    # The file (schema version 3) or the PostgreSQL schema (version 2) an earlier tradewarden
    # wrote: no pending_halts table, and no events_by_order index.
    _as_written_by_an_earlier_tradewarden(
        backing,
        ("DROP INDEX events_by_order", "DROP TABLE pending_halts", "PRAGMA user_version = 3"),
        ("DROP INDEX {schema}.events_by_order", "DROP FUNCTION {schema}.submitted_client_id", "DROP TABLE {schema}.pending_halts",
         "UPDATE {schema}.meta SET value = '2' WHERE key = 'schema_version'"),
    )


# -- the journal -----------------------------------------------------------------------------------


def test_a_duplicate_event_is_ignored_and_order_is_kept(backing: Backing) -> None:
    store = backing.open()
    assert [store.append_event(_event(i, "a" if i % 2 else "b")) for i in range(6)] == [True] * 6
    assert store.append_event(_event(3, "a")) is False
    assert store.append_event(Event(EventType.TRADE_EXECUTED, "a", {"other": True}, event_id="a-1")) is False
    assert [e.event_id for e in store.events()] == ["b-0", "a-1", "b-2", "a-3", "b-4", "a-5"]
    assert [e.event_id for e in store.events("a")] == ["a-1", "a-3", "a-5"]
    assert store.events("a")[0] == _event(1, "a")  # the first write wins, intact


def test_concurrent_appends_from_threads_keep_each_event_once(backing: Backing) -> None:
    store = backing.open()
    start = threading.Barrier(8)
    accepted: list[list[str]] = [[] for _ in range(8)]

    def append(worker: int) -> None:
        start.wait(timeout=30)
        # Workers overlap: ids 0..274 are each offered by up to four workers.
        for i in range(worker * 25, worker * 25 + 100):
            if store.append_event(_event(i)):
                accepted[worker].append(f"main-{i}")
            if i % 10 == 0:
                store.save_guard("main", guard_record(i))

    threads = [threading.Thread(target=append, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    every = [event_id for worker in accepted for event_id in worker]
    journal = [e.event_id for e in store.events()]
    assert sorted(every) == sorted(journal) == sorted(f"main-{i}" for i in range(275))
    assert len(set(journal)) == len(journal)


# -- orders ----------------------------------------------------------------------------------------


def test_an_order_is_journaled_when_opened_and_when_settled_and_only_unsettled_ones_are_listed(backing: Backing) -> None:
    store = backing.open()
    store.open_order(_submitted("c1"))
    store.open_order(_submitted("c2"))
    store.open_order(_submitted("c3", loop_id="other"))
    store.open_order(_submitted("c1"))  # opened twice: still one order, one event
    store.settle_order("main", "c1", _outcome("c1"))
    assert store.unsettled_orders("main") == [_submitted("c2")]
    assert store.unsettled_orders("other") == [_submitted("c3", loop_id="other")]
    assert store.events("main") == [_submitted("c1"), _submitted("c2"), _outcome("c1")]


def test_an_order_can_only_be_opened_by_an_order_submitted_event_naming_its_client_id(backing: Backing) -> None:
    store = backing.open()
    with pytest.raises(ValueError, match=r"^an order is opened by an order_submitted event, got heartbeat$"):
        store.open_order(_event(1))
    nameless = Event(EventType.ORDER_SUBMITTED, "main", {"symbol": "X"}, datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"^order_submitted metadata must name a client_order_id, got None$"):
        store.open_order(nameless)
    assert store.events() == [] and store.unsettled_orders("main") == []


def test_an_order_is_held_with_the_wall_time_it_was_sent_or_its_events_timestamp(backing: Backing) -> None:
    store = backing.open()
    sent = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    store.open_order(_submitted("c1"), sent_at=sent)
    store.open_order(_submitted("c2"))
    assert store.held_orders("main") == [
        HeldOrder(_submitted("c1"), sent),
        HeldOrder(_submitted("c2"), datetime(2024, 1, 1, tzinfo=UTC)),  # the event's timestamp
    ]
    with pytest.raises(ValueError, match=r"^sent_at must be a timezone-aware datetime, got datetime.datetime\(2026, 1, 1, 0, 0\)$"):
        store.open_order(_submitted("c3"), sent_at=datetime(2026, 1, 1))
    assert store.held_orders("other") == [] and "s-c3" not in {e.event_id for e in store.events()}


def test_an_order_settled_with_a_watch_stays_held_until_settled_again_or_unwatched(backing: Backing) -> None:
    store = backing.open()
    sent, until = datetime(2026, 12, 1, 22, 0, tzinfo=UTC), datetime(2026, 12, 2, 22, 0, tzinfo=UTC)
    for client_id in ("c1", "c2"):
        store.open_order(_submitted(client_id), sent_at=sent)
    failed = Event(EventType.TRADE_FAILED, "main", {"client_order_id": "c1"}, sent, event_id="f-c1")
    store.settle_order("main", "c1", failed, watch_until=until)
    store.settle_order("main", "c2", Event(EventType.TRADE_FAILED, "main", {}, sent, event_id="f-c2"), watch_until=until)
    # Watched, not unsettled: a restarted guard must not settle them again as if new.
    assert store.unsettled_orders("main") == []
    assert store.held_orders("main") == [HeldOrder(_submitted("c1"), sent, until), HeldOrder(_submitted("c2"), sent, until)]
    store.settle_order("main", "c1", _outcome("c1"))  # the late fill's correction
    store.unwatch_order("main", "c2")  # its watch ended without a fill
    store.unwatch_order("main", "c9")  # never held: ignored
    assert store.held_orders("main") == []
    assert [e.event_id for e in store.events("main")] == ["s-c1", "s-c2", "f-c1", "f-c2", "o-c1"]
    if backing.durable:
        assert backing.open().held_orders("main") == []


def test_unwatching_leaves_an_unsettled_order_held(backing: Backing) -> None:
    store = backing.open()
    store.open_order(_submitted("c1"))
    store.unwatch_order("main", "c1")
    assert store.unsettled_orders("main") == [_submitted("c1")]


def test_a_watched_order_survives_reopening(backing: Backing) -> None:
    if not backing.durable:
        pytest.skip("memory is not durable")
    sent, until = datetime(2026, 12, 1, 22, 0, tzinfo=UTC), datetime(2026, 12, 2, 22, 0, tzinfo=UTC)
    backing.open().open_order(_submitted("c1"), sent_at=sent)
    backing.open().settle_order("main", "c1", _outcome("c1"), watch_until=until)
    assert backing.open().held_orders("main") == [HeldOrder(_submitted("c1"), sent, until)]


def test_an_order_whose_record_is_unreadable_is_listed_as_such_and_hides_no_other(backing: Backing) -> None:
    if not backing.durable:
        pytest.skip("a MemoryStore holds events, never their text")
    sent = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    store = backing.open()
    for client_id in ("c1", "c2", "c3", "c4", "c5"):
        store.open_order(_submitted(client_id), sent_at=sent)
    # What a hand edit or a bad restore leaves behind.
    _damage(backing, "UPDATE {}events SET event = ? WHERE event_id = ?", ('{"loop_id": "main"}', "s-c2"))
    _damage(backing, "UPDATE {}orders SET sent_at = ? WHERE client_order_id = ?", ("2026-12-01 22:00:00", "c4"))
    _damage(backing, "UPDATE {}orders SET watch_until = ? WHERE client_order_id = ?", ("tomorrow", "c5"))
    held = backing.open().held_orders("main")
    assert held == [
        HeldOrder(_submitted("c1"), sent),
        UnreadableOrder("c2", "not an event's JSON: '{\"loop_id\": \"main\"}' ('event_type')"),
        HeldOrder(_submitted("c3"), sent),
        UnreadableOrder("c4", "sent_at '2026-12-01 22:00:00' is not an ISO time with a timezone"),
        UnreadableOrder("c5", "watch_until 'tomorrow' is not an ISO time with a timezone"),
    ]
    assert backing.open().unsettled_orders("main") == [_submitted("c1"), _submitted("c3")]
    if backing.kind == "sqlite":  # a column of the wrong type: SQLite keeps what it is given
        _damage(backing, "UPDATE {}orders SET sent_at = ? WHERE client_order_id = ?", (b"\x00", "c3"))
        assert backing.open().held_orders("main")[2] == UnreadableOrder("c3", "sent_at b'\\x00' is not an ISO time with a timezone")


def _damage(backing: Backing, statement: str, values: tuple[Any, ...]) -> None:
    # Change a row behind the store's back; {} in ``statement`` is where the schema goes.
    if backing.kind == "sqlite":
        conn = sqlite3.connect(backing.path)
        conn.execute(statement.format(""), values)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(backing.path, autocommit=True) as conn:
            conn.execute(statement.format(f"{backing.schema}.").replace("?", "%s"), values)


def test_a_settle_that_is_not_an_event_or_has_a_naive_watch_is_refused_and_writes_nothing(backing: Backing) -> None:
    store = backing.open()
    store.open_order(_submitted("c1"))
    with pytest.raises(TypeError, match=r"^outcome must be an Event, got 'done'$"):
        store.settle_order("main", "c1", "done")
    with pytest.raises(ValueError, match=r"^watch_until must be a timezone-aware datetime, got datetime.datetime\(2026, 1, 1, 0, 0\)$"):
        store.settle_order("main", "c1", _outcome("c1"), watch_until=datetime(2026, 1, 1))
    assert store.unsettled_orders("main") == [_submitted("c1")] and store.events("main") == [_submitted("c1")]


# -- orders placed before: the duplicate check -----------------------------------------------------


def test_an_order_once_submitted_is_known_as_placed_by_loop_and_client_id_however_it_was_journaled(backing: Backing) -> None:
    store = backing.open()
    assert store.order_placed("main", "c1") is False
    store.open_order(_submitted("c1"))  # the guard's way, before the broker sees it
    store.append_events([_event(1), _submitted("c2")])  # the emitter's way, for an account in this process
    store.append_event(_submitted("c3"))
    store.open_order(_submitted("c4", loop_id="other"))
    # Other events naming a client id are no order placed: an outcome, and a refusal whose
    # reason quotes the words an order's event holds.
    store.append_event(Event(EventType.TRADE_EXECUTED, "main", {"client_order_id": "c5"}, event_id="o-c5"))
    store.append_event(Event(EventType.TRADE_FAILED, "main", {"client_order_id": "c6", "error": '"order_submitted"'},
                             event_id="f-c6"))
    store.settle_order("main", "c1", _outcome("c1"))  # settled or not, it was placed
    assert [store.order_placed("main", c) for c in ("c1", "c2", "c3", "c4", "c5", "c6")] == [True, True, True, False, False, False]
    assert (store.order_placed("other", "c4"), store.order_placed("other", "c1")) == (True, False)
    if backing.durable:  # another incarnation or process, on the same file or schema
        store.close()
        again = backing.open()
        assert [again.order_placed("main", c) for c in ("c1", "c2", "c3", "c5")] == [True, True, True, False]


def test_a_journal_row_damaged_by_hand_fails_no_write_and_hides_no_order(backing: Backing) -> None:
    if not backing.durable:
        pytest.skip("a MemoryStore holds events, never their text")
    store = backing.open()
    store.open_order(_submitted("c1"))
    store.open_order(_submitted("c2"))
    # Not JSON, though it holds the words an order's event holds: the index must pass it over.
    _damage(backing, "UPDATE {}events SET event = ? WHERE event_id = ?", ('{"event_type": "order_submitted", ', "s-c1"))
    _damage(backing, "INSERT INTO {}events (event_id, loop_id, event) VALUES (?, ?, ?)", ("x", "main", '"order_submitted"?'))
    store = backing.open()
    store.open_order(_submitted("c3"))
    assert [store.order_placed("main", c) for c in ("c1", "c2", "c3")] == [False, True, True]
