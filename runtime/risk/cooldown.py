"""Opt-in cooldown: when a halt by a named rule lifts by itself (latching stays the default)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs

from runtime.validation import attrs_positive, attrs_timezone, aware_datetime

__all__ = ["COOLDOWN_RULES", "Cooldown", "DAILY_LOSS", "MAX_COOLDOWN_SECONDS", "MAX_DRAWDOWN", "RUNAWAY_LOOP", "cooldown_seconds"]

MAX_DRAWDOWN = "max_drawdown"
DAILY_LOSS = "daily_loss"
RUNAWAY_LOOP = "runaway_loop"
COOLDOWN_RULES = (MAX_DRAWDOWN, "min_equity", DAILY_LOSS, RUNAWAY_LOOP)
"""The rules a cooldown can name: the guards' breaches, and the gate's runaway-loop latch."""


MAX_COOLDOWN_SECONDS = 366 * 24 * 3600.0
"""The longest cooldown: a year and a day. Longer is no cooldown (and past a datetime's range it
could not even be computed); leave the cooldown unset to keep halts until an operator resumes."""


def cooldown_seconds(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    """An attrs validator: None, or seconds in (0, `MAX_COOLDOWN_SECONDS`], else an error naming
    the field and the value."""
    if value is None:
        return
    attrs_positive(instance, attribute, value)
    if value > MAX_COOLDOWN_SECONDS:
        raise ValueError(
            f"{attribute.name} must be at most {MAX_COOLDOWN_SECONDS:,.0f} (366 days): leave it unset to keep a halt "
            f"until an operator resumes, got {value!r}"
        )


def _rules(value: object) -> frozenset[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"cooldown_rules must be rule names separated by commas, got {value!r}")
    return frozenset(value)


def _known(instance: Cooldown, attribute: attrs.Attribute, value: frozenset[str]) -> None:
    if not value or any(rule not in COOLDOWN_RULES for rule in value):
        raise ValueError(f"cooldown_rules must name one or more of {', '.join(COOLDOWN_RULES)}, got {sorted(value)!r}")


@attrs.frozen
class Cooldown:
    """When trading resumes by itself after a latch by one of ``rules``.

    A halt by ``daily_loss`` lifts at the start of the next trading day in ``timezone``; a halt
    by any other rule named (``max_drawdown``, ``min_equity``), and the gate's ``runaway_loop``
    latch, lift ``seconds`` after it. A halt that any rule outside ``rules`` joined stays
    latched until an operator resumes (`resume_at` answers None). ``seconds`` must be set when
    ``rules`` names anything but ``daily_loss``.
    """

    rules: frozenset[str] = attrs.field(converter=_rules, validator=_known)
    seconds: float | None = attrs.field(default=None, validator=cooldown_seconds)
    timezone: str = attrs.field(default="UTC", validator=attrs_timezone)

    def __attrs_post_init__(self) -> None:
        timed = sorted(rule for rule in self.rules if rule != DAILY_LOSS)
        if timed and self.seconds is None:
            raise ValueError(f"cooldown_seconds must be set for a cooldown of {', '.join(timed)}, got None")

    def covers(self, rules: Sequence[str]) -> bool:
        """True when a latch by ``rules`` (all of them) lifts by itself."""
        return bool(rules) and all(rule in self.rules for rule in rules)

    def resume_at(self, rules: Sequence[str], latched_at: datetime) -> datetime | None:
        """When (UTC) a latch by ``rules`` at ``latched_at`` (timezone-aware) lifts: the latest of
        each rule's own end; None when it does not lift by itself."""
        aware_datetime("latched_at", latched_at)
        if not self.covers(rules):
            return None
        ends = []
        for rule in rules:
            if rule == DAILY_LOSS:
                zone = ZoneInfo(self.timezone)
                day = latched_at.astimezone(zone).date() + timedelta(days=1)
                # Through UTC: where a clock change skips midnight, the day's first real moment.
                ends.append(datetime.combine(day, time(), tzinfo=zone).astimezone(UTC))
            else:
                assert self.seconds is not None  # checked on construction
                ends.append((latched_at + timedelta(seconds=self.seconds)).astimezone(UTC))
        return max(ends)
