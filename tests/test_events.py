"""Events: exact JSON round trip, UTC timestamps, and metadata checked where it enters."""

from __future__ import annotations

import enum
import json
import math
import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from strategies import event_metadata, events

from runtime import Event, EventType, Level, TradingState
from runtime.events import new_event_id, new_event_ids


@settings(max_examples=200)
@given(event=events())
def test_an_event_survives_a_json_round_trip_exactly(event):
    text = event.to_json()
    back = Event.from_json(text)
    assert back == event
    assert back.metadata == event.metadata
    assert back.timestamp == event.timestamp and back.timestamp.utcoffset() == timedelta(0)
    assert back.to_json() == text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("metadata", "written"),
    [
        ({"x": 1e-7, "s": "caf\u00e9"}, '"metadata":{"s":"caf\u00e9","x":1e-7}'),  # orjson's spelling
        ({"big": 2**70, "x": 1e-7}, '"metadata":{"big":1180591620717411303424,"x":1e-07}'),  # past 64 bits: json's
    ],
)
def test_an_event_reads_back_equal_whichever_encoder_wrote_it(metadata, written):
    event = Event(EventType.HEARTBEAT, "main", metadata)
    text = event.to_json()
    assert written in text
    assert Event.from_json(text) == event


def test_a_forked_child_makes_event_ids_whose_random_bits_are_not_its_parents():
    # Both start from the generator's state at the fork: without a new seed, the same bits.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then gone without running the parent's cleanup
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = new_event_id()
    assert len(child) == len(parent) == 32
    assert child[16:] != parent[16:]


@given(metadata=event_metadata())
def test_json_shaped_metadata_is_kept_as_given(metadata):
    event = Event(EventType.HEARTBEAT, "main", metadata)
    assert event.metadata == metadata
    assert json.loads(event.to_json())["metadata"] == metadata


@given(event=events())
def test_every_timestamp_is_timezone_aware_utc(event):
    assert event.timestamp.tzinfo is not None
    assert event.timestamp.utcoffset() == timedelta(0)


def test_a_timestamp_in_another_zone_becomes_the_same_instant_in_utc():
    tokyo = datetime(2024, 7, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    event = Event(EventType.LOOP_STARTED, "main", timestamp=tokyo)
    assert event.timestamp == datetime(2024, 7, 1, 0, 0, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)
    assert event.to_json().count('"timestamp":"2024-07-01T00:00:00+00:00"') == 1


def test_the_default_timestamp_is_now_in_utc():
    before = datetime.now(UTC)
    event = Event(EventType.HEARTBEAT, "main")
    assert before <= event.timestamp <= datetime.now(UTC)
    assert event.timestamp.utcoffset() == timedelta(0)


def test_a_naive_timestamp_is_refused_naming_it():
    with pytest.raises(ValueError, match="timestamp must be a timezone-aware datetime, got datetime"):
        Event(EventType.HEARTBEAT, "main", timestamp=datetime(2024, 1, 1))


def test_two_events_get_different_ids():
    assert Event(EventType.HEARTBEAT, "main").event_id != Event(EventType.HEARTBEAT, "main").event_id


def test_the_event_type_may_be_given_by_its_json_name():
    assert Event("guard_triggered", "main").event_type is EventType.GUARD_TRIGGERED


def test_an_unknown_event_type_is_refused_naming_it():
    with pytest.raises(ValueError, match="'exploded'"):
        Event("exploded", "main")


def test_a_loop_id_that_is_not_a_string_is_refused():
    with pytest.raises(TypeError, match="loop_id"):
        Event(EventType.HEARTBEAT, 7)


class Colour(enum.Enum):
    RED = "red"


def test_metadata_is_held_in_its_json_shape():
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = Event(
        EventType.TRADING_STATE_CHANGED,
        "main",
        {"state": TradingState.HALTED, "pair": (1, 2), "at": when, "colour": Colour.RED, "nested": {"l": [Colour.RED]}},
    )
    assert event.metadata == {
        "state": "halted",
        "pair": [1, 2],
        "at": "2024-01-02T03:04:05+00:00",
        "colour": "red",
        "nested": {"l": ["red"]},
    }
    assert Event.from_json(event.to_json()) == event


def test_an_int_enum_in_metadata_round_trips_equal():
    event = Event(EventType.GUARD_TRIGGERED, "main", {"level": Level.BREACH})
    assert Event.from_json(event.to_json()) == event


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_in_metadata_is_refused_naming_its_path(bad):
    with pytest.raises(ValueError, match=rf"metadata\['figures'\]\[1\] must be finite, got {bad!r}"):
        Event(EventType.HEARTBEAT, "main", {"figures": [1.0, bad]})


def test_a_metadata_key_that_is_not_a_string_is_refused_naming_it():
    with pytest.raises(TypeError, match="keys must be strings, got 3"):
        Event(EventType.HEARTBEAT, "main", {"inner": {3: "x"}})


def test_a_metadata_value_that_json_cannot_hold_is_refused_naming_its_type():
    with pytest.raises(TypeError, match=r"metadata\['blob'\].*bytes"):
        Event(EventType.HEARTBEAT, "main", {"blob": b"\x00"})


def test_metadata_that_is_not_a_mapping_is_refused():
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        Event(EventType.HEARTBEAT, "main", [("a", 1)])


def test_metadata_is_copied_so_later_changes_to_the_argument_do_not_leak_in():
    given_metadata = {"a": [1]}
    event = Event(EventType.HEARTBEAT, "main", given_metadata)
    given_metadata["a"].append(2)
    given_metadata["b"] = 3
    assert event.metadata == {"a": [1]}


GOOD = {
    "event_type": "heartbeat",
    "loop_id": "m",
    "metadata": {},
    "timestamp": "2024-01-01T00:00:00+00:00",
    "event_id": "x",
}


def test_the_good_json_below_is_good_so_each_bad_case_fails_for_its_one_change():
    assert Event.from_json(json.dumps(GOOD)).event_id == "x"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '"event"',
        '{"event_type": "heartbeat"}',
        json.dumps(GOOD | {"event_type": "nope"}),
        json.dumps(GOOD | {"timestamp": "yesterday"}),
        json.dumps(GOOD | {"metadata": []}),
        json.dumps({k: v for k, v in GOOD.items() if k != "event_id"}),
    ],
)
def test_text_that_is_not_an_events_json_raises_value_error(text):
    with pytest.raises(ValueError):
        Event.from_json(text)


def test_an_event_made_from_json_metadata_is_the_event_the_constructor_makes():
    at = datetime(2024, 3, 1, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    metadata = {"guard": "max_drawdown", "equity": 9_000.5, "count": 3, "ok": True, "none": None}
    made = Event.of_json_metadata(EventType.GUARD_TRIGGERED, "main", dict(metadata), at)
    built = Event(EventType.GUARD_TRIGGERED, "main", dict(metadata), at, event_id=made.event_id)
    assert made == built
    assert made.timestamp == datetime(2024, 3, 1, 11, tzinfo=UTC) and made.timestamp.tzinfo is UTC
    assert made.to_json() == built.to_json()
    assert Event.from_json(made.to_json()) == made
    assert Event.of_json_metadata(EventType.HEARTBEAT, "main", {}, at).event_id != made.event_id


def test_an_event_made_from_json_metadata_checks_its_type_loop_id_and_timestamp():
    at = datetime(2024, 3, 1, tzinfo=UTC)
    with pytest.raises(TypeError, match=r"^event_type must be an EventType, got 'heartbeat'$"):
        Event.of_json_metadata("heartbeat", "main", {}, at)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^loop_id must be a string, got 7 \(int\)$"):
        Event.of_json_metadata(EventType.HEARTBEAT, 7, {}, at)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^timestamp must be a timezone-aware datetime"):
        Event.of_json_metadata(EventType.HEARTBEAT, "main", {}, datetime(2024, 3, 1))


def test_event_ids_are_32_hex_digits_unique_and_sorted_in_the_order_they_were_made():
    ids = [Event(EventType.HEARTBEAT, "main").event_id for _ in range(500)] + [new_event_id() for _ in range(500)]
    ids += new_event_ids(500) + new_event_ids(1) + new_event_ids(0) + [new_event_id()]
    assert len(ids) == 1502
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # the journal's id index grows at its end


def test_events_made_in_one_go_are_the_events_made_one_by_one():
    berlin = ZoneInfo("Europe/Berlin")
    entries = [({"n": i, "x": i / 3}, datetime(2024, 3, 1, 12, i, tzinfo=berlin)) for i in range(4)]
    made = Event.all_of_json_metadata(EventType.HEARTBEAT, "main", [(dict(m), at) for m, at in entries])
    one_by_one = [Event.of_json_metadata(EventType.HEARTBEAT, "main", dict(m), at) for m, at in entries]
    assert made == [attrs.evolve(e, event_id=m.event_id) for e, m in zip(one_by_one, made)]
    assert all(e.timestamp.tzinfo is UTC for e in made)
    ids = [e.event_id for e in made]
    assert len(set(ids)) == 4 and ids == sorted(ids) and ids[-1] < one_by_one[0].event_id
    assert Event.all_of_json_metadata(EventType.HEARTBEAT, "main", []) == []


def test_events_made_in_one_go_check_their_type_loop_id_and_each_timestamp():
    at = datetime(2024, 3, 1, tzinfo=UTC)
    with pytest.raises(TypeError, match=r"^event_type must be an EventType, got 'heartbeat'$"):
        Event.all_of_json_metadata("heartbeat", "main", [({}, at)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^loop_id must be a string, got 7 \(int\)$"):
        Event.all_of_json_metadata(EventType.HEARTBEAT, 7, [({}, at)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^timestamp must be a timezone-aware datetime"):
        Event.all_of_json_metadata(EventType.HEARTBEAT, "main", [({}, at), ({}, datetime(2024, 3, 1))])


@settings(max_examples=300)
@given(event=events())
def test_an_events_json_spells_its_timestamp_as_isoformat_does(event):
    text = event.to_json()
    assert f'"timestamp":"{event.timestamp.isoformat()}"' in text
    assert json.loads(text)["timestamp"] == event.timestamp.isoformat()


class _Stamp(datetime):
    """A datetime of another type (pandas' Timestamp is one) that writes itself its own way."""

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return super().isoformat(sep, "microseconds")


def test_a_timestamp_of_a_datetime_subclass_is_written_by_its_own_isoformat_in_the_same_json():
    event = Event(EventType.HEARTBEAT, "main", {"x": 1e-7}, _Stamp(2024, 3, 1, tzinfo=UTC))
    assert event.to_json() == (
        f'{{"event_id":"{event.event_id}","event_type":"heartbeat","loop_id":"main","metadata":{{"x":1e-7}},'
        '"timestamp":"2024-03-01T00:00:00.000000+00:00"}'
    )
    plain = Event(EventType.HEARTBEAT, "main", {"x": 1e-7}, datetime(2024, 3, 1, tzinfo=UTC))
    assert '"metadata":{"x":1e-7},"timestamp":"2024-03-01T00:00:00+00:00"}' in plain.to_json()
