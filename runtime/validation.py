"""Checks at the boundary: every bad value fails where it enters, naming the field and the value."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "finite_number",
    "percent_limit",
    "attrs_finite",
    "attrs_positive",
    "attrs_non_negative",
    "attrs_percent",
    "attrs_whole",
    "attrs_timezone",
]


def finite_number(field: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise naming ``field``.

    Booleans, strings, ``None``, NaN and infinities are refused: ``TypeError`` for a value that is
    not a real number at all, ``ValueError`` for a real that is not finite.
    """
    kind = type(value)
    if kind is float and value - value == 0.0:  # the common case, before the slow ABC check
        return value
    if kind is int:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{field} must be a finite real number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a finite real number, got {value!r}")
    return number


def percent_limit(field: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite percentage in (0, 100], else raise naming ``field``."""
    number = finite_number(field, value)
    if not 0.0 < number <= 100.0:
        raise ValueError(f"{field} must be a percentage in (0, 100], got {value!r}")
    return number


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
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a whole number >= 0, got {value!r}")


def attrs_timezone(instance: Any, attribute: Any, value: Any) -> None:
    """attrs validator: the field names an IANA time zone (``Europe/London``, ``UTC``)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{attribute.name} must be an IANA time zone name, got {value!r}") from None
