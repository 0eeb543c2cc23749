"""Event payloads: one typed class per event type, writing and reading the journal's exact shape."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import payloads

from runtime import Event, EventType, Fill, Order, Position, Side, Signal
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
    _layout,
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


# Anything a field may be handed: its own kind and every other, in range and out of it.
_ANY_VALUE = st.one_of(
    st.integers(-2, 2**70),
    st.booleans(),
    st.floats(),  # NaN and the infinities included
    st.text(max_size=3),
    st.none(),
    st.sampled_from(list(Side)),
    st.just(AT),
)


@st.composite
def _rows(draw: st.DrawFn, kind: type[Payload]) -> list[tuple[object, ...]]:
    # Each row a payload's own field values, in order; now and then one of them replaced by
    # any value, or the row cut short or made longer.
    names = [f.name for f in attrs.fields(kind)]
    rows = []
    for payload in draw(st.lists(payloads([kind]), min_size=1, max_size=4)):
        row = [getattr(payload, name) for name in names]
        change = draw(st.sampled_from(["none", "none", "value", "shorter", "longer"]))
        if change == "value" and row:
            row[draw(st.integers(0, len(row) - 1))] = draw(_ANY_VALUE)
        elif change == "shorter" and row:
            row.pop()
        elif change == "longer":
            row.append(draw(_ANY_VALUE))
        rows.append(tuple(row))
    return rows


def _without_id(event: Event) -> str:
    # The event's exact JSON (1 and 1.0 and true told apart), but for its random id.
    return event.to_json().replace(event.event_id, "")


def _events_one_by_one(kind: type[Payload], rows: list[tuple[object, ...]], at: list[datetime]) -> list[Event] | Exception:
    try:
        return [kind(*row).event("main", moment) for row, moment in zip(rows, at)]
    except (TypeError, ValueError) as exc:
        return exc


def _assert_events_of_matches_one_by_one(kind: type[Payload], rows: list[tuple[object, ...]]) -> None:
    at = [datetime(2024, 3, 1, 12, i, tzinfo=UTC) for i in range(len(rows))]
    expected = _events_one_by_one(kind, rows, at)
    if isinstance(expected, Exception):
        with pytest.raises(type(expected)) as raised:
            kind.events_of("main", list(zip(at, rows)))
        assert str(raised.value) == str(expected)
        return
    made = kind.events_of("main", list(zip(at, rows)))
    assert [_without_id(e) for e in made] == [_without_id(e) for e in expected]
    assert made == [attrs.evolve(e, event_id=m.event_id) for e, m in zip(expected, made)]
    ids = [e.event_id for e in made]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)


@settings(max_examples=400)
@given(data=st.data(), kind=st.sampled_from(list(PAYLOAD_TYPES.values())))
def test_events_made_in_one_go_are_the_events_of_each_payload_or_its_error(data, kind):
    _assert_events_of_matches_one_by_one(kind, data.draw(_rows(kind)))


class _Figure(float):
    """A float of another type (numpy's float64 is one): held as it is given only by the check."""


FIGURES = (10, 2, 0, 1.25, 1, 10_234.5, 10, 2, 7)


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (None, None),  # the figures as the loop sends them
        (2, -1),  # a count below 0
        (2, True),  # a bool for a count
        (2, 2.0),  # a float for a count
        (3, math.nan),
        (5, math.inf),
        (5, -math.inf),
        (5, 10_234),  # an int for a float: kept as the int
        (5, _Figure(10_234.5)),
        (0, "10"),
    ],
)
def test_a_batch_of_heartbeats_is_made_as_each_would_be_one_by_one(index, value):
    # Every row good but one, which is changed in a different place from row to row: the one
    # bad value must be judged by the field's own check (refused, or kept as it is).
    rows = [FIGURES[:8] + (beat,) for beat in range(1, 6)]
    assert _layout(Heartbeat).held_as_given(rows)  # the rows that take the path without a payload
    if index is not None:
        rows[3] = rows[3][:index] + (value,) + rows[3][index + 1 :]
        assert not _layout(Heartbeat).held_as_given(rows)
    _assert_events_of_matches_one_by_one(Heartbeat, rows)


def test_a_batch_of_heartbeats_refuses_a_bad_figure_naming_its_key_and_value():
    rows = [FIGURES, FIGURES[:5] + (math.nan,) + FIGURES[6:]]
    with pytest.raises(ValueError, match=r"^account_equity must be a finite real number, got nan$"):
        Heartbeat.events_of("main", [(AT, row) for row in rows])
    with pytest.raises(TypeError, match=r"^error_count must be a whole number >= 0, got True \(bool\)$"):
        Heartbeat.events_of("main", [(AT, FIGURES[:2] + (True,) + FIGURES[3:])])


def test_events_of_raises_the_first_error_one_by_one_would_and_takes_no_time_as_now():
    good = (10, 2, 0, 1.25, 1, 10_234.5, 10, 2, 7)
    bad = (*good[:2], -1, *good[3:])
    naive = datetime(2024, 3, 1)
    with pytest.raises(ValueError, match=r"^timestamp must be a timezone-aware datetime, got datetime\.datetime\(2024, 3, 1, 0, 0\)$"):
        Heartbeat.events_of("main", [(naive, good), (datetime(2024, 3, 1, tzinfo=UTC), bad)])
    with pytest.raises(ValueError, match=r"^error_count must be a whole number >= 0, got -1$"):
        Heartbeat.events_of("main", [(datetime(2024, 3, 1, tzinfo=UTC), bad), (naive, good)])
    before = datetime.now(UTC)
    (event,) = Heartbeat.events_of("main", [(None, good)])
    assert before <= event.timestamp <= datetime.now(UTC) and event.timestamp.tzinfo is UTC
    assert event.metadata == Heartbeat(*good).metadata()
