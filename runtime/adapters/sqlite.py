"""The state store in one SQLite file: WAL, fsync on every save, refused unless the file is ours.

Durability: the database runs in WAL mode and every save or append is its own transaction, so it
is on disk when the call returns; `SqliteStore.append_events` journals a whole batch in one
transaction (a group commit), paying for one fsync instead of one per event, and makes that
fsync after the commit, outside the store's lock, so that other saves do not queue behind the
disk. ``synchronous="FULL"`` (the default) fsyncs the WAL on every
commit: a returned save survives a process kill and a power loss, for about a quarter of a
millisecond per save on an SSD. ``"NORMAL"`` skips that fsync: still safe against a process
kill (the data is in the OS's cache) but the last saves may be lost on a power cut.

Identity: a tradewarden state file carries ``PRAGMA application_id`` = `APPLICATION_ID` and
``PRAGMA user_version`` = `SCHEMA_VERSION`. A new or empty file is initialised; anything else
(a corrupt file, another application's database, another schema version) is refused with
`StoreError` naming the path, and left exactly as it was: never replaced, never migrated.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.errors import TradewardenError
from runtime.events import Event
from runtime.risk.drawdown import DrawdownSnapshot
from runtime.risk.gate import GateRecord
from runtime.risk.guards import TradingState
from runtime.risk.monitor import GuardRecord
from runtime.store import (
    HeldOrder,
    LoopTotals,
    MemoryStore,
    PendingHalt,
    StateStore,
    UnreadableOrder,
    check_events,
    check_outcome,
    check_pending_halt,
    loop_id_of,
    order_client_id,
    order_sent_at,
    unsettled,
)

if TYPE_CHECKING:
    from runtime.settings import Settings

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "SqliteStore",
    "StoreError",
    "decode_guard_record",
    "encode_guard_record",
    "held_orders_of",
]

APPLICATION_ID = 0x54574431  # "TWD1": marks the file as a tradewarden state database
SCHEMA_VERSION = 5

_TABLES = ("events", "guard_state", "loop_totals", "orders", "gate_state", "pending_halts")
# Version 1 had no orders table; version 2 had no gate_state table and no sent_at (wall time, ISO)
# or watch_until (a watched order's deadline, ISO; NULL for an unsettled one) in orders; version 3
# had no pending_halts table. Adding them changes nothing that exists, so older files are upgraded
# in place (the only migrations this store makes). A row upgraded from version 2 has no sent_at:
# its order is aged by its event's timestamp. The version goes up with pending_halts so that an
# older tradewarden, which would start an account without taking its pending halts, refuses the
# file instead. Version 4 had no events_by_order index; it goes up with it so that an older
# tradewarden, which would send again an order a host retries after a guard restart, refuses it.
_ORDERS_TABLE = """
CREATE TABLE orders (
    loop_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    sent_at TEXT,
    watch_until TEXT,
    PRIMARY KEY (loop_id, client_order_id)
)"""
_GATE_TABLE = """
CREATE TABLE gate_state (
    loop_id TEXT PRIMARY KEY,
    record TEXT NOT NULL
)"""
_HALTS_TABLE = """
CREATE TABLE pending_halts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    loop_id TEXT NOT NULL,
    halt_id TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL,
    UNIQUE (loop_id, halt_id)
)"""
# The client id of an ORDER_SUBMITTED event (the JSON of `Event.to_json`), else NULL: the key of
# SqliteStore.order_placed's index, which SQLite keeps for every journal write, whoever makes it.
# Guarded so that no text (a row damaged by hand) makes a write fail: most events are passed over
# by the cheap instr() without parsing, and invalid JSON is never handed to json_extract, which
# would raise (CASE stops at the first WHEN that holds). The query must repeat it word for word.
_ORDER_KEY = (
    "CASE WHEN instr(event, '\"order_submitted\"') = 0 OR NOT json_valid(event) THEN NULL "
    "WHEN json_extract(event, '$.event_type') = 'order_submitted' THEN json_extract(event, '$.metadata.client_order_id') END"
)
_ORDER_INDEX = f"CREATE INDEX events_by_order ON events (loop_id, {_ORDER_KEY}) WHERE {_ORDER_KEY} IS NOT NULL"
_ORDER_PLACED = f"SELECT 1 FROM events WHERE loop_id = ? AND {_ORDER_KEY} = ? LIMIT 1"
_ORDERS_COLUMNS_OF_3 = ("ALTER TABLE orders ADD COLUMN sent_at TEXT", "ALTER TABLE orders ADD COLUMN watch_until TEXT")
# From an older version, the statements that make it the current one.
_UPGRADES = {
    1: (_ORDERS_TABLE, _GATE_TABLE, _HALTS_TABLE, _ORDER_INDEX),
    2: (*_ORDERS_COLUMNS_OF_3, _GATE_TABLE, _HALTS_TABLE, _ORDER_INDEX),
    3: (_HALTS_TABLE, _ORDER_INDEX),
    4: (_ORDER_INDEX,),
}
_SCHEMA = """
CREATE TABLE guard_state (
    loop_id TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE loop_totals (
    loop_id TEXT PRIMARY KEY,
    total_signals_lifetime INTEGER NOT NULL,
    total_trades_lifetime INTEGER NOT NULL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    loop_id TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX events_by_loop ON events (loop_id, seq);
""" + ";".join((_ORDERS_TABLE, _GATE_TABLE, _HALTS_TABLE, _ORDER_INDEX))


_INSERT_EVENT = "INSERT INTO events (event_id, loop_id, event) VALUES (?, ?, ?) ON CONFLICT (event_id) DO NOTHING"


class StoreError(TradewardenError, RuntimeError):
    """The state file cannot be used or an operation on it failed; the message names the path."""


# -- the guard record as JSON --------------------------------------------------------------------


def encode_guard_record(record: GuardRecord) -> str:
    """``record`` as one line of JSON; floats are written in their shortest exact form, so
    `decode_guard_record` gives back an equal record with bit-identical floats. The latch's
    dates (``state_since``, ``latched_at``) and ``day_start_kept_into`` are written only when
    known, as ISO texts, so a record without them reads as it did in the versions before."""
    if not isinstance(record, GuardRecord):
        raise TypeError(f"record must be a GuardRecord, got {record!r}")
    snapshot = record.drawdown
    data = {
        "drawdown": {
            "start_equity": snapshot.start_equity,
            "peak_equity": snapshot.peak_equity,
            "latest_equity": snapshot.latest_equity,
            "max_drawdown": snapshot.max_drawdown,
            # Written only when set: records of accounts never recapitalised stay as they were.
            **({"recapitalised": True} if snapshot.recapitalised else {}),
        },
        "trading_state": record.trading_state.value,
        "reason": record.reason,
        "day": record.day.isoformat() if record.day is not None else None,
        "day_start_equity": record.day_start_equity,
        "last_check_time": record.last_check_time.isoformat() if record.last_check_time is not None else None,
        "block_counts": [[name, count] for name, count in record.block_counts],
        "net_deposits": record.net_deposits,
    }
    for name in ("state_since", "latched_at", "day_start_kept_into"):
        moment = getattr(record, name)
        if moment is not None:
            data[name] = moment.isoformat()
    # allow_nan=False: a non-finite number must fail here, not come back as something else.
    return json.dumps(data, allow_nan=False, sort_keys=True, separators=(",", ":"))


def decode_guard_record(text: str) -> GuardRecord:
    """The record `encode_guard_record` wrote; a malformed text raises ``ValueError``."""
    try:
        data = json.loads(text)
        snapshot = DrawdownSnapshot(**data["drawdown"])
        day = data["day"]
        checked = data["last_check_time"]
        return GuardRecord(
            drawdown=snapshot,
            trading_state=TradingState(data["trading_state"]),
            reason=data["reason"],
            day=date.fromisoformat(day) if day is not None else None,
            day_start_equity=data["day_start_equity"],
            last_check_time=datetime.fromisoformat(checked) if checked is not None else None,
            block_counts=tuple((str(name), int(count)) for name, count in data["block_counts"]),
            # Records saved before cash flows travelled with the equity have none.
            net_deposits=data.get("net_deposits"),
            # Nor have those saved before latches were dated: a guard dates theirs as it loads them.
            state_since=None if data.get("state_since") is None else _stored_time("state_since", data["state_since"]),
            latched_at=None if data.get("latched_at") is None else _stored_time("latched_at", data["latched_at"]),
            # Nor those saved before a late first reading's day was kept: it starts afresh, as it did.
            day_start_kept_into=None if data.get("day_start_kept_into") is None
            else date.fromisoformat(data["day_start_kept_into"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a guard record's JSON: {text[:200]!r} ({type(exc).__name__}: {exc})") from exc


def held_orders_of(rows: Iterable[Sequence[Any]]) -> list[HeldOrder | UnreadableOrder]:
    """`StateStore.held_orders` from rows of (client order id, event JSON, sent_at, watch_until
    ISO texts), decoded one by one: a row that cannot be read (its event, or a time that is not
    an ISO time with a timezone) is an `UnreadableOrder` naming what is wrong, so it never hides
    the others. A row without ``sent_at`` (an older schema) is aged by its event's timestamp."""
    held: list[HeldOrder | UnreadableOrder] = []
    for client_id, text, sent_at, watch_until in rows:
        try:
            submitted = Event.from_json(text)
            held.append(HeldOrder(
                submitted,
                submitted.timestamp if sent_at is None else _stored_time("sent_at", sent_at),
                None if watch_until is None else _stored_time("watch_until", watch_until),
            ))
        except (TypeError, ValueError) as exc:
            held.append(UnreadableOrder(str(client_id), str(exc)))
    return held


def _stored_time(column: str, value: Any) -> datetime:
    # A stored time (an orders row's, a guard record's latch dates): ISO text with its timezone.
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"{column} {value!r} is not an ISO time with a timezone")
    return parsed


# -- the store -----------------------------------------------------------------------------------


class SqliteStore:
    """A `StateStore` in the SQLite file at ``path``; safe to share between threads.

    Every method returns only once its write is committed (see the module docstring for what
    ``synchronous`` promises). The event journal keeps each ``event_id`` once, in append order.
    Opening refuses, with `StoreError` naming the path, a file that is corrupt, belongs to
    another application or has another schema version; the file is then left untouched. The
    corruption check (``PRAGMA quick_check``) reads the whole file once, at start-up, so that
    damage is found before trading rather than in the middle of it.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL", busy_timeout: float = 5.0) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be 'FULL', 'NORMAL' or 'EXTRA', got {synchronous!r}")
        self._path = Path(path)
        self._lock = threading.Lock()
        self._synchronous = synchronous
        # The journal's group commits fsync the WAL through this descriptor, outside ``_lock``
        # (see append_events); opened after the first commit, when the WAL file exists.
        self._wal_lock = threading.Lock()
        self._wal_fd: int | None = None
        self._unsynced: str | None = None  # why the WAL's fsync in close() failed: a commit it covered failed too
        try:
            # Autocommit (isolation_level=None): each statement is its own durable transaction,
            # and explicit BEGIN is used where several must be one. One connection serialised by
            # the lock is shared by all threads.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                str(self._path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"state_db {str(self._path)!r} cannot be opened: {exc}") from None
        try:
            self._open(synchronous)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        self._file = _file_id(self._path)  # (None for a database that is no file)

    @classmethod
    def from_settings(cls, settings: Settings) -> StateStore:
        """A `SqliteStore` at ``settings.state_db``, or a `MemoryStore` when it is not set."""
        if settings.state_db is None:
            return MemoryStore()
        return cls(settings.state_db)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # -- opening -------------------------------------------------------------------------------

    def _refuse(self, why: str) -> StoreError:
        return StoreError(f"state_db {str(self._path)!r} {why}; it was left untouched (not replaced, not migrated)")

    def _identity(self) -> tuple[int, int, set[str]]:
        conn = self._connection()
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
        return application_id, version, names

    def _open(self, synchronous: str) -> None:
        conn = self._connection()
        try:
            # Read the identity before changing anything: a foreign file must stay byte-identical,
            # and switching it to WAL would already rewrite its header.
            application_id, version, names = self._identity()
            if application_id == 0 and version == 0 and not names:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Checked again under the write lock: another process may have won the race.
                    application_id, version, names = self._identity()
                    if application_id == 0 and version == 0 and not names:
                        # Statement by statement: executescript() would commit the open transaction.
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                conn.execute(statement)
                        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                application_id, version, names = self._identity()
            if application_id == APPLICATION_ID and version in _UPGRADES:
                self._upgrade()
                application_id, version, names = self._identity()
            if application_id != APPLICATION_ID:
                listed = ", ".join(sorted(names)) or "none"
                raise self._refuse(
                    f"is not a tradewarden state database (application_id {application_id:#x}, "
                    f"expected {APPLICATION_ID:#x}; schema objects: {listed})"
                )
            if version != SCHEMA_VERSION:
                newer = "a newer" if version > SCHEMA_VERSION else "an older"
                raise self._refuse(
                    f"has schema version {version}, {newer} one than this tradewarden reads ({SCHEMA_VERSION})"
                )
            missing = [table for table in _TABLES if table not in names]
            if missing:
                raise self._refuse(f"is missing the tables {missing} of schema version {SCHEMA_VERSION}")
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise self._refuse(f"is corrupt: {'; '.join(problems[:5])}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._refuse(f"cannot use WAL journaling (SQLite chose {mode!r})")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"is not a usable SQLite database (corrupt or another kind of file: {exc})") from None

    def _upgrade(self) -> None:
        conn = self._connection()
        with _transaction(conn):
            # Read again under the write lock: another process may have upgraded meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in _UPGRADES:
                return  # upgraded meanwhile: to this version, or to a newer one that _open then refuses
            for statement in _UPGRADES[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- plumbing ------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"state_db {str(self._path)!r} is closed")
        return self._conn

    @contextmanager
    def _using(self, operation: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            if self._file is not None and _file_id(self._path) != self._file:
                # SQLite goes on writing to a file deleted (or replaced) under it, where nothing
                # is kept, and a new bot may claim the file now at the path: every write must fail.
                raise StoreError(
                    f"state_db {str(self._path)!r}: {operation} failed: the file was deleted or replaced while this "
                    "store had it open, so nothing written now would be kept; stop this bot, and restart it once the "
                    "state file is in place"
                )
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"state_db {str(self._path)!r}: {operation} failed: {exc}") from exc

    @contextmanager
    def _synced(self, conn: sqlite3.Connection, fsync: bool) -> Iterator[None]:
        # A commit that does not wait for the disk (see without_fsync, and append_events, which
        # fsyncs the WAL itself after its commit); inside _using's lock.
        if fsync:
            yield
            return
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL's level that skips the commit's fsync, never OFF's corruption risk
        try:
            yield
        finally:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    def without_fsync(self) -> StateStore:
        """This store for the state of an account that lives in this process and dies with it
        (`runtime.broker.is_in_process`; the guard asks for it): the guard's record and gate
        record are committed without waiting for the disk (no fsync), so they are visible to
        every reader at once and kept through a kill of the process (the OS holds them), and
        lost only with the machine (an OS crash, a power cut), which takes such an account with
        it anyway. Every other call, the journal's group commits included, is this store's.

        A subclass that saves either record its own way (fencing, checks) is returned as it is,
        so its saves still run."""
        cls = type(self)
        if cls.save_guard is not SqliteStore.save_guard or cls.save_gate is not SqliteStore.save_gate:
            return self
        return _WithoutFsync(self)

    def close(self) -> None:
        """Close the database (checkpointing the WAL into the file); later calls raise `StoreError`."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self._wal_lock:
            if self._wal_fd is not None:
                # A group commit whose own fsync comes after this finds no descriptor: this one
                # covers it (another process may hold the WAL open, so the close need not have
                # checkpointed it), and its failure is that commit's too.
                try:
                    self._fsync_wal("closing", covers_later=True)
                finally:
                    os.close(self._wal_fd)
                    self._wal_fd = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    # -- the port ------------------------------------------------------------------------------

    def load_guard(self, loop_id: str) -> GuardRecord | None:
        """The guard's last saved record for ``loop_id``, or None when none was saved."""
        with self._using(f"loading the guard record of loop {loop_id!r}") as conn:
            row = conn.execute("SELECT record FROM guard_state WHERE loop_id = ?", (loop_id,)).fetchone()
        if row is None:
            return None
        try:
            return decode_guard_record(row[0])
        except ValueError as exc:
            raise StoreError(f"state_db {str(self._path)!r}: the guard record of loop {loop_id!r} is unreadable: {exc}") from exc

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        """Replace the guard's record for ``loop_id``; durable when this returns."""
        self._save_guard(loop_id, record, fsync=True)

    def _save_guard(self, loop_id: str, record: GuardRecord, *, fsync: bool) -> None:
        text = encode_guard_record(record)
        with self._using(f"saving the guard record of loop {loop_id!r}") as conn, self._synced(conn, fsync):
            conn.execute(
                "INSERT INTO guard_state (loop_id, record) VALUES (?, ?) "
                "ON CONFLICT (loop_id) DO UPDATE SET record = excluded.record",
                (loop_id_of(loop_id), text),
            )

    def load_gate(self, loop_id: str) -> GateRecord | None:
        """The guard's last saved gate record for ``loop_id``, or None when none was saved."""
        with self._using(f"loading the gate record of loop {loop_id!r}") as conn:
            row = conn.execute("SELECT record FROM gate_state WHERE loop_id = ?", (loop_id,)).fetchone()
        if row is None:
            return None
        try:
            return GateRecord.from_json(row[0])
        except ValueError as exc:
            raise StoreError(f"state_db {str(self._path)!r}: the gate record of loop {loop_id!r} is unreadable: {exc}") from exc

    def save_gate(self, loop_id: str, record: GateRecord) -> None:
        """Replace the guard's gate record for ``loop_id``; durable when this returns."""
        self._save_gate(loop_id, record, fsync=True)

    def _save_gate(self, loop_id: str, record: GateRecord, *, fsync: bool) -> None:
        if not isinstance(record, GateRecord):
            raise TypeError(f"record must be a GateRecord, got {record!r}")
        text = record.to_json()
        with self._using(f"saving the gate record of loop {loop_id!r}") as conn, self._synced(conn, fsync):
            conn.execute(
                "INSERT INTO gate_state (loop_id, record) VALUES (?, ?) "
                "ON CONFLICT (loop_id) DO UPDATE SET record = excluded.record",
                (loop_id_of(loop_id), text),
            )

    def load_loop_totals(self, loop_id: str) -> LoopTotals | None:
        """The loop's last saved totals, or None when none were saved."""
        with self._using(f"loading the totals of loop {loop_id!r}") as conn:
            row = conn.execute(
                "SELECT total_signals_lifetime, total_trades_lifetime FROM loop_totals WHERE loop_id = ?", (loop_id,)
            ).fetchone()
        return None if row is None else LoopTotals(row[0], row[1])

    def save_loop_totals(self, loop_id: str, totals: LoopTotals) -> None:
        """Replace the loop's totals for ``loop_id``; durable when this returns."""
        if not isinstance(totals, LoopTotals):
            raise TypeError(f"totals must be LoopTotals, got {totals!r}")
        with self._using(f"saving the totals of loop {loop_id!r}") as conn:
            conn.execute(
                "INSERT INTO loop_totals (loop_id, total_signals_lifetime, total_trades_lifetime) VALUES (?, ?, ?) "
                "ON CONFLICT (loop_id) DO UPDATE SET total_signals_lifetime = excluded.total_signals_lifetime, "
                "total_trades_lifetime = excluded.total_trades_lifetime",
                (loop_id_of(loop_id), totals.total_signals_lifetime, totals.total_trades_lifetime),
            )

    def append_event(self, event: Event) -> bool:
        """Journal ``event`` (durable when this returns) unless its ``event_id`` is already
        there; False, with nothing written, for a duplicate."""
        if not isinstance(event, Event):
            raise TypeError(f"event must be an Event, got {event!r}")
        with self._using(f"appending event {event.event_id!r}") as conn:
            return self._insert_event(conn, event)

    def append_events(self, events: Sequence[Event]) -> int:
        """Journal ``events`` in order in one transaction (durable when this returns), skipping
        each whose ``event_id`` is already there or earlier in the batch; returns how many were
        new. A failure of the commit writes none of them.

        The commit itself does not wait for the disk: the WAL is fsynced after it, outside the
        store's lock, so that the guard's saves are not held up behind a group commit's fsync
        (a commit in WAL mode without its fsync is never torn, only possibly not yet on disk;
        other readers may see it a moment before it is). When that fsync fails, `StoreError`
        says so: the events are committed but may not be on disk (the caller counts them as not
        journaled; a disk that fails one fsync is reported, and the store goes on: a guard must
        still be able to save a halt)."""
        check_events(events)
        if not events:
            return 0
        rows = [(event.event_id, event.loop_id, event.to_json()) for event in events]  # encoded outside the lock
        what = f"appending {len(rows)} events"
        fsync_after = self._synchronous != "NORMAL"  # (at NORMAL no commit waits for the disk)
        with self._using(what) as conn:
            with self._synced(conn, not fsync_after), _transaction(conn):
                before = conn.total_changes
                conn.executemany(_INSERT_EVENT, rows)
                added = conn.total_changes - before
            if fsync_after:
                self._open_wal(conn)
        if fsync_after:
            self._sync_wal(what)
        return added

    def _open_wal(self, conn: sqlite3.Connection) -> None:
        # Inside _using, after a commit: the WAL file exists. SQLite keeps it (the same file,
        # reset and rewritten in place) for as long as this store's connection is open.
        with self._wal_lock:
            if self._wal_fd is None:
                database = next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")
                try:
                    self._wal_fd = os.open(f"{database}-wal", os.O_RDWR)
                except OSError as exc:
                    raise StoreError(f"state_db {str(self._path)!r}: the WAL could not be opened to fsync it: {exc}") from exc

    def _sync_wal(self, what: str) -> None:
        # Every commit made so far, this one included, reaches the disk; a store closed meanwhile
        # fsynced it as it closed (and a failure then is this commit's too).
        with self._wal_lock:
            if self._wal_fd is not None:
                self._fsync_wal(what)
            elif self._unsynced is not None:
                raise StoreError(f"state_db {str(self._path)!r}: {what} failed: {self._unsynced}")

    def _fsync_wal(self, what: str, *, covers_later: bool = False) -> None:
        # Under _wal_lock, with the descriptor open. ``covers_later``: the fsync of close(),
        # which stands in for those of commits still to come (see _sync_wal), so its failure is
        # theirs too.
        assert self._wal_fd is not None
        try:
            os.fsync(self._wal_fd)
        except OSError as exc:
            failed = f"the WAL's fsync failed while {what}: {exc}"
            if covers_later:
                self._unsynced = failed
            raise StoreError(f"state_db {str(self._path)!r}: {what} failed: {failed}") from exc

    def events(self, loop_id: str | None = None) -> list[Event]:
        """Journaled events in append order, of every loop or of ``loop_id`` only."""
        with self._using("reading the event journal") as conn:
            if loop_id is None:
                rows = conn.execute("SELECT event FROM events ORDER BY seq").fetchall()
            else:
                rows = conn.execute("SELECT event FROM events WHERE loop_id = ? ORDER BY seq", (loop_id,)).fetchall()
        return self._decode(rows)

    def open_order(self, submitted: Event, sent_at: datetime | None = None) -> None:
        """Journal ``submitted`` and hold its order as unsettled, sent at ``sent_at``, in one transaction."""
        client_id = order_client_id(submitted)
        sent = order_sent_at(submitted, sent_at).isoformat()
        with self._using(f"opening order {client_id!r}") as conn, _transaction(conn):
            self._insert_event(conn, submitted)
            conn.execute(
                "INSERT INTO orders (loop_id, client_order_id, event_id, sent_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (submitted.loop_id, client_id, submitted.event_id, sent),
            )

    def settle_order(
        self, loop_id: str, client_order_id: str, outcome: Event, watch_until: datetime | None = None
    ) -> None:
        """Journal ``outcome`` and settle the order (still held, watched, until ``watch_until``),
        in one transaction."""
        check_outcome(outcome, watch_until)
        with self._using(f"settling order {client_order_id!r}") as conn, _transaction(conn):
            self._insert_event(conn, outcome)
            if watch_until is None:
                conn.execute("DELETE FROM orders WHERE loop_id = ? AND client_order_id = ?", (loop_id, client_order_id))
            else:
                conn.execute(
                    "UPDATE orders SET watch_until = ? WHERE loop_id = ? AND client_order_id = ?",
                    (watch_until.isoformat(), loop_id, client_order_id),
                )

    def order_placed(self, loop_id: str, client_order_id: str) -> bool:
        """True when the journal holds an ORDER_SUBMITTED of ``loop_id`` naming
        ``client_order_id``, looked up in the ``events_by_order`` index (one B-tree search,
        however long the journal)."""
        with self._using(f"looking up order {client_order_id!r}") as conn:
            row = conn.execute(_ORDER_PLACED, (loop_id_of(loop_id), client_order_id)).fetchone()
        return row is not None

    def unsettled_orders(self, loop_id: str) -> list[Event]:
        """The ORDER_SUBMITTED events of the loop's orders with no outcome, oldest first."""
        return unsettled(self.held_orders(loop_id))

    def held_orders(self, loop_id: str) -> list[HeldOrder | UnreadableOrder]:
        """The loop's unsettled and watched orders, oldest first (see `held_orders_of`)."""
        with self._using("reading held orders") as conn:
            rows = conn.execute(
                "SELECT o.client_order_id, e.event, o.sent_at, o.watch_until FROM orders o "
                "JOIN events e ON e.event_id = o.event_id WHERE o.loop_id = ? ORDER BY e.seq",
                (loop_id_of(loop_id),),
            ).fetchall()
        return held_orders_of(rows)

    def unwatch_order(self, loop_id: str, client_order_id: str) -> None:
        """Stop holding the watched order, if it is held and watched."""
        with self._using(f"unwatching order {client_order_id!r}") as conn:
            conn.execute(
                "DELETE FROM orders WHERE loop_id = ? AND client_order_id = ? AND watch_until IS NOT NULL",
                (loop_id, client_order_id),
            )

    def save_pending_halt(self, loop_id: str, halt: PendingHalt) -> None:
        """Keep ``halt`` for the loop's next guard; durable when this returns (a ``halt_id``
        kept already is kept once)."""
        check_pending_halt(halt)
        with self._using(f"saving a pending halt of loop {loop_id!r}") as conn:
            conn.execute(
                "INSERT INTO pending_halts (loop_id, halt_id, by, reason) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (loop_id, halt_id) DO NOTHING",
                (loop_id_of(loop_id), halt.halt_id, halt.by, halt.reason),
            )

    def loop_ids(self) -> list[str]:
        """The loops whose guard saved a record in this file, sorted (a file shared by a fleet's
        accounts holds several)."""
        with self._using("listing the loops") as conn:
            return [row[0] for row in conn.execute("SELECT loop_id FROM guard_state ORDER BY loop_id")]

    def load_pending_halts(self, loop_id: str) -> list[PendingHalt]:
        """The loop's pending halts, in the order they were saved."""
        with self._using(f"loading the pending halts of loop {loop_id!r}") as conn:
            rows = conn.execute(
                "SELECT by, reason, halt_id FROM pending_halts WHERE loop_id = ? ORDER BY seq", (loop_id_of(loop_id),)
            ).fetchall()
        return [PendingHalt(*row) for row in rows]

    def clear_pending_halts(self, loop_id: str, halt_ids: Sequence[str]) -> None:
        """Forget the loop's pending halts named in ``halt_ids``, in one durable write."""
        with self._using(f"clearing the pending halts of loop {loop_id!r}") as conn, _transaction(conn):
            conn.executemany(
                "DELETE FROM pending_halts WHERE loop_id = ? AND halt_id = ?", [(loop_id, h) for h in halt_ids]
            )

    @staticmethod
    def _insert_event(conn: sqlite3.Connection, event: Event) -> bool:
        cursor = conn.execute(_INSERT_EVENT, (event.event_id, event.loop_id, event.to_json()))
        return cursor.rowcount == 1

    def _decode(self, rows: list[Any]) -> list[Event]:
        try:
            return [Event.from_json(row[0]) for row in rows]
        except ValueError as exc:
            raise StoreError(f"state_db {str(self._path)!r}: an event in the journal is unreadable: {exc}") from exc


class _WithoutFsync:
    # SqliteStore.without_fsync: the guard's two records saved without an fsync, the rest as is.

    def __init__(self, store: SqliteStore) -> None:
        self._sqlite = store

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        self._sqlite._save_guard(loop_id, record, fsync=False)

    def save_gate(self, loop_id: str, record: GateRecord) -> None:
        self._sqlite._save_gate(loop_id, record, fsync=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqlite, name)

    def __repr__(self) -> str:
        return f"{self._sqlite!r}.without_fsync()"


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # Several statements as one durable commit (the connection is otherwise in autocommit).
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _file_id(path: Path) -> tuple[int, int] | None:
    # Which file ``path`` names now (device and inode), or None when it names none.
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
