"""Alerts to a Telegram chat over the Bot API: rate-limited, retried, merged, token never shown.

Design. `TelegramAlerts.send` is synchronous and may block (the actor layer calls it on its own
thread). Its policy is made of three small pure parts, each tested on its own:

* `RateLimiter` keeps requests to the chat at least ``min_interval`` apart (Telegram allows
  about one message per second per chat) and holds every request back for the ``retry_after``
  a 429 answer names.
* `RetryPolicy` says how long to wait after the n-th failure (exponential, capped) and when a
  non-critical alert is given up; a CRITICAL alert is retried until it is delivered. A
  non-critical alert is also given up at once when a 429 asks for a wait longer than
  ``max_delay``; a critical one waits it out.
* `AlertMerger` merges identical alerts (same ``key``, or same title and text when the key is
  empty, and same severity), never one marked ``merge=False`` (a change of the trading state,
  which goes out as it comes). The first one goes out at once and opens a window of
  ``merge_window`` seconds; repeats inside the window are only counted. When the window closes
  the repeats go out as one message, ``Alert.render(count)`` of the latest repeat, and a new
  window opens. A repeat arriving after its window closed carries the pending count itself.
  Summaries fall due on the next `send`, on `flush` (call it when `next_flush_in` says), and on
  `close`.

Only 429, 5xx, timeouts and network errors are retried: any other answer (400 chat not found,
401 bad token, 403 bot blocked) cannot succeed by retrying and raises `AlertDeliveryError` at
once, whatever the severity. The bot token never appears in a log line, an exception message or
a repr: it lives inside the HTTP client's base URL only, error texts are scrubbed, and httpx's
own request log line is redacted.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import attrs
import httpx
from loguru import logger

from runtime.alerts import Alert, AlertNotAnswered, AlertSink, LogAlerts
from runtime.backoff import Backoff
from runtime.errors import TradewardenError
from runtime.validation import finite_number, whole_number

if TYPE_CHECKING:
    from runtime.settings import Settings

__all__ = [
    "AlertDeliveryError",
    "AlertMerger",
    "MAX_MESSAGE_LENGTH",
    "Outcome",
    "RESENT_NOTE",
    "RateLimiter",
    "RetryPolicy",
    "TelegramAlerts",
    "classify_response",
    "marked_as_resent",
    "post_message",
    "scrub",
]

DEFAULT_BASE_URL = "https://api.telegram.org"
MAX_MESSAGE_LENGTH = 4096  # the Bot API refuses longer texts with a 400 that no retry can fix

RESENT_NOTE = "(Sent again: an earlier try may have arrived, so this may be a repeat.)"
"""The last line of a message sent again after a try that Telegram may have carried out, so that a
second copy reads as a repeat of the first (a second alert, a second command's answer), not as news."""


def marked_as_resent(text: str) -> str:
    """``text`` with `RESENT_NOTE` as its last line, cut (with "…") to fit `MAX_MESSAGE_LENGTH`."""
    room = MAX_MESSAGE_LENGTH - len(RESENT_NOTE) - 1
    body = text if len(text) <= room else text[: room - 1] + "…"
    return f"{body}\n{RESENT_NOTE}"


class AlertDeliveryError(TradewardenError, RuntimeError):
    """An alert was not delivered: the message names the alert, the attempts and the last
    error, and never contains the bot token."""


def scrub(text: str, secret: str) -> str:
    """``text`` with ``secret`` (as written and as percent-encoded in a URL) replaced by ``***``."""
    if not secret:
        return text
    for form in {secret, quote(secret, safe=""), quote(secret, safe=":")}:
        text = text.replace(form, "***")
    return text


def _number(field: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    value = finite_number(field, value)
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{field} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return value


# -- the pure policy parts ---------------------------------------------------------------------


@attrs.frozen
class RetryPolicy:
    """How long to wait after each failed attempt, and when to give up.

    The n-th failure waits ``first_delay * factor ** (n - 1)`` seconds, capped at ``max_delay``
    (a `runtime.backoff.Backoff` without random stretch, so it never overflows).
    A non-critical alert is given up after ``max_attempts`` failed attempts; a critical one never.
    """

    first_delay: float = attrs.field(default=1.0, converter=lambda v: _number("first_delay", v, strict=True))
    factor: float = attrs.field(default=2.0, converter=lambda v: _number("factor", v, minimum=1.0))
    max_delay: float = attrs.field(default=60.0, converter=lambda v: _number("max_delay", v, strict=True))
    max_attempts: int = attrs.field(default=5)

    @max_attempts.validator
    def _check_attempts(self, attribute: attrs.Attribute, value: Any) -> None:
        whole_number("max_attempts", value, 1)

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 for the first)."""
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures!r}")
        # The project's one schedule, without the random stretch: only this sender retries
        # against the chat. A first delay above the cap waits the cap, as Backoff needs
        # min <= max.
        schedule = Backoff(min(self.first_delay, self.max_delay), self.max_delay, random_factor=0.0, multiplier=self.factor)
        return schedule.delay(failures)

    def gives_up(self, failures: int, *, critical: bool) -> bool:
        """True when an alert that has failed ``failures`` times must not be tried again."""
        return not critical and failures >= self.max_attempts


class RateLimiter:
    """Spaces requests to one chat at least ``min_interval`` seconds apart, and honours holds.

    Times are the caller's monotonic seconds; nothing here reads a clock or waits.
    """

    def __init__(self, min_interval: float) -> None:
        self._interval = _number("min_interval", min_interval)
        self._last: float | None = None
        self._hold_until = -math.inf

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next request may start (0.0 when it may now)."""
        wait = self._hold_until - now
        if self._last is not None:
            wait = max(wait, self._last + self._interval - now)
        return max(0.0, wait)

    def record(self, now: float) -> None:
        """A request to the chat finished at ``now``."""
        self._last = now if self._last is None else max(self._last, now)

    def hold_until(self, until: float) -> None:
        """Send nothing before ``until`` (the server said to retry after it)."""
        self._hold_until = max(self._hold_until, until)


@attrs.define
class _Window:
    opened: float
    count: int
    latest: Alert


class AlertMerger:
    """Merges identical alerts within ``window`` seconds of the last message sent for them.

    `offer` says what to send now for an incoming alert (or nothing, when it is only counted);
    `opened` starts a window once a message went out; `due` hands back the merged repeats whose
    window has closed. A ``window`` of 0 merges nothing.
    """

    def __init__(self, window: float) -> None:
        self._window = _number("merge_window", window)
        self._windows: dict[Hashable, _Window] = {}

    @staticmethod
    def key(alert: Alert) -> Hashable:
        """What makes two alerts identical: severity plus ``key``, or plus title and text."""
        return (alert.severity, "key", alert.key) if alert.key else (alert.severity, "text", alert.title, alert.text)

    def offer(self, alert: Alert, now: float) -> tuple[Alert, int] | None:
        """``None`` when ``alert`` is merged into an open window; else ``(alert, count)`` to send
        now, ``count`` including repeats still pending from a window that has closed."""
        if not alert.merge:
            return alert, 1
        key = self.key(alert)
        window = self._windows.get(key)
        if window is not None and now < window.opened + self._window:
            window.count += 1
            window.latest = alert
            return None
        pending = self._windows.pop(key).count if window is not None else 0
        return alert, pending + 1

    def opened(self, alert: Alert, now: float) -> None:
        """A message for ``alert``'s kind went out at ``now``: count its repeats from here."""
        if self._window > 0 and alert.merge:
            self._windows[self.key(alert)] = _Window(now, 0, alert)

    def due(self, now: float) -> list[tuple[Alert, int]]:
        """Remove every window closed by ``now``; return ``(latest repeat, count)`` of those
        that counted repeats, oldest window first."""
        closed = [(k, w) for k, w in self._windows.items() if now >= w.opened + self._window]
        for key, _ in closed:
            del self._windows[key]
        return [(w.latest, w.count) for _, w in sorted(closed, key=lambda kw: kw[1].opened) if w.count]

    def drain(self) -> list[tuple[Alert, int]]:
        """Remove every window; return the repeats still pending, oldest window first."""
        windows = sorted(self._windows.values(), key=lambda w: w.opened)
        self._windows.clear()
        return [(w.latest, w.count) for w in windows if w.count]

    def next_due(self, now: float) -> float | None:
        """Seconds from ``now`` until the next window with pending repeats closes, or None."""
        ends = [w.opened + self._window for w in self._windows.values() if w.count]
        return max(0.0, min(ends) - now) if ends else None


@attrs.frozen
class Outcome:
    """What one sendMessage attempt came to: delivered, worth retrying (after how long the
    server asked, if it did), and a description for logs and errors.

    ``may_have_arrived`` is True for a failure after which the message may be in the chat all the
    same: the request reached the server whole and no answer said it failed (no answer in time, a
    connection closed before the answer, a gateway's 502 or 504). Sent again, it may show twice.
    ``timed_out`` is True when the server gave no answer within the client's timeout (it hangs).
    """

    delivered: bool
    retryable: bool
    description: str
    retry_after: float | None = None
    may_have_arrived: bool = False
    timed_out: bool = False


def classify_response(status_code: int, payload: Any) -> Outcome:
    """Read a Bot API answer: 200 with ``ok: true`` is delivered; 429 is retried after its
    ``parameters.retry_after``; 5xx is retried (a 502 or 504, a gateway that got no good answer
    from behind it, ``may_have_arrived``); anything else is final."""
    description = ""
    if isinstance(payload, dict) and isinstance(payload.get("description"), str):
        description = payload["description"]
    text = f"HTTP {status_code}" + (f": {description}" if description else "")
    if status_code == 200 and isinstance(payload, dict) and payload.get("ok") is True:
        return Outcome(True, False, text)
    if status_code == 429:
        retry_after = None
        parameters = payload.get("parameters") if isinstance(payload, dict) else None
        if isinstance(parameters, dict):
            value = parameters.get("retry_after")
            if not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
                retry_after = float(value)
        return Outcome(False, True, text, retry_after)
    if status_code >= 500:
        return Outcome(False, True, text, may_have_arrived=status_code in (502, 504))
    if status_code == 200:
        return Outcome(False, False, f"{text} (the answer is not a Bot API success: {str(payload)[:200]!r})")
    return Outcome(False, False, text)


# Failures of a request that went out whole and got no answer: the server may have carried it out.
_ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def post_message(client: httpx.Client, chat_id: str, text: str, *, token: str, timeout: float) -> Outcome:
    """One ``sendMessage`` of ``text`` to ``chat_id`` through ``client`` (whose base URL holds the
    bot's token), read as an `Outcome`; never raises. Timeouts (``timeout`` is the client's, for
    the description) and network errors are retryable, ``may_have_arrived`` when the request had
    gone out whole; any other error is final. The description never holds ``token``."""
    try:
        response = client.post("sendMessage", json={"chat_id": chat_id, "text": text})
    except httpx.TimeoutException as exc:
        return Outcome(False, True, f"no answer within {timeout:g}s ({type(exc).__name__})",
                       may_have_arrived=isinstance(exc, _ANSWER_LOST), timed_out=True)
    except httpx.HTTPError as exc:
        return Outcome(False, True, scrub(f"{type(exc).__name__}: {exc}", token),
                       may_have_arrived=isinstance(exc, _ANSWER_LOST))
    except Exception as exc:  # anything else is not a network condition a retry could fix
        return Outcome(False, False, scrub(f"{type(exc).__name__}: {exc}", token))
    try:
        payload = response.json()
    except ValueError:
        payload = None
    outcome = classify_response(response.status_code, payload)
    return attrs.evolve(outcome, description=scrub(outcome.description, token))


# -- the sink ----------------------------------------------------------------------------------


class _Monotonic(Protocol):
    def monotonic(self) -> float: ...


class _SystemMonotonic:
    def monotonic(self) -> float:
        return time.monotonic()


_TOKENS: set[str] = set()
_TOKENS_LOCK = threading.Lock()


class _RedactTokens(logging.Filter):
    # httpx logs every request at INFO with its full URL, which holds the token; an application
    # that routes stdlib logging somewhere would publish it. Rewrite those records in place.
    def filter(self, record: logging.LogRecord) -> bool:
        with _TOKENS_LOCK:
            tokens = tuple(_TOKENS)
        if tokens:
            message = record.getMessage()
            redacted = message
            for token in tokens:
                redacted = scrub(redacted, token)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


_REDACTOR = _RedactTokens()


def _register_token(token: str) -> None:
    with _TOKENS_LOCK:
        _TOKENS.add(token)
    for name in ("httpx", "httpcore"):
        stdlib_logger = logging.getLogger(name)
        if _REDACTOR not in stdlib_logger.filters:
            stdlib_logger.addFilter(_REDACTOR)


class TelegramAlerts:
    """An `AlertSink` that posts each alert to one Telegram chat via ``sendMessage``.

    Promises: requests to the chat are at least ``min_interval`` seconds apart; a 429 answer's
    ``retry_after`` is waited out before the next request; 5xx answers, timeouts (``timeout``
    seconds per request) and network errors are retried by ``retry`` (a CRITICAL alert until
    delivered, others up to ``retry.max_attempts`` attempts, then `AlertDeliveryError`); identical
    alerts within ``merge_window`` seconds become one message with a count (see the module
    docstring). `send` returns once the message is delivered or merged, and raises
    `AlertDeliveryError` otherwise. `send_bounded` (what the alert actor calls) differs in one
    thing: a try that gets no answer within ``timeout`` gives the alert back at once, whatever
    its severity (`runtime.alerts.AlertNotAnswered`), so that a hung Bot API holds the alerts
    behind it for one ``timeout``, not for ever. ``timeout`` bounds each phase of a request
    (connecting, sending, each wait for the answer's next bytes), as httpx does.
    Safe to call from several threads (calls are serialised).
    ``clock`` (anything with ``monotonic()``, e.g. a `runtime.clock.Clock`) times the windows
    and intervals; waits themselves are real time.
    """

    retries_itself = True
    """It retries every failure a retry can mend, so the alert actor never sends again what
    it raised for (see `actors.alerts.AlertActor`)."""

    def __init__(
        self,
        token: str,
        chat_id: str | int,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 10.0,
        min_interval: float = 1.0,
        merge_window: float = 60.0,
        retry: RetryPolicy | None = None,
        clock: _Monotonic | None = None,
    ) -> None:
        if not isinstance(token, str) or not token.strip() or any(c in token for c in "/?# \t\r\n"):
            # The value is a secret: the message describes it without showing it.
            raise ValueError("telegram_bot_token must be a non-empty string without '/', '?', '#' or spaces")
        if isinstance(chat_id, bool) or not isinstance(chat_id, (str, int)):
            raise TypeError(f"telegram_chat_id must be a non-empty string or an integer, got {chat_id!r} ({type(chat_id).__name__})")
        if not str(chat_id).strip():
            raise ValueError(f"telegram_chat_id must be a non-empty string or an integer, got {chat_id!r}")
        try:
            url = httpx.URL(base_url) if isinstance(base_url, str) else None
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"telegram_api_base_url must be an http(s) URL, got {base_url!r}")
        self._timeout = _number("timeout", timeout, strict=True)
        self._token = token
        self._chat_id = str(chat_id).strip()
        self._base_url = base_url.rstrip("/")
        self._limiter = RateLimiter(min_interval)
        self._merger = AlertMerger(merge_window)
        self._retry = retry if retry is not None else RetryPolicy()
        if not isinstance(self._retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {retry!r} ({type(retry).__name__})")
        self._clock: _Monotonic = clock if clock is not None else _SystemMonotonic()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._closed = False
        _register_token(token)
        # The token lives only inside the client's base URL; our frames never hold the full URL.
        self._client = httpx.Client(
            base_url=f"{self._base_url}/bot{token}/",
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertSink:
        """A `TelegramAlerts` for the settings' token, chat id and API URL, or `LogAlerts` when
        the token or the chat id is not set (a warning says which one is missing)."""
        token, chat = settings.telegram_bot_token, settings.telegram_chat_id
        if token and chat:
            return cls(token, chat, settings.telegram_api_base_url)
        if token or chat:
            missing = "telegram_chat_id" if token else "telegram_bot_token"
            logger.bind(component="alerts").warning("telegram alerts are off: {} is not set; alerts are logged", missing)
        return LogAlerts()

    # -- the port ----------------------------------------------------------------------------

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` (or merge it into an open window), then any merged repeats now due.

        Blocks while waiting for the rate limit, a 429 hold or a retry. Raises
        `AlertDeliveryError` when this alert cannot be delivered; a due summary that fails is
        logged, not raised, since it is not what the caller asked to send.
        """
        self._send(alert, bounded=False)

    def send_bounded(self, alert: Alert) -> None:
        """As `send`, except that a try the Bot API does not answer within ``timeout`` is not
        tried again here: it raises `runtime.alerts.AlertNotAnswered`, whose ``resend`` is the
        alert to send again later (marked as a possible repeat: the hung request may yet reach
        the chat). The alert actor calls this, and sends the alerts waiting behind it first."""
        self._send(alert, bounded=True)

    def _send(self, alert: Alert, *, bounded: bool) -> None:
        if not isinstance(alert, Alert):
            raise TypeError(f"alert must be an Alert, got {alert!r}")
        with self._lock:
            if self._closed:
                raise AlertDeliveryError(f"telegram alert {alert.title!r} not sent: the sink is closed")
            item = self._merger.offer(alert, self._now())
            if item is not None:
                first, count = item
                self._deliver(first, count, bounded=bounded)
                self._merger.opened(first, self._now())
            self._flush_due(bounded)

    def flush(self) -> int:
        """Send the merged repeats whose window has closed; returns how many messages went out.
        A summary that fails, or gets no answer within ``timeout`` (tried once then), is logged."""
        with self._lock:
            if self._closed:
                return 0
            return self._flush_due(bounded=True)

    def next_flush_in(self) -> float | None:
        """Seconds until merged repeats fall due (call `flush` then), or None when none wait."""
        with self._lock:
            return self._merger.next_due(self._now())

    def close(self) -> None:
        """Stop retrying any alert in flight (it raises), send every pending merged repeat with a
        single attempt each, and close the HTTP client. Idempotent."""
        self._closing.set()
        with self._lock:
            if self._closed:
                return
            self._closing.clear()
            try:
                for alert, count in self._merger.drain():
                    try:
                        self._deliver(alert, count, attempts=1)
                    except AlertDeliveryError as exc:
                        logger.bind(component="alerts").error("telegram: merged alerts lost at close: {}", exc)
            finally:
                self._closed = True
                self._client.close()

    def __enter__(self) -> TelegramAlerts:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TelegramAlerts(token='***', chat_id={self._chat_id!r}, base_url={self._base_url!r})"

    # -- delivery ----------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.monotonic()

    def _flush_due(self, bounded: bool) -> int:
        sent = 0
        for alert, count in self._merger.due(self._now()):
            try:
                self._deliver(alert, count, bounded=bounded)
            except (AlertDeliveryError, AlertNotAnswered) as exc:
                logger.bind(component="alerts").error("telegram: merged alerts not delivered: {}", exc)
                continue
            self._merger.opened(alert, self._now())
            sent += 1
        return sent

    def _deliver(self, alert: Alert, count: int, attempts: int | None = None, *, bounded: bool = False) -> None:
        text = alert.render(count)
        if len(text) > MAX_MESSAGE_LENGTH:
            text = text[: MAX_MESSAGE_LENGTH - 1] + "…"
        failures = 0
        while True:
            self._wait(self._limiter.delay(self._now()), alert)
            outcome = self._attempt(text)
            now = self._now()
            self._limiter.record(now)
            if outcome.delivered:
                return
            if bounded and outcome.timed_out:
                # Waiting on the hung API again would hold every alert behind this one as long.
                resend = alert
                if outcome.may_have_arrived and not alert.text.endswith(RESENT_NOTE):
                    resend = attrs.evolve(alert, text=marked_as_resent(alert.text))
                raise AlertNotAnswered(
                    f"telegram alert {alert.title!r} ({alert.severity.value}) got {outcome.description}: "
                    "given back, to be sent again after the alerts behind it",
                    resend,
                )
            if outcome.may_have_arrived and not text.endswith(RESENT_NOTE):
                text = marked_as_resent(text)  # a second copy must not read as a second halt
            failures += 1
            final = not outcome.retryable or (attempts is not None and failures >= attempts)
            if outcome.retry_after is not None and outcome.retry_after > self._retry.max_delay and not alert.critical:
                # A long flood-control ban must not wedge the sink's thread for a non-critical alert.
                final = True
            if final or self._retry.gives_up(failures, critical=alert.critical):
                raise AlertDeliveryError(
                    f"telegram alert {alert.title!r} ({alert.severity.value}) not delivered after "
                    f"{failures} attempt{'s' if failures > 1 else ''}: {outcome.description}"
                )
            if outcome.retry_after is not None:
                self._limiter.hold_until(now + outcome.retry_after)
                delay = outcome.retry_after
            else:
                delay = self._retry.delay(failures)
            logger.bind(component="alerts").warning(
                "telegram: alert {!r} attempt {} failed ({}); retrying in {:.2f}s",
                alert.title,
                failures,
                outcome.description,
                delay,
            )
            if outcome.retry_after is None:
                self._wait(delay, alert)

    def check(self) -> str | None:
        """Why the Bot API refuses this token or chat, or None: asks getMe, then getChat for the
        chat, one attempt each. Only an answer no retry could mend counts (a 401 for the token, a
        400 or 403 for the chat: wrong, or the bot not in it); an API that cannot be reached, or
        answers 429 or 5xx, is None, since alerts are retried until it comes back."""
        log = logger.bind(component="alerts")
        log.info("asking the Telegram Bot API about the token and the chat (getMe, getChat)")
        for method, payload, setting in (("getMe", None, "telegram_bot_token"),
                                         ("getChat", {"chat_id": self._chat_id}, "telegram_chat_id")):
            try:
                response = self._client.post(method, json=payload)
                answer = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                # (a start waits up to the client's timeout here: said, so that it is not a silent pause)
                log.warning("the Telegram Bot API did not answer {}: {}; the token and chat are not checked, and "
                            "alerts are retried until it answers", method, scrub(repr(exc), self._token))
                return None
            outcome = classify_response(response.status_code, answer)
            if not outcome.delivered and not outcome.retryable:
                shown = "the token" if setting == "telegram_bot_token" else f"chat {self._chat_id!r}"
                return f"{setting}: the Bot API refuses {shown}: {scrub(outcome.description, self._token)}"
        return None

    def _attempt(self, text: str) -> Outcome:
        return post_message(self._client, self._chat_id, text, token=self._token, timeout=self._timeout)

    def _wait(self, seconds: float, alert: Alert) -> None:
        if self._closing.is_set() or (seconds > 0 and self._closing.wait(seconds)):
            raise AlertDeliveryError(f"telegram alert {alert.title!r} not delivered: the sink was closed while it waited")
