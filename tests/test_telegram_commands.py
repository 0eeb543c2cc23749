"""Telegram commands against the local Bot API server: the configured chat steers a real system,
any other chat is ignored and counted, replies keep Telegram's pace, and a hanging Bot API holds
up no alert."""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from actor_helpers import WAIT, wait_until
from loguru import logger
from support.bot_api_server import TEST_TOKEN, BotApiServer, Received, Reply
from support.control_server import SlowCloseBroker, SlowListBroker, paper_with_positions
from support.slow_start import SlowStart

from actors import start_trading_system
from actors.messages import Halt, RunCycle
from actors.service.hub import EventHub
from actors.service.telegram_bot import HELP, CommandHandler
from actors.system import TradingSystem
from runtime import ListSignalSource, ManualClock, MemoryStore, Order, PaperBroker, Settings, Signal
from runtime.adapters.telegram import MAX_MESSAGE_LENGTH, TelegramAlerts
from runtime.adapters.telegram_commands import RESENT_NOTE, ChatCommand, TelegramCommands, parse_command
from runtime.alerts import Alert, Severity
from runtime.backoff import Backoff
from runtime.metrics import MemoryMetrics

CHAT = 4242
STRANGER = 666
YESTERDAY = 1_700_000_000  # 2023-11-14 22:13:20 UTC: a message Telegram kept while the bot was down


@pytest.fixture
def system() -> Iterator[tuple[TradingSystem, PaperBroker, ListSignalSource]]:
    broker = PaperBroker(10_000)
    broker.update_price("X", 100.0)
    signals = ListSignalSource()
    trading = start_trading_system(Settings(), broker, signals, clock=ManualClock(), loop_interval=None)
    try:
        yield trading, broker, signals
    finally:
        trading.stop()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    handler = logger.add(lambda message: lines.append(str(message)), level="DEBUG", format="{message} {extra}")
    yield lines
    logger.remove(handler)


@pytest.fixture
def reply_log() -> Iterator[list[tuple[str, str]]]:
    """(level, message) of each log line about a reply, in order."""
    lines: list[tuple[str, str]] = []
    handler = logger.add(lambda message: lines.append((message.record["level"].name, message.record["message"])),
                         level="DEBUG", filter=lambda record: "the reply to" in record["message"])
    yield lines
    logger.remove(handler)


def sent_now(text: str) -> ChatCommand:
    """``text`` as the poller hands it over when it was sent after the start."""
    name, _, argument = parse_command(text)
    return ChatCommand(name, argument, datetime.now(UTC))


def echo(command: ChatCommand) -> str:
    return f"ok {command.name} {command.argument}".rstrip()


def listening(bot_api: BotApiServer, handler, metrics=None, min_interval: float = 1.0, **options) -> TelegramCommands:
    return TelegramCommands(TEST_TOKEN, CHAT, handler, bot_api.url, metrics=metrics, poll_seconds=2,
                            min_interval=min_interval, **options).start()


def test_a_command_is_its_first_word_and_the_bot_it_is_addressed_to():
    assert parse_command(" /halt@TradeWarden_bot news at 14:30 ") == ("/halt", "TradeWarden_bot", "news at 14:30")
    assert parse_command("/STATUS") == ("/status", "", "")
    assert parse_command("halt now") is None
    # Any whitespace ends the command word: a newline is easy to type on a phone.
    assert parse_command("/halt\nnews at 14:30") == ("/halt", "", "news at 14:30")
    assert parse_command("/halt\tnews") == ("/halt", "", "news")
    assert parse_command("/halt   news \n at 14:30\n") == ("/halt", "", "news \n at 14:30")


def test_a_halt_with_its_reason_on_the_next_line_presses_the_kill_switch(bot_api, system):
    trading, broker, signals = system
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0)
    try:
        bot_api.say(CHAT, "/halt\nnews at 14:30")
        [halted] = bot_api.wait_for_replies(CHAT, 1)
    finally:
        commands.stop()
    assert halted.text == "HALTED (was active): news at 14:30. Every position is being closed."
    assert trading.guard_status().state.trading_state.value == "halted"


class FullDisk(MemoryStore):
    """A store whose disk filled up: the guard's record cannot be written."""

    def save_guard(self, loop_id: str, record: Any) -> None:
        raise OSError("No space left on device")


def test_a_halt_the_store_did_not_take_says_so_in_the_chat(bot_api):
    broker = PaperBroker(10_000)
    trading = start_trading_system(Settings(), broker, ListSignalSource(), store=FullDisk(), clock=ManualClock(),
                                   loop_interval=None)
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0)
    try:
        bot_api.say(CHAT, "/halt news")
        [halted] = bot_api.wait_for_replies(CHAT, 1)
    finally:
        commands.stop()
        trading.stop()
    assert halted.text == (
        "HALTED (was active): news, but NOT SAVED: halted in this process, its positions being closed, but the halt "
        "was not saved in the state store (OSError('No space left on device')): a restart before it is saved would "
        "start without it; the guard saves it again until the store takes it."
    )


def test_the_configured_chat_halts_resumes_and_asks_while_another_chat_changes_nothing(bot_api, system, log_lines):
    trading, broker, signals = system
    metrics = MemoryMetrics()
    commands = listening(bot_api, CommandHandler(trading, EventHub()), metrics, min_interval=0.0)
    try:
        bot_api.say(STRANGER, "/halt secret-intruder-text")
        # The log line comes after the count: wait for it, so both are there to be read.
        assert wait_until(lambda: any(f"ignored a message from chat {STRANGER}" in line for line in log_lines))
        assert metrics.counters.get("telegram_foreign_messages_total") == 1
        assert bot_api.replies(STRANGER) == []
        assert trading.guard_status().state.trading_state.value == "active"
        assert not any("secret-intruder-text" in line for line in log_lines)

        bot_api.say(CHAT, "/halt news at 14:30")
        [halted] = bot_api.wait_for_replies(CHAT, 1)
        assert halted.text == "HALTED (was active): news at 14:30. Every position is being closed."
        assert trading.guard_status().state.trading_state.value == "halted"

        bot_api.say(CHAT, "/resume")
        asked = bot_api.wait_for_replies(CHAT, 2)[-1]
        assert re.match(r"^Trading is HALTED: halted by telegram: news at 14:30\nSend /resume confirm to resume, "
                        r"or /resume rebaseline to move the peak from 10,000\.00 to today's equity 10,000\.00 first\.$",
                        asked.text)
        assert trading.guard_status().state.trading_state.value == "halted"

        bot_api.say(CHAT, "/resume confirm")
        assert bot_api.wait_for_replies(CHAT, 3)[-1].text == "Resumed (was halted)."
        assert trading.guard_status().state.trading_state.value == "active"
        bot_api.say(CHAT, "/resume confirm")
        assert bot_api.wait_for_replies(CHAT, 4)[-1].text == "Already active: nothing to resume."

        bot_api.say(CHAT, "/status")
        assert bot_api.wait_for_replies(CHAT, 5)[-1].text.startswith("loop main: ACTIVE\n  equity 10,000.00")
        bot_api.say(CHAT, "/forceexit all")
        assert bot_api.wait_for_replies(CHAT, 6)[-1].text == HELP
    finally:
        commands.stop()
    assert bot_api.replies(STRANGER) == []


def test_a_command_for_another_bot_is_ignored_and_one_for_this_bot_carried_out(bot_api, system):
    # /halt@some_other_bot halted this account.
    trading, broker, signals = system
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0)
    try:
        bot_api.say(CHAT, "/halt@some_other_bot test")
        bot_api.say(CHAT, "/status@TradeWarden_Test_Bot")  # the name is matched whatever its case
        [status] = bot_api.wait_for_replies(CHAT, 1)
        assert status.text.startswith("loop main: ACTIVE\n")
        assert trading.guard_status().state.trading_state.value == "active"
        bot_api.say(CHAT, "/halt@TRADEWARDEN_TEST_BOT drill")
        assert bot_api.wait_for_replies(CHAT, 2)[-1].text == "HALTED (was active): drill. Every position is being closed."
    finally:
        commands.stop()
    assert len(bot_api.replies(CHAT)) == 2
    assert [r.method for r in bot_api.requests if r.method == "getMe"] == ["getMe"]  # asked once


def test_without_its_own_username_a_halt_for_any_bot_is_carried_out_and_a_resume_is_not(bot_api, system, log_lines):
    trading, broker, signals = system
    bot_api.username = None  # getMe fails
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0,
                         backoff=Backoff(0.1, 0.1, random_factor=0.0))
    try:
        bot_api.say(CHAT, "/halt@some_other_bot test")
        bot_api.say(CHAT, "/resume@some_other_bot confirm")
        bot_api.say(CHAT, "/positions@some_other_bot")
        replies = [r.text for r in bot_api.wait_for_replies(CHAT, 3)]
        assert replies == [
            "HALTED (was active): test. Every position is being closed.\nIt was addressed to @some_other_bot, and this"
            " bot could not check that name against its own (getMe failed): carried out all the same, as a halt only"
            " makes the account safer.",
            "/resume@some_other_bot confirm was not carried out: this bot could not learn its own username from"
            " Telegram, so it cannot tell whether @some_other_bot is itself. Send /resume confirm without"
            " @some_other_bot.",
            "No open positions.",
        ]
        assert trading.guard_status().state.trading_state.value == "halted"
        warnings = [line for line in log_lines if "this bot's username is not known" in line]
        assert warnings[0].startswith(
            "telegram commands: this bot's username is not known (getMe failed: RuntimeError: HTTP 500: {'ok': False,"
            " 'error_code': 500, 'description': 'Internal Server Error'}); until it is, a command addressed to a bot"
            " by @name may be meant for another bot: /halt and the reading commands are carried out, /resume"
            " confirm|rebaseline is not. getMe again in 0.1s")

        bot_api.username = "tradewarden_test_bot"  # getMe answers again: asked again, the name is learned
        assert wait_until(lambda: any("this bot is @tradewarden_test_bot" in line for line in log_lines))
        bot_api.say(CHAT, "/resume@some_other_bot confirm")
        bot_api.say(CHAT, "/resume@tradewarden_test_bot confirm")
        assert bot_api.wait_for_replies(CHAT, 4)[-1].text == "Resumed (was halted)."
    finally:
        commands.stop()
    assert len(bot_api.replies(CHAT)) == 4
    assert trading.guard_status().state.trading_state.value == "active"


def test_commands_sent_before_the_start_halt_and_answer_but_never_lift_the_halt(bot_api, system, log_lines):
    # A /resume rebaseline sent yesterday, kept by Telegram, resumed the account at the next start.
    trading, broker, signals = system
    for text in ("/halt news at 14:30", "/resume rebaseline", "/RESUME\nconfirm", "/resume", "/positions"):
        bot_api.say(CHAT, text, date=YESTERDAY)
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0)
    try:
        replies = [r.text for r in bot_api.wait_for_replies(CHAT, 5)]
        assert replies[:3] == [
            "HALTED (was active): news at 14:30. Every position is being closed.\nIt was sent at 2023-11-14 22:13:20"
            " UTC, before this bot started: carried out all the same, as a halt only makes the account safer.",
            "/resume rebaseline was sent at 2023-11-14 22:13:20 UTC, before this bot started, so it was not carried"
            " out; send it again.",
            "/resume confirm was sent at 2023-11-14 22:13:20 UTC, before this bot started, so it was not carried out;"
            " send it again.",
        ]
        assert replies[3].startswith("Trading is HALTED: halted by telegram: news at 14:30\nSend /resume confirm")
        assert replies[4] == "No open positions."
        assert trading.guard_status().state.trading_state.value == "halted"
        assert any("telegram /resume rebaseline sent at 2023-11-14 22:13:20 UTC, before this bot started: not carried"
                   " out" in line for line in log_lines)

        bot_api.say(CHAT, "/resume confirm")  # sent now, after the start
        assert bot_api.wait_for_replies(CHAT, 6)[-1].text == "Resumed (was halted)."
        assert trading.guard_status().state.trading_state.value == "active"
    finally:
        commands.stop()


def test_a_message_without_a_unix_date_is_ignored_and_logged_and_the_poller_goes_on(bot_api, log_lines):
    commands = listening(bot_api, echo, min_interval=0.0)
    try:
        bot_api.say(CHAT, "/resume confirm", date="yesterday")
        bot_api.say(CHAT, "/resume confirm", date=10**20)  # past any datetime
        bot_api.say(CHAT, "/status")
        replies = bot_api.wait_for_replies(CHAT, 1)
    finally:
        commands.stop()
    assert [r.text for r in replies] == ["ok /status"]
    assert [line.split(" {")[0] for line in log_lines if "whose date" in line] == [
        "telegram commands: ignored a message whose date is 'yesterday' (not a unix time)",
        "telegram commands: ignored a message whose date is 100000000000000000000 (not a unix time)",
    ]


def test_a_resume_that_a_rebaseline_cannot_help_is_refused_without_offering_one(bot_api):
    broker = PaperBroker(10_000)
    broker.update_price("X", 100.0)
    signals = ListSignalSource()
    trading = start_trading_system(Settings(min_equity=9_500.0), broker, signals, clock=ManualClock(), loop_interval=None)
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0)
    try:
        signals.push(Signal("X", "buy", 50))
        trading.loop.ask(RunCycle())
        broker.update_price("X", 80.0)  # equity 9,000: a 10% drawdown, within 20%, but below the minimum
        trading.loop.ask(RunCycle())
        assert trading.guard_status().state.trading_state.value == "halted"
        # The prompt offered "/resume rebaseline" all the same, which the next reply refused.
        bot_api.say(CHAT, "/resume")
        assert bot_api.wait_for_replies(CHAT, 1)[-1].text == (
            "Trading is HALTED: equity 9000.00 < minimum 9500.00\nSend /resume confirm to resume; a rebaseline "
            "cannot lift min_equity (it moves the peak and the day's start, not a fixed level)."
        )
        bot_api.say(CHAT, "/resume confirm")
        assert bot_api.wait_for_replies(CHAT, 2)[-1].text == (
            "resume refused: equity 9000.00 < minimum 9500.00; a rebaseline cannot lift min_equity "
            "(it moves the peak and the day's start, not a fixed level)"
        )
        bot_api.say(CHAT, "/resume rebaseline")
        assert bot_api.wait_for_replies(CHAT, 3)[-1].text == (
            "resume refused, even with a rebaseline: equity 9000.00 < minimum 9500.00"
        )
        assert trading.guard_status().state.trading_state.value == "halted"
    finally:
        commands.stop()
        trading.stop()


def _utc_ms(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} UTC"


def test_a_resume_sent_before_a_halt_that_came_while_it_waited_is_refused_saying_when_each_happened(bot_api):
    # A /resume sent to the running bot and held back (a Bot API outage) lifted a halt that came
    # in the meantime, which its sender had never seen. On the system clock, as live.
    broker = PaperBroker(10_000)
    trading = start_trading_system(Settings(), broker, ListSignalSource(), loop_interval=None)
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0)
    try:
        sent = math.floor(time.time())  # the message's date: sent after the bot started...
        trading.halt("desk", "news at 14:30")  # ...and a halt came before it was read
        halted = trading.store.load_guard(trading.settings.loop_id).latched_at
        bot_api.say(CHAT, "/resume confirm", date=sent)
        assert bot_api.wait_for_replies(CHAT, 1)[-1].text == (
            f"resume refused: it was sent at {_utc_ms(datetime.fromtimestamp(sent, UTC))}, before the halt in force "
            f"began at {_utc_ms(halted)} (halted by desk: news at 14:30); send the resume again if you still mean to "
            "lift it"
        )
        assert trading.guard_status().state.trading_state.value == "halted"
        bot_api.say(CHAT, "/resume confirm", date=math.floor(halted.timestamp()) + 1)  # sent again, after the halt
        assert bot_api.wait_for_replies(CHAT, 2)[-1].text == "Resumed (was halted)."
        assert trading.guard_status().state.trading_state.value == "active"
    finally:
        commands.stop()
        trading.stop()


def test_positions_show_every_digit_of_their_prices(bot_api):
    broker = PaperBroker(1_000_000_000)
    for symbol, price, volume in (("EURUSD", 1.08505, 1), ("USDJPY", 151.234, 2.5), ("BTCUSD", 123456.7, 0.01),
                                  ("XAUUSD", 2345.67, 1_250_000)):
        broker.update_price(symbol, price)
        broker.submit_order(Order(symbol, "buy", volume))
    broker.update_price("EURUSD", 1.08504)  # a hair down: a loss that rounds to 0.00 is not "-0.00"
    trading = start_trading_system(Settings(), broker, ListSignalSource(), clock=ManualClock(), loop_interval=None)
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0)
    try:
        bot_api.say(CHAT, "/positions")
        assert bot_api.wait_for_replies(CHAT, 1)[-1].text.splitlines() == [
            "EURUSD buy 1 at 1.08505, P&L 0.00",
            "USDJPY buy 2.5 at 151.234, P&L 0.00",
            "BTCUSD buy 0.01 at 123,456.7, P&L 0.00",
            "XAUUSD buy 1,250,000 at 2,345.67, P&L 0.00",
        ]
    finally:
        commands.stop()
        trading.stop()


def test_positions_are_listed_and_a_refused_resume_offers_the_rebaseline(bot_api, system):
    trading, broker, signals = system
    commands = listening(bot_api, CommandHandler(trading, EventHub()), min_interval=0.0)
    try:
        signals.push(Signal("X", "buy", 50))
        trading.loop.ask(RunCycle())
        bot_api.say(CHAT, "/positions")
        assert bot_api.wait_for_replies(CHAT, 1)[-1].text == "X buy 50 at 100, P&L 0.00"

        broker.update_price("X", 40.0)  # equity 7,000: a 30% drawdown
        trading.loop.ask(RunCycle())
        assert trading.guard_status().state.trading_state.value == "halted"
        bot_api.say(CHAT, "/resume")  # a rebaseline would be taken: offered
        assert bot_api.wait_for_replies(CHAT, 2)[-1].text == (
            "Trading is HALTED: max drawdown 30.00% >= limit 20.00% (peak 10000.00, equity 7000.00)\n"
            "Send /resume confirm to resume, or /resume rebaseline to move the peak from 10,000.00 to today's "
            "equity 7,000.00 first."
        )
        bot_api.say(CHAT, "/resume confirm")
        refused = bot_api.wait_for_replies(CHAT, 3)[-1].text
        assert re.match(r"^resume refused: max drawdown .*\nSend /resume rebaseline to measure from today's equity "
                        r"instead\.$", refused, re.S)
        bot_api.say(CHAT, "/resume rebaseline")
        assert re.match(r"^Resumed with a new baseline \(was halted\): peak 10,000\.00 → 7,000\.00\.$",
                        bot_api.wait_for_replies(CHAT, 4)[-1].text)
    finally:
        commands.stop()


def test_a_burst_of_commands_gets_one_reply_per_second(bot_api):
    commands = listening(bot_api, echo)
    try:
        for n in range(3):
            bot_api.say(CHAT, f"/status {n}")
        replies = bot_api.wait_for_replies(CHAT, 3, timeout=10)
    finally:
        commands.stop()
    assert [r.text for r in replies] == ["ok /status 0", "ok /status 1", "ok /status 2"]
    gaps = [later.at - earlier.at for earlier, later in zip(replies, replies[1:])]
    assert min(gaps) >= 0.95, gaps


def test_a_reply_refused_by_flood_control_goes_again_after_retry_after_while_commands_are_read(bot_api, log_lines):
    # The reply was lost: a 429 was logged and nothing sent again.
    bot_api.script(Reply.too_many(2))
    taken: list[tuple[str, float]] = []

    def handler(command: ChatCommand) -> str:
        taken.append((command.name, time.monotonic()))
        return echo(command)

    commands = listening(bot_api, handler, min_interval=0.0)
    try:
        bot_api.say(CHAT, "/status")
        [refused] = bot_api.wait_for_replies(CHAT, 1)
        bot_api.say(CHAT, "/halt drill")
        replies = bot_api.wait_for_replies(CHAT, 3, timeout=10)
    finally:
        commands.stop()
    assert [(r.text, r.reply) for r in replies] == [
        ("ok /status", "too_many"), ("ok /status", "ok"), ("ok /halt drill", "ok")]
    assert replies[1].at - refused.at >= 1.95
    # The halt was read and carried out while the reply waited, not after it.
    assert [name for name, _ in taken] == ["/status", "/halt"] and taken[1][1] < replies[1].at
    assert any("the reply to /status is held (HTTP 429: Too Many Requests: retry after 2); sending it again in 2s"
               in line for line in log_lines)


def test_a_reply_held_past_its_max_age_is_dropped_with_a_log_line(bot_api, reply_log):
    bot_api.script(Reply.too_many(1.5))
    commands = listening(bot_api, echo, min_interval=0.0, reply_max_age=1.0)
    try:
        bot_api.say(CHAT, "/status")
        [refused] = bot_api.wait_for_replies(CHAT, 1)
        assert wait_until(lambda: any(level == "ERROR" for level, _ in reply_log))
        # A command read after the hold is answered at once; the dropped reply never goes out.
        assert wait_until(lambda: any(r.method == "getUpdates" and r.at > refused.at + 1.5 for r in bot_api.requests))
        bot_api.say(CHAT, "/positions")
        replies = bot_api.wait_for_replies(CHAT, 2)
    finally:
        commands.stop()
    assert [(r.text, r.reply) for r in replies] == [("ok /status", "too_many"), ("ok /positions", "ok")]
    assert reply_log == [
        ("WARNING", "telegram commands: the reply to /status is held (HTTP 429: Too Many Requests: retry after 1.5);"
                    " sending it again in 1.5s"),
        ("ERROR", "telegram commands: the reply to /status was dropped: it could not be sent within 1s of the command"
                  " (last try: HTTP 429: Too Many Requests: retry after 1.5). It began: 'ok /status'"),
    ]


def tries_after(bot_api: BotApiServer, handler, texts: tuple[str, ...], count: int, **options) -> list[Received]:
    """The first ``count`` sendMessage tries of a poller (started with ``options``) that was sent
    ``texts``; the poller has stopped, and so logged all it will, when this returns."""
    commands = listening(bot_api, handler, min_interval=0.0, **options)
    try:
        for text in texts:
            bot_api.say(CHAT, text)
        return bot_api.wait_for_replies(CHAT, count)
    finally:
        bot_api.release()  # a failed assertion must not leave a hung request
        commands.stop()


def test_a_reply_lost_to_5xx_answers_goes_again_after_each_delay_and_the_chat_shows_it_once(bot_api, reply_log):
    # The reply was lost with a log line: the operator who sent /halt did not learn whether it halted.
    bot_api.script(Reply.error(500), Reply.error(503, "Service Unavailable"))
    tries = tries_after(bot_api, echo, ("/halt drill",), 3, reply_retry_delays=(0.2, 0.4))
    assert [(r.text, r.reply) for r in tries] == [("ok /halt drill", "error")] * 2 + [("ok /halt drill", "ok")]
    assert bot_api.shown(CHAT) == ["ok /halt drill"]  # Telegram said it failed: sent again as it was
    assert tries[1].at - tries[0].at >= 0.2 and tries[2].at - tries[1].at >= 0.4
    assert reply_log == [
        ("WARNING", "telegram commands: the reply to /halt was not delivered (HTTP 500: Internal Server Error); try 2"
                    " of 3 in 0.2s"),
        ("DEBUG", "telegram commands: the reply to /halt was not delivered (HTTP 503: Service Unavailable); try 3 of 3"
                  " in 0.4s"),
        ("INFO", "telegram commands: the reply to /halt was delivered at try 3"),
    ]


def test_a_reply_that_may_have_arrived_goes_again_marked_as_a_possible_repeat(bot_api, reply_log):
    # A lost answer, no answer in time, a gateway's 504: Telegram may have carried the try out.
    bot_api.script(Reply.lost(), Reply.ok(), Reply.hang(), Reply.ok(), Reply.error(504, "Gateway Timeout"), Reply.ok())
    tries = tries_after(bot_api, lambda command: f"{command.name} answered\nsecond line",
                        ("/status", "/halt", "/positions"), 6, timeout=1.0, reply_retry_delays=(0.1,))
    assert [(r.text, r.reply) for r in tries] == [
        ("/status answered\nsecond line", "lost"),
        (f"/status answered\nsecond line\n{RESENT_NOTE}", "ok"),
        ("/halt answered\nsecond line", "hang"),
        (f"/halt answered\nsecond line\n{RESENT_NOTE}", "ok"),
        ("/positions answered\nsecond line", "error"),
        (f"/positions answered\nsecond line\n{RESENT_NOTE}", "ok"),
    ]
    assert bot_api.shown(CHAT) == [
        "/status answered\nsecond line",
        "/status answered\nsecond line\n(Sent again: an earlier try may have arrived, so this may be a repeat.)",
        "/halt answered\nsecond line\n(Sent again: an earlier try may have arrived, so this may be a repeat.)",
        "/positions answered\nsecond line\n(Sent again: an earlier try may have arrived, so this may be a repeat.)",
    ]
    marked = ", marked as a possible repeat: Telegram may have taken the try before"
    assert reply_log == [
        ("WARNING", "telegram commands: the reply to /status was not delivered (RemoteProtocolError: Server"
                    f" disconnected without sending a response.); try 2 of 2 in 0.1s{marked}"),
        ("INFO", "telegram commands: the reply to /status was delivered at try 2"),
        ("WARNING", "telegram commands: the reply to /halt was not delivered (no answer within 1s (ReadTimeout));"
                    f" try 2 of 2 in 0.1s{marked}"),
        ("INFO", "telegram commands: the reply to /halt was delivered at try 2"),
        ("WARNING", "telegram commands: the reply to /positions was not delivered (HTTP 504: Gateway Timeout); try 2"
                    f" of 2 in 0.1s{marked}"),
        ("INFO", "telegram commands: the reply to /positions was delivered at try 2"),
    ]


def test_a_long_reply_sent_again_keeps_its_mark_within_telegrams_length_limit(bot_api):
    bot_api.script(Reply.lost())
    first, again = (r.text for r in tries_after(bot_api, lambda command: "x" * 5000, ("/positions",), 2,
                                                reply_retry_delays=(0.0,)))
    assert first == "x" * (MAX_MESSAGE_LENGTH - 1) + "…"
    assert again == "x" * (MAX_MESSAGE_LENGTH - len(RESENT_NOTE) - 2) + "…\n" + RESENT_NOTE
    assert len(again) == MAX_MESSAGE_LENGTH


def test_a_reply_whose_tries_are_used_up_is_logged_once_at_error_and_the_next_reply_goes_out(bot_api, reply_log):
    bot_api.script(*[Reply.error(500)] * 3)

    def handler(command: ChatCommand) -> str:
        return "HALTED (was active): news.\nEvery position is being closed." if command.name == "/halt" else echo(command)

    tries = tries_after(bot_api, handler, ("/halt news", "/status"), 4, reply_retry_delays=(0.05, 0.1))
    assert [r.reply for r in tries] == ["error", "error", "error", "ok"]
    assert bot_api.shown(CHAT) == ["ok /status"]
    assert reply_log == [
        ("WARNING", "telegram commands: the reply to /halt was not delivered (HTTP 500: Internal Server Error); try 2"
                    " of 3 in 0.05s"),
        ("DEBUG", "telegram commands: the reply to /halt was not delivered (HTTP 500: Internal Server Error); try 3"
                  " of 3 in 0.1s"),
        ("ERROR", "telegram commands: the reply to /halt was dropped after 3 tries; the last: HTTP 500: Internal Server"
                  " Error. It began: 'HALTED (was active): news.'"),
    ]


def test_a_reply_refused_with_a_4xx_is_not_sent_again_and_is_logged_once_naming_the_refusal(bot_api, reply_log):
    bot_api.script(Reply.error(400, "Bad Request: message text is empty"))
    tries = tries_after(bot_api, echo, ("/status", "/positions"), 2, reply_retry_delays=(0.0, 0.0))
    assert [(r.text, r.reply) for r in tries] == [("ok /status", "error"), ("ok /positions", "ok")]
    assert bot_api.shown(CHAT) == ["ok /positions"]
    assert reply_log == [
        ("ERROR", "telegram commands: the reply to /status was refused (HTTP 400: Bad Request: message text is empty);"
                  " not sent again, as no retry can mend that. It began: 'ok /status'"),
    ]


def test_a_halt_is_carried_out_while_the_reply_before_it_hangs_and_its_reply_follows_in_order(bot_api):
    # The poller sent each reply itself: a hanging reply kept the next /halt unread for the whole timeout.
    bot_api.script(Reply.hang())
    halted = threading.Event()

    def handler(command: ChatCommand) -> str:
        if command.name == "/halt":
            halted.set()
        return echo(command)

    commands = listening(bot_api, handler, min_interval=0.0, timeout=WAIT, reply_retry_delays=(0.0,))
    try:
        bot_api.say(CHAT, "/status")
        assert wait_until(lambda: any(r.reply == "hang" for r in bot_api.requests))
        bot_api.say(CHAT, "/halt drill")
        assert halted.wait(WAIT / 2)  # carried out while the reply to /status still hangs
        assert [r.reply for r in bot_api.replies(CHAT)] == ["hang"]
        bot_api.release()  # the hung try ends without an answer: it is sent again, before the halt's reply
        tries = bot_api.wait_for_replies(CHAT, 3)
    finally:
        bot_api.release()
        commands.stop()
    assert [(r.text, r.reply) for r in tries] == [
        ("ok /status", "hang"), (f"ok /status\n{RESENT_NOTE}", "ok"), ("ok /halt drill", "ok")]


def test_a_hanging_reply_holds_up_no_alert(bot_api):
    bot_api.script(Reply.hang())  # the command's reply hangs; the alert after it is answered
    commands = listening(bot_api, lambda command: "a reply that will hang")
    alerts = TelegramAlerts(TEST_TOKEN, CHAT, bot_api.url, min_interval=0.0)
    try:
        bot_api.say(CHAT, "/status")
        assert wait_until(lambda: any(r.reply == "hang" for r in bot_api.requests))
        started = time.monotonic()
        alerts.send(Alert("Trading halted", "max drawdown", Severity.CRITICAL))
        assert time.monotonic() - started < 2.0
        assert [r.text for r in bot_api.delivered] == ["[CRITICAL] Trading halted\nmax drawdown"]
    finally:
        bot_api.release()
        commands.stop()
        alerts.close()


def test_positions_from_a_hung_broker_are_unknown_and_a_list_from_an_earlier_answer_says_so():
    # /positions used to pass the status's fallback list off as the account now.
    broker = SlowListBroker(paper_with_positions(1))
    trading = start_trading_system(Settings(), broker, ListSignalSource(), clock=ManualClock(), loop_interval=None)
    handler = CommandHandler(trading, EventHub(), timeout=1.0)
    try:
        assert handler(sent_now("/positions")) == "S0 buy 10 at 100, P&L 0.00"
        trading.guard.tell(Halt("ops", "drill"))
        assert broker.closing.wait(WAIT)  # the guard is busy closing: the list after its last answer is shown, dated
        assert re.match(r"^As of \d+\.\ds ago \(read after the guard's answer, and the guard did not answer within 1s\):\n"
                        r"S0 buy 10 at 100, P&L 0\.00$", handler(sent_now("/positions")))
        broker.slow.set()
        broker.release.set()  # the guard answers HALTED, flat; the list after it hangs
        assert wait_until(lambda: handler(sent_now("/positions")) == (
            "Open positions unknown: the broker did not answer within 1s; its last list was read before the guard's"
            " answer shown."))
        broker.unblock.set()
        assert wait_until(lambda: handler(sent_now("/positions")) == "No open positions.")
    finally:
        broker.release.set()  # a failed assertion must not leave the guard or a status thread waiting
        broker.unblock.set()
        trading.stop()


def _calling(thread: threading.Thread, function: Any) -> bool:
    # Whether ``thread`` is inside ``function`` now: a call that blocks shows nothing else.
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None and frame.f_code is not function.__code__:
        frame = frame.f_back
    return frame is not None


def test_a_halt_sent_while_the_system_starts_is_answered_as_carried_out_by_its_guard():
    # An embedder's bot listening before the system's first start ended answered "not running",
    # though the halt waited for the start and its guard carried it out.
    store = SlowStart()
    trading = TradingSystem(Settings(), PaperBroker(), ListSignalSource(), store=store, loop_interval=None)
    handler = CommandHandler(trading, EventHub(), timeout=WAIT)
    starting = threading.Thread(target=trading.start)
    starting.start()
    try:
        assert store.reading.wait(WAIT)
        replies: list[str] = []
        halting = threading.Thread(target=lambda: replies.append(handler(sent_now("/halt news"))))
        halting.start()
        assert wait_until(lambda: _calling(halting, trading.halt))  # it waits for the start
        store.release.set()
        halting.join(WAIT)
        assert replies == ["HALTED (was active): news. Every position is being closed."]
        assert store.load_pending_halts(trading.settings.loop_id) == []
    finally:
        store.release.set()
        starting.join(WAIT)
        trading.stop()


def test_a_resume_a_busy_guard_did_not_answer_is_said_to_be_maybe_still_carried_out_and_it_is():
    # The reply said "try again" although the resume waited in the guard's mailbox and ran later.
    broker = SlowCloseBroker(paper_with_positions(1))
    trading = start_trading_system(Settings(), broker, ListSignalSource(), clock=ManualClock(), loop_interval=None)
    handler = CommandHandler(trading, EventHub(), timeout=1.0)
    try:
        trading.guard.tell(Halt("ops", "drill"))
        assert broker.closing.wait(WAIT)  # the guard is busy closing the position
        assert handler(sent_now("/resume confirm")) == (
            "The trading system did not answer /resume confirm within 1s. It may still carry it out: send /status to"
            " see before sending it again.")
        broker.release.set()
        assert wait_until(lambda: trading.guard_status().state.trading_state.value == "active")
    finally:
        broker.release.set()
        trading.stop()
    assert handler(sent_now("/halt news")) == (
        "The trading system is not running: the halt (news) is saved in its store, and carried out first when it starts.")
    (pending,) = trading.store.load_pending_halts(trading.settings.loop_id)
    assert (pending.by, pending.reason) == ("telegram", "news")


def test_a_message_dated_ahead_of_this_hosts_clock_says_once_that_the_clock_runs_behind(bot_api, log_lines):
    # A message cannot be read before it is sent: the host's clock is behind Telegram's, and a
    # /resume's date would be compared with halts dated on it.
    commands = listening(bot_api, echo, min_interval=0.0)
    try:
        for _ in range(2):
            bot_api.say(CHAT, "/status", date=int(time.time()) + 60)
        bot_api.wait_for_replies(CHAT, 2)
    finally:
        commands.stop()
    behind = [line for line in log_lines if "after this host's clock" in line]
    assert len(behind) == 1
    assert re.fullmatch(r"telegram commands: a message is dated (59|60)s after this host's clock: the host's clock "
                        r"runs behind Telegram's, and a /resume's date is compared with halts on the host's clock; set "
                        r"the host's clock right \(NTP\) \{'component': 'telegram-commands'\}\n", behind[0])
