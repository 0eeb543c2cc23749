"""A fill that arrives after the reconciliation gave up on its order: found, journaled, judged.

The broker is a real paper account whose order call waits on an event (a trade server slow to
answer), the guard real, the store real SQLite: an abandoned guard's call outlives the grace,
the new guard journals the order as not executed, and the fill that then lands must still be
found and journaled, and the account judged with it.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from actor_helpers import WAIT, wait_until
from test_guard_actor import T0, GuardTree

from actors import GuardActor
from actors.messages import GetGuardState, Halt, PlaceOrder
from actors.supervision.context import ChildContext
from runtime import Event, EventType, MemoryStore, Order, PaperBroker, TradingState
from runtime.adapters.sqlite import SqliteStore
from runtime.broker import Fill


class SlowServer(PaperBroker):
    """A paper account whose trade server takes until ``release`` is set to carry out an order.
    The server lives outside the process (it outlives a guard's crash), as a live broker does."""

    in_process = False

    def __init__(self) -> None:
        super().__init__(10_000)
        self.release = threading.Event()
        self.submitting = threading.Event()

    def submit_order(self, order: Order) -> Fill:
        self.submitting.set()
        if not self.release.wait(3 * WAIT):
            raise TimeoutError("the test never released the order")
        return super().submit_order(order)


@pytest.fixture
def late(tmp_path: Path):
    """A tree whose guard is stuck in an order call and replaced; the new guard has failed the
    order by reconciliation. Yields (tree, broker, client id)."""
    broker = SlowServer()
    broker.update_price("X", 100.0)
    store = SqliteStore(tmp_path / "state.db")
    tree = GuardTree(broker, store=store, guard_liveness=0.3, settle_grace=0.3, late_fill_watch=60.0)
    order = Order("X", "buy", 2)

    def place() -> None:
        try:
            tree.guard.ask(PlaceOrder(order, T0), timeout=3 * WAIT)
        except Exception:  # the abandoned incarnation's answer does not matter here
            pass

    caller = threading.Thread(target=place, daemon=True)
    caller.start()
    assert broker.submitting.wait(WAIT)
    tree.handle.restart("guard", "operator: guard stuck in a broker call", graceful=False)
    [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
    assert failed.metadata["client_order_id"] == order.client_id and failed.metadata["reconciled"] is True
    yield tree, broker, order.client_id
    broker.release.set()
    caller.join(WAIT)
    tree.stop()
    store.close()


def _journal(tree: GuardTree, *types: EventType) -> list:
    return [e for e in tree.store.events() if e.event_type in types]


def test_a_fill_later_than_the_grace_corrects_the_not_executed_outcome(late) -> None:
    tree, broker, client_id = late
    [held] = tree.store.held_orders("main")  # failed, but watched for a late fill
    assert held.watch_until is not None and tree.store.unsettled_orders("main") == []
    broker.release.set()  # the abandoned call reaches the account now, long past the grace
    tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
    fill = broker.find_fill(client_id)
    failed, executed = _journal(tree, EventType.TRADE_FAILED, EventType.TRADE_EXECUTED)
    assert failed.metadata["error"] == "not executed: the broker has no fill for this client id 0.3s after it was sent"
    assert executed.metadata == {
        "signal_id": None, "symbol": "X", "side": "buy", "volume": 2, "reason": "", "position_id": fill.position_id,
        "price": 100.0, "filled_volume": 2, "realised_pnl": 0.0, "client_order_id": client_id, "reconciled": True,
        "costs": 0.0,
    }
    assert wait_until(lambda: tree.store.held_orders("main") == [])
    assert wait_until(lambda: any(a.title == "Late fill found" for a in tree.alerts()))
    [alert] = [a for a in tree.alerts() if a.title == "Late fill found"]
    assert alert.text == (
        f"order {client_id}: filled 2 X at 100.00 after it was journaled as not executed; "
        "journal corrected (trade_executed, reconciled)"
    )


def test_a_late_fill_while_halted_is_judged_with_the_account_and_closed(late) -> None:
    tree, broker, client_id = late
    assert tree.guard.ask(Halt("ops", "desk closed"), timeout=WAIT) is TradingState.ACTIVE
    broker.release.set()
    [closed] = tree.events.wait_count(EventType.POSITION_CLOSED, 1)
    assert (closed.metadata["symbol"], closed.metadata["volume"], closed.metadata["reason"]) == (
        "X", 2, "positions found open while halted",
    )
    assert broker.open_positions() == [] and broker.find_fill(client_id) is not None
    assert tree.guard.ask(GetGuardState(), timeout=WAIT).state.trading_state is TradingState.HALTED


def test_the_watch_survives_a_restart_of_the_guard(late) -> None:
    tree, broker, client_id = late
    tree.handle.restart("guard", "operator: restart", graceful=True)
    assert wait_until(lambda: tree.handle.children()["guard"].incarnation >= 3)
    broker.release.set()
    [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
    assert executed.metadata["client_order_id"] == client_id and executed.metadata["reconciled"] is True
    assert wait_until(lambda: tree.store.held_orders("main") == [])


def test_a_watch_ends_without_a_fill_once_its_time_is_up(tmp_path: Path) -> None:
    broker = PaperBroker(10_000)
    store = SqliteStore(tmp_path / "state.db")
    order = Order("X", "buy", 1)
    metadata = {"client_order_id": order.client_id, "signal_id": "s1", "symbol": "X", "side": "buy", "volume": 1, "reason": "r"}
    sent = datetime.now(UTC) - timedelta(seconds=10)
    store.open_order(Event(EventType.ORDER_SUBMITTED, "main", metadata, T0), sent_at=sent)
    tree = GuardTree(broker, store=store, settle_grace=1.0, late_fill_watch=1.5)
    try:
        [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
        assert failed.metadata["error"] == "not executed: the broker has no fill for this client id 1s after it was sent"
        [held] = store.held_orders("main")
        assert held.sent_at == sent and held.watch_until is not None
        assert wait_until(lambda: store.held_orders("main") == [])
        assert tree.events.of(EventType.TRADE_EXECUTED) == []
    finally:
        tree.stop()
        store.close()


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("late_fill_watch", -1.0, ValueError, "late_fill_watch must be >= 0 seconds, got -1.0"),
        ("late_fill_watch", float("nan"), ValueError, "late_fill_watch must be a finite real number, got nan"),
        ("settle_grace", "30", TypeError, "settle_grace must be a finite real number, got '30' (str)"),
        ("journal_catch_up", -0.5, ValueError, "journal_catch_up must be >= 0 seconds, got -0.5"),
    ],
)
def test_a_bad_reconciliation_option_is_refused_naming_it(option, value, error, message) -> None:
    context = ChildContext.standalone("guard")
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        GuardActor.start(context, guards=[], broker=PaperBroker(10_000), store=MemoryStore(), **{option: value})


def test_a_store_that_fails_while_reconciling_is_read_again_and_the_guard_lives_on() -> None:
    class FlakyDisk(MemoryStore):
        """Fails the second read of the held orders (the first look after start), as a disk
        with a transient I/O error would."""

        reads = 0

        def held_orders(self, loop_id):
            self.reads += 1
            if self.reads == 2:
                raise OSError(5, "Input/output error")
            return super().held_orders(loop_id)

    broker, store = PaperBroker(10_000), FlakyDisk()
    order = Order("X", "buy", 1)
    metadata = {"client_order_id": order.client_id, "signal_id": "s1", "symbol": "X", "side": "buy", "volume": 1, "reason": "r"}
    store.open_order(Event(EventType.ORDER_SUBMITTED, "main", metadata, T0), sent_at=datetime.now(UTC))
    tree = GuardTree(broker, store=store, settle_grace=0.2, late_fill_watch=0.0)
    try:
        [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
        assert failed.metadata["client_order_id"] == order.client_id and store.reads >= 3
        assert wait_until(lambda: store.held_orders("main") == [])
        guard = tree.handle.children()["guard"]
        assert (guard.incarnation, guard.alive) == (1, True)
        assert tree.metrics.counters["store_errors_total"] == 1
    finally:
        tree.stop()
