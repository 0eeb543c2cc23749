"""SqliteStore on real files: exact round trips, the journal's once-only rule, refusal of files
that are not ours, threads, and a writer process killed at a random point."""

from __future__ import annotations

import errno
import inspect
import os
import random
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.processes import Child

from runtime import (
    DrawdownSnapshot,
    Event,
    EventType,
    GuardRecord,
    MemoryStore,
    Settings,
    TradingState,
)
from runtime.adapters.sqlite import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SqliteStore,
    StoreError,
    decode_guard_record,
    encode_guard_record,
)
from runtime.risk.gate import GateRecord
from runtime.store import HeldOrder

REPO = Path(__file__).resolve().parents[1]


def guard_record(i: int) -> GuardRecord:
    """The i-th record of a deterministic series whose floats have no short decimal form."""
    # Imports inside: the killed writer process runs this function's source on its own.
    from datetime import UTC, date, datetime, timedelta

    from runtime import DrawdownSnapshot, GuardRecord, TradingState

    start = 10_000.0 / 3.0
    peak = start + i * 0.1 + 1e-9 / 7.0
    latest = peak * (1.0 - (i % 17) / 101.0)
    return GuardRecord(
        drawdown=DrawdownSnapshot(start, peak, latest, (peak - latest) / peak + i / 1e7),
        trading_state=[TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED][i % 3],
        reason=None if i % 3 == 0 else f"rule {i}: drawdown {(peak - latest) / peak:.2%}",
        day=date(2024, 1, 1) + timedelta(days=i // 100),
        day_start_equity=start + i / 3.0,
        last_check_time=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i, microseconds=i * 7),
        block_counts=(("daily_loss_block_total", i // 5), ("drawdown_block_total", i // 3)),
        # A latch's dates (none while ACTIVE), the latest a halt laid again over it for some.
        state_since=None if i % 3 == 0 else datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i / 2, microseconds=i),
        latched_at=None if i % 3 == 0 else datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i / 2 + i % 2, microseconds=i),
    )


def _event(i: int, loop_id: str = "main") -> Event:
    at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(microseconds=i)
    return Event(EventType.HEARTBEAT, loop_id, {"i": i, "equity": 1000.0 + i / 3}, at, event_id=f"{loop_id}-{i}")


# -- round trips -----------------------------------------------------------------------------------


def test_a_guard_record_round_trips_exactly(tmp_path: Path) -> None:
    record = guard_record(41)
    with SqliteStore(tmp_path / "state.db") as store:
        assert store.load_guard("main") is None
        store.save_guard("main", record)
        store.save_guard("main", guard_record(42))  # replaced, not added
        store.save_guard("other", record)
        assert store.load_guard("main") == guard_record(42)
        assert store.load_guard("other") == record


def test_a_record_with_nones_and_another_utc_offset_round_trips(tmp_path: Path) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    record = GuardRecord(
        drawdown=DrawdownSnapshot(1000.0, 1000.0, -0.0, 0.0),
        trading_state=TradingState.HALTED,
        reason="fail-safe: broker unreachable",
        day=None,
        day_start_equity=None,
        last_check_time=datetime(2024, 3, 1, 9, 15, 0, 123456, tzinfo=india),
    )
    with SqliteStore(tmp_path / "state.db") as store:
        store.save_guard("main", record)
        loaded = store.load_guard("main")
    assert loaded == record
    assert loaded is not None and loaded.last_check_time is not None
    assert loaded.last_check_time.utcoffset() == timedelta(hours=5, minutes=30)
    assert str(loaded.drawdown.latest_equity) == "-0.0"


finite = st.floats(allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=5e-324, max_value=1e300, allow_nan=False)


@st.composite
def records(draw: st.DrawFn) -> GuardRecord:
    start = draw(positive)
    peak = max(start, draw(positive))
    latest = min(peak, draw(finite))
    return GuardRecord(
        drawdown=DrawdownSnapshot(start, peak, latest, abs(draw(finite))),
        trading_state=draw(st.sampled_from(TradingState)),
        reason=draw(st.none() | st.text()),
        day=draw(st.none() | st.dates()),
        day_start_equity=draw(st.none() | finite),
        last_check_time=draw(st.none() | st.datetimes(timezones=st.just(UTC))),
        block_counts=tuple(draw(st.lists(st.tuples(st.text(), st.integers(0, 2**62)), max_size=3))),
    )


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    # Module-scoped: Hypothesis runs many examples per test call and refuses per-test fixtures.
    with SqliteStore(tmp_path_factory.mktemp("hypothesis") / "state.db") as store:
        yield store


@settings(max_examples=150, deadline=None)
@given(record=records())
def test_any_record_round_trips_bit_for_bit(shared_store: SqliteStore, record: GuardRecord) -> None:
    shared_store.save_guard("main", record)
    loaded = shared_store.load_guard("main")
    assert loaded == record
    assert loaded is not None
    for field in ("start_equity", "peak_equity", "latest_equity", "max_drawdown"):
        assert getattr(loaded.drawdown, field).hex() == getattr(record.drawdown, field).hex()
    assert decode_guard_record(encode_guard_record(record)) == record


# -- refusing files that are not ours --------------------------------------------------------------


def test_a_file_of_random_bytes_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    garbage = random.Random(1).randbytes(8192)
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match=r"state_db '.*state\.db' is not a usable SQLite database") as info:
        SqliteStore(path)
    assert "left untouched" in str(info.value)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_a_corrupted_state_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStore(path) as store:
        for i in range(200):
            store.append_event(_event(i))
    page_size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as handle:  # wipe page 3 (a table's root) with an impossible page type
        handle.seek(2 * page_size)
        handle.write(b"\xff" * page_size)
    with pytest.raises(StoreError, match=r"state_db '.*state\.db' (is corrupt|is not a usable)"):
        SqliteStore(path)


def test_another_applications_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"state_db '.*app\.db' is not a tradewarden state database .*users"):
        SqliteStore(path)
    assert path.read_bytes() == before
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 6")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 6, a newer one than this tradewarden reads \(5\)"):
        SqliteStore(path)


def test_a_version_1_file_is_upgraded_in_place_and_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStore(path) as store:
        store.save_guard("main", guard_record(3))
        store.append_event(_event(1))
    conn = sqlite3.connect(path)  # make it the file an earlier tradewarden wrote
    conn.execute("DROP INDEX events_by_order")
    conn.execute("DROP TABLE orders")
    conn.execute("DROP TABLE gate_state")
    conn.execute("DROP TABLE pending_halts")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with SqliteStore(path) as store:
        assert store.load_guard("main") == guard_record(3)
        assert store.events() == [_event(1)]
        store.open_order(_submitted("c1"))
        assert store.unsettled_orders("main") == [_submitted("c1")]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    conn.close()


def test_a_version_2_file_is_upgraded_in_place_and_its_unsettled_orders_are_aged_by_their_events(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStore(path) as store:
        store.append_event(_event(1))
    conn = sqlite3.connect(path)  # the orders table as version 2 had it, holding one order
    conn.execute("DROP INDEX events_by_order")
    conn.execute("DROP TABLE orders")
    conn.execute("DROP TABLE gate_state")
    conn.execute("DROP TABLE pending_halts")
    conn.execute(
        "CREATE TABLE orders (loop_id TEXT NOT NULL, client_order_id TEXT NOT NULL, event_id TEXT NOT NULL, "
        "PRIMARY KEY (loop_id, client_order_id))"
    )
    conn.execute("INSERT INTO events (event_id, loop_id, event) VALUES (?, ?, ?)", ("s-c1", "main", _submitted("c1").to_json()))
    conn.execute("INSERT INTO orders VALUES ('main', 'c1', 's-c1')")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with SqliteStore(path) as store:
        assert store.events() == [_event(1), _submitted("c1")]
        assert store.load_gate("main") is None  # the gate_state table version 3 added
        assert store.held_orders("main") == [HeldOrder(_submitted("c1"), datetime(2024, 1, 1, tzinfo=UTC))]
        until = datetime(2024, 1, 2, tzinfo=UTC)
        store.settle_order("main", "c1", _outcome("c1"), watch_until=until)
        assert store.held_orders("main") == [HeldOrder(_submitted("c1"), datetime(2024, 1, 1, tzinfo=UTC), until)]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    conn.close()


def test_a_version_4_file_is_upgraded_in_place_and_knows_the_orders_placed_before(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with SqliteStore(path) as store:  # an earlier incarnation's orders: one settled, one not
        store.open_order(_submitted("c1"))
        store.settle_order("main", "c1", _outcome("c1"))
        store.open_order(_submitted("c2"))
        store.append_events([_event(1), _submitted("c3", loop_id="other")])
    conn = sqlite3.connect(path)  # the file as version 4 wrote it, with a row damaged by hand
    conn.execute("DROP INDEX events_by_order")
    conn.execute("INSERT INTO events (event_id, loop_id, event) VALUES ('bad', 'main', '{\"order_submitted\"')")
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    with SqliteStore(path) as store:
        assert [store.order_placed("main", c) for c in ("c1", "c2", "c3")] == [True, True, False]
        assert store.order_placed("other", "c3") is True
        assert store.unsettled_orders("main") == [_submitted("c2")]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'events_by_order'").fetchall() == [
        ("events_by_order",)
    ]
    conn.close()


def test_looking_up_an_order_placed_reads_the_index_not_the_journal(tmp_path: Path) -> None:
    from runtime.adapters.sqlite import _ORDER_PLACED  # the store's own query, word for word

    path = tmp_path / "state.db"
    with SqliteStore(path) as store:
        store.append_events([_event(i) for i in range(200)] + [_submitted("c1")])
    conn = sqlite3.connect(path)
    plan = conn.execute(f"EXPLAIN QUERY PLAN {_ORDER_PLACED}", ("main", "c1")).fetchall()
    conn.close()
    assert [row[3] for row in plan] == ["SEARCH events USING INDEX events_by_order (loop_id=? AND <expr>=?)"]


def _submitted(client_id: str, loop_id: str = "main") -> Event:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    return Event(EventType.ORDER_SUBMITTED, loop_id, {"client_order_id": client_id, "symbol": "X"}, at, event_id=f"s-{client_id}")


def _outcome(client_id: str, loop_id: str = "main") -> Event:
    at = datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    return Event(EventType.TRADE_EXECUTED, loop_id, {"client_order_id": client_id}, at, event_id=f"o-{client_id}")


def test_a_new_or_empty_file_is_initialised_with_our_identity(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_an_unopenable_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"state_db '.*missing.*state\.db' cannot be opened"):
        SqliteStore(tmp_path / "missing" / "state.db")


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.events()


def test_from_settings_is_memory_without_a_path_and_sqlite_with_one(tmp_path: Path) -> None:
    assert isinstance(SqliteStore.from_settings(Settings()), MemoryStore)
    store = SqliteStore.from_settings(Settings(state_db=str(tmp_path / "s.db")))
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "s.db"
    store.close()


# -- a writer killed at a random point -------------------------------------------------------------

_CHILD = """from __future__ import annotations
import sys
from runtime import Event, EventType
from runtime.adapters.sqlite import SqliteStore

{source}

store = SqliteStore(sys.argv[1])
saver = store.without_fsync() if sys.argv[2:] == ["without_fsync"] else store
i = 0
while True:
    store.append_event(Event(EventType.HEARTBEAT, "kill", {{"i": i}}, event_id=f"e{{i}}"))
    print(f"E {{i}}", flush=True)
    saver.save_guard("kill", guard_record(i))
    print(f"G {{i}}", flush=True)
    i += 1
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize(("run", "saver"), [(0, "store"), (1, "store"), (2, "store"), (0, "without_fsync")])
def test_every_acknowledged_write_survives_a_sigkill(tmp_path: Path, run: int, saver: str) -> None:
    # Saves without an fsync (for an in-process account's guard) survive a killed process too:
    # only the machine going down could lose them.
    seed = random.randrange(2**32)
    wanted = random.Random(seed).randint(5, 300)
    path = tmp_path / "state.db"
    code = _CHILD.format(source=inspect.getsource(guard_record))
    with Child([sys.executable, "-c", code, str(path), saver], cwd=REPO) as child:
        child.lines(wanted, timeout=20)
        child.send_signal(signal.SIGKILL)
        finished = child.finish(timeout=10)
    assert finished.returncode == -signal.SIGKILL, finished.stderr
    lines = finished.stdout.split("\n")[:-1]  # the last piece is empty or a line cut short by the kill
    acked_events = [int(line.split()[1]) for line in lines if line.startswith("E ")]
    acked_guards = [int(line.split()[1]) for line in lines if line.startswith("G ")]

    with SqliteStore(path) as store:
        journal = [e.event_id for e in store.events("kill")]
        restored = store.load_guard("kill")
    context = f"seed {seed}, killed after {wanted} acknowledgements, journal of {len(journal)}"
    assert len(journal) == len(set(journal)), context
    assert journal[: len(acked_events)] == [f"e{i}" for i in acked_events], context
    assert len(journal) <= len(acked_events) + 1, context  # at most one written but not acknowledged
    last = acked_guards[-1] if acked_guards else -1
    assert restored in (guard_record(last) if last >= 0 else None, guard_record(last + 1)), context


def test_a_save_without_fsync_commits_with_synchronous_normal_and_puts_the_store_s_setting_back(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "state.db") as store, SqliteStore(tmp_path / "state.db") as reader:
        conn = store._connection()
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        relaxed = store.without_fsync()
        relaxed.save_guard("main", guard_record(3))
        relaxed.save_gate("main", GateRecord())
        assert [s.split()[0] for s in statements] == ["PRAGMA", "INSERT", "PRAGMA"] * 2
        assert statements[0] == "PRAGMA synchronous = NORMAL" and statements[2] == "PRAGMA synchronous = FULL"
        statements.clear()
        store.save_guard("main", guard_record(4))  # the store itself keeps its fsync
        assert [s.split()[0] for s in statements] == ["INSERT"]
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert reader.load_guard("main") == guard_record(4) and reader.load_gate("main") == GateRecord()
        assert relaxed.events() == [] and repr(relaxed) == f"{store!r}.without_fsync()"


# -- group commit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_batch_is_journaled_in_order_keeping_each_id_once_and_counting_the_new(tmp_path: Path, kind: str) -> None:
    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "state.db")
    store.append_event(_event(1))
    batch = [_event(0), _event(1), _event(2), _event(0), _event(3)]
    assert store.append_events(batch) == 3
    assert store.append_events(batch) == 0
    assert store.append_events([]) == 0
    assert [e.event_id for e in store.events()] == ["main-1", "main-0", "main-2", "main-3"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_batch_holding_something_else_than_an_event_is_refused_and_nothing_of_it_is_kept(
    tmp_path: Path, kind: str
) -> None:
    store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "state.db")
    with pytest.raises(TypeError, match=r"^events\[1\] must be an Event, got 'heartbeat'$"):
        store.append_events([_event(0), "heartbeat"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^events must be a sequence of Event, got 'abc'$"):
        store.append_events("abc")  # type: ignore[arg-type]
    assert store.events() == []


def test_a_batch_that_fails_part_way_writes_none_of_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    # A real failure inside the transaction, on the batch's third row.
    other = sqlite3.connect(path)
    other.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.event_id = 'main-2' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    other.close()
    with pytest.raises(StoreError, match=r"^state_db '.*state\.db': appending 4 events failed: refused by the test$"):
        store.append_events([_event(i) for i in range(4)])
    assert store.events() == []
    assert store.append_events([_event(0), _event(1)]) == 2
    store.close()


def _held_fsync(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], threading.Event, threading.Event]:
    # os.fsync, held until released: the inodes it was asked to sync, when it is reached.
    synced: list[int] = []
    reached, release = threading.Event(), threading.Event()
    real: Callable[[int], None] = os.fsync

    def held(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        reached.set()
        assert release.wait(10), "the test never released the fsync"
        real(fd)

    monkeypatch.setattr(os, "fsync", held)
    return synced, reached, release


def test_a_group_commit_fsyncs_the_wal_before_it_returns_and_a_save_without_fsync_does_not_wait_for_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SqliteStore(tmp_path / "state.db") as store, SqliteStore(tmp_path / "state.db") as reader:
        synced, reached, release = _held_fsync(monkeypatch)
        returned: list[int] = []
        appender = threading.Thread(target=lambda: returned.append(store.append_events([_event(0), _event(1)])))
        appender.start()
        assert reached.wait(10)
        assert synced == [os.stat(tmp_path / "state.db-wal").st_ino]
        assert [e.event_id for e in reader.events()] == ["main-0", "main-1"]  # committed, its fsync pending
        saver = threading.Thread(target=store.without_fsync().save_guard, args=("main", guard_record(2)))
        saver.start()
        saver.join(10)
        assert not saver.is_alive() and reader.load_guard("main") == guard_record(2)
        assert appender.is_alive() and returned == []  # the append waits for its fsync
        release.set()
        appender.join(10)
        assert returned == [2] and len(synced) == 1


def test_a_failed_fsync_of_the_wal_fails_that_append_naming_it_and_the_store_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with SqliteStore(path) as store:
        store.append_events([_event(0)])
        monkeypatch.setattr(os, "fsync", failing)
        with pytest.raises(StoreError) as failed:
            store.append_events([_event(1)])
        assert str(failed.value) == (f"state_db {str(path)!r}: appending 1 events failed: the WAL's fsync failed while "
                                     "appending 1 events: [Errno 5] Input/output error")
        monkeypatch.undo()
        # A guard must still be able to save a halt: the store is not given up for one failed fsync.
        store.save_guard("main", guard_record(1))
        assert store.append_events([_event(2)]) == 1
    with SqliteStore(path) as reopened:  # committed, as the error said
        assert [e.event_id for e in reopened.events()] == ["main-0", "main-1", "main-2"]
        assert reopened.load_guard("main") == guard_record(1)


def test_a_store_at_synchronous_normal_journals_without_an_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced, _, release = _held_fsync(monkeypatch)
    release.set()
    with SqliteStore(tmp_path / "state.db", synchronous="NORMAL") as store:
        assert store.append_events([_event(0)]) == 1
        assert synced == []


def test_a_subclass_that_saves_its_own_way_keeps_its_saves_without_fsync_asked(tmp_path: Path) -> None:
    class Checked(SqliteStore):
        def save_guard(self, loop_id, record):
            raise StoreError(f"refused: loop {loop_id!r} is fenced")

    with Checked(tmp_path / "state.db") as store:
        assert store.without_fsync() is store
        with pytest.raises(StoreError) as info:
            store.without_fsync().save_guard("main", guard_record(1))
        assert str(info.value) == "refused: loop 'main' is fenced"
        assert store.load_guard("main") is None


def test_an_upgrade_that_finds_the_file_upgraded_by_a_newer_tradewarden_leaves_it_and_refuses_it(tmp_path: Path) -> None:
    # Two processes open a version 4 file; the newer tradewarden takes the write lock first and
    # upgrades it past this one's version. This one, upgrading after it under the same lock, used
    # to write its own version over the newer one: the newer tradewarden then refused its own file.
    path = tmp_path / "state.db"
    with SqliteStore(path) as store:
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()
        store._upgrade()  # what this process does once the lock is its own, having seen version 4
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()
    with pytest.raises(StoreError, match=f"has schema version {SCHEMA_VERSION + 1}, a newer one than this tradewarden reads"):
        SqliteStore(path)
