"""Event payloads: one typed class per event type, writing and reading the journal's exact shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from strategies import payloads

from runtime import Event, EventType, Fill, Order, Position, Signal
from runtime.payloads import (
    PAYLOAD_TYPES,
    ActorRestarted,
    EquityRestored,
    EquityUnavailable,
    GuardTriggered,
    Heartbeat,
    LoopStarted,
    LoopStopped,
    OrderSubmitted,
    Payload,
    PositionClosed,
    Rebaselined,
    SignalApproved,
    SignalReceived,
    StallDetected,
    TradeExecuted,
    TradeFailed,
    TradingStateChanged,
)
from runtime.risk.guards import TradingState

AT = datetime(2024, 3, 1, 12, tzinfo=UTC)
SIGNAL = Signal("EURUSD", "buy", 1_000, reason="breakout", signal_id="s1")
FILL = Fill("7", "EURUSD", "buy", 1_000, 1.085, AT, 0.0)
SIGNAL_KEYS = {"signal_id": "s1", "symbol": "EURUSD", "side": "buy", "volume": 1_000, "reason": "breakout"}
ORDER = Order("EURUSD", "buy", 1_000, client_id="c1")
SUBMITTED = OrderSubmitted.of(ORDER, SIGNAL)
FILL_KEYS = {"position_id": "7", "price": 1.085, "filled_volume": 1_000, "realised_pnl": 0.0}

# Each payload beside the metadata dict its publisher has always written, key for key.
EXAMPLES: list[tuple[Payload, dict]] = [
    (SignalReceived.of(SIGNAL), SIGNAL_KEYS),
    (SignalApproved.of(SIGNAL), SIGNAL_KEYS),
    (SUBMITTED, {**SIGNAL_KEYS, "client_order_id": "c1", "rule": None, "closes": None}),
    (
        OrderSubmitted.closing(Order("EURUSD", "sell", 1_000, client_id="c2"), "7", "position_stop", "stop of 7"),
        {"signal_id": None, "symbol": "EURUSD", "side": "sell", "volume": 1_000, "reason": "stop of 7",
         "client_order_id": "c2", "rule": "position_stop", "closes": "7"},
    ),
    (
        TradeExecuted.of(SUBMITTED, FILL),
        {**SIGNAL_KEYS, **FILL_KEYS, "client_order_id": "c1", "reconciled": False, "costs": 0.0},
    ),
    (
        TradeFailed.of(ORDER, SIGNAL, rejected=True, error="trading halted", refused_by="trading_state"),
        {
            **SIGNAL_KEYS, "rejected": True, "error": "trading halted", "client_order_id": "c1", "reconciled": False,
            "refused_by": "trading_state",
        },
    ),
    (
        TradeFailed.held_back(SIGNAL, "held back"),
        {
            **SIGNAL_KEYS, "rejected": True, "error": "held back", "client_order_id": None, "reconciled": False,
            "refused_by": None,
        },
    ),
    (
        PositionClosed.of(Position("7", "EURUSD", "sell", 2.0, 1.1), Fill("7", "EURUSD", "buy", 2.0, 1.0, AT, 0.2), "breach", 1),
        {
            "position_id": "7", "symbol": "EURUSD", "side": "sell", "volume": 2.0,
            "price": 1.0, "realised_pnl": 0.2, "reason": "breach", "attempt": 1, "rule": None, "costs": 0.0,
        },
    ),
    (LoopStarted(2, 5, 3), {"incarnation": 2, "total_signals_lifetime": 5, "total_trades_lifetime": 3}),
    (
        LoopStopped(2, "crashed", "boom", 5, 3),
        {"incarnation": 2, "how": "crashed", "cause": "boom", "total_signals_lifetime": 5, "total_trades_lifetime": 3},
    ),
    (
        Heartbeat(1, 1, 0, 2.5, 1, 9_990.0, 10, 4, 7),
        {
            "signals_processed": 1, "trades_executed": 1, "error_count": 0, "loop_duration_ms": 2.5,
            "positions_open": 1, "account_equity": 9_990.0, "total_signals_lifetime": 10,
            "total_trades_lifetime": 4, "beat": 7,
        },
    ),
    (
        GuardTriggered("max_drawdown", "max drawdown 20.50%", 9_540.0, 12_000.0, 0.205, AT),
        {
            "guard": "max_drawdown", "reason": "max drawdown 20.50%", "equity": 9_540.0,
            "peak_equity": 12_000.0, "drawdown": 0.205, "at": "2024-03-01T12:00:00+00:00",
        },
    ),
    (TradingStateChanged("active", "halted", "breach"), {"from": "active", "to": "halted", "reason": "breach"}),
    (ActorRestarted("guard", "crash", 1, 2), {"actor": "guard", "cause": "crash", "attempt": 1, "incarnation": 2}),
    (StallDetected("no cycle for 30s", 1), {"reason": "no cycle for 30s", "stalls": 1}),
    (
        Rebaselined("alice", 12_000.0, 9_000.0, 11_000.0, 9_000.0),
        {"by": "alice", "old_peak": 12_000.0, "new_peak": 9_000.0, "old_day_start": 11_000.0, "new_day_start": 9_000.0},
    ),
    (
        EquityUnavailable(31.5, 30.0, 9_990.0, TradingState.REDUCING),
        {"seconds": 31.5, "limit_seconds": 30.0, "last_equity": 9_990.0, "action": "reducing"},
    ),
    (EquityRestored(9_990.0), {"equity": 9_990.0}),
]


def test_a_trade_journaled_before_client_ids_existed_still_reads():
    old = Event(EventType.TRADE_EXECUTED, "main", {**SIGNAL_KEYS, **FILL_KEYS}, AT)
    read = TradeExecuted.from_event(old)
    assert (read.client_order_id, read.reconciled, read.position_id) == (None, False, "7")
    started = Event(EventType.LOOP_STARTED, "main", {"incarnation": 1, "trading_state": "halted",
                                                     "total_signals_lifetime": 0, "total_trades_lifetime": 0}, AT)
    assert LoopStarted.from_event(started) == LoopStarted(1, 0, 0)


def test_a_refusal_journaled_before_refused_by_existed_reads_with_no_rule():
    old = Event(EventType.TRADE_FAILED, "main", {**SIGNAL_KEYS, "rejected": True, "error": "trading halted"}, AT)
    assert TradeFailed.from_event(old).refused_by is None
IDS = [type(p).__name__ for p, _ in EXAMPLES]


def test_every_event_type_has_exactly_one_payload_class():
    assert set(PAYLOAD_TYPES) == set(EventType)
    assert {type(p) for p, _ in EXAMPLES} == set(PAYLOAD_TYPES.values())


@pytest.mark.parametrize(("payload", "metadata"), EXAMPLES, ids=IDS)
def test_a_payload_writes_the_metadata_its_publisher_always_wrote(payload, metadata):
    assert payload.metadata() == metadata
    assert [type(v) for v in payload.metadata().values()] == [type(v) for v in metadata.values()]


@pytest.mark.parametrize(("payload", "metadata"), EXAMPLES, ids=IDS)
def test_a_payload_round_trips_through_the_journal_json(payload, metadata):
    event = Event.from_json(payload.event("main", AT).to_json())
    assert event.metadata == metadata
    assert type(payload).from_event(event) == payload
    assert Payload.of_event(event) == payload


def test_heartbeat_gives_back_the_loop_figures_it_carried():
    [heartbeat] = [p for p, _ in EXAMPLES if isinstance(p, Heartbeat)]
    assert isinstance(heartbeat, Heartbeat)
    assert Heartbeat.of(heartbeat.metrics, heartbeat.beat) == heartbeat


def test_a_reader_refuses_an_event_of_another_type():
    event = Event(EventType.HEARTBEAT, "main", {})
    with pytest.raises(ValueError, match=r"^StallDetected reads stall_detected events, got a heartbeat event$"):
        StallDetected.from_event(event)


def test_a_reader_refuses_a_missing_key_naming_the_event_type_and_the_key():
    event = Event(EventType.STALL_DETECTED, "main", {"reason": "late"})
    with pytest.raises(ValueError, match=r"^stall_detected metadata is missing 'stalls'$"):
        StallDetected.from_event(event)


def test_a_reader_refuses_a_bad_value_naming_the_event_type_and_the_key():
    event = Event(EventType.TRADING_STATE_CHANGED, "main", {"from": "active", "to": "paused", "reason": ""})
    with pytest.raises(
        ValueError, match=r"^trading_state_changed metadata is malformed: to must be one of 'active', 'reducing', 'halted', got 'paused'$"
    ):
        TradingStateChanged.from_event(event)


def test_a_reader_ignores_keys_it_does_not_know():
    event = Event(EventType.STALL_DETECTED, "main", {"reason": "late", "stalls": 2, "client_order_id": "c1"})
    assert StallDetected.from_event(event) == StallDetected("late", 2)


def test_a_payload_built_with_a_wrong_type_raises_type_error_naming_the_key():
    with pytest.raises(TypeError, match=r"^stalls must be a whole number >= 0, got '2' \(str\)$"):
        StallDetected("late", "2")


@given(payload=payloads())
def test_from_event_gives_back_the_payload_whose_metadata_made_the_event(payload):
    event = Event(payload.event_type, "main", payload.metadata())
    assert type(payload).from_event(event) == payload
    assert type(payload).from_event(Event.from_json(event.to_json())) == payload


def test_a_payload_field_not_declared_with_key_is_refused_when_the_class_is_made():
    import attrs

    from runtime.payloads import _check_fields, key

    with pytest.raises(TypeError, match=r"^Loose\.extra must be declared with runtime\.payloads\.key\(\.\.\.\)$"):

        @attrs.frozen(field_transformer=_check_fields)
        class Loose(Payload):
            name: str = key(str)
            extra: dict = attrs.field(factory=dict)


def test_a_payloads_event_carries_its_metadata_as_given_and_equal_to_one_built_by_hand():
    made = SUBMITTED.event("main", AT)
    assert made == Event(EventType.ORDER_SUBMITTED, "main", SUBMITTED.metadata(), AT, event_id=made.event_id)
    assert made.metadata is not SUBMITTED.event("main", AT).metadata  # a fresh dict per event
