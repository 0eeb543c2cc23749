"""Commands from the alert chat: getUpdates long polling on a thread of its own, replies rate-limited.

The same bot that `TelegramAlerts` sends with (same token, chat and Bot API base URL, the same
token scrubbing and rate-limit policy) but its own HTTP clients and threads, so a hanging poll or
reply never delays an alert, and the guard is never waited on. Only messages from the configured
chat reach the handler; any other is dropped, logged by chat id without its text, and counted
(``telegram_foreign_messages_total``). Each reaches it as a `ChatCommand` that says when it was
sent and whether that was before this poller started (Telegram keeps a message for 24 hours, so
one sent while the bot was not running is read at its next start). A command addressed to another
bot of the chat (``/halt@other_bot``) is dropped without a reply: the poller learns its own
username from ``getMe`` before its first poll.

Replies go out on a thread of their own, in order, at least ``min_interval`` seconds apart
(Telegram allows about one message per second per chat), so a reply that hangs or waits to be sent
again never holds up the reading and carrying out of the next command: a /halt never waits on the
answer to the command before it. A reply that Telegram's flood control refuses (429) is sent again
after the ``retry_after`` it names; one lost to a 5xx, a timeout or a connection error is sent again
after each of `REPLY_RETRY_DELAYS`, then given up (logged at ERROR with its first line). Any other
refusal (a 4xx) cannot be mended by sending again and is logged at ERROR at once.

Sent again, a reply may show twice: when the request went out whole and no answer came back (no
answer in time, the connection closed before the answer, a gateway's 502 or 504), Telegram may have
put it in the chat already, and the Bot API has no way to ask, nor an idempotency key. Such a reply
is sent again all the same, since an operator who sent /halt must learn whether the bot halted, but
marked with `RESENT_NOTE` so that a second copy reads as a repeat, not as a second halt. A request
that surely did not reach Telegram (no connection, a 500 or 503 from Telegram itself) is sent again
as it was: the chat shows it once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import httpx
from loguru import logger

from runtime.adapters.telegram import (
    DEFAULT_BASE_URL,
    MAX_MESSAGE_LENGTH,
    RESENT_NOTE,
    RateLimiter,
    _register_token,
    marked_as_resent,
    post_message,
    scrub,
)
from runtime.backoff import Backoff
from runtime.metrics import MetricNames, MetricsSink, NullMetrics
from runtime.validation import finite_number

if TYPE_CHECKING:
    from runtime.adapters.telegram import Outcome
    from runtime.settings import Settings

__all__ = ["REPLY_RETRY_DELAYS", "RESENT_NOTE", "ChatCommand", "TelegramCommands", "parse_command"]

_log = logger.bind(component="telegram-commands")

_CLOCK_SLACK = 2.0  # seconds a message's date (whole seconds) may be ahead of this host's clock unremarked

REPLY_RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0)
"""Seconds to wait before each new try of a reply lost to a 5xx, a timeout or a connection error;
after the last, the reply is given up. Six tries over about half a minute: Telegram's 5xx and
dropped connections mostly pass within seconds (a server restarting behind its balancer), and the
first wait is Telegram's own pace of one message a second per chat. The cap keeps the answer timely:
within the minute a reply may wait (``reply_max_age``), while the operator still looks at the chat;
past it, an outage is long, the ERROR log line says so, and /status asks afresh. No random stretch:
one bot retries one chat, with nobody to fall in step with."""

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

    @property
    def first_line(self) -> str:
        # What a log line quotes of it: enough to tell which answer was lost.
        return self.text.split("\n", 1)[0]

    def marked(self) -> str:
        # The text with RESENT_NOTE below it, cut to fit Telegram's limit.
        return marked_as_resent(self.text)


class TelegramCommands:
    """Polls ``getUpdates`` for ``chat_id``'s messages and answers each with ``handler(command)``.

    Promises: `start` returns at once; the poll and the handler run on one daemon thread, the
    replies on another, so no reply ever holds up the reading and carrying out of a command; a
    failing or hanging Bot API is retried with ``backoff`` and never raises into the caller; a
    handler that raises gets its error logged and the chat a short apology; each batch is
    confirmed through the next poll's ``offset``, so Telegram does not send it again.
    Before polling it asks ``getMe`` for the bot's username; a command with another bot's
    ``@name`` is then dropped (logged at debug). While getMe fails (asked again after each
    ``backoff`` delay) such a command is handed over with ``unchecked_bot``, for the handler to
    judge.

    Replies go out in the order of their commands, at least ``min_interval`` seconds apart. One
    refused with 429 is sent again after its ``retry_after``; one lost to a 5xx, a timeout
    (``timeout`` seconds per request) or a connection error is sent again after each delay of
    ``reply_retry_delays`` in turn (`REPLY_RETRY_DELAYS`), with `RESENT_NOTE` below it once a try
    may have arrived (see the module docstring); the first failure is logged at WARNING, a
    delivery after failures at INFO. A reply is given up, logged once at ERROR with its first line,
    when its tries are used up, when Telegram refuses it otherwise (a 4xx: no retry can mend
    that), or when it could not go out within ``reply_max_age`` seconds of its command.
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
        reply_retry_delays: Sequence[float] = REPLY_RETRY_DELAYS,
    ) -> None:
        self._token = token
        self._chat_id = str(chat_id).strip()
        self._handler = handler
        self._metrics = metrics if metrics is not None else NullMetrics()
        self._poll_seconds = poll_seconds
        self._timeout = timeout
        self._limiter = RateLimiter(min_interval)
        self._reply_max_age = reply_max_age
        self._retry_delays = tuple(finite_number("reply_retry_delays", delay) for delay in reply_retry_delays)
        if any(delay < 0 for delay in self._retry_delays):
            raise ValueError(f"reply_retry_delays must be seconds >= 0, got {reply_retry_delays!r}")
        self._outbox: deque[_Reply] = deque()
        self._outbox_changed = threading.Condition()  # the poll thread appends, the reply thread pops
        self._backoff = backoff if backoff is not None else Backoff(1.0, 30.0, 0.2)
        self._stopping = threading.Event()
        self._taking = threading.Lock()  # held while a poll's updates are carried out, so stop can wait for them
        self._offset: int | None = None
        self._started = 0  # the second polling began, in unix time (as a message's date is)
        self._username: str | None = None  # this bot's, from getMe
        self._get_me_failures = 0
        self._get_me_at = 0.0  # time.monotonic() from which getMe may be asked again
        self._clock_warned = False  # said once that this host's clock runs behind Telegram's
        _register_token(token)
        # The token lives only inside the clients' base URL, as in TelegramAlerts. Each thread has a
        # client of its own, so neither waits on a connection the other holds.
        self._client = self._new_client(base_url)
        self._reply_client = self._new_client(base_url)
        self._thread = threading.Thread(target=self._run, name="tradewarden-telegram-commands", daemon=True)
        self._reply_thread = threading.Thread(target=self._run_replies, name="tradewarden-telegram-replies",
                                              daemon=True)

    def _new_client(self, base_url: str) -> httpx.Client:
        return httpx.Client(base_url=f"{base_url.rstrip('/')}/bot{self._token}/", timeout=httpx.Timeout(self._timeout),
                            follow_redirects=False)

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
        self._reply_thread.start()
        self._thread.start()
        _log.info("telegram commands: listening to chat {}", self._chat_id)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop polling and replying. No command is carried out once this returns: a command being
        carried out is waited for, a long poll in flight is abandoned at once (what it brings is not
        taken), and a reply in flight is waited for; each wait ends after ``timeout`` seconds in all,
        abandoning its daemon thread. Replies not sent by then are counted in a warning."""
        self._stopping.set()
        with self._outbox_changed:
            self._outbox_changed.notify_all()
        deadline = time.monotonic() + timeout
        if self._taking.acquire(timeout=timeout):
            self._taking.release()
        if self._reply_thread.is_alive():
            self._reply_thread.join(max(0.0, deadline - time.monotonic()))
        with self._outbox_changed:
            unsent = len(self._outbox)
        if unsent:
            _log.warning("telegram commands: stopping; replies not sent: {}", unsent)
        self._client.close()
        self._reply_client.close()

    def __repr__(self) -> str:
        return f"TelegramCommands(token='***', chat_id={self._chat_id!r})"

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._username is None and time.monotonic() >= self._get_me_at:
                self._learn_username()
            try:
                updates = self._poll()
            except Exception as exc:  # the poller outlives any Bot API or network failure
                if self._stopping.is_set():
                    return  # stop closed the client under the long poll
                failures += 1
                delay = self._backoff.delay(failures)
                _log.warning("telegram commands: getUpdates failed ({}); again in {:.1f}s",
                             scrub(f"{type(exc).__name__}: {exc}", self._token), delay)
                self._stopping.wait(delay)
                continue
            failures = 0
            with self._taking:
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
        self._check_clock(sent_at)
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
        with self._outbox_changed:
            self._outbox.append(_Reply(answer, name or "a message", time.monotonic()))
            self._outbox_changed.notify_all()

    def _check_clock(self, sent_at: datetime) -> None:
        # A message cannot be sent after it is read: a date ahead of this host's clock means the
        # host's runs behind Telegram's, and a /resume is judged by its date against halts dated on
        # the host's clock (one sent before a halt could then pass as sent after it). Said once.
        ahead = sent_at.timestamp() - time.time()
        if ahead > _CLOCK_SLACK and not self._clock_warned:
            self._clock_warned = True
            _log.warning("telegram commands: a message is dated {:.0f}s after this host's clock: the host's clock runs "
                         "behind Telegram's, and a /resume's date is compared with halts on the host's clock; set the "
                         "host's clock right (NTP)", ahead)

    # -- the reply thread ----------------------------------------------------------------------

    def _run_replies(self) -> None:
        while True:
            with self._outbox_changed:
                self._outbox_changed.wait_for(lambda: self._outbox or self._stopping.is_set())
                if self._stopping.is_set():
                    return
                reply = self._outbox[0]
            if not self._deliver(reply):
                return  # stopping: the reply stays in the outbox, to be counted
            with self._outbox_changed:
                self._outbox.popleft()

    def _deliver(self, reply: _Reply) -> bool:
        # Tries ``reply`` until it is delivered or given up (True), or the poller stops (False).
        failures = 0  # the tries lost to a 5xx, a timeout or a network error (a 429 is not one)
        marked = False  # a try may have arrived: every later one carries RESENT_NOTE
        last: Outcome | None = None
        while True:
            now = time.monotonic()
            wait = self._limiter.delay(now)
            if now + wait - reply.made > self._reply_max_age:
                lost = f" (last try: {last.description})" if last is not None else ""
                self._give_up(reply, f"was dropped: it could not be sent within {self._reply_max_age:g}s of the command"
                                     f"{lost}")
                return True
            if self._stopping.wait(wait):
                return False
            outcome = post_message(self._reply_client, self._chat_id, reply.marked() if marked else reply.text,
                                   token=self._token, timeout=self._timeout)
            if self._stopping.is_set() and not outcome.delivered:
                return False  # stop has counted it among the replies not sent
            now = time.monotonic()
            self._limiter.record(now)
            if outcome.delivered:
                if failures:
                    _log.info("telegram commands: the reply to {} was delivered at try {}", reply.to, failures + 1)
                return True
            last = outcome
            if outcome.retry_after is not None:
                self._limiter.hold_until(now + outcome.retry_after)
                _log.warning("telegram commands: the reply to {} is held ({}); sending it again in {:g}s", reply.to,
                             outcome.description, outcome.retry_after)
                continue
            if not outcome.retryable:
                self._give_up(reply, f"was refused ({outcome.description}); not sent again, as no retry can mend that")
                return True
            failures += 1
            if failures > len(self._retry_delays):
                self._give_up(reply, f"was dropped after {failures} tries; the last: {outcome.description}")
                return True
            marked = marked or outcome.may_have_arrived
            delay = self._retry_delays[failures - 1]
            self._limiter.hold_until(now + delay)
            # Said once at WARNING; the further tries are for the debug log, the outcome is said once.
            _log.log("WARNING" if failures == 1 else "DEBUG",
                     "telegram commands: the reply to {} was not delivered ({}); try {} of {} in {:g}s{}", reply.to,
                     outcome.description, failures + 1, len(self._retry_delays) + 1, delay,
                     ", marked as a possible repeat: Telegram may have taken the try before" if marked else "")

    @staticmethod
    def _give_up(reply: _Reply, what: str) -> None:
        _log.error("telegram commands: the reply to {} {}. It began: {!r}", reply.to, what, reply.first_line)
