"""Typed analytics events, and their exact JSON form for the journal and for subscribers."""

from __future__ import annotations

import enum
import json
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson

from runtime.validation import aware_datetime, member

__all__ = ["EventType", "Event", "new_event_id", "new_event_ids"]


class EventType(enum.Enum):
    """Every kind of event the runtime emits; the value is the metric suffix and the JSON name."""

    SIGNAL_RECEIVED = "signal_received"
    SIGNAL_APPROVED = "signal_approved"
    ORDER_SUBMITTED = "order_submitted"
    TRADE_EXECUTED = "trade_executed"
    TRADE_FAILED = "trade_failed"
    POSITION_CLOSED = "position_closed"
    LOOP_STARTED = "loop_started"
    LOOP_STOPPED = "loop_stopped"
    HEARTBEAT = "heartbeat"
    GUARD_TRIGGERED = "guard_triggered"
    TRADING_STATE_CHANGED = "trading_state_changed"
    ACTOR_RESTARTED = "actor_restarted"
    STALL_DETECTED = "stall_detected"
    REBASELINED = "rebaselined"
    EQUITY_UNAVAILABLE = "equity_unavailable"
    EQUITY_RESTORED = "equity_restored"


def _json_value(path: str, value: Any) -> Any:
    # Metadata is held in its JSON shape (dicts, lists, str, finite numbers, bools, None) so
    # that from_json(to_json(e)) == e holds exactly; anything else is refused where it enters.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float and value - value == 0.0:  # finite: inf - inf and nan - nan are nan
        return value
    if isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"metadata{path} must be finite, got {value!r}")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"metadata{path} keys must be strings, got {key!r}")
            out[key] = _json_value(f"{path}[{key!r}]", item)
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(f"{path}[{i}]", item) for i, item in enumerate(value)]
    if isinstance(value, enum.Enum):
        return _json_value(path, value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"metadata{path} must be JSON-compatible, got {value!r} ({type(value).__name__})")


def _metadata(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"metadata must be a mapping, got {value!r}")
    return _json_value("", value)


def _iso(value: Any) -> str:
    # What the standard encoder writes for the one value `Event.to_json` hands it that is not
    # a JSON value: the timestamp, which orjson writes itself.
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return value.isoformat()


# The standard encoder, for what orjson does not write (an int past 64 bits); one for every
# event, since ``json.dumps`` with options would build a new one per call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=_iso).encode


def _encode(value: dict[str, Any]) -> str:
    # Compact, keys sorted, as the standard encoder writes it, but in a third of the time (a
    # replay journals an event per bar): the same values read back, though a float may be
    # spelt differently ("1e-7", not "1e-07") and text is UTF-8, not \u escapes.
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return _ENCODE(value)


_last_ns = [0]  # the time part of the last id made (never going back, should the clock do so)
# The random part: a generator seeded from the OS, seeded again in a forked child so that a child
# never repeats its parent's bits. Not os.urandom per id: a system call per event, and one that
# lets go of the GIL, so a busy thread waits for it back.
_bits = random.Random()
os.register_at_fork(after_in_child=_bits.seed)


def new_event_id() -> str:
    """A fresh event id, 32 hex digits (a uuid4's length and alphabet): the wall clock in
    nanoseconds (past the last id's, should the clock step back), then 64 random bits. Ids made
    one after the other sort in that order, so the journal's index of ids grows at its end
    instead of at random places (fewer pages written per commit), and making one costs a
    fraction of a uuid4. The random bits alone keep two ids apart."""
    return _event_id(_claim_times(1))


def new_event_ids(count: int) -> list[str]:
    """``count`` fresh event ids, as `new_event_id` makes them one after the other, but with the
    clock read once: their times are the wall clock's then, one nanosecond apart."""
    first = _claim_times(count)
    return [_event_id(at) for at in range(first, first + count)]


def _claim_times(count: int) -> int:
    # The first of ``count`` nanoseconds, one after the other, that the ids about to be made take.
    first = max(time.time_ns(), _last_ns[0] + 1)
    _last_ns[0] = first + count - 1
    return first


def _event_id(at: int) -> str:
    # The time in the high 64 bits, the random ones in the low: as bytes, the two halves' 16 hex
    # digits each, in a third of the time an f-string takes to write them (until 2554, when the
    # nanoseconds outgrow 64 bits and this raises OverflowError).
    return ((at << 64) | _bits.getrandbits(64)).to_bytes(16).hex()


def _utc_timestamp(value: datetime) -> datetime:
    if type(value) is datetime and value.tzinfo is UTC:  # already what it would become
        return value
    return aware_datetime("timestamp", value).astimezone(UTC)


def _loop_id(instance: object, attribute: attrs.Attribute, value: object) -> None:
    # Any string, the empty one included: journals written before this check must still read.
    if not isinstance(value, str):
        raise TypeError(f"loop_id must be a string, got {value!r} ({type(value).__name__})")


def _check_type_and_loop(event_type: EventType, loop_id: str) -> None:
    # What the constructor's checks of the two come to for an exact EventType.
    if type(event_type) is not EventType:
        raise TypeError(f"event_type must be an EventType, got {event_type!r}")
    if not isinstance(loop_id, str):
        raise TypeError(f"loop_id must be a string, got {loop_id!r} ({type(loop_id).__name__})")


def _event_type(value: EventType | str) -> EventType:
    return member("event_type", EventType, value)


@attrs.frozen
class Event:
    """One analytics event: what happened, in which loop, with what details, and when (UTC).

    ``metadata`` holds JSON values only (tuples become lists, enums their values, datetimes ISO
    strings), so ``Event.from_json(event.to_json()) == event`` always. ``event_id`` is unique and
    lets the journal keep every event exactly once.
    """

    event_type: EventType = attrs.field(converter=_event_type)
    loop_id: str = attrs.field(validator=_loop_id)
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_metadata, hash=False)
    timestamp: datetime = attrs.field(factory=lambda: datetime.now(UTC), converter=_utc_timestamp)
    event_id: str = attrs.field(factory=new_event_id)

    @classmethod
    def of_json_metadata(
        cls, event_type: EventType, loop_id: str, metadata: dict[str, Any], timestamp: datetime
    ) -> Event:
        """The event the constructor would make, for ``metadata`` that is already a fresh dict
        of JSON values checked key by key (a payload's: see `runtime.payloads.Payload.event`),
        so it is taken as it is instead of being walked and copied again. The loop id and the
        timestamp are checked as the constructor checks them."""
        _check_type_and_loop(event_type, loop_id)
        return cls._made(event_type, loop_id, metadata, timestamp, new_event_id())

    @classmethod
    def all_of_json_metadata(
        cls, event_type: EventType, loop_id: str, entries: Sequence[tuple[dict[str, Any], datetime]]
    ) -> list[Event]:
        """The events `of_json_metadata` makes for each ``(metadata, timestamp)`` of ``entries``,
        in order, with ids made in one go (`new_event_ids`)."""
        _check_type_and_loop(event_type, loop_id)
        made = cls._made
        ids = new_event_ids(len(entries))
        return [
            made(event_type, loop_id, metadata, timestamp, event_id)
            for (metadata, timestamp), event_id in zip(entries, ids)
        ]

    @classmethod
    def _made(cls, event_type: EventType, loop_id: str, metadata: dict[str, Any], timestamp: datetime, event_id: str) -> Event:
        # Straight into the slots, as attrs itself fills a frozen instance, without the checks
        # of its __init__: the caller made them, but for the timestamp's, made here.
        event = object.__new__(cls)
        _SET_EVENT_TYPE(event, event_type)
        _SET_LOOP_ID(event, loop_id)
        _SET_METADATA(event, metadata)
        _SET_TIMESTAMP(event, _utc_timestamp(timestamp))
        _SET_EVENT_ID(event, event_id)
        return event

    def to_json(self) -> str:
        """The event as one line of JSON."""
        timestamp = self.timestamp
        return _encode(
            {
                "event_type": self.event_type._value_,  # (the member's own attribute: `value` is a property)
                "loop_id": self.loop_id,
                "metadata": self.metadata,
                # orjson writes a UTC datetime as isoformat() does, in a fraction of its time;
                # anything else (a subclass, which may write more) is written by its own isoformat.
                "timestamp": timestamp if type(timestamp) is datetime and timestamp.tzinfo is UTC else timestamp.isoformat(),
                "event_id": self.event_id,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Event:
        """Parse `to_json` output back into an equal event; a malformed text raises ValueError."""
        try:
            data = json.loads(text)
            return cls(
                event_type=EventType(data["event_type"]),
                loop_id=data["loop_id"],
                metadata=data["metadata"],
                timestamp=datetime.fromisoformat(data["timestamp"]),
                event_id=data["event_id"],
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an event's JSON: {text[:200]!r} ({exc})") from exc


# The setters of `Event`'s slots, for `Event._made`: a call each, without the look-up by name
# that ``object.__setattr__`` makes.
_SET_EVENT_TYPE, _SET_LOOP_ID, _SET_METADATA, _SET_TIMESTAMP, _SET_EVENT_ID = (
    getattr(Event, name).__set__ for name in ("event_type", "loop_id", "metadata", "timestamp", "event_id")
)
