"""A refused order is counted in Prometheus as ``order_refused_total{rule="<the rule>"}``, as a
scrape of the guard's figures reads it."""

from __future__ import annotations

from actor_helpers import WAIT
from prometheus_client.parser import text_string_to_metric_families

from actors import start_trading_system
from actors.messages import PlaceOrder
from runtime import ListSignalSource, ManualClock, Order, PaperBroker, Settings
from runtime.adapters.prometheus import PrometheusMetrics


def scrape(sink: PrometheusMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the scrape, by sample name: its labels and value."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(sink.exposition().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def test_the_guards_refusals_are_labelled_by_rule_in_a_scrape():
    broker, sink = PaperBroker(10_000), PrometheusMetrics("tradewarden")
    for symbol in ("EURUSD", "GBPUSD"):
        broker.update_price(symbol, 1.0)
    system = start_trading_system(
        Settings(max_order_volume=10, max_open_positions=1), broker, ListSignalSource(),
        metrics=sink, clock=ManualClock(), loop_interval=None,
    )
    try:
        at = system.clock.now()
        orders = [Order("EURUSD", "buy", 50), Order("EURUSD", "buy", 20), Order("EURUSD", "buy", 1),
                  Order("GBPUSD", "buy", 1), Order("GBPUSD", "buy", 2)]
        outcomes = [system.guard.ask(PlaceOrder(order, at), timeout=WAIT) for order in orders]
        assert [o.refusal for o in outcomes] == [
            "volume 50.00 > limit 10.00 for EURUSD", "volume 20.00 > limit 10.00 for EURUSD", None,
            "open positions 2 > limit 1 with GBPUSD", "open positions 2 > limit 1 with GBPUSD",
        ]
    finally:
        system.stop()
    samples = scrape(sink)
    assert sorted(samples["tradewarden_order_refused_total"], key=lambda s: s[0]["rule"]) == [
        ({"rule": "max_open_positions"}, 2.0),
        ({"rule": "max_order_volume"}, 2.0),
    ]
