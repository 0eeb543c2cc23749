"""SqliteStore at its edges: every operation that fails names itself and the file, every refusal
of a file states exactly why, the guard record's JSON is exact (net deposits included), and the
connection is set up as asked."""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import attrs
import pytest
from test_sqlite_store import _event, _outcome, _submitted

from runtime import DrawdownSnapshot, GuardRecord, TradingState
from runtime.adapters.sqlite import APPLICATION_ID, SqliteStore, StoreError, decode_guard_record, encode_guard_record
from runtime.risk.gate import GateRecord
from runtime.store import LoopTotals

RECORD = GuardRecord(
    drawdown=DrawdownSnapshot(100.0, 120.0, 90.0, 0.25),
    trading_state=TradingState.HALTED,
    reason="max drawdown",
    day=date(2024, 1, 2),
    day_start_equity=110.0,
    last_check_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    block_counts=(("drawdown_block_total", 2),),
    net_deposits=50.0,
)
UNTOUCHED = "it was left untouched (not replaced, not migrated)"


def raw(path: Path, *statements: str) -> None:
    """Run ``statements`` on the file through a connection of its own, as another program would."""
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


# -- the guard record's JSON -----------------------------------------------------------------------


def test_a_guard_record_is_one_compact_line_with_its_keys_sorted_and_its_net_deposits():
    text = encode_guard_record(RECORD)
    assert text == (
        '{"block_counts":[["drawdown_block_total",2]],"day":"2024-01-02","day_start_equity":110.0,'
        '"drawdown":{"latest_equity":90.0,"max_drawdown":0.25,"peak_equity":120.0,"start_equity":100.0},'
        '"last_check_time":"2024-01-02T03:04:05+00:00","net_deposits":50.0,"reason":"max drawdown","trading_state":"halted"}'
    )
    assert decode_guard_record(text) == RECORD


def test_a_guard_record_saved_before_net_deposits_existed_reads_back_without_them():
    text = encode_guard_record(RECORD).replace(',"net_deposits":50.0', "")
    assert decode_guard_record(text) == GuardRecord(
        drawdown=RECORD.drawdown, trading_state=RECORD.trading_state, reason=RECORD.reason, day=RECORD.day,
        day_start_equity=RECORD.day_start_equity, last_check_time=RECORD.last_check_time,
        block_counts=RECORD.block_counts, net_deposits=None,
    )


def test_a_guard_records_latch_dates_are_written_as_iso_times_and_read_back():
    since, latched = datetime(2024, 1, 2, 3, 0, tzinfo=UTC), datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    dated = attrs.evolve(RECORD, state_since=since, latched_at=latched)
    text = encode_guard_record(dated)
    assert text == (
        '{"block_counts":[["drawdown_block_total",2]],"day":"2024-01-02","day_start_equity":110.0,'
        '"drawdown":{"latest_equity":90.0,"max_drawdown":0.25,"peak_equity":120.0,"start_equity":100.0},'
        '"last_check_time":"2024-01-02T03:04:05+00:00","latched_at":"2024-01-02T03:04:05.678000+00:00",'
        '"net_deposits":50.0,"reason":"max drawdown","state_since":"2024-01-02T03:00:00+00:00","trading_state":"halted"}'
    )
    assert decode_guard_record(text) == dated
    # A record saved before latches were dated has none: its guard dates its halt as it loads it.
    assert decode_guard_record(encode_guard_record(RECORD)) == RECORD
    assert (RECORD.state_since, RECORD.latched_at) == (None, None)
    naive = text.replace("03:00:00+00:00", "03:00:00")
    with pytest.raises(ValueError, match=r"state_since '2024-01-02T03:00:00' is not an ISO time with a timezone\)$"):
        decode_guard_record(naive)


def test_a_late_first_readings_day_is_written_with_the_guard_record_only_when_set_and_read_back():
    kept = attrs.evolve(RECORD, day_start_kept_into=date(2024, 1, 3))
    text = encode_guard_record(kept)
    assert text == encode_guard_record(RECORD).replace(',"day_start_equity":110.0,',
                                                        ',"day_start_equity":110.0,"day_start_kept_into":"2024-01-03",')
    assert decode_guard_record(text) == kept
    # A record saved before it was kept has none, and reads back as it did.
    assert '"day_start_kept_into"' not in encode_guard_record(RECORD)
    assert decode_guard_record(encode_guard_record(RECORD)).day_start_kept_into is None
    with pytest.raises(ValueError, match=r"^not a guard record's JSON: .* \(ValueError: Invalid isoformat string: '3 Jan'\)$"):
        decode_guard_record(text.replace('"2024-01-03"', '"3 Jan"'))


def test_a_guard_record_with_a_number_that_is_not_finite_cannot_be_written():
    broken = GuardRecord(
        drawdown=RECORD.drawdown, trading_state=RECORD.trading_state, reason=None, day=None,
        day_start_equity=math.nan, last_check_time=None, block_counts=(),
    )
    with pytest.raises(ValueError, match=r"^Out of range float values are not JSON compliant"):
        encode_guard_record(broken)
    with pytest.raises(TypeError, match=r"^record must be a GuardRecord, got 5$"):
        encode_guard_record(5)  # type: ignore[arg-type]


def test_a_long_malformed_guard_record_is_quoted_to_its_first_200_characters():
    with pytest.raises(ValueError) as info:
        decode_guard_record("x" * 300)
    assert str(info.value) == (
        "not a guard record's JSON: '" + "x" * 200 + "' (JSONDecodeError: Expecting value: line 1 column 1 (char 0))"
    )


# -- failures name the operation and the file ------------------------------------------------------


def test_every_operation_that_fails_names_itself_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    raw(path, *(f"DROP TABLE {table}" for table in ("orders", "events", "guard_state", "loop_totals", "gate_state")))
    where = f"state_db {str(path)!r}"
    calls = [
        (lambda: store.load_guard("L"), "loading the guard record of loop 'L' failed: no such table: guard_state"),
        (lambda: store.save_guard("L", RECORD), "saving the guard record of loop 'L' failed: no such table: guard_state"),
        (lambda: store.load_gate("L"), "loading the gate record of loop 'L' failed: no such table: gate_state"),
        (lambda: store.save_gate("L", GateRecord()), "saving the gate record of loop 'L' failed: no such table: gate_state"),
        (lambda: store.load_loop_totals("L"), "loading the totals of loop 'L' failed: no such table: loop_totals"),
        (lambda: store.save_loop_totals("L", LoopTotals(1, 2)), "saving the totals of loop 'L' failed: no such table: loop_totals"),
        (lambda: store.append_event(_event(1)), "appending event 'main-1' failed: no such table: events"),
        (lambda: store.events(), "reading the event journal failed: no such table: events"),
        (lambda: store.events("main"), "reading the event journal failed: no such table: events"),
        (lambda: store.open_order(_submitted("c1")), "opening order 'c1' failed: no such table: events"),
        (lambda: store.settle_order("main", "c1", _outcome("c1")), "settling order 'c1' failed: no such table: events"),
        (lambda: store.held_orders("main"), "reading held orders failed: no such table: orders"),
        (lambda: store.unwatch_order("main", "c1"), "unwatching order 'c1' failed: no such table: orders"),
    ]
    for call, message in calls:
        with pytest.raises(StoreError) as info:
            call()
        assert str(info.value) == f"{where}: {message}"
    store.close()


def test_something_that_is_not_an_event_or_totals_is_refused_naming_it(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "state.db") as store:
        with pytest.raises(TypeError, match=r"^event must be an Event, got 5$"):
            store.append_event(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^totals must be LoopTotals, got \(1, 2\)$"):
            store.save_loop_totals("L", (1, 2))  # type: ignore[arg-type]


def test_unreadable_records_and_events_name_the_file_the_loop_and_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    raw(
        path,
        "INSERT INTO guard_state VALUES ('L', 'guard?')",
        "INSERT INTO gate_state VALUES ('L', 'gate?')",
        "INSERT INTO events (event_id, loop_id, event) VALUES ('e', 'L', 'event?')",
    )
    where = f"state_db {str(path)!r}"
    with pytest.raises(StoreError) as info:
        store.load_guard("L")
    assert str(info.value) == (
        f"{where}: the guard record of loop 'L' is unreadable: "
        "not a guard record's JSON: 'guard?' (JSONDecodeError: Expecting value: line 1 column 1 (char 0))"
    )
    with pytest.raises(StoreError) as info:
        store.load_gate("L")
    assert str(info.value) == (
        f"{where}: the gate record of loop 'L' is unreadable: "
        "not a gate record's JSON: 'gate?' (JSONDecodeError: Expecting value: line 1 column 1 (char 0))"
    )
    with pytest.raises(StoreError) as info:
        store.events()
    assert str(info.value) == (
        f"{where}: an event in the journal is unreadable: not an event's JSON: 'event?' (Expecting value: line 1 column 1 (char 0))"
    )
    store.close()


def test_a_closed_store_names_its_file_and_its_repr_names_it_too(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    assert repr(store) == f"SqliteStore({str(path)!r})"
    store.close()
    with pytest.raises(StoreError) as info:
        store.events()
    assert str(info.value) == f"state_db {str(path)!r} is closed"


# -- refusing a file -------------------------------------------------------------------------------


def test_a_database_with_another_application_id_and_no_tables_is_refused_not_initialised(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    raw(path, "PRAGMA application_id = 12345")
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert str(info.value) == (
        f"state_db {str(path)!r} is not a tradewarden state database (application_id 0x3039, expected "
        f"{APPLICATION_ID:#x}; schema objects: none); {UNTOUCHED}"
    )
    assert path.read_bytes() == before


def test_another_applications_tables_are_all_listed_in_order(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    raw(path, "CREATE TABLE users (id INTEGER)", "CREATE TABLE accounts (id INTEGER)")
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert str(info.value) == (
        f"state_db {str(path)!r} is not a tradewarden state database (application_id 0x0, expected "
        f"{APPLICATION_ID:#x}; schema objects: accounts, users); {UNTOUCHED}"
    )


@pytest.mark.parametrize(("version", "newer"), [(0, "an older"), (6, "a newer")])
def test_a_state_database_of_another_schema_version_is_refused_saying_which_way(tmp_path: Path, version, newer) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    raw(path, f"PRAGMA user_version = {version}")
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert str(info.value) == (
        f"state_db {str(path)!r} has schema version {version}, {newer} one than this tradewarden reads (5); {UNTOUCHED}"
    )


def test_a_state_database_missing_tables_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    raw(path, "DROP TABLE orders", "DROP TABLE gate_state")
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert str(info.value) == (
        f"state_db {str(path)!r} is missing the tables ['orders', 'gate_state'] of schema version 5; {UNTOUCHED}"
    )


def test_a_corrupt_state_database_is_refused_quoting_its_first_five_problems(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStore(path) as store:
        for i in range(7):
            store.open_order(_submitted(f"c{i}"))
    # Seven rows break a NOT NULL the schema is made to declare: seven problems for quick_check.
    conn = sqlite3.connect(path)
    conn.execute("UPDATE orders SET sent_at = NULL")
    conn.commit()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = replace(sql, 'sent_at TEXT', 'sent_at TEXT NOT NULL') WHERE name = 'orders'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert str(info.value) == f"state_db {str(path)!r} is corrupt: {'; '.join(['NULL value in orders.sent_at'] * 5)}; {UNTOUCHED}"


def test_a_database_that_cannot_use_wal_is_refused_naming_the_mode_sqlite_chose() -> None:
    with pytest.raises(StoreError) as info:
        SqliteStore(":memory:")
    assert str(info.value) == f"state_db ':memory:' cannot use WAL journaling (SQLite chose 'memory'); {UNTOUCHED}"


# -- the connection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("NORMAL", 1), ("EXTRA", 3)])
def test_the_connection_syncs_and_waits_on_a_busy_file_as_asked(tmp_path: Path, synchronous, level) -> None:
    with SqliteStore(tmp_path / "state.db", synchronous=synchronous, busy_timeout=1.5) as store:
        # The store's own connection: these settings are per connection, invisible to another one.
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1500
    with SqliteStore(tmp_path / "default.db") as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_an_unknown_synchronous_level_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^synchronous must be 'FULL', 'NORMAL' or 'EXTRA', got 'OFF'$"):
        SqliteStore(tmp_path / "state.db", synchronous="OFF")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("setup", "application_id", "listed"),
    [
        (("PRAGMA application_id = 12345",), "0x3039", "none"),
        (("CREATE TABLE users (id INTEGER)", "PRAGMA user_version = 7"), "0x0", "users"),
    ],
)
def test_another_applications_database_locked_by_its_writer_is_refused_at_once_as_not_ours(
    tmp_path: Path, setup, application_id, listed
) -> None:
    path = tmp_path / "app.db"
    raw(path, *setup)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the other application is writing: its write lock is held
    try:
        with pytest.raises(StoreError) as info:
            SqliteStore(path, busy_timeout=0.2)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert str(info.value) == (
        f"state_db {str(path)!r} is not a tradewarden state database (application_id {application_id}, expected "
        f"{APPLICATION_ID:#x}; schema objects: {listed}); {UNTOUCHED}"
    )


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_state_file_deleted_or_replaced_under_an_open_store_refuses_every_write(tmp_path: Path, how: str) -> None:
    # SQLite went on writing to the unlinked file, where a halt was kept by nothing: the guard
    # acknowledged it, and the next start (or a second bot on a new file at the path) traded.
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    try:
        store.append_events([_event(1)])
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        if how == "replaced":
            SqliteStore(path).close()  # another bot's new file at the same path
        with pytest.raises(StoreError) as refused:
            store.save_guard("main", RECORD)
        assert str(refused.value) == (
            f"state_db {str(path)!r}: saving the guard record of loop 'main' failed: the file was deleted or replaced "
            "while this store had it open, so nothing written now would be kept; stop this bot, and restart it once "
            "the state file is in place")
        with pytest.raises(StoreError, match="the file was deleted or replaced while this store had it open"):
            store.append_events([_event(2)])
    finally:
        store.close()
