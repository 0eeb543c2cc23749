"""A broker that fails an order without saying it did not trade: the guard asks the broker.

A venue can time out after the order reached it: the position is there, the call raised. The
broker here is a trade server of the test's own (a paper account outside the process, as a live
broker is), the guard, emitter and store real; the guard must look such an order up with
`find_fill`, journal what the broker says, and tell its sender the outcome is unknown until then.
"""

from __future__ import annotations

import pytest
from actor_helpers import WAIT, wait_until
from test_guard_actor import T0, GuardTree

from actors.messages import PlaceOrder
from runtime import BrokerError, EventType, MemoryStore, Order, OrderRejected, PaperBroker, Severity, TradingState
from runtime.broker import Fill


class Venue(PaperBroker):
    """A trade server outside the process. ``fault`` decides what an order does:
    ``"fill, then time out"`` (it trades, the answer is lost), ``"time out"`` (nothing traded yet;
    `trade_late` trades it), ``"reject"`` (a refusal it is sure of), and ``"fill, then return
    None"`` and ``"return None"`` as the timeouts, answering None instead. Counts `find_fill`."""

    in_process = False

    def __init__(self, fault: str) -> None:
        super().__init__(10_000)
        self.update_price("X", 100.0)
        self.fault = fault
        self.lookups = 0
        self.held: Order | None = None

    def submit_order(self, order: Order) -> Fill:
        if self.fault == "reject":
            raise OrderRejected("market closed")
        if self.fault.startswith("fill, then"):
            super().submit_order(order)
        else:
            self.held = order  # still in the venue's queue
        if self.fault.endswith("return None"):
            return None  # type: ignore[return-value]  # (a broker of someone else's that breaks the port)
        raise BrokerError("venue timeout after 30s (order state unknown)")

    def trade_late(self) -> Fill:
        assert self.held is not None
        return super().submit_order(self.held)

    def find_fill(self, client_id: str) -> Fill | None:
        self.lookups += 1
        return super().find_fill(client_id)


def _tree(broker: Venue, **options) -> GuardTree:
    return GuardTree(broker, store=MemoryStore(), **options)


def _orders(tree: GuardTree) -> list[tuple[str, object]]:
    # The journal of the order: each event's type, with reconciled for an outcome.
    return [
        (e.event_type.value, e.metadata.get("reconciled"))
        for e in tree.store.events()
        if e.event_type in (EventType.ORDER_SUBMITTED, EventType.TRADE_EXECUTED, EventType.TRADE_FAILED)
    ]


def test_an_order_filled_before_the_broker_raised_is_found_and_journaled_as_executed() -> None:
    broker = Venue("fill, then time out")
    tree = _tree(broker)
    try:
        order = Order("X", "buy", 2)
        outcome = tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT)
        fill = broker.find_fill(order.client_id)
        assert fill is not None
        assert (outcome.fill, outcome.error, outcome.unknown, outcome.positions_open) == (fill, None, False, 1)
        assert outcome.executed
        tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
        assert _orders(tree) == [("order_submitted", None), ("trade_executed", True)]
        assert tree.store.held_orders("main") == []
        assert wait_until(lambda: [a.title for a in tree.alerts()] == ["Order filled despite a broker error"])
        [alert] = tree.alerts()
        assert alert.severity is Severity.WARNING
        assert alert.text == (
            f"order {order.client_id} (buy 2 X): submit_order raised BrokerError('venue timeout after 30s (order state "
            "unknown)'); the broker has its fill (2 at 100.00): journaled as executed (reconciled)"
        )
    finally:
        tree.stop()


def test_an_order_the_broker_does_not_know_yet_is_unknown_until_its_late_fill_is_found() -> None:
    broker = Venue("time out")
    tree = _tree(broker, settle_grace=30.0)
    try:
        order = Order("X", "buy", 2)
        outcome = tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT)
        error = "submit_order raised BrokerError('venue timeout after 30s (order state unknown)')"
        assert (outcome.fill, outcome.refusal, outcome.unknown, outcome.executed) == (None, None, True, False)
        assert outcome.error == f"outcome unknown: {error}; the order is being reconciled with the broker (see the journal)"
        assert outcome.trading_state is TradingState.ACTIVE
        # No outcome journaled: the order stays held, looked up at the broker.
        assert [held.submitted.metadata["client_order_id"] for held in tree.store.held_orders("main")] == [order.client_id]
        assert _orders(tree) == [("order_submitted", None)]
        assert wait_until(lambda: [a.title for a in tree.alerts()] == ["Order outcome unknown"])
        [unknown] = tree.alerts()
        assert unknown.severity is Severity.CRITICAL
        assert unknown.text == (
            f"order {order.client_id} (buy 2 X): {error}; the broker may hold it; looked up at the broker until it says, "
            "and journaled then; do not send it again"
        )
        assert wait_until(lambda: broker.lookups >= 2)  # looked up now, and again on the reconciliation's timer
        fill = broker.trade_late()
        [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
        assert (executed.metadata["client_order_id"], executed.metadata["reconciled"]) == (order.client_id, True)
        assert executed.metadata["position_id"] == fill.position_id and executed.metadata["filled_volume"] == 2
        assert wait_until(lambda: tree.store.held_orders("main") == [])
        assert _orders(tree) == [("order_submitted", None), ("trade_executed", True)]
        assert wait_until(lambda: len(tree.alerts()) == 2)
        found = tree.alerts()[1]
        assert (found.title, found.severity) == ("Order outcome found", Severity.WARNING)
        assert found.text == f"order {order.client_id}: filled 2 X at 100.00; journaled as executed (reconciled)"
    finally:
        tree.stop()


def test_an_unknown_order_the_broker_never_fills_is_journaled_as_not_executed_after_the_grace_and_watched() -> None:
    broker = Venue("time out")
    tree = _tree(broker, settle_grace=0.3)
    try:
        order = Order("X", "buy", 2)
        assert tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT).unknown
        [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
        error = "not executed: the broker has no fill for this client id 0.3s after it was sent"
        assert (failed.metadata["error"], failed.metadata["reconciled"], failed.metadata["rejected"]) == (error, True, False)
        [held] = tree.store.held_orders("main")  # still watched for a late fill
        assert held.watch_until is not None
        assert wait_until(lambda: [a.title for a in tree.alerts()] == ["Order outcome unknown", "Order outcome found"])
        assert tree.alerts()[1].text == (
            f"order {order.client_id}: {error}; journaled as not executed, and watched for a late fill"
        )
    finally:
        tree.stop()


def test_an_order_the_broker_rejects_for_sure_fails_at_once_and_is_not_looked_up() -> None:
    broker = Venue("reject")
    tree = _tree(broker)
    try:
        outcome = tree.guard.ask(PlaceOrder(Order("X", "buy", 2), T0), timeout=WAIT)
        assert (outcome.error, outcome.unknown) == ("OrderRejected('market closed')", False)
        [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
        assert (failed.metadata["error"], failed.metadata["reconciled"]) == ("OrderRejected('market closed')", False)
        assert tree.store.held_orders("main") == [] and broker.lookups == 0
        assert tree.alerts() == []
    finally:
        tree.stop()


def test_the_paper_brokers_refusals_are_rejections() -> None:
    broker = PaperBroker(10_000)
    with pytest.raises(OrderRejected, match=r"^no price yet for symbol 'X'$"):
        broker.submit_order(Order("X", "buy", 1))
    broker.update_price("X", 100.0)
    order = Order("X", "buy", 1)
    broker.submit_order(order)
    with pytest.raises(OrderRejected, match=rf"^duplicate client id '{order.client_id}': that order was already filled$"):
        broker.submit_order(order)


def test_a_broker_that_returns_none_is_a_fault_whose_order_is_looked_up() -> None:
    broker = Venue("return None")
    tree = _tree(broker, settle_grace=30.0)
    try:
        order = Order("X", "buy", 2)
        outcome = tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT)
        assert (outcome.fill, outcome.unknown) == (None, True)
        assert outcome.error == (
            "outcome unknown: submit_order returned None, not a Fill; the order is being reconciled with the broker "
            "(see the journal)"
        )
        assert wait_until(lambda: [a.title for a in tree.alerts()] == ["Order outcome unknown"])
        assert tree.alerts()[0].text == (
            f"order {order.client_id} (buy 2 X): submit_order returned None, not a Fill; the broker may hold it; looked "
            "up at the broker until it says, and journaled then; do not send it again"
        )
        broker.trade_late()
        [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
        assert (executed.metadata["client_order_id"], executed.metadata["reconciled"]) == (order.client_id, True)
        assert wait_until(lambda: tree.store.held_orders("main") == [])
    finally:
        tree.stop()


def test_a_broker_that_fills_and_returns_none_has_its_fill_found_at_once() -> None:
    broker = Venue("fill, then return None")
    tree = _tree(broker)
    try:
        order = Order("X", "buy", 2)
        outcome = tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT)
        assert outcome.executed and outcome.fill == broker.find_fill(order.client_id)
        tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
        assert _orders(tree) == [("order_submitted", None), ("trade_executed", True)]
        assert tree.store.held_orders("main") == []
        assert wait_until(lambda: [a.title for a in tree.alerts()] == ["Order filled despite a broker error"])
    finally:
        tree.stop()


class Nonsense(PaperBroker):
    """A trade server that fills something other than the order: ``make(order)`` gives the order
    it carries out instead, whose fill it reports; the paper account holds its position."""

    in_process = False

    def __init__(self, make) -> None:
        super().__init__(10_000)
        self.update_price("X", 100.0)
        self.update_price("Y", 10.0)
        self.make = make

    def submit_order(self, order: Order) -> Fill:
        return super().submit_order(self.make(order))  # what it did: the paper fill of that other order


@pytest.mark.parametrize(
    ("make", "told", "mismatch"),
    [
        (lambda o: Order("Y", "sell", 5, "someone-else"), "sell 5 Y at 10, position '1', client id 'someone-else'",
         "symbol 'Y' (ordered 'X'); side sell (ordered buy); volume 5 (ordered 2); client id 'someone-else' (ordered '{id}')"),
        (lambda o: Order("X", "buy", o.volume * 1000, o.client_id), "buy 2000 X at 100, position '1', client id '{id}'",
         "volume 2000 (ordered 2)"),
    ],
    ids=["another order", "1000 times the volume"],
)
def test_a_fill_that_does_not_match_its_order_is_journaled_as_reported_alerted_and_the_account_read(make, told, mismatch):
    broker = Nonsense(make)
    tree = _tree(broker)
    try:
        order = Order("X", "buy", 2)
        outcome = tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT)
        mismatch, told = mismatch.format(id=order.client_id), told.format(id=order.client_id)
        [position] = broker.open_positions()
        assert outcome.executed and outcome.error == f"the fill does not match the order: {mismatch}"
        # The account after it is the broker's: read from it, not taken from the order.
        assert (outcome.positions_open, outcome.equity) == (1, broker.account_equity())
        [executed] = tree.events.wait_count(EventType.TRADE_EXECUTED, 1)
        assert (executed.metadata["filled_volume"], executed.metadata["position_id"]) == (position.volume, "1")
        assert wait_until(lambda: [a.title for a in tree.alerts()] == ["Fill does not match its order"])
        [alert] = tree.alerts()
        assert alert.severity is Severity.CRITICAL
        assert alert.text == (
            f"order {order.client_id} (buy 2 X): the broker filled {told}: {mismatch}; journaled as the broker reports "
            "it; the account is read from the broker"
        )
    finally:
        tree.stop()


class InProcessVenue(Venue):
    """The venue as an account that lives in this process."""

    in_process = True


class InProcessAccount(InProcessVenue):
    """An account that lives in this process, whose ``find_fill`` fails too."""

    in_process = True

    def find_fill(self, client_id: str) -> Fill | None:
        self.lookups += 1
        raise BrokerError("account lookup failed")


def test_an_in_process_order_whose_lookup_fails_too_is_journaled_as_unknown_not_as_not_executed() -> None:
    # Journaled "not executed: the broker has no fill" when find_fill had said nothing at all (a review):
    # the order had in fact traded, and the account held its position.
    broker = InProcessAccount("fill, then time out")
    tree = _tree(broker)
    try:
        order = Order("X", "buy", 2)
        outcome = tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT)
        fault = ("submit_order raised BrokerError('venue timeout after 30s (order state unknown)'); "
                 "find_fill raised BrokerError('account lookup failed')")
        error = (f"outcome unknown: {fault}; the broker could not say whether it traded, and an order of an account "
                 "in this process is not looked up again: see the account's positions")
        assert (outcome.fill, outcome.refusal, outcome.unknown, outcome.error) == (None, None, True, error)
        assert outcome.positions_open == 1  # the account read after it holds the position
        [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
        assert (failed.metadata["client_order_id"], failed.metadata["error"], failed.metadata["rejected"]) == (
            order.client_id, error, False)
        assert wait_until(lambda: [a.title for a in tree.alerts()] == ["Order outcome unknown"])
        [unknown] = tree.alerts()
        assert (unknown.severity, unknown.text) == (Severity.CRITICAL, (
            f"order {order.client_id} (buy 2 X): {fault}; the broker could not say whether it traded: journaled as "
            "failed with its outcome unknown; check the account's positions before sending it again"))
        assert broker.lookups == 1
    finally:
        tree.stop()


def test_an_in_process_order_the_broker_has_no_fill_for_is_journaled_as_not_executed() -> None:
    broker = InProcessVenue("time out")
    tree = _tree(broker)
    try:
        order = Order("X", "buy", 2)
        outcome = tree.guard.ask(PlaceOrder(order, T0), timeout=WAIT)
        error = ("submit_order raised BrokerError('venue timeout after 30s (order state unknown)'); not executed: the "
                 "broker has no fill for this client id")
        assert (outcome.unknown, outcome.error) == (False, error)
        [failed] = tree.events.wait_count(EventType.TRADE_FAILED, 1)
        assert failed.metadata["error"] == error
    finally:
        tree.stop()
