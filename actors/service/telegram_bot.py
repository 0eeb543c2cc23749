"""The Telegram commands of a running system: /status, /positions, /halt, /resume, /help.

Each command is one call into the system with a timeout, made on the command poller's thread:
never on the guard's, and never holding up an alert.

A command sent before this bot started (Telegram keeps it for 24 hours and hands it over at the
next start) was written without seeing what happened since: one that would lift protection
(/resume confirm, /resume rebaseline) is not carried out, and the reply says to send it again; a
/halt is carried out, being the safe direction, and its reply says when it was sent; the others
only read and are answered as ever. A command sent after the start is carried out however long it
waited to be read (it was sent to this running bot; it is late only behind a busy guard or through
a Bot API outage), except that a /resume lifts only a halt (or REDUCING) latched before the
message's date: one that came after it, which its sender had not seen, is kept, and the reply says
when each happened and to send it again. Telegram dates a message to the whole second, so one sent
in the second a halt was latched counts as sent before it (the safe side).

A command addressed to a bot by ``@name`` while the poller does not know this bot's own username
(getMe failed) may be meant for another bot of the chat: the same rule holds (a /halt is carried
out and says so, a lifting /resume is not, reads are answered), since a halt for us that is
ignored costs more than one for another bot that is carried out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pykka
from loguru import logger

from actors.messages import HaltNotSaved
from actors.pressed_halts import HaltNotConfirmed
from actors.service.control import resumed
from actors.service.hub import EventHub
from actors.service.status import StatusReader, status_text
from actors.supervision.address import ChildUnavailable
from actors.system import TradingSystem
from runtime.adapters.telegram_commands import ChatCommand
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

_log = logger.bind(component="telegram-commands")


def _figure(value: float) -> str:
    # Every digit the broker gave, and no more (1.08505, 151.234, 123,456.7, 100): an entry price
    # cut to five digits hid the pips a trader reads it for.
    text = f"{value:,}"
    return text[:-2] if text.endswith(".0") else text


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class CommandHandler:
    """``handler(command) -> reply`` for `TelegramCommands`, acting on ``system``.

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

    def __call__(self, command: ChatCommand) -> str:
        """The reply to one message from the configured chat (see the module for one sent before
        the start)."""
        actions: dict[str, Callable[[ChatCommand], str]] = {
            "/status": self._status, "/positions": self._positions, "/halt": self._halt, "/resume": self._resume,
        }
        if command.name not in actions:
            return HELP
        try:
            return actions[command.name](command)
        except (pykka.Timeout, ChildUnavailable, pykka.ActorDeadError) as exc:
            return f"The trading system did not answer within {self.timeout:g}s ({type(exc).__name__}); try again."

    def _change(self, command: str, change: Callable[[], TradingState]) -> TradingState | str:
        # The state before ``change`` (a call to the guard that changes the trading state), or
        # the reply when the guard gave no answer.
        try:
            return change()
        except ChildUnavailable:  # refused before it was queued
            return f"The trading system has stopped: {command} was not carried out."
        except HaltNotConfirmed as exc:  # in force already for every order not yet sent
            return f"HALT RECORDED, not yet confirmed: {exc}. Send /status to see it carried out."
        except pykka.Timeout:
            # Still in the guard's mailbox, it is carried out when the guard gets to it.
            return (f"The trading system did not answer {command} within {self.timeout:g}s. It may still carry it"
                    f" out: send /status to see before sending it again.")
        except pykka.ActorDeadError as exc:  # the guard died after taking it: how far it got is not known
            return (f"The trading system failed while taking {command} ({type(exc).__name__}): it may or may not"
                    f" have been carried out. Send /status to see before sending it again.")

    def _snapshot(self) -> dict[str, Any]:
        return self._reader.status(self.timeout)

    def _status(self, command: ChatCommand) -> str:
        return status_text(self._snapshot())

    def _positions(self, command: ChatCommand) -> str:
        status = self._snapshot()
        held, stale = status["positions"], status["stale"].get("positions")
        if held is None:  # always named in stale, with why
            return f"Open positions unknown: {stale['reason']}."
        # A list from an earlier answer says so first, never passed off as the account now.
        listed = [f"As of {stale['age_seconds']:.1f}s ago ({stale['reason']}):"] if stale else []
        listed += [f"{p['symbol']} {p['side']} {_figure(p['volume'])} at {_figure(p['entry_price'])}, "
                   f"P&L {round(p['unrealised_pnl'], 2) + 0.0:,.2f}"  # (+ 0.0: never "-0.00")
                   for p in held] or ["No open positions."]
        return "\n".join(listed)

    def _halt(self, command: ChatCommand) -> str:
        reason = command.argument or "halted from Telegram"
        try:
            previous = self._change("/halt", lambda: self.system.halt(_BY, reason, timeout=self.timeout))
        except HaltNotSaved as exc:
            return f"HALTED (was {exc.previous.value}): {reason}, but NOT SAVED: {exc}."
        if isinstance(previous, str):
            return previous
        # Read after the halt, not before: one sent while the system starts waits for the start
        # and is carried out by its guard, which a reading taken first called not running.
        if not self.system.running:
            return (f"The trading system is not running: the halt ({reason}) is saved in its store, and carried out "
                    "first when it starts.")
        done = f"HALTED (was {previous.value}): {reason}. Every position is being closed."
        doubts = []
        if command.before_start:
            doubts.append(f"sent at {_utc(command.sent_at)}, before this bot started")
        if command.unchecked_bot:
            doubts.append(f"addressed to @{command.unchecked_bot}, and this bot could not check that name against its"
                          f" own (getMe failed)")
        for doubt in doubts:
            _log.warning("telegram /halt {}: carried out", doubt)
            done += f"\nIt was {doubt}: carried out all the same, as a halt only makes the account safer."
        return done

    def _resume(self, command: ChatCommand) -> str:
        word = command.argument.lower()
        if word not in ("", "confirm", "rebaseline"):
            return "Send /resume confirm, or /resume rebaseline.\n\n" + HELP
        if not word:
            return self._resume_prompt()
        if command.before_start:
            _log.warning("telegram /resume {} sent at {}, before this bot started: not carried out", word,
                         _utc(command.sent_at))
            return (f"/resume {word} was sent at {_utc(command.sent_at)}, before this bot started, so it was not"
                    f" carried out; send it again.")
        if command.unchecked_bot:
            bot = command.unchecked_bot
            _log.warning("telegram /resume@{} {}: not carried out, this bot's username is not known", bot, word)
            return (f"/resume@{bot} {word} was not carried out: this bot could not learn its own username from"
                    f" Telegram, so it cannot tell whether @{bot} is itself. Send /resume {word} without @{bot}.")
        rebaseline = word == "rebaseline"
        before = self._snapshot() if rebaseline else None
        try:
            previous = self._change(f"/resume {word}", lambda: self.system.resume(
                _BY, rebaseline=rebaseline, timeout=self.timeout, sent_at=command.sent_at))
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

    def _resume_prompt(self) -> str:
        # The guard's own answer (not the status's), which says whether a rebaseline would be
        # taken: offering one that the next reply refuses costs an incident time.
        guard = self.system.guard_status(timeout=self.timeout)
        state = guard.state
        if state.trading_state is TradingState.ACTIVE:
            return "Trading is already ACTIVE."
        now = f"Trading is {state.trading_state.value.upper()}: {state.reason}\n"
        if guard.rebaseline_blocked is not None:
            return f"{now}Send /resume confirm to resume; {guard.rebaseline_blocked}."
        return (f"{now}Send /resume confirm to resume, or /resume rebaseline to move the peak from "
                f"{state.peak_equity:,.2f} to today's equity {state.current_equity:,.2f} first.")
