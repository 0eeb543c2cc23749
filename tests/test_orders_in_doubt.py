"""Orders of unknown outcome (the venue timed out, the broker has no fill for them yet) count in the
net exposure the guard judges the next order against, the way that is worst for that order: a
reducing close never flips a position because an earlier close fills late, and an exposure limit
is never passed because an earlier order it did not count fills."""

from __future__ import annotations

import threading

from actor_helpers import wait_until
from test_guard_actor import GuardTree

from actors.messages import Crash
from runtime import BrokerError, EventType, Order, PaperBroker, Settings, TradingState


class LateVenue(PaperBroker):
    """A trade server outside the process whose answer to the next order, once ``times_out`` is
    set, is lost (a timeout); the order itself reaches its book only when `arrive` is called."""

    in_process = False

    def __init__(self, balance: float) -> None:
        super().__init__(balance)
        self.times_out = False
        self._late: list[Order] = []
        self._lock = threading.Lock()

    def submit_order(self, order: Order):
        with self._lock:
            if self.times_out:
                self.times_out = False
                self._late.append(order)
                raise BrokerError("timeout waiting for the venue's answer")
        return super().submit_order(order)

    def arrive(self) -> None:
        with self._lock:
            late, self._late = self._late, []
        for order in late:
            super().submit_order(order)


def started(trees: list, venue: LateVenue, **options) -> GuardTree:
    tree = GuardTree(venue, **options)
    trees.append(tree)
    return tree


def reducing(trees: list, **guard_options) -> tuple[LateVenue, GuardTree]:
    venue = LateVenue(10_000)
    venue.update_price("X", 100.0)
    PaperBroker.submit_order(venue, Order("X", "buy", 100))
    tree = started(trees, venue, settings=Settings(guard_warn_fraction=0.5), **guard_options)
    venue.update_price("X", 88.0)  # a 12% drawdown: past the warning level
    tree.read(venue.account_equity())
    assert tree.status().state.trading_state is TradingState.REDUCING
    return venue, tree


def test_while_a_close_of_unknown_outcome_may_still_fill_another_close_that_would_flip_the_position_is_refused(trees):
    venue, tree = reducing(trees)
    venue.times_out = True
    first = tree.place("X", "sell", 100)
    assert first.unknown and venue.net_volume("X") == 100
    again = tree.place("X", "sell", 100)
    assert again.refusal == "reducing: only orders that reduce exposure are allowed"
    assert tree.place("X", "sell", 1).refusal == "reducing: only orders that reduce exposure are allowed"
    venue.arrive()  # the first close reaches the book late: the account is flat, never short
    tree.events.wait_for(lambda es: any(e.event_type is EventType.TRADE_EXECUTED and e.metadata["reconciled"] for e in es))
    assert venue.net_volume("X") == 0
    assert tree.status().state.trading_state is TradingState.REDUCING


def test_once_the_broker_says_a_close_of_unknown_outcome_did_not_trade_the_position_can_be_closed_again(trees):
    venue, tree = reducing(trees, settle_grace=0.5)
    venue.times_out = True
    assert tree.place("X", "sell", 100).unknown
    assert tree.place("X", "sell", 100).refusal == "reducing: only orders that reduce exposure are allowed"
    # It never reaches the book: reconciled as not executed after the grace.
    tree.events.wait_for(lambda es: any(e.event_type is EventType.TRADE_FAILED and e.metadata["reconciled"] for e in es))
    assert tree.place("X", "sell", 60).executed
    assert venue.net_volume("X") == 40


def test_an_exposure_limit_counts_an_order_of_unknown_outcome_that_adds_to_the_position(trees):
    venue = LateVenue(100_000)
    venue.update_price("X", 100.0)
    PaperBroker.submit_order(venue, Order("X", "buy", 100))  # 10,000 held
    settings = Settings(max_symbol_exposure=15_000)
    tree = started(trees, venue, settings=settings, gate=settings.gate())
    venue.times_out = True
    assert tree.place("X", "buy", 40).unknown  # 14,000 if it filled
    assert tree.place("X", "buy", 40).refusal == "exposure 18,000.00 > limit 15,000.00 for X"
    # A close is judged as if the unknown buy did not fill (the worst case for a close): 100 may go.
    assert tree.place("X", "sell", 100).executed
    venue.arrive()
    tree.events.wait_for(lambda es: any(e.event_type is EventType.TRADE_EXECUTED and e.metadata["reconciled"] for e in es))
    assert venue.net_volume("X") == 40


def test_a_guard_that_restarts_with_a_close_of_unknown_outcome_held_in_the_store_counts_it_too(trees):
    venue, tree = reducing(trees)
    venue.times_out = True
    assert tree.place("X", "sell", 100).unknown
    tree.guard.tell(Crash("drill"))
    assert wait_until(lambda: (g := tree.handle.children()["guard"]).incarnation == 2 and g.alive)
    assert tree.status().state.trading_state is TradingState.REDUCING
    assert tree.place("X", "sell", 100).refusal == "reducing: only orders that reduce exposure are allowed"
    venue.arrive()
    tree.events.wait_for(lambda es: any(e.event_type is EventType.TRADE_EXECUTED and e.metadata["reconciled"] for e in es))
    assert venue.net_volume("X") == 0
