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
