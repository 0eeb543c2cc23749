"""Which brokers the guard takes as living in the process (no durable order record before the
call): only a class that says so itself; a subclass of the paper broker may trade a real venue."""

from __future__ import annotations

from test_guard_actor import tree_factory  # noqa: F401  (a fixture)

from runtime import Order, PaperBroker, SqliteStore
from runtime.broker import is_in_process


class Venue(PaperBroker):
    """A user's broker built on the paper one, sending its orders to a trade server; it records
    whether each order was already held, journaled, in the store when it arrived."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__(10_000)
        self.store = store
        self.held_on_arrival: list[list[str]] = []

    def submit_order(self, order: Order):
        self.held_on_arrival.append([o.submitted.metadata["client_order_id"] for o in self.store.held_orders("main")])
        return super().submit_order(order)


class Simulator(PaperBroker):
    """A subclass that says again that its account lives in the process."""

    in_process = True


def test_only_a_class_that_declares_it_itself_is_in_process(tmp_path):
    assert [is_in_process(b) for b in (PaperBroker(1), Simulator(1), object())] == [True, True, False]
    with SqliteStore(tmp_path / "state.db") as store:
        assert is_in_process(Venue(store)) is False


def test_a_paper_broker_subclass_gets_its_orders_journaled_before_they_reach_it(tree_factory, tmp_path):  # noqa: F811
    with SqliteStore(tmp_path / "state.db") as store:
        broker = Venue(store)
        broker.update_price("X", 100.0)
        tree = tree_factory(broker, store=store)
        outcome = tree.place("X", "buy", 1)
        assert outcome.executed
        assert broker.held_on_arrival == [[outcome.fill.client_id]]
        assert store.held_orders("main") == []  # settled after the fill
        tree.stop()
