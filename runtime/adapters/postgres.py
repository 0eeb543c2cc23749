"""The state store on a PostgreSQL server (psycopg 3), with fencing, for accounts that move between machines.

Durability: every save or append is one transaction committed with ``synchronous_commit = on``
(set on each connection whatever the server's default), so a returned save is in the server's
WAL on disk. `PostgresStore.append_events` journals a whole batch in one transaction.

Fencing: an account incarnation calls `PostgresStore.claim` before it writes. Claiming
increments the loop's epoch in the database and returns it; every state write (guard record,
loop totals, opening and settling an order) checks, in its own transaction and under a share lock
on the epoch row, that the epoch is still the one this store claimed. Once a newer incarnation
has claimed the loop, an older one's writes are refused with `StaleEpochError`: a worker on a node
the cluster declared dead, still running, can neither overwrite the state nor send an order (the
guard sends none it could not journal). Journal appends are not fenced: the journal keeps facts,
each id once, whoever reports them.

Identity: the tables live in the schema ``tradewarden`` (or the one given), whose ``meta`` table
names `SCHEMA_VERSION`; versions 1 to 3 are upgraded in place (version 1 without two columns of
``orders``, version 2 without ``pending_halts``, version 3 without the ``events_by_order`` index:
nothing that exists changes), another version is refused with `StoreError` before anything is
changed, never migrated. Pending halts are written like state: fenced. A table added within a
version (``gate_state``) is created, if missing, on connecting. Errors name the server as
``user@host:port/dbname``, never the password.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runtime.adapters.sqlite import StoreError, decode_guard_record, encode_guard_record, held_orders_of
from runtime.events import Event
from runtime.risk.gate import GateRecord
from runtime.risk.monitor import GuardRecord
from runtime.store import (
    HeldOrder,
    LoopTotals,
    PendingHalt,
    UnreadableOrder,
    check_events,
    check_outcome,
    check_pending_halt,
    loop_id_of,
    order_client_id,
    order_sent_at,
    unsettled,
)

__all__ = ["SCHEMA_VERSION", "PostgresStore", "StaleEpochError"]

SCHEMA_VERSION = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS epochs (loop_id TEXT PRIMARY KEY, epoch BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS guard_state (loop_id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gate_state (loop_id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS loop_totals (
    loop_id TEXT PRIMARY KEY,
    total_signals_lifetime BIGINT NOT NULL,
    total_trades_lifetime BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    loop_id TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_loop ON events (loop_id, seq);
CREATE TABLE IF NOT EXISTS orders (
    loop_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (loop_id, client_order_id)
);
ALTER TABLE orders ADD COLUMN IF NOT EXISTS sent_at TEXT;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS watch_until TEXT;
CREATE TABLE IF NOT EXISTS pending_halts (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loop_id TEXT NOT NULL,
    halt_id TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL,
    UNIQUE (loop_id, halt_id)
);
CREATE INDEX IF NOT EXISTS events_by_order ON events (loop_id, submitted_client_id(event))
    WHERE submitted_client_id(event) IS NOT NULL"""
# The client id of an ORDER_SUBMITTED event (the JSON of `Event.to_json`), else NULL: the key of
# PostgresStore.order_placed's index, which the server keeps for every journal write, whoever
# makes it. No text may make a write fail (PostgreSQL 15 has no test for valid JSON, and a cast
# of a row damaged by hand raises): most events are passed over by strpos() without parsing, and
# the rest are parsed inside a block that takes any error as "no order". That block is a
# subtransaction, which a parallel worker cannot start: the function is PARALLEL UNSAFE, so that
# the index on a big journal is built by one process rather than failing the upgrade. The index
# holds what it returned, so its body never changes under this name: a new body takes a new name
# and index.
_ORDER_KEY_FUNCTION = """
CREATE OR REPLACE FUNCTION submitted_client_id(event TEXT) RETURNS TEXT
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL UNSAFE AS $$
BEGIN
    IF strpos(event, '"order_submitted"') = 0 THEN
        RETURN NULL;
    END IF;
    BEGIN
        IF (event::json ->> 'event_type') = 'order_submitted' THEN
            RETURN event::json -> 'metadata' ->> 'client_order_id';
        END IF;
        RETURN NULL;
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END;
END
$$"""
# Version 1 had no sent_at or watch_until in orders, version 2 no pending_halts, version 3 no
# events_by_order index; the statements above add them (nothing that exists changes), so such a
# schema is upgraded in place, under the schema lock. The version went up with pending_halts so
# that an older tradewarden, which would start an account without taking its pending halts,
# refuses the schema instead, and with events_by_order so that one, which would send again an
# order a host retries after a guard restart, refuses it too.
_UPGRADED = ("1", "2", "3")
_ORDER_PLACED = "SELECT 1 FROM events WHERE loop_id = %s AND submitted_client_id(event) = %s LIMIT 1"
_INSERT_EVENT = "INSERT INTO events (event_id, loop_id, event) VALUES (%s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
# Any constant works: it only serialises stores creating the schema at the same moment.
_SCHEMA_LOCK = 0x54574431


class StaleEpochError(StoreError):
    """A write by an incarnation whose claim on its loop was superseded by a newer one; refused."""


_DEAD_SERVER = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
                "tcp_user_timeout": 10_000}
"""libpq's TCP settings that end a call to a server that vanished (its host down, the network cut)
in about 10 seconds, as a `StoreError`, instead of when the operating system gives up on the
connection, many minutes later: a guard waiting on its store is never abandoned as hung (its
store calls are busy sections), so a call must end on its own. Keepalive probes 5 s after the
last answer, 2 s apart, 3 unanswered: 11 s while waiting for an answer; sent data unacknowledged
for 10 s. A DSN that sets any of them keeps its own."""


class PostgresStore:
    """A `StateStore` on the PostgreSQL server at ``dsn``; safe to share between threads.

    ``dsn`` is a libpq connection string or URI. The tables are created in ``schema`` on first
    use. Call `claim` for a loop before writing its state: writes for a loop this store has not
    claimed, or whose claim a newer store took over, raise `StoreError`. A connection that
    breaks is opened again on the next call; the call that found it broken raises `StoreError`.
    A call that waits longer than ``lock_timeout`` seconds for a lock another session holds (an
    operator's open transaction) raises `StoreError`, as `SqliteStore` past its busy timeout; one
    to a server that vanished, after about 10 seconds (`_DEAD_SERVER`).
    """

    def __init__(
        self, dsn: str, *, schema: str = "tradewarden", connect_timeout: float = 5.0, lock_timeout: float = 5.0
    ) -> None:
        if not isinstance(schema, str) or not schema.isidentifier():
            raise ValueError(f"schema must be an identifier such as 'tradewarden', got {schema!r}")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float) or not lock_timeout > 0:
            raise ValueError(f"lock_timeout must be > 0 seconds, got {lock_timeout!r}")
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"dsn is not a PostgreSQL connection string or URI: {exc}") from None
        self._dsn = dsn
        self._password = str(params.get("password") or "")
        self._server = "{}@{}:{}/{}".format(
            params.get("user", "(default user)"),
            params.get("host", "(local socket)"),
            params.get("port", 5432),
            params.get("dbname", "(default database)"),
        )
        self._schema = schema
        # What the DSN leaves unsaid of `_DEAD_SERVER`: a DSN's own choice stands.
        self._dead_server = {key: value for key, value in _DEAD_SERVER.items() if key not in params}
        self._connect_timeout = connect_timeout
        self._lock_timeout_ms = max(1, round(lock_timeout * 1000))
        self._lock = threading.Lock()
        self._claims: dict[str, int] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self.ping()

    @property
    def server(self) -> str:
        """The server as errors name it: ``user@host:port/dbname``, without the password."""
        return self._server

    def __repr__(self) -> str:
        return f"PostgresStore({self._server!r}, schema={self._schema!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _error(self, operation: str, exc: BaseException) -> StoreError:
        # libpq messages do not carry the password, but one that echoes the DSN must not leak it.
        text = str(exc).strip()
        if self._password:
            text = text.replace(self._password, "***")
        return StoreError(f"postgres {self._server}: {operation} failed: {text}")

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            make_conninfo(self._dsn, **self._dead_server), autocommit=True,
            connect_timeout=max(1, round(self._connect_timeout)),
        )
        try:
            # The server's default may be off; a save is acknowledged only once it is on disk.
            conn.execute("SET synchronous_commit TO on")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema)))
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
                # The version is read before anything else is created, so that a schema of
                # another version is refused with nothing changed (raising rolls back): a newer
                # one may hold a big journal, which must not be indexed by a tradewarden that
                # cannot use it.
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is not None and row[0] != str(SCHEMA_VERSION) and row[0] not in _UPGRADED:
                    raise StoreError(
                        f"postgres {self._server}: schema {self._schema!r} has schema version {row[0]!r}, "
                        f"this tradewarden reads {SCHEMA_VERSION}; it was left untouched (not migrated)"
                    )
                conn.execute(_ORDER_KEY_FUNCTION)  # before _SCHEMA's index on it (its body holds semicolons)
                for statement in _SCHEMA.split(";"):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
            # Set once the schema is there: a store that starts while another creates it waits
            # for it as long as that takes.
            conn.execute(sql.SQL("SET lock_timeout TO {}").format(sql.Literal(f"{self._lock_timeout_ms}ms")))
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _using(self, operation: str) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._closed:
                raise StoreError(f"postgres {self._server} store is closed")
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                yield self._conn
            except psycopg.Error as exc:
                if self._conn is not None and self._conn.broken:
                    self._conn.close()
                    self._conn = None
                raise self._error(operation, exc) from None

    @contextmanager
    def _fenced(self, loop_id: str, operation: str) -> Iterator[psycopg.Connection[Any]]:
        # The share lock on the epoch row makes a concurrent claim wait for this write: once
        # claim() has returned, no write of an older epoch can still commit.
        epoch = self._claims.get(loop_id_of(loop_id))
        if epoch is None:
            raise StoreError(f"postgres {self._server}: {operation} refused: loop {loop_id!r} is not claimed by this store; call claim({loop_id!r}) first")
        with self._using(operation) as conn, conn.transaction():
            row = conn.execute("SELECT epoch FROM epochs WHERE loop_id = %s FOR SHARE", (loop_id,)).fetchone()
            current = None if row is None else row[0]
            if current != epoch:
                raise StaleEpochError(
                    f"postgres {self._server}: {operation} refused: loop {loop_id!r} was claimed by a newer "
                    f"incarnation (epoch {current}, this store holds epoch {epoch})"
                )
            yield conn

    def close(self) -> None:
        """Close the connection; later calls raise `StoreError`."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ping(self) -> None:
        """Connect if not connected (creating the schema on first use) and check the server
        answers; `StoreError` naming the server when it does not."""
        with self._using("reaching the server") as conn:
            conn.execute("SELECT 1")

    # -- fencing -------------------------------------------------------------------------------

    def claim(self, loop_id: str) -> int:
        """Claim ``loop_id`` for this store: its epoch goes up by one in the database and is
        returned; every earlier claimant's writes for the loop are refused from now on."""
        with self._using(f"claiming loop {loop_id!r}") as conn:
            row = conn.execute(
                "INSERT INTO epochs (loop_id, epoch) VALUES (%s, 1) "
                "ON CONFLICT (loop_id) DO UPDATE SET epoch = epochs.epoch + 1 RETURNING epoch",
                (loop_id_of(loop_id),),
            ).fetchone()
            assert row is not None  # RETURNING always gives the one row written
            self._claims[loop_id] = int(row[0])
        return int(row[0])

    # -- the port ------------------------------------------------------------------------------

    def load_guard(self, loop_id: str) -> GuardRecord | None:
        """The guard's last saved record for ``loop_id``, or None when none was saved."""
        with self._using(f"loading the guard record of loop {loop_id!r}") as conn:
            row = conn.execute("SELECT record FROM guard_state WHERE loop_id = %s", (loop_id,)).fetchone()
        if row is None:
            return None
        try:
            return decode_guard_record(row[0])
        except ValueError as exc:
            raise StoreError(f"postgres {self._server}: the guard record of loop {loop_id!r} is unreadable: {exc}") from exc

    def save_guard(self, loop_id: str, record: GuardRecord) -> None:
        """Replace the guard's record for ``loop_id`` if this store's claim holds; durable when
        this returns."""
        text = encode_guard_record(record)
        with self._fenced(loop_id, f"saving the guard record of loop {loop_id!r}") as conn:
            conn.execute(
                "INSERT INTO guard_state (loop_id, record) VALUES (%s, %s) "
                "ON CONFLICT (loop_id) DO UPDATE SET record = excluded.record",
                (loop_id, text),
            )

    def load_gate(self, loop_id: str) -> GateRecord | None:
        """The guard's last saved gate record for ``loop_id``, or None when none was saved."""
        with self._using(f"loading the gate record of loop {loop_id!r}") as conn:
            row = conn.execute("SELECT record FROM gate_state WHERE loop_id = %s", (loop_id,)).fetchone()
        if row is None:
            return None
        try:
            return GateRecord.from_json(row[0])
        except ValueError as exc:
            raise StoreError(f"postgres {self._server}: the gate record of loop {loop_id!r} is unreadable: {exc}") from exc

    def save_gate(self, loop_id: str, record: GateRecord) -> None:
        """Replace the guard's gate record for ``loop_id`` if this store's claim holds; durable
        when this returns."""
        if not isinstance(record, GateRecord):
            raise TypeError(f"record must be a GateRecord, got {record!r}")
        text = record.to_json()
        with self._fenced(loop_id, f"saving the gate record of loop {loop_id!r}") as conn:
            conn.execute(
                "INSERT INTO gate_state (loop_id, record) VALUES (%s, %s) "
                "ON CONFLICT (loop_id) DO UPDATE SET record = excluded.record",
                (loop_id, text),
            )

    def load_loop_totals(self, loop_id: str) -> LoopTotals | None:
        """The loop's last saved totals, or None when none were saved."""
        with self._using(f"loading the totals of loop {loop_id!r}") as conn:
            row = conn.execute(
                "SELECT total_signals_lifetime, total_trades_lifetime FROM loop_totals WHERE loop_id = %s", (loop_id,)
            ).fetchone()
        return None if row is None else LoopTotals(row[0], row[1])

    def save_loop_totals(self, loop_id: str, totals: LoopTotals) -> None:
        """Replace the loop's totals if this store's claim holds; durable when this returns."""
        if not isinstance(totals, LoopTotals):
            raise TypeError(f"totals must be LoopTotals, got {totals!r}")
        with self._fenced(loop_id, f"saving the totals of loop {loop_id!r}") as conn:
            conn.execute(
                "INSERT INTO loop_totals (loop_id, total_signals_lifetime, total_trades_lifetime) VALUES (%s, %s, %s) "
                "ON CONFLICT (loop_id) DO UPDATE SET total_signals_lifetime = excluded.total_signals_lifetime, "
                "total_trades_lifetime = excluded.total_trades_lifetime",
                (loop_id, totals.total_signals_lifetime, totals.total_trades_lifetime),
            )

    def append_event(self, event: Event) -> bool:
        """Journal ``event`` (durable when this returns) unless its ``event_id`` is already
        there; False, with nothing written, for a duplicate."""
        if not isinstance(event, Event):
            raise TypeError(f"event must be an Event, got {event!r}")
        with self._using(f"appending event {event.event_id!r}") as conn:
            return _insert_event(conn, event)

    def append_events(self, events: Sequence[Event]) -> int:
        """Journal ``events`` in order in one transaction (durable when this returns), skipping
        each whose ``event_id`` is already there or earlier in the batch; returns how many were
        new. A failure writes none of them."""
        check_events(events)
        if not events:
            return 0
        with self._using(f"appending {len(events)} events") as conn, conn.transaction():
            return sum(_insert_event(conn, event) for event in events)

    def events(self, loop_id: str | None = None) -> list[Event]:
        """Journaled events in append order, of every loop or of ``loop_id`` only."""
        with self._using("reading the event journal") as conn:
            if loop_id is None:
                rows = conn.execute("SELECT event FROM events ORDER BY seq").fetchall()
            else:
                rows = conn.execute("SELECT event FROM events WHERE loop_id = %s ORDER BY seq", (loop_id,)).fetchall()
        return self._decode(rows)

    def open_order(self, submitted: Event, sent_at: datetime | None = None) -> None:
        """Journal ``submitted`` and hold its order as unsettled, sent at ``sent_at``, in one
        transaction, if this store's claim on the order's loop holds."""
        client_id = order_client_id(submitted)
        sent = order_sent_at(submitted, sent_at).isoformat()
        with self._fenced(submitted.loop_id, f"opening order {client_id!r}") as conn:
            _insert_event(conn, submitted)
            conn.execute(
                "INSERT INTO orders (loop_id, client_order_id, event_id, sent_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (submitted.loop_id, client_id, submitted.event_id, sent),
            )

    def settle_order(
        self, loop_id: str, client_order_id: str, outcome: Event, watch_until: datetime | None = None
    ) -> None:
        """Journal ``outcome`` and settle the order (still held, watched, until ``watch_until``),
        in one transaction, if this store's claim on ``loop_id`` holds (a stale incarnation's
        order is left for the new one to reconcile)."""
        check_outcome(outcome, watch_until)
        with self._fenced(loop_id, f"settling order {client_order_id!r}") as conn:
            _insert_event(conn, outcome)
            if watch_until is None:
                conn.execute("DELETE FROM orders WHERE loop_id = %s AND client_order_id = %s", (loop_id, client_order_id))
            else:
                conn.execute(
                    "UPDATE orders SET watch_until = %s WHERE loop_id = %s AND client_order_id = %s",
                    (watch_until.isoformat(), loop_id, client_order_id),
                )

    def order_placed(self, loop_id: str, client_order_id: str) -> bool:
        """True when the journal holds an ORDER_SUBMITTED of ``loop_id`` naming
        ``client_order_id``, looked up in the ``events_by_order`` index (one B-tree search,
        however long the journal; not fenced: a read)."""
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
                "JOIN events e ON e.event_id = o.event_id WHERE o.loop_id = %s ORDER BY e.seq",
                (loop_id_of(loop_id),),
            ).fetchall()
        return held_orders_of(rows)

    def unwatch_order(self, loop_id: str, client_order_id: str) -> None:
        """Stop holding the watched order, if it is held and watched and this store's claim holds."""
        with self._fenced(loop_id, f"unwatching order {client_order_id!r}") as conn:
            conn.execute(
                "DELETE FROM orders WHERE loop_id = %s AND client_order_id = %s AND watch_until IS NOT NULL",
                (loop_id, client_order_id),
            )

    def save_pending_halt(self, loop_id: str, halt: PendingHalt) -> None:
        """Keep ``halt`` for the loop's next guard if this store's claim holds; durable when this
        returns (a ``halt_id`` kept already is kept once)."""
        check_pending_halt(halt)
        with self._fenced(loop_id, f"saving a pending halt of loop {loop_id!r}") as conn:
            conn.execute(
                "INSERT INTO pending_halts (loop_id, halt_id, by, reason) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (loop_id, halt_id) DO NOTHING",
                (loop_id, halt.halt_id, halt.by, halt.reason),
            )

    def load_pending_halts(self, loop_id: str) -> list[PendingHalt]:
        """The loop's pending halts, in the order they were saved."""
        with self._using(f"loading the pending halts of loop {loop_id!r}") as conn:
            rows = conn.execute(
                "SELECT by, reason, halt_id FROM pending_halts WHERE loop_id = %s ORDER BY seq", (loop_id_of(loop_id),)
            ).fetchall()
        return [PendingHalt(*row) for row in rows]

    def clear_pending_halts(self, loop_id: str, halt_ids: Sequence[str]) -> None:
        """Forget the loop's pending halts named in ``halt_ids``, in one transaction, if this
        store's claim holds."""
        with self._fenced(loop_id, f"clearing the pending halts of loop {loop_id!r}") as conn:
            conn.execute("DELETE FROM pending_halts WHERE loop_id = %s AND halt_id = ANY(%s)", (loop_id, list(halt_ids)))

    def _decode(self, rows: list[Any]) -> list[Event]:
        try:
            return [Event.from_json(row[0]) for row in rows]
        except ValueError as exc:
            raise StoreError(f"postgres {self._server}: an event in the journal is unreadable: {exc}") from exc


def _insert_event(conn: psycopg.Connection[Any], event: Event) -> bool:
    cursor = conn.execute(_INSERT_EVENT, (event.event_id, event.loop_id, event.to_json()))
    return cursor.rowcount == 1

