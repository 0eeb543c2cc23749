"""Drawdown from peak equity: a tracker whose peak only ever rises, and the same math over a curve."""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterable
from typing import Any

import attrs

from runtime.validation import attrs_boolean, attrs_finite, attrs_non_negative, attrs_positive, finite_number

__all__ = ["DrawdownTracker", "DrawdownSnapshot", "max_drawdown"]


@attrs.frozen
class DrawdownSnapshot:
    """The whole state of a `DrawdownTracker`, for persisting and restoring it exactly.

    The peak is never below the latest equity; it may be below the start after a rebaseline
    (which moves the peak, never the start)."""

    start_equity: float = attrs.field(validator=attrs_positive)
    peak_equity: float = attrs.field(validator=attrs_positive)
    latest_equity: float = attrs.field(validator=attrs_finite)
    max_drawdown: float = attrs.field(validator=attrs_non_negative)
    recapitalised: bool = attrs.field(default=False, validator=attrs_boolean)

    def __attrs_post_init__(self) -> None:
        if self.latest_equity > self.peak_equity:
            raise ValueError(
                f"latest_equity must be <= peak_equity, got {self.latest_equity!r} > {self.peak_equity!r}"
            )


def _reading(value: Any, field: str = "equity") -> float:
    # The fast check (a float minus itself is 0.0 only when finite) keeps the hot path cheap;
    # anything unusual goes through the full check, which names the value.
    if type(value) is float and value - value == 0.0:
        return value
    return finite_number(field, value)


class DrawdownTracker:
    """Running peak, current drawdown and worst drawdown of an account's equity.

    The peak is the highest of the start equity and every observed equity, or of the equity at
    the last `rebaseline` and every one since; it never decreases otherwise, except by a
    withdrawal recorded with `record_cash_flow`, which scales it so that the drawdown does not
    move. The start equity (the base of a static floor) is fixed: only cash flows move it.
    Drawdown is a fraction: ``(peak - latest) / peak``, 0 at the peak, above 1 when equity is
    negative.
    """

    __slots__ = ("_start", "_peak", "_latest", "_max_drawdown", "_recapitalised")

    def __init__(self, start_equity: float) -> None:
        start = finite_number("start_equity", start_equity)
        if start <= 0:
            raise ValueError(f"start_equity must be > 0, got {start_equity!r}")
        self._start = start
        self._peak = start
        self._latest = start
        self._max_drawdown = 0.0
        self._recapitalised = False

    @classmethod
    def restore(cls, snapshot: DrawdownSnapshot) -> DrawdownTracker:
        """Rebuild a tracker from a snapshot; the result behaves exactly as the one that made it."""
        tracker = cls(snapshot.start_equity)
        tracker._peak = snapshot.peak_equity
        tracker._latest = snapshot.latest_equity
        tracker._max_drawdown = snapshot.max_drawdown
        tracker._recapitalised = snapshot.recapitalised
        return tracker

    def rebaseline(self) -> None:
        """Measure the drawdown afresh from the latest equity: the peak becomes it, so today's
        drawdown is 0, and the account is no longer `recapitalised`. The start stays: a static
        floor is fixed for the account's life, and a rebaseline must not lower it. The worst
        drawdown seen is history and is kept. Refused (``ValueError``) while equity is zero or
        negative."""
        if self._latest <= 0:
            raise ValueError(f"cannot rebaseline while equity is {self._latest!r} (must be > 0)")
        self._peak = self._latest
        self._recapitalised = False

    def snapshot(self) -> DrawdownSnapshot:
        """The tracker's whole state as a frozen value."""
        return DrawdownSnapshot(self._start, self._peak, self._latest, self._max_drawdown, self._recapitalised)

    def observe(self, equity: float) -> None:
        """Take one equity reading: a finite real number (zero and negative are allowed).

        Raises ``TypeError`` or ``ValueError`` naming the value for anything else, and then
        leaves the tracker unchanged.
        """
        if type(equity) is not float or equity - equity != 0.0:
            equity = finite_number("equity", equity)
        self._latest = equity
        peak = self._peak
        if equity > peak:
            self._peak = equity
        else:
            drawdown = (peak - equity) / peak
            if drawdown > self._max_drawdown:
                self._max_drawdown = min(drawdown, _LARGEST)

    def observe_many(self, equities: Iterable[float]) -> None:
        """Take a batch of readings; the result is exactly that of observing them one at a time.

        The batch is all or nothing: a bad reading raises naming its index and value, and the
        tracker keeps the state it had before the batch.
        """
        peak = self._peak
        latest = self._latest
        worst = self._max_drawdown
        for index, equity in enumerate(equities):
            if type(equity) is not float or equity - equity != 0.0:
                equity = finite_number(f"equities[{index}]", equity)
            latest = equity
            if equity > peak:
                peak = equity
            else:
                drawdown = (peak - equity) / peak
                if drawdown > worst:
                    worst = min(drawdown, _LARGEST)
        self._peak = peak
        self._latest = latest
        self._max_drawdown = worst

    def record_cash_flow(self, amount: float) -> None:
        """Record a deposit (> 0) or a withdrawal (< 0) so it is neither a gain nor a drawdown.

        Unit-value accounting: the peak and start equity scale by ``(equity + amount) / equity``,
        so the current drawdown and the worst drawdown are unchanged. A deposit while equity is
        zero or negative cannot be scaled: it is added to the peak and the start as money, and
        the account is `recapitalised` (the loss before it was 100% or more, which no drawdown
        from a positive equity can show) until a `rebaseline`. Refused (``ValueError``): a
        withdrawal while equity is zero or negative, one that would take equity to zero or below,
        and a flow that would take a figure past a float's range (nothing is changed then).
        """
        flow = finite_number("amount", amount)
        latest = self._latest
        if latest <= 0:
            if flow <= 0:
                raise ValueError(f"cannot record a cash flow of {flow!r} while equity is {latest!r} (must be > 0)")
            # The money is added, not scaled: the loss in money stays (peak - latest is kept),
            # and `recapitalised` keeps the deposit from ever reading as a recovery.
            peak, start, new_latest = self._peak + flow, self._start + flow, latest + flow
            _within_range(flow, latest, peak, start)
            self._peak, self._start, self._latest = peak, start, new_latest
            self._recapitalised = True
            return
        new_latest = latest + flow
        _within_range(flow, latest, new_latest)
        if new_latest <= 0:
            raise ValueError(
                f"cash flow amount {flow!r} would take equity from {latest!r} to {new_latest!r} (must stay > 0)"
            )
        factor = new_latest / latest
        peak = new_latest if self._peak == latest else max(self._peak * factor, new_latest)
        start = self._start * factor
        _within_range(flow, latest, peak, start)
        if self._start <= self._peak:
            # Scaling both can leave the start one rounding above the peak (when the peak is
            # set to new_latest): kept at most the peak, as the scaling means. A start above the
            # peak (a rebaseline below it) is a static floor's base: never pulled down to it.
            start = min(start, peak)
        self._peak, self._start, self._latest = peak, start, new_latest

    @property
    def start_equity(self) -> float:
        """The start equity, in the units of today's money (scaled by recorded cash flows)."""
        return self._start

    @property
    def peak_equity(self) -> float:
        """The highest equity seen, start equity included."""
        return self._peak

    @property
    def latest_equity(self) -> float:
        """The last reading (the start equity before any reading)."""
        return self._latest

    @property
    def drawdown(self) -> float:
        """Current drawdown from the peak as a fraction; 0.0 exactly when equity is at the peak."""
        return min((self._peak - self._latest) / self._peak, _LARGEST)

    @property
    def static_drawdown(self) -> float:
        """Current loss against the start equity as a fraction (0.0 when at or above the start)."""
        return min(max(0.0, (self._start - self._latest) / self._start), _LARGEST)

    @property
    def max_drawdown(self) -> float:
        """The worst drawdown from the running peak seen so far, as a fraction."""
        return self._max_drawdown

    @property
    def recapitalised(self) -> bool:
        """True once money was deposited while equity was zero or below, until a `rebaseline`:
        the loss before the deposit cannot be told as a drawdown, so the account must be
        measured afresh before trading on (see `RiskMonitor.resume`)."""
        return self._recapitalised

    def __repr__(self) -> str:
        return (
            f"DrawdownTracker(start={self._start!r}, peak={self._peak!r}, latest={self._latest!r}, "
            f"drawdown={self.drawdown:.6f}, max_drawdown={self._max_drawdown:.6f})"
        )


def max_drawdown(equity_curve: Iterable[float], start_equity: float | None = None) -> float:
    """The worst drawdown (a fraction) of an equity curve, by the same rule as `DrawdownTracker`.

    With no ``start_equity`` the first point is the start, and it must then be > 0. An empty curve
    with a start equity has no drawdown; an empty curve without one is an error.
    """
    points = iter(equity_curve)
    if start_equity is None:
        try:
            first = next(points)
        except StopIteration:
            raise ValueError("equity_curve is empty and no start_equity was given") from None
        tracker = DrawdownTracker(_reading(first, "equity_curve[0]"))
        # Observing the first point again changes nothing and keeps batch indices true to the curve.
        points = itertools.chain((first,), points)
    else:
        tracker = DrawdownTracker(start_equity)
    tracker.observe_many(points)
    return tracker.max_drawdown


# A drawdown is capped at the largest float: readings at the ends of a float's range (a peak of
# 1.7e308, then a large negative equity) would make it infinite, and a record with an infinite
# figure cannot be saved, so a halt it latched could not be either.
_LARGEST = sys.float_info.max


def _within_range(flow: float, latest: float, *figures: float) -> None:
    # A flow whose sum or scaling overflows would leave an infinite peak, start or equity, which
    # every later reading would trip over: refused before anything changes.
    if not all(math.isfinite(figure) for figure in figures):
        raise ValueError(f"cash flow amount {flow!r} at equity {latest!r} would take the account's figures past a float's range")
