"""The boundary checks themselves: exact messages, both sides of every bound, the value returned."""

from __future__ import annotations

import enum
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.validation import (
    attrs_non_negative,
    attrs_percent,
    attrs_positive,
    attrs_text,
    attrs_timezone,
    attrs_whole,
    aware_datetime,
    boolean,
    finite_number,
    member,
    percent_limit,
    text,
    whole_number,
)


class _Float(float):
    """A float subclass: not the fast path's exact type, still a real number."""


def _exact(error: type[Exception], message: str):
    return pytest.raises(error, match=f"^{re.escape(message)}$")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1.5, 1.5), (-0.0, -0.0), (3, 3.0), (Fraction(1, 4), 0.25), (_Float(2.5), 2.5), (-7, -7.0)],
)
def test_finite_number_returns_the_value_as_a_float(value, expected):
    result = finite_number("x", value)
    assert type(result) is float
    assert result == expected


class _IntSub(int):
    """An int subclass: not the fast path's exact type."""


def test_finite_number_turns_an_int_subclass_into_a_plain_float():
    result = finite_number("x", _IntSub(4))
    assert type(result) is float and result == 4.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "x must be a finite real number, got True (bool)"),
        (False, "x must be a finite real number, got False (bool)"),
        ("1", "x must be a finite real number, got '1' (str)"),
        (None, "x must be a finite real number, got None (NoneType)"),
        (1j, "x must be a finite real number, got 1j (complex)"),
    ],
)
def test_finite_number_refuses_what_is_not_a_real_with_type_error(value, message):
    with _exact(TypeError, message):
        finite_number("x", value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "x must be a finite real number, got nan"),
        (float("inf"), "x must be a finite real number, got inf"),
        (float("-inf"), "x must be a finite real number, got -inf"),
        (_Float("nan"), "x must be a finite real number, got nan"),
        (_Float("-inf"), "x must be a finite real number, got -inf"),
    ],
)
def test_finite_number_refuses_a_real_that_is_not_finite_with_value_error(value, message):
    with _exact(ValueError, message):
        finite_number("x", value)


@pytest.mark.parametrize("value", [100.0, 100, 1e-300, 50.5])
def test_percent_limit_accepts_both_ends_of_its_range(value):
    assert percent_limit("p", value) == float(value)
    assert type(percent_limit("p", value)) is float


@pytest.mark.parametrize("value", [0.0, 0, -1.0, 100.00000000000001, 101])
def test_percent_limit_refuses_outside_zero_exclusive_to_hundred_inclusive(value):
    with _exact(ValueError, f"p must be a percentage in (0, 100], got {value!r}"):
        percent_limit("p", value)


def test_percent_limit_refuses_a_wrong_type_naming_the_field():
    with _exact(TypeError, "p must be a finite real number, got '5' (str)"):
        percent_limit("p", "5")


def test_text_returns_the_string_and_refuses_blank_or_non_strings():
    assert text("s", " a ") == " a "
    with _exact(ValueError, "s must be a non-empty string, got ''"):
        text("s", "")
    with _exact(ValueError, "s must be a non-empty string, got ' \\t'"):
        text("s", " \t")
    with _exact(TypeError, "s must be a non-empty string, got b'a' (bytes)"):
        text("s", b"a")


def test_whole_number_bounds_on_both_sides_of_its_minimum():
    assert whole_number("n", 0) == 0
    assert whole_number("n", 3, 3) == 3
    with _exact(ValueError, "n must be a whole number >= 0, got -1"):
        whole_number("n", -1)
    with _exact(ValueError, "n must be a whole number >= 3, got 2"):
        whole_number("n", 2, 3)
    with _exact(TypeError, "n must be a whole number >= 1, got True (bool)"):
        whole_number("n", True, 1)
    with _exact(TypeError, "n must be a whole number >= 0, got 1.0 (float)"):
        whole_number("n", 1.0)


def test_boolean_accepts_only_true_and_false():
    assert boolean("b", True) is True
    assert boolean("b", False) is False
    with _exact(TypeError, "b must be true or false, got 0 (int)"):
        boolean("b", 0)
    with _exact(TypeError, "b must be true or false, got 'true' (str)"):
        boolean("b", "true")


def test_aware_datetime_accepts_any_zone_and_refuses_naive_or_other_types():
    moment = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert aware_datetime("at", moment) is moment
    utc = datetime(2024, 1, 1, tzinfo=UTC)
    assert aware_datetime("at", utc) is utc
    with _exact(ValueError, "at must be a timezone-aware datetime, got datetime.datetime(2024, 1, 1, 0, 0)"):
        aware_datetime("at", datetime(2024, 1, 1))
    with _exact(TypeError, "at must be a timezone-aware datetime, got '2024-01-01' (str)"):
        aware_datetime("at", "2024-01-01")


class _NoOffset(timezone.__base__):  # type: ignore[misc,name-defined]
    """A tzinfo whose utcoffset is None: as naive as no zone at all."""

    def utcoffset(self, dt):
        return None

    def tzname(self, dt):
        return None

    def dst(self, dt):
        return None


def test_aware_datetime_refuses_a_zone_without_an_offset():
    moment = datetime(2024, 1, 1, tzinfo=_NoOffset())
    with pytest.raises(ValueError, match=r"^at must be a timezone-aware datetime, got datetime\.datetime\(2024, 1, 1, 0, 0, tzinfo=.*\)$"):
        aware_datetime("at", moment)


class _Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_member_returns_the_member_named_or_given():
    assert member("c", _Colour, "red") is _Colour.RED
    assert member("c", _Colour, _Colour.BLUE) is _Colour.BLUE
    with _exact(ValueError, "c must be one of 'red', 'blue', got 'green'"):
        member("c", _Colour, "green")
    with _exact(TypeError, "c must be one of 'red', 'blue', got 1 (int)"):
        member("c", _Colour, 1)


def test_member_error_has_no_chained_cause():
    with pytest.raises(ValueError) as caught:
        member("c", _Colour, "RED")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


@attrs.frozen
class _Checked:
    name: str = attrs.field(default="n", validator=attrs_text)
    positive: float = attrs.field(default=1.0, validator=attrs_positive)
    non_negative: float = attrs.field(default=0.0, validator=attrs_non_negative)
    percent: float = attrs.field(default=100.0, validator=attrs_percent)
    whole: int = attrs.field(default=0, validator=attrs_whole)
    zone: str = attrs.field(default="UTC", validator=attrs_timezone)


def test_the_attrs_validators_accept_the_boundaries():
    checked = _Checked(positive=1e-300, non_negative=0.0, percent=100.0, whole=0, zone="Europe/London")
    assert (checked.positive, checked.non_negative, checked.percent, checked.whole, checked.zone) == (
        1e-300,
        0.0,
        100.0,
        0,
        "Europe/London",
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": " "}, ValueError, "name must be a non-empty string, got ' '"),
        ({"positive": 0.0}, ValueError, "positive must be > 0, got 0.0"),
        ({"positive": -1}, ValueError, "positive must be > 0, got -1"),
        ({"positive": "1"}, TypeError, "positive must be a finite real number, got '1' (str)"),
        ({"non_negative": -1e-300}, ValueError, "non_negative must be >= 0, got -1e-300"),
        ({"non_negative": float("nan")}, ValueError, "non_negative must be a finite real number, got nan"),
        ({"percent": 0}, ValueError, "percent must be a percentage in (0, 100], got 0"),
        ({"whole": -1}, ValueError, "whole must be a whole number >= 0, got -1"),
        ({"whole": 1.0}, TypeError, "whole must be a whole number >= 0, got 1.0 (float)"),
        ({"zone": "Mars/Base"}, ValueError, "zone must be an IANA time zone name, got 'Mars/Base'"),
        ({"zone": "../etc/passwd"}, ValueError, "zone must be an IANA time zone name, got '../etc/passwd'"),
        ({"zone": None}, TypeError, "zone must be an IANA time zone name, got None (NoneType)"),
    ],
)
def test_the_attrs_validators_name_the_field_and_value(kwargs, error, message):
    with _exact(error, message) as caught:
        _Checked(**kwargs)
    assert caught.value.__cause__ is None


# The hot paths (finite_number, DrawdownTracker.observe and observe_many, RiskMonitor.observe,
# max_drawdown's first point) skip the full check for a float that is finite. Switching such a
# fast path off must change no result: the full check hands back the very same float.


@settings(max_examples=300)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_the_full_check_returns_the_very_float_it_was_given(value):
    assert finite_number("x", value) is value
    assert finite_number("x", _Float(value)) == value


@pytest.mark.parametrize("value", [0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308])
def test_the_full_check_returns_the_extreme_floats_unchanged(value):
    result = finite_number("x", value)
    assert result is value
    assert math.copysign(1.0, result) == math.copysign(1.0, value)
