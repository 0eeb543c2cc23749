"""One capped exponential backoff, for everything that waits before trying again."""

from __future__ import annotations

import random

import attrs

from runtime.validation import attrs_non_negative, finite_number

__all__ = ["Backoff"]


def _at_least_one(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if finite_number(attribute.name, value) < 1.0:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


@attrs.frozen
class Backoff:
    """Attempt ``n`` (1 for the first) waits ``min_seconds * multiplier**(n-1)``, capped at
    ``max_seconds`` (never an overflow, however large the multiplier or the attempt), then stretched by up to ``random_factor`` at random (as Akka's
    restart-with-backoff), so that siblings retrying together do not retry in step.

    ``min_seconds=0`` means no wait at all. The same schedule serves the supervisor's restarts,
    the guard's liquidation retries, the fail-safe's closes and the Telegram sender.
    """

    min_seconds: float = attrs.field(default=0.0, validator=attrs_non_negative)
    max_seconds: float = attrs.field(default=5.0, validator=attrs_non_negative)
    random_factor: float = attrs.field(default=0.2, validator=attrs_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_at_least_one)

    def __attrs_post_init__(self) -> None:
        if self.max_seconds < self.min_seconds:
            raise ValueError(f"max_seconds must be >= min_seconds ({self.min_seconds!r}), got {self.max_seconds!r}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before ``attempt`` (1 for the first); ``rng`` draws the stretch
        (the module's generator when None)."""
        if self.min_seconds == 0:
            return 0.0
        try:
            grown = self.min_seconds * self.multiplier ** max(0, attempt - 1)
        except OverflowError:  # the power itself is out of range: far past any cap
            grown = self.max_seconds
        # The result is capped, not the exponent, so a small multiplier still grows as it
        # should on a late attempt; a product that overflows to infinity is capped too.
        base = min(self.max_seconds, grown)
        if self.random_factor == 0:
            return base
        return base * (1.0 + self.random_factor * (rng or random).random())
