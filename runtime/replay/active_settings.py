"""Every setting that can stop, reduce or refuse trading, as a replay's header states it before
the first bar: the guards with their warning levels, the trading day's time zone, the
per-position stop, the cooldown and the pre-trade limits. What is off is left out, but for the
daily loss."""

from __future__ import annotations

from typing import Any

from runtime.risk.cooldown import DAILY_LOSS

__all__ = ["active_settings_lines"]


def _guards(settings: Any) -> str:
    trailing = "trailing" if settings.drawdown_trailing else "static"
    daily = f"{settings.daily_loss_percent:g}%" if settings.daily_loss_percent is not None else "off"
    line = (
        f"guards: max drawdown {settings.max_drawdown_percent:g}% ({trailing}), "
        f"min equity {settings.min_equity:,.2f}, daily loss {daily}"
    )
    warn = settings.guard_warn_fraction
    if warn is None:
        return line
    # The levels past which a guard warns and holds trading reducing, as the guards judge them.
    levels = [f"drawdown {settings.max_drawdown_percent * warn:.2f}%"]
    if settings.min_equity > 0:
        levels.append(f"equity below {settings.min_equity / warn:,.2f}")
    if settings.daily_loss_percent is not None:
        levels.append(f"daily loss {settings.daily_loss_percent * warn:.2f}%")
    return f"{line}; warnings (trading reducing) at {warn:.0%} of each: {', '.join(levels)}"


def _trading_day(settings: Any) -> str | None:
    users = []
    if settings.daily_loss_percent is not None:
        users.append("daily loss")
    if settings.max_trades_per_day is not None:
        users.append("max_trades_per_day")
    if settings.cooldown_rules is not None and DAILY_LOSS in settings.cooldown().rules:
        users.append("the daily_loss cooldown")
    if not users:
        return None
    return f"trading day: midnight to midnight in {settings.trading_timezone} (for {', '.join(users)})"


def _position_stop(settings: Any) -> str | None:
    if settings.position_stop_percent is None:
        return None
    basis = "the account's equity" if settings.position_stop_basis == "equity" else "its entry value"
    return f"position stop: a position is closed once its loss reaches {settings.position_stop_percent:g}% of {basis}"


def _cooldown(settings: Any) -> str | None:
    cooldown = settings.cooldown()
    if cooldown is None:
        return None
    when = [
        f"by {rule} at the next trading day" if rule == DAILY_LOSS else f"by {rule} {cooldown.seconds:g} s after it"
        for rule in sorted(cooldown.rules)
    ]
    return f"cooldown: trading resumes by itself after a halt {', '.join(when)} (any other halt latches until resumed)"


def _pre_trade(settings: Any) -> str | None:
    limits = [f"{limit.name} {getattr(settings, limit.name):g}" for limit in settings.limits()]
    if settings.runaway_refusals is not None:
        limits.append(
            f"runaway loop at {settings.runaway_refusals} refusals in {settings.runaway_window_seconds:g} s (then reducing)"
        )
    return f"pre-trade limits: {', '.join(limits)}" if limits else None


def active_settings_lines(settings: Any) -> list[str]:
    """A line for the guards (with their warning levels), then one each for the trading day's
    time zone when a rule counts days, the per-position stop, the cooldown and the pre-trade
    limits, when set (`runtime.settings.Settings`); without indentation."""
    lines = [_guards(settings), _trading_day(settings), _position_stop(settings), _cooldown(settings), _pre_trade(settings)]
    return [line for line in lines if line is not None]
