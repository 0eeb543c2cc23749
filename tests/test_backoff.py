"""The one backoff schedule: capped exponential delays with an optional random stretch."""

from __future__ import annotations

import random

import pytest

from runtime.backoff import Backoff


def test_each_attempt_doubles_the_wait_up_to_the_cap():
    backoff = Backoff(0.05, 1.0, random_factor=0.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_multiplier_other_than_two_is_used_as_given():
    assert [Backoff(1.0, 100.0, random_factor=0.0, multiplier=3.0).delay(n) for n in (1, 2, 3)] == [1.0, 3.0, 9.0]


def test_a_zero_minimum_never_waits():
    assert Backoff(0.0, 5.0).delay(10) == 0.0


def test_the_random_stretch_stays_within_its_factor():
    backoff = Backoff(1.0, 1.0, random_factor=0.5)
    rng = random.Random(7)
    delays = [backoff.delay(1, rng) for _ in range(200)]
    assert min(delays) >= 1.0 and max(delays) <= 1.5 and len(set(delays)) > 100


def test_a_huge_attempt_number_is_capped_without_overflow():
    assert Backoff(0.1, 2.0, random_factor=0.0).delay(10**9) == 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_seconds": -1.0}, r"^min_seconds must be >= 0, got -1\.0$"),
        ({"min_seconds": 2.0, "max_seconds": 1.0}, r"^max_seconds must be >= min_seconds \(2\.0\), got 1\.0$"),
        ({"multiplier": 0.5}, r"^multiplier must be >= 1, got 0\.5$"),
        ({"random_factor": float("nan")}, r"^random_factor must be a finite real number, got nan$"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_a_small_multiplier_keeps_growing_on_a_late_attempt():
    # Attempt 500 at 1.01: 0.01 * 1.01**499 is about 1.44, well under the cap, and must not be cut short.
    assert Backoff(0.01, 1000.0, random_factor=0.0, multiplier=1.01).delay(500) == 0.01 * 1.01**499


@pytest.mark.parametrize("multiplier", [1e10, 1e300, float(2**1023)])
@pytest.mark.parametrize("attempt", [2, 61, 500, 10**9])
def test_a_huge_multiplier_returns_the_cap_without_overflow(multiplier, attempt):
    assert Backoff(0.5, 30.0, random_factor=0.0, multiplier=multiplier).delay(attempt) == 30.0


def test_the_random_stretch_applies_to_the_capped_result():
    rng = random.Random(3)
    delay = Backoff(1.0, 10.0, random_factor=0.5, multiplier=1e300).delay(500, rng)
    assert 10.0 <= delay <= 15.0
