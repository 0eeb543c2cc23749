"""Checks at the boundary: every bad value fails where it enters, naming the field and the value.

One rule for all of them: a value of the wrong type raises `TypeError`, a value of the right type
that is out of range raises `ValueError`; both messages read ``<field> must be ..., got <value>``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from numbers import Real
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "finite_number",
    "percent_limit",
    "text",
    "whole_number",
    "boolean",
    "aware_datetime",
    "member",
    "attrs_text",
    "attrs_boolean",
    "attrs_finite",
    "attrs_positive",
    "attrs_non_negative",
    "attrs_percent",
    "attrs_whole",
    "attrs_timezone",
    "attrs_aware_datetime",
    "attrs_optional_aware_datetime",
    "attrs_instance_of",
    "port",
    "brief",
]


def finite_number(field: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise naming ``field``.

    Booleans, strings, ``None``, NaN and infinities are refused: ``TypeError`` for a value that is
    not a real number at all, ``ValueError`` for a real that is not finite.
    """
    kind = type(value)
    if kind is float and value - value == 0.0:  # the common case, before the slow ABC check
        return value
    if kind is not int and (isinstance(value, bool) or not isinstance(value, Real)):
        raise TypeError(f"{field} must be a finite real number, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:
        # (an int or a Fraction past a float's range; its repr may be thousands of digits long)
        raise ValueError(f"{field} must be a finite real number, got {_too_large(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a finite real number, got {value!r}")
    return number


def _too_large(value: Any) -> str:
    return f"{brief(value)}, too large for a float"


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message, at most about ``limit`` characters: a long one is cut with
    "...", and an integer too long to write (Python refuses past 4,300 digits) or to read is
    given by its size in bits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of {value.bit_length():,} bits"
    try:
        text = repr(value)
    except Exception as exc:  # a repr that fails must not take the message (or its actor) with it
        return f"<{type(value).__name__} whose repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({type(value).__name__})"


def percent_limit(field: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite percentage in (0, 100], else raise naming ``field``."""
    number = finite_number(field, value)
    if not 0.0 < number <= 100.0:
        raise ValueError(f"{field} must be a percentage in (0, 100], got {value!r}")
    return number


def _wrong_type(field: str, expected: str, value: Any) -> TypeError:
    return TypeError(f"{field} must be {expected}, got {value!r} ({type(value).__name__})")


def text(field: str, value: Any) -> str:
    """Return ``value`` if it is a string with something other than spaces that UTF-8 can carry
    (no lone surrogate, which JSON's \\ud800 escapes can make: the journal, the logs and every
    answer that quotes it must be able to write it), else raise naming ``field``."""
    if not isinstance(value, str):
        raise _wrong_type(field, "a non-empty string", value)
    if not value.strip():
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field} must be text that UTF-8 can carry (no lone surrogate), got {value!r}") from None
    return value


def whole_number(field: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` if it is an int (not a bool) >= ``minimum``, else raise naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(field, f"a whole number >= {minimum}", value)
    if value < minimum:
        raise ValueError(f"{field} must be a whole number >= {minimum}, got {value!r}")
    return value


def boolean(field: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (not 0, 1 or a string), else raise ``TypeError``."""
    if not isinstance(value, bool):
        raise _wrong_type(field, "true or false", value)
    return value


def aware_datetime(field: str, value: Any) -> datetime:
    """Return ``value`` if it is a timezone-aware datetime, else raise naming ``field``.

    A naive datetime is refused (``ValueError``): a guessed zone would shift every trading day.
    """
    if not isinstance(value, datetime):
        raise _wrong_type(field, "a timezone-aware datetime", value)
    if value.utcoffset() is None:
        raise ValueError(f"{field} must be a timezone-aware datetime, got {value!r}")
    return value


_Member = TypeVar("_Member", bound=enum.Enum)


def member(field: str, kind: type[_Member], value: Any) -> _Member:
    """Return the member of the string enum ``kind`` that ``value`` is or names, else raise naming ``field``."""
    if isinstance(value, kind):
        return value
    names = ", ".join(repr(m.value) for m in kind)
    if not isinstance(value, str):
        raise _wrong_type(field, f"one of {names}", value)
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{field} must be one of {names}, got {value!r}") from None


def attrs_text(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds a non-empty string."""
    text(attribute.name, value)


def attrs_boolean(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds ``True`` or ``False``."""
    boolean(attribute.name, value)


def attrs_finite(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds a finite real number."""
    finite_number(attribute.name, value)


def attrs_positive(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds a finite real number greater than zero."""
    if finite_number(attribute.name, value) <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def attrs_non_negative(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds a finite real number greater than or equal to zero."""
    if finite_number(attribute.name, value) < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def attrs_percent(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds a finite percentage in (0, 100]."""
    percent_limit(attribute.name, value)


def attrs_whole(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds a whole number (an int, not a bool) >= 0."""
    whole_number(attribute.name, value)


def attrs_timezone(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field names an IANA time zone (``Europe/London``, ``UTC``)."""
    if not isinstance(value, str):
        raise _wrong_type(attribute.name, "an IANA time zone name", value)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{attribute.name} must be an IANA time zone name, got {value!r}") from None


def attrs_aware_datetime(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds a timezone-aware datetime."""
    aware_datetime(attribute.name, value)


def attrs_optional_aware_datetime(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field holds None or a timezone-aware datetime."""
    if value is not None:
        aware_datetime(attribute.name, value)


def attrs_instance_of(kind: type) -> Callable[[Any, Any, Any], None]:
    """attrs validator: the field holds a ``kind``; else `TypeError` naming the field, the type
    wanted and the value (attrs' own puts its arguments in a tuple, unreadable in an answer)."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        if not isinstance(value, kind):
            article = "an" if kind.__name__[:1] in "AEIOU" else "a"
            raise _wrong_type(attribute.name, f"{article} {kind.__name__}", value)

    return check


def port(field: str, value: Any, kind: str, methods: Sequence[str]) -> Any:
    """Return ``value`` when it has every one of ``methods`` (the port ``kind``, such as
    ``runtime.broker.Broker``), else raise `TypeError` naming the field, the value and what it
    lacks: a part that cannot work is refused where it is given, not found by a crash later."""
    missing = [name for name in methods if not callable(getattr(value, name, None))]
    if missing:
        raise TypeError(f"{field} must be a {kind}, got {value!r}, which has no {', '.join(missing)}")
    return value
