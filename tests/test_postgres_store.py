"""PostgresStore beyond the shared contract: fencing of stale incarnations, group commit, errors
that name the server but never the password, a schema of another version, a dropped connection."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from actor_helpers import WAIT
from psycopg.conninfo import make_conninfo
from support.postgres import PostgresServer
from test_sqlite_store import _event, _outcome, _submitted, guard_record

from runtime import LoopTotals
from runtime.adapters.postgres import SCHEMA_VERSION, PostgresStore, StaleEpochError
from runtime.adapters.sqlite import StoreError
from runtime.store import HeldOrder, PendingHalt

OpenStore = Callable[[], PostgresStore]


@pytest.fixture
def open_store(postgres_dsn: str, pg_schema: str) -> Iterator[OpenStore]:
    opened: list[PostgresStore] = []

    def make() -> PostgresStore:
        opened.append(PostgresStore(postgres_dsn, schema=pg_schema))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


# -- fencing ---------------------------------------------------------------------------------------


def test_each_claim_of_a_loop_gets_the_next_epoch_whichever_store_makes_it(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    assert [first.claim("main"), second.claim("main"), first.claim("main")] == [1, 2, 3]
    assert second.claim("other") == 1


def test_the_older_of_two_incarnations_has_every_state_write_refused(open_store: OpenStore, postgres_server: PostgresServer) -> None:
    older, newer = open_store(), open_store()
    older.claim("main")
    older.save_guard("main", guard_record(1))
    older.open_order(_submitted("c1"))
    newer.claim("main")
    stale = (
        rf"^postgres postgres@127\.0\.0\.1:{postgres_server.port}/postgres: {{}} refused: loop 'main' was claimed "
        r"by a newer incarnation \(epoch 2, this store holds epoch 1\)$"
    )
    with pytest.raises(StaleEpochError, match=stale.format("saving the guard record of loop 'main'")):
        older.save_guard("main", guard_record(2))
    with pytest.raises(StaleEpochError, match=stale.format("saving the totals of loop 'main'")):
        older.save_loop_totals("main", LoopTotals(9, 9))
    with pytest.raises(StaleEpochError, match=stale.format("opening order 'c2'")):
        older.open_order(_submitted("c2"))
    with pytest.raises(StaleEpochError, match=stale.format("settling order 'c1'")):
        older.settle_order("main", "c1", _outcome("c1"))
    # A halt is state too: a stale incarnation can neither leave one (the newer, running already,
    # would take it only at its next start) nor clear one the newer left.
    newer.save_pending_halt("main", PendingHalt("ops", "kept", halt_id="h1"))
    with pytest.raises(StaleEpochError, match=stale.format("saving a pending halt of loop 'main'")):
        older.save_pending_halt("main", PendingHalt("ops", "desk closed"))
    with pytest.raises(StaleEpochError, match=stale.format("clearing the pending halts of loop 'main'")):
        older.clear_pending_halts("main", ["h1"])
    assert older.load_pending_halts("main") == [PendingHalt("ops", "kept", halt_id="h1")]
    # Nothing of the refused writes is kept; the newer incarnation carries on from the older's last.
    assert newer.load_guard("main") == guard_record(1)
    assert newer.load_loop_totals("main") is None
    assert newer.unsettled_orders("main") == [_submitted("c1")]
    assert [e.event_id for e in newer.events()] == ["s-c1"]
    newer.save_guard("main", guard_record(3))
    newer.settle_order("main", "c1", _outcome("c1"))
    assert older.load_guard("main") == guard_record(3)


def test_a_stale_incarnation_may_still_journal_what_happened(open_store: OpenStore) -> None:
    older, newer = open_store(), open_store()
    older.claim("main")
    newer.claim("main")
    assert older.append_event(_event(1)) is True
    assert newer.events() == [_event(1)]


def test_a_write_for_a_loop_this_store_never_claimed_is_refused(open_store: OpenStore, postgres_server: PostgresServer) -> None:
    store = open_store()
    with pytest.raises(
        StoreError,
        match=rf"^postgres postgres@127\.0\.0\.1:{postgres_server.port}/postgres: saving the guard record of loop "
        r"'main' refused: loop 'main' is not claimed by this store; call claim\('main'\) first$",
    ):
        store.save_guard("main", guard_record(1))
    assert store.load_guard("main") is None


# -- group commit ----------------------------------------------------------------------------------


def test_a_batch_is_journaled_in_order_keeping_each_id_once_and_counting_the_new(open_store: OpenStore) -> None:
    store = open_store()
    store.append_event(_event(1))
    batch = [_event(0), _event(1), _event(2), _event(0), _event(3)]
    assert store.append_events(batch) == 3
    assert store.append_events(batch) == 0
    assert store.append_events([]) == 0
    assert [e.event_id for e in store.events()] == ["main-1", "main-0", "main-2", "main-3"]


def test_a_batch_holding_something_else_than_an_event_is_refused_and_nothing_of_it_is_kept(open_store: OpenStore) -> None:
    store = open_store()
    with pytest.raises(TypeError, match=r"^events\[1\] must be an Event, got 'heartbeat'$"):
        store.append_events([_event(0), "heartbeat"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^events must be a sequence of Event, got 'abc'$"):
        store.append_events("abc")  # type: ignore[arg-type]
    assert store.events() == []


def test_a_batch_that_fails_part_way_writes_none_of_it(open_store: OpenStore, postgres_dsn: str, pg_schema: str) -> None:
    store = open_store()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE FUNCTION {pg_schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
        )
        admin.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {pg_schema}.events FOR EACH ROW "
            f"WHEN (NEW.event_id = 'main-2') EXECUTE FUNCTION {pg_schema}.refuse()"
        )
    with pytest.raises(StoreError, match=r"^postgres .*: appending 4 events failed: refused by the test"):
        store.append_events([_event(i) for i in range(4)])
    assert store.events() == []
    assert store.append_events([_event(0), _event(1)]) == 2


# -- errors and connections ------------------------------------------------------------------------


def test_an_unreachable_server_is_named_and_the_password_never_shown() -> None:
    with pytest.raises(StoreError, match=r"^postgres tw@127\.0\.0\.1:1/state: reaching the server failed: ") as caught:
        PostgresStore("host=127.0.0.1 port=1 user=tw dbname=state password=s3cr3t-pw connect_timeout=2")
    assert "s3cr3t-pw" not in str(caught.value) and "s3cr3t-pw" not in repr(caught.value)


def test_the_password_is_not_in_the_repr(postgres_server: PostgresServer) -> None:
    with PostgresStore(postgres_server.dsn + " password=s3cr3t-pw", schema="t_repr") as store:
        assert repr(store) == f"PostgresStore('postgres@127.0.0.1:{postgres_server.port}/postgres', schema='t_repr')"


def test_a_schema_of_another_version_is_refused_and_left_alone(open_store: OpenStore, postgres_dsn: str, pg_schema: str) -> None:
    open_store().close()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"UPDATE {pg_schema}.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(
        StoreError,
        match=rf"^postgres .*: schema '{pg_schema}' has schema version '99', this tradewarden reads {SCHEMA_VERSION}; "
        r"it was left untouched \(not migrated\)$",
    ):
        PostgresStore(postgres_dsn, schema=pg_schema)


def test_a_version_1_schema_is_upgraded_in_place_and_its_unsettled_orders_are_aged_by_their_events(
    open_store: OpenStore, postgres_dsn: str, pg_schema: str
) -> None:
    first = open_store()
    first.claim("main")
    first.open_order(_submitted("c1"))
    first.close()
    # The orders table as version 1 had it.
    _as_version(postgres_dsn, pg_schema, "1", "ALTER TABLE {schema}.orders DROP COLUMN sent_at, DROP COLUMN watch_until")
    store = open_store()
    store.claim("main")
    assert store.held_orders("main") == [HeldOrder(_submitted("c1"), datetime(2024, 1, 1, tzinfo=UTC))]
    assert _version(postgres_dsn, pg_schema) == str(SCHEMA_VERSION) and SCHEMA_VERSION == 4


def test_a_version_3_schema_is_upgraded_in_place_and_knows_the_orders_placed_before(
    open_store: OpenStore, postgres_dsn: str, pg_schema: str
) -> None:
    first = open_store()
    first.claim("main")
    first.open_order(_submitted("c1"))
    first.settle_order("main", "c1", _outcome("c1"))
    first.append_events([_event(1), _submitted("c2")])
    first.close()
    _as_version(postgres_dsn, pg_schema, "3", "DROP INDEX {schema}.events_by_order", "DROP FUNCTION {schema}.submitted_client_id",
                "ANALYZE {schema}.events")
    # As for a big journal, the server may build the index with parallel workers: here it must.
    parallel = " options='-c min_parallel_table_scan_size=0 -c max_parallel_maintenance_workers=2'"
    with PostgresStore(postgres_dsn + parallel, schema=pg_schema) as store:
        assert [store.order_placed("main", c) for c in ("c1", "c2", "c3")] == [True, True, False]
    assert _version(postgres_dsn, pg_schema) == "4"


def _as_version(postgres_dsn: str, pg_schema: str, version: str, *statements: str) -> None:
    # Make the schema what an earlier tradewarden wrote: ``statements`` ({schema} names it), and
    # its version in meta.
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement.format(schema=pg_schema))
        admin.execute(f"UPDATE {pg_schema}.meta SET value = %s WHERE key = 'schema_version'", (version,))


def _version(postgres_dsn: str, pg_schema: str) -> str:
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        row = admin.execute(f"SELECT value FROM {pg_schema}.meta WHERE key = 'schema_version'").fetchone()
    assert row is not None
    return str(row[0])


def test_a_schema_of_another_version_gets_nothing_added_before_it_is_refused(
    open_store: OpenStore, postgres_dsn: str, pg_schema: str
) -> None:
    open_store().close()
    _as_version(postgres_dsn, pg_schema, "99", "DROP INDEX {schema}.events_by_order")
    with pytest.raises(StoreError, match=r"has schema version '99'"):
        PostgresStore(postgres_dsn, schema=pg_schema)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        indexes = admin.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s ORDER BY indexname", (pg_schema,))
        assert "events_by_order" not in [row[0] for row in indexes.fetchall()]


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_looking_up_an_order_placed_reads_the_index_not_the_journal(
    open_store: OpenStore, postgres_dsn: str, pg_schema: str, plan_cache_mode: str
) -> None:
    from runtime.adapters.postgres import _ORDER_PLACED  # the store's own query, word for word

    store = open_store()
    store.append_events([_event(i) for i in range(200)] + [_submitted("c1")])
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        # A sequential scan turned off, the plan shows whether the index can answer the query at
        # all (on a table this small the planner would rightly scan it), with the client id known
        # when planning and, as psycopg's prepared statements are, without.
        conn.execute(f"SET search_path TO {pg_schema}")
        conn.execute("SET enable_seqscan = off")
        conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        conn.execute("PREPARE placed (text, text) AS " + _ORDER_PLACED.replace("%s", "$1", 1).replace("%s", "$2", 1))
        plan = [row[0] for row in conn.execute("EXPLAIN (COSTS OFF) EXECUTE placed ('main', 'c1')").fetchall()]
    values = ("$1", "$2") if plan_cache_mode == "force_generic_plan" else ("'main'::text", "'c1'::text")
    assert [line.strip() for line in plan] == [
        "Limit",
        "->  Index Scan using events_by_order on events",
        f"Index Cond: ((loop_id = {values[0]}) AND (submitted_client_id(event) = {values[1]}))",
    ]
    assert store.order_placed("main", "c1") is True


def test_a_dropped_connection_fails_one_call_and_the_next_reconnects(open_store: OpenStore, postgres_dsn: str) -> None:
    store = open_store()
    store.claim("main")
    store.save_guard("main", guard_record(1))
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND datname = 'postgres' AND backend_type = 'client backend'"
        )
    with pytest.raises(StoreError, match=r"^postgres .*: loading the guard record of loop 'main' failed: "):
        store.load_guard("main")
    assert store.load_guard("main") == guard_record(1)
    store.save_guard("main", guard_record(2))  # the claim outlives the connection


def test_a_closed_store_says_so(open_store: OpenStore, postgres_server: PostgresServer) -> None:
    store = open_store()
    store.close()
    with pytest.raises(StoreError, match=rf"^postgres postgres@127\.0\.0\.1:{postgres_server.port}/postgres store is closed$"):
        store.events()


def test_a_lock_held_by_another_session_fails_the_call_after_the_lock_timeout_as_sqlites_busy_timeout(
    postgres_dsn: str, pg_schema: str
) -> None:
    # An operator's psql transaction (or a failover's) holding the guard's row made a save wait
    # for as long as it was held: the guard could not act on a breach meanwhile. Now the save
    # is refused, as SQLite's is, and the guard saves it again once the store takes it.
    store = PostgresStore(postgres_dsn, schema=pg_schema, lock_timeout=0.5)
    other = psycopg.connect(postgres_dsn)
    try:
        store.claim("main")
        store.save_guard("main", guard_record(1))
        other.execute(f"SELECT record FROM {pg_schema}.guard_state WHERE loop_id = 'main' FOR UPDATE")  # held
        saved: list[object] = []
        done = threading.Event()

        def save() -> None:
            try:
                store.save_guard("main", guard_record(2))
                saved.append("saved")
            except StoreError as exc:
                saved.append(exc)
            finally:
                done.set()

        threading.Thread(target=save, daemon=True).start()
        assert done.wait(WAIT), "the save waited on the lock past its lock timeout"
        [refused] = saved
        assert isinstance(refused, StoreError)
        assert re.fullmatch(r"postgres .*: saving the guard record of loop 'main' failed: canceling statement due to "
                            r"lock timeout(\n.*)?", str(refused), re.S), str(refused)
        other.rollback()
        store.save_guard("main", guard_record(2))
        assert store.load_guard("main") == guard_record(2)
    finally:
        other.close()
        store.close()


def _tcp_options(store: PostgresStore) -> dict[str, str]:
    # The libpq options the store's connection was opened with (read from libpq itself).
    store.ping()
    conn = store._conn  # (no public view of a connection's TCP options: libpq's own list is read)
    assert conn is not None
    keys = {"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}
    return {o.keyword.decode(): (o.val or b"").decode() for o in conn.pgconn.info if o.keyword.decode() in keys}


def test_a_call_to_a_server_that_vanished_ends_in_seconds_and_a_dsn_keeps_its_own_tcp_settings(
    postgres_dsn: str, pg_schema: str
) -> None:
    # A guard's store call is never abandoned as hung (a busy section), so one waiting on a server
    # whose host went down must end on its own: with the system's TCP defaults it waited many
    # minutes. (A vanished host cannot be made here: the options are read back from libpq.)
    store = PostgresStore(postgres_dsn, schema=pg_schema)
    try:
        assert _tcp_options(store) == {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2",
                                       "keepalives_count": "3", "tcp_user_timeout": "10000"}
    finally:
        store.close()
    own = PostgresStore(make_conninfo(postgres_dsn, keepalives_idle=30), schema=pg_schema)
    try:
        assert _tcp_options(own)["keepalives_idle"] == "30"
    finally:
        own.close()


def test_a_lock_timeout_that_is_not_a_positive_number_is_refused_naming_it(postgres_dsn: str) -> None:
    with pytest.raises(ValueError, match=r"^lock_timeout must be > 0 seconds, got 0$"):
        PostgresStore(postgres_dsn, lock_timeout=0)
