"""Commands from the alert chat: getUpdates long polling on a thread of its own, replies rate-limited.

The same bot that `TelegramAlerts` sends with (same token, chat and Bot API base URL, the same
token scrubbing and rate-limit policy) but its own HTTP client and thread, so a hanging poll or
reply never delays an alert, and the guard is never waited on. Only messages from the configured
chat reach the handler; any other is dropped, logged by chat id without its text, and counted
(``telegram_foreign_messages_total``). Each reaches it as a `ChatCommand` that says when it was
sent and whether that was before this poller started (Telegram keeps a message for 24 hours, so
one sent while the bot was not running is read at its next start). A command addressed to another
bot of the chat (``/halt@other_bot``) is dropped without a reply: the poller learns its own
username from ``getMe`` before its first poll. Replies to the chat are at least ``min_interval``
seconds apart (Telegram allows about one message per second per chat). A reply that Telegram's
flood control refuses (429) is sent again after the ``retry_after`` it names, in order with the
replies after it; meanwhile the poll goes on, its long poll cut short so the reply goes out on time.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import httpx
from loguru import logger

from runtime.adapters.telegram import (
    DEFAULT_BASE_URL,
    MAX_MESSAGE_LENGTH,
    RateLimiter,
    _register_token,
    classify_response,
    scrub,
)
from runtime.backoff import Backoff
from runtime.metrics import MetricNames, MetricsSink, NullMetrics

if TYPE_CHECKING:
    from runtime.settings import Settings

__all__ = ["ChatCommand", "TelegramCommands", "parse_command"]

_log = logger.bind(component="telegram-commands")


def parse_command(text: str) -> tuple[str, str, str] | None:
    """``("/name", "bot", "the rest")`` for a message that is a command (``/Halt@my_bot news``
    gives ``("/halt", "my_bot", "news")``; ``bot`` is "" without an ``@`` suffix), or None for
    plain text. The command word ends at any whitespace (a newline typed on a phone included);
    the rest is stripped."""
    text = text.strip()
    if not text.startswith("/"):
        return None
    word, *rest = text.split(maxsplit=1)
    name, _, bot = word.partition("@")
    return name.lower(), bot, rest[0] if rest else ""


@attrs.frozen
class ChatCommand:
    """A message from the configured chat, as `TelegramCommands` hands it to its handler.

    ``name`` is the command word as `parse_command` gives it ("/halt"), "" for plain text;
    ``argument`` is the rest (the whole text, stripped, for plain text). ``sent_at`` is the
    message's date (UTC, whole seconds, as Telegram gives it). ``before_start`` is True when it
    was sent before this poller began polling: the bot was not running, and its sender may not
    have seen what happened since. A message dated in the second polling began counts as after.
    ``unchecked_bot`` is the bot it was addressed to (``/halt@name``) when this bot does not know
    its own username (getMe has not answered), so it may be meant for another bot of the chat; ""
    when it has no suffix, or the suffix is this bot's.
    """

    name: str
    argument: str
    sent_at: datetime
    before_start: bool = False
    unchecked_bot: str = ""


def _sent_at(date: Any) -> datetime | None:
    # A message's date (unix seconds) as a UTC time, or None when it is not one.
    if isinstance(date, bool) or not isinstance(date, int):
        return None
    try:
        return datetime.fromtimestamp(date, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@attrs.frozen
class _Reply:
    text: str
    to: str  # the command answered, for the log
    made: float  # time.monotonic() when the handler answered


class TelegramCommands:
    """Polls ``getUpdates`` for ``chat_id``'s messages and answers each with ``handler(command)``.

    Promises: `start` returns at once; the poll, the handler and the replies all run on one
    daemon thread; a failing or hanging Bot API is retried with ``backoff`` and never raises into
    the caller; a handler that raises gets its error logged and the chat a short apology; each
    batch is confirmed through the next poll's ``offset``, so Telegram does not send it again.
    Before polling it asks ``getMe`` for the bot's username; a command with another bot's
    ``@name`` is then dropped (logged at debug). While getMe fails (asked again after each
    ``backoff`` delay) such a command is handed over with ``unchecked_bot``, for the handler to
    judge. A reply refused with 429 is sent again after its ``retry_after``, without holding up the
    reading of the next commands (only the ``min_interval`` spacing is waited for in line); one
    that could not go out within ``reply_max_age`` seconds of its command is dropped, logged.
    """

    def __init__(
        self,
        token: str,
        chat_id: str | int,
        handler: Callable[[ChatCommand], str],
        base_url: str = DEFAULT_BASE_URL,
        *,
        metrics: MetricsSink | None = None,
        poll_seconds: int = 10,
        timeout: float = 10.0,
        min_interval: float = 1.0,
        backoff: Backoff | None = None,
        reply_max_age: float = 60.0,
    ) -> None:
        self._token = token
        self._chat_id = str(chat_id).strip()
        self._handler = handler
        self._metrics = metrics if metrics is not None else NullMetrics()
        self._poll_seconds = poll_seconds
        self._timeout = timeout
        self._min_interval = min_interval
        self._limiter = RateLimiter(min_interval)
        self._reply_max_age = reply_max_age
        self._outbox: deque[_Reply] = deque()
        self._backoff = backoff if backoff is not None else Backoff(1.0, 30.0, 0.2)
        self._stopping = threading.Event()
        self._offset: int | None = None
        self._started = 0  # the second polling began, in unix time (as a message's date is)
        self._username: str | None = None  # this bot's, from getMe
        self._get_me_failures = 0
        self._get_me_at = 0.0  # time.monotonic() from which getMe may be asked again
        _register_token(token)
        # The token lives only inside the client's base URL, as in TelegramAlerts.
        self._client = httpx.Client(
            base_url=f"{base_url.rstrip('/')}/bot{token}/", timeout=httpx.Timeout(timeout), follow_redirects=False
        )
        self._thread = threading.Thread(target=self._run, name="tradewarden-telegram-commands", daemon=True)

    @classmethod
    def from_settings(
        cls, settings: Settings, handler: Callable[[ChatCommand], str], metrics: MetricsSink | None = None
    ) -> TelegramCommands | None:
        """Commands for the settings' bot and chat, or None when either is not set."""
        if not (settings.telegram_bot_token and settings.telegram_chat_id):
            return None
        return cls(settings.telegram_bot_token, settings.telegram_chat_id, handler,
                   settings.telegram_api_base_url, metrics=metrics)

    def start(self) -> TelegramCommands:
        """Start polling on its own thread; returns self. A message sent before now is handed
        over with ``before_start``."""
        self._started = math.floor(time.time())
        self._thread.start()
        _log.info("telegram commands: listening to chat {}", self._chat_id)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop polling; a poll in flight is abandoned with the daemon thread after ``timeout``."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._outbox:
            _log.warning("telegram commands: stopping; replies not sent: {}", len(self._outbox))
        self._client.close()

    def __repr__(self) -> str:
        return f"TelegramCommands(token='***', chat_id={self._chat_id!r})"

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._username is None and time.monotonic() >= self._get_me_at:
                self._learn_username()
            self._send_replies()
            try:
                updates = self._poll()
            except Exception as exc:  # the poller outlives any Bot API or network failure
                failures += 1
                delay = self._backoff.delay(failures)
                _log.warning("telegram commands: getUpdates failed ({}); again in {:.1f}s",
                             scrub(f"{type(exc).__name__}: {exc}", self._token), delay)
                self._stopping.wait(delay)
                continue
            failures = 0
            for update in updates:
                if self._stopping.is_set():
                    return
                self._take(update)

    def _learn_username(self) -> None:
        try:
            response = self._client.post("getMe")
            payload = response.json()
            result = payload.get("result") if isinstance(payload, dict) and payload.get("ok") is True else None
            username = result.get("username") if isinstance(result, dict) else None
            if response.status_code != 200 or not isinstance(username, str) or not username:
                raise RuntimeError(f"HTTP {response.status_code}: {str(payload)[:200]}")
        except Exception as exc:
            self._get_me_failures += 1
            delay = self._backoff.delay(self._get_me_failures)
            self._get_me_at = time.monotonic() + delay
            # Said once in full; the retries are for the debug log.
            _log.log("WARNING" if self._get_me_failures == 1 else "DEBUG",
                     "telegram commands: this bot's username is not known (getMe failed: {}); until it is, a command"
                     " addressed to a bot by @name may be meant for another bot: /halt and the reading commands are"
                     " carried out, /resume confirm|rebaseline is not. getMe again in {:.1f}s",
                     scrub(f"{type(exc).__name__}: {exc}", self._token), delay)
            return
        self._username = username
        _log.info("telegram commands: this bot is @{}", username)

    def _poll(self) -> list[dict[str, Any]]:
        seconds = self._poll_seconds
        if self._outbox:  # a held reply: poll no longer than until it falls due (the API takes whole seconds)
            seconds = max(1, min(seconds, math.ceil(self._limiter.delay(time.monotonic()))))
        params: dict[str, Any] = {"timeout": seconds, "allowed_updates": ["message"]}
        if self._offset is not None:
            params["offset"] = self._offset
        # The long poll may rightly take its seconds; only beyond that is the server hanging.
        response = self._client.post("getUpdates", json=params, timeout=seconds + self._timeout)
        payload = response.json()
        if response.status_code != 200 or not isinstance(payload, dict) or payload.get("ok") is not True:
            raise RuntimeError(f"HTTP {response.status_code}: {str(payload)[:200]}")
        updates = [u for u in payload.get("result", []) if isinstance(u, dict) and isinstance(u.get("update_id"), int)]
        if updates:
            self._offset = max(u["update_id"] for u in updates) + 1
        return updates

    def _take(self, update: dict[str, Any]) -> None:
        message = update.get("message")
        if not isinstance(message, dict):
            return
        chat = message.get("chat")
        chat_id = str(chat.get("id")) if isinstance(chat, dict) else None
        if chat_id != self._chat_id:
            # Its text may be anything, a token pasted by mistake included: never logged.
            self._metrics.incr(MetricNames.TELEGRAM_FOREIGN_MESSAGES_TOTAL)
            _log.warning("telegram commands: ignored a message from chat {} (not the configured chat)", chat_id)
            return
        text, date = message.get("text"), message.get("date")
        if not isinstance(text, str):
            return
        sent_at = _sent_at(date)
        if sent_at is None:
            # Every Bot API message has one; without it, nothing tells whether it is from before the start.
            _log.warning("telegram commands: ignored a message whose date is {!r} (not a unix time)", date)
            return
        name, bot, argument = parse_command(text) or ("", "", text.strip())
        if bot and self._username is not None and bot.lower() != self._username.lower():
            _log.debug("telegram commands: {}@{} is for another bot: ignored", name, bot)
            return
        command = ChatCommand(name, argument, sent_at, before_start=sent_at.timestamp() < self._started,
                              unchecked_bot=bot if self._username is None else "")
        try:
            answer = self._handler(command)
        except Exception as exc:
            _log.error("telegram commands: the command failed: {!r}", exc)
            answer = f"That command failed: {type(exc).__name__}. See the bot's log."
        if len(answer) > MAX_MESSAGE_LENGTH:
            answer = answer[: MAX_MESSAGE_LENGTH - 1] + "…"
        self._outbox.append(_Reply(answer, name or "a message", time.monotonic()))
        self._send_replies()

    def _send_replies(self) -> None:
        # In order, each reply that may go out now or after the spacing; a longer hold (a 429's
        # retry_after) is waited out by the next poll instead, so commands keep being read.
        while self._outbox:
            reply, now = self._outbox[0], time.monotonic()
            wait = self._limiter.delay(now)
            if now + wait - reply.made > self._reply_max_age:
                self._outbox.popleft()
                _log.warning("telegram commands: the reply to {} was dropped: it could not be sent within {:g}s of"
                             " the command", reply.to, self._reply_max_age)
                continue
            if wait > self._min_interval or self._stopping.wait(wait):
                return
            if self._send(reply):
                self._outbox.popleft()

    def _send(self, reply: _Reply) -> bool:
        # True when the reply is done with (delivered, or lost and logged); False when Telegram
        # asked for it again after a wait, which the limiter now holds.
        try:
            response = self._client.post("sendMessage", json={"chat_id": self._chat_id, "text": reply.text})
            try:
                payload = response.json()
            except ValueError:
                payload = None
            outcome = classify_response(response.status_code, payload)
        except Exception as exc:  # a lost reply is logged; the next command gets its own
            _log.warning("telegram commands: the reply to {} was not delivered: {}", reply.to,
                         scrub(f"{type(exc).__name__}: {exc}", self._token))
            return True
        finally:
            self._limiter.record(time.monotonic())
        if outcome.retry_after is not None:
            self._limiter.hold_until(time.monotonic() + outcome.retry_after)
            _log.warning("telegram commands: the reply to {} is held ({}); sending it again in {:g}s", reply.to,
                         scrub(outcome.description, self._token), outcome.retry_after)
            return False
        if not outcome.delivered:
            _log.warning("telegram commands: the reply to {} was not delivered: {}", reply.to,
                         scrub(outcome.description, self._token))
        return True
