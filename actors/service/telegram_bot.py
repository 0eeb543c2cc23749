"""The Telegram commands of a running system: /status, /positions, /halt, /resume, /help.

Each command is one call into the system with a timeout, made on the command poller's thread:
never on the guard's, and never holding up an alert.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka

from actors.service.control import resumed
from actors.service.hub import EventHub
from actors.service.status import StatusReader, status_text
from actors.supervision.address import ChildUnavailable
from actors.system import TradingSystem
from runtime.adapters.telegram_commands import parse_command
from runtime.risk.guards import TradingState
from runtime.risk.monitor import ResumeRefused

__all__ = ["HELP", "CommandHandler"]

HELP = """Commands:
/status: trading state, equity, limits, heartbeat, actors
/positions: open positions
/halt [reason]: the kill switch (HALTED, every position closed)
/resume: lift a HALTED state (asks you to confirm)
/resume confirm: resume now (refused while past a hard limit)
/resume rebaseline: measure from today's equity, then resume
/help: this list"""

_BY = "telegram"


class CommandHandler:
    """``handler(text) -> reply`` for `TelegramCommands`, acting on ``system``.

    An unknown command or plain text gets `HELP`. A system that does not answer within
    ``timeout`` seconds gets a reply saying so; nothing here raises for it. When that is a /halt or
    a /resume confirm|rebaseline, the reply says the command may still be carried out (it may wait
    in the guard's mailbox, or the guard may have been restarting and never got it), so it does
    not invite a second press; a guard that has stopped for good gets "not carried out".
    """

    def __init__(self, system: TradingSystem, hub: EventHub, timeout: float = 5.0) -> None:
        self.system = system
        self.hub = hub
        self.timeout = timeout
        self._reader = StatusReader(system, hub)

    def __call__(self, text: str) -> str:
        """The reply to one message from the configured chat."""
        command = parse_command(text)
        actions: dict[str, Callable[[str], str]] = {
            "/status": self._status, "/positions": self._positions, "/halt": self._halt, "/resume": self._resume,
        }
        if command is None or command[0] not in actions:
            return HELP
        name, rest = command
        try:
            return actions[name](rest)
        except (pykka.Timeout, ChildUnavailable, pykka.ActorDeadError) as exc:
            return f"The trading system did not answer within {self.timeout:g}s ({type(exc).__name__}); try again."

    def _change(self, command: str, change: Callable[[], TradingState]) -> TradingState | str:
        # The state before ``change`` (a call to the guard that changes the trading state), or
        # the reply when the guard gave no answer.
        try:
            return change()
        except ChildUnavailable:  # refused before it was queued
            return f"The trading system has stopped: {command} was not carried out."
        except pykka.Timeout:
            # Still in the guard's mailbox, it is carried out when the guard gets to it.
            return (f"The trading system did not answer {command} within {self.timeout:g}s. It may still carry it"
                    f" out: send /status to see before sending it again.")
        except pykka.ActorDeadError as exc:  # the guard died after taking it: how far it got is not known
            return (f"The trading system failed while taking {command} ({type(exc).__name__}): it may or may not"
                    f" have been carried out. Send /status to see before sending it again.")

    def _snapshot(self) -> dict[str, Any]:
        return self._reader.status(self.timeout)

    def _status(self, rest: str) -> str:
        return status_text(self._snapshot())

    def _positions(self, rest: str) -> str:
        status = self._snapshot()
        held, stale = status["positions"], status["stale"].get("positions")
        if held is None:  # always named in stale, with why
            return f"Open positions unknown: {stale['reason']}."
        # A list from an earlier answer says so first, never passed off as the account now.
        listed = [f"As of {stale['age_seconds']:.1f}s ago ({stale['reason']}):"] if stale else []
        listed += [f"{p['symbol']} {p['side']} {p['volume']:g} at {p['entry_price']:,.5g}, P&L {p['unrealised_pnl']:,.2f}"
                   for p in held] or ["No open positions."]
        return "\n".join(listed)

    def _halt(self, rest: str) -> str:
        reason = rest or "halted from Telegram"
        previous = self._change("/halt", lambda: self.system.halt(_BY, reason, timeout=self.timeout))
        if isinstance(previous, str):
            return previous
        return f"HALTED (was {previous.value}): {reason}. Every position is being closed."

    def _resume(self, rest: str) -> str:
        word = rest.lower()
        if word not in ("", "confirm", "rebaseline"):
            return "Send /resume confirm, or /resume rebaseline.\n\n" + HELP
        if not word:
            now = self._snapshot()
            if now["trading_state"] == "active":
                return "Trading is already ACTIVE."
            return (f"Trading is {now['trading_state'].upper()}: {now['reason']}\n"
                    f"Send /resume confirm to resume, or /resume rebaseline to move the peak from "
                    f"{now['peak_equity']:,.2f} to today's equity {now['equity']:,.2f} first.")
        rebaseline = word == "rebaseline"
        before = self._snapshot() if rebaseline else None
        try:
            previous = self._change(f"/resume {word}",
                                    lambda: self.system.resume(_BY, rebaseline=rebaseline, timeout=self.timeout))
        except ResumeRefused as exc:
            if exc.rebaseline_helps:
                return f"{exc}\nSend /resume rebaseline to measure from today's equity instead."
            return str(exc)
        if isinstance(previous, str):
            return previous
        done = resumed(previous, rebaseline)[1]
        done = done[0].upper() + done[1:]
        if before is not None:
            after = self._snapshot()
            return f"{done}: peak {before['peak_equity']:,.2f} → {after['peak_equity']:,.2f}."
        return f"{done}."
