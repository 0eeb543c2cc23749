"""TelegramAlerts: its policy parts on their own, then the sink against a real local Bot API server."""

from __future__ import annotations

import concurrent.futures
import logging
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from actor_helpers import WAIT, LogLines, wait_until
from loguru import logger
from support.bot_api_server import (
    TEST_TOKEN,
    BotApiServer,
    Reply,
)

from actors import start_trading_system
from actors.alerts import AlertActor
from actors.messages import EquityReading, SendAlert
from actors.supervision.context import ChildContext
from runtime import Alert, ListSignalSource, LogAlerts, ManualClock, Order, PaperBroker, Settings, Severity
from runtime.adapters.telegram import (
    MAX_MESSAGE_LENGTH,
    RESENT_NOTE,
    AlertDeliveryError,
    AlertMerger,
    Outcome,
    RateLimiter,
    RetryPolicy,
    TelegramAlerts,
    classify_response,
    post_message,
    scrub,
)
from runtime.alerts import AlertNotAnswered
from runtime.backoff import Backoff

FAST = RetryPolicy(first_delay=0.01, factor=2.0, max_delay=0.05, max_attempts=3)


def _sink(server: BotApiServer, **options: object) -> TelegramAlerts:
    settings: dict[str, object] = {"min_interval": 0.0, "merge_window": 0.0, "retry": FAST, "timeout": 2.0}
    settings.update(options)
    return TelegramAlerts(TEST_TOKEN, "42", server.url, **settings)  # type: ignore[arg-type]


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every loguru line (with extras and full diagnosed tracebacks) written during the test."""
    lines: list[str] = []
    handler = logger.add(
        lambda message: lines.append(str(message)),
        level="DEBUG",
        format="{level} {message} {extra}\n{exception}",
        backtrace=True,
        diagnose=True,
    )
    yield lines
    logger.remove(handler)


# -- the pure parts ----------------------------------------------------------------------------


def test_retry_policy_backs_off_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(first_delay=0.5, factor=2.0, max_delay=3.0, max_attempts=4)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(100_000) == 3.0  # a critical alert's endless retries never overflow


def _documented_delay(first: float, factor: float, cap: float, n: int) -> float:
    # The formula RetryPolicy documents, computed the slow and obvious way.
    try:
        return min(cap, first * factor ** (n - 1))
    except OverflowError:
        return cap


@pytest.mark.parametrize(
    ("first", "factor", "cap"),
    [(1.0, 2.0, 60.0), (0.5, 1.01, 1e6), (0.01, 1.01, 1000.0), (2.0, 1e300, 45.0), (1.0, 1.0, 5.0), (90.0, 2.0, 60.0)],
)
def test_retry_policy_waits_exactly_the_documented_delay_at_every_attempt(first: float, factor: float, cap: float) -> None:
    policy = RetryPolicy(first_delay=first, factor=factor, max_delay=cap)
    for n in [1, 2, 3, 7, 60, 61, 500, 1025, 100_000]:
        assert policy.delay(n) == _documented_delay(first, factor, cap, n), n


def test_retry_policy_gives_up_non_critical_alerts_only() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up(n, critical=False) for n in (1, 2, 3)] == [False, False, True]
    assert not policy.gives_up(10_000, critical=True)


def test_retry_policy_refuses_bad_values_naming_them() -> None:
    with pytest.raises(ValueError, match=r"first_delay must be > 0.0, got 0"):
        RetryPolicy(first_delay=0)
    with pytest.raises(ValueError, match=r"max_attempts .* got 0"):
        RetryPolicy(max_attempts=0)


def test_rate_limiter_spaces_requests_and_honours_holds() -> None:
    limiter = RateLimiter(1.0)
    assert limiter.delay(100.0) == 0.0  # nothing sent yet
    limiter.record(100.0)
    assert limiter.delay(100.25) == pytest.approx(0.75)
    assert limiter.delay(101.0) == 0.0
    limiter.hold_until(105.0)  # a 429 said retry after 5 s
    assert limiter.delay(101.0) == pytest.approx(4.0)
    assert limiter.delay(105.0) == 0.0


def test_merger_sends_the_first_counts_repeats_and_reports_them_when_the_window_closes() -> None:
    merger = AlertMerger(10.0)
    first = Alert("Stall", "no cycle for 30s", key="stall")
    assert merger.offer(first, 0.0) == (first, 1)
    merger.opened(first, 0.0)
    later = Alert("Stall", "no cycle for 60s", key="stall")
    assert merger.offer(first, 1.0) is None
    assert merger.offer(later, 2.0) is None
    assert merger.next_due(2.0) == pytest.approx(8.0)
    assert merger.due(9.9) == []
    assert merger.due(10.0) == [(later, 2)]  # the latest repeat's text, with the count
    assert merger.next_due(10.0) is None


def test_merger_folds_pending_repeats_into_a_late_arrival() -> None:
    merger = AlertMerger(10.0)
    alert = Alert("Feed down", "no prices")
    merger.opened(alert, 0.0)
    assert merger.offer(alert, 5.0) is None
    assert merger.offer(alert, 12.0) == (alert, 2)  # the window closed: one message says x2


def test_merger_tells_alerts_apart_by_severity_key_and_text() -> None:
    merger = AlertMerger(10.0)
    warning = Alert("Drawdown", "18%", Severity.WARNING)
    merger.opened(warning, 0.0)
    assert merger.offer(Alert("Drawdown", "18%", Severity.CRITICAL), 1.0) is not None
    assert merger.offer(Alert("Drawdown", "19%", Severity.WARNING), 1.0) is not None
    assert merger.offer(Alert("Drawdown", "18%", Severity.WARNING), 1.0) is None


def test_merger_never_merges_or_holds_back_news() -> None:
    merger = AlertMerger(60.0)
    halted = Alert("Trading halted by hand", "halted by alice: news", key="guard:Trading halted by hand", merge=False)
    again = Alert("Trading halted by hand", "halted by bob: again", key="guard:Trading halted by hand", merge=False)
    assert merger.offer(halted, 0.0) == (halted, 1)
    merger.opened(halted, 0.0)
    assert merger.offer(again, 1.0) == (again, 1)
    assert merger.offer(halted, 2.0) == (halted, 1)  # identical news too: it is news again
    assert merger.next_due(2.0) is None and merger.drain() == []


def test_merger_with_a_zero_window_merges_nothing() -> None:
    merger = AlertMerger(0.0)
    alert = Alert("A", "b")
    merger.opened(alert, 0.0)
    assert merger.offer(alert, 0.0) == (alert, 1)
    assert merger.drain() == []


def test_classify_response_reads_bot_api_answers() -> None:
    assert classify_response(200, {"ok": True, "result": {}}).delivered
    flood = classify_response(429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 7}})
    assert (flood.delivered, flood.retryable, flood.retry_after) == (False, True, 7.0)
    assert classify_response(429, None).retry_after is None
    assert classify_response(502, None).retryable
    final = classify_response(400, {"ok": False, "description": "Bad Request: chat not found"})
    assert (final.retryable, final.description) == (False, "HTTP 400: Bad Request: chat not found")
    assert not classify_response(200, {"ok": False}).retryable


def test_a_send_says_whether_a_failed_try_may_have_reached_the_chat(bot_api: BotApiServer) -> None:
    # Sent again after one of these, a message may show twice; the command replies mark it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    tries = {}
    for name, url, reply in (("refused", f"http://127.0.0.1:{port}", None),
                             ("telegram's 500", bot_api.url, Reply.error(500)),
                             ("a gateway's 502", bot_api.url, Reply.error(502, "Bad Gateway")),
                             ("answer lost", bot_api.url, Reply.lost()),
                             ("no answer in time", bot_api.url, Reply.hang()),
                             ("bad request", bot_api.url, Reply.error(400, "Bad Request: chat not found"))):
        if reply is not None:
            bot_api.script(reply)
        with httpx.Client(base_url=f"{url}/bot{TEST_TOKEN}/", timeout=1.0) as client:
            tries[name] = post_message(client, "42", "hello", token=TEST_TOKEN, timeout=1.0)
    bot_api.release()
    assert tries.pop("refused") == Outcome(False, True, "ConnectError: [Errno 111] Connection refused")
    assert tries == {
        "telegram's 500": Outcome(False, True, "HTTP 500: Internal Server Error"),
        "a gateway's 502": Outcome(False, True, "HTTP 502: Bad Gateway", may_have_arrived=True),
        "answer lost": Outcome(False, True, "RemoteProtocolError: Server disconnected without sending a response.",
                               may_have_arrived=True),
        "no answer in time": Outcome(False, True, "no answer within 1s (ReadTimeout)", may_have_arrived=True,
                                     timed_out=True),
        "bad request": Outcome(False, False, "HTTP 400: Bad Request: chat not found"),
    }


def test_scrub_removes_the_token_in_every_form_it_takes_in_a_url() -> None:
    text = f"POST http://h/bot{TEST_TOKEN}/sendMessage and http://h/bot{TEST_TOKEN.replace(':', '%3A')}/x"
    assert TEST_TOKEN.split(":")[1] not in scrub(text, TEST_TOKEN)
    assert scrub(text, TEST_TOKEN).count("***") == 2


# -- against the Bot API server ------------------------------------------------------------------


def test_an_alert_arrives_as_its_rendered_text_for_the_chat(bot_api: BotApiServer) -> None:
    alert = Alert("Guard breach", "max drawdown 21.00% >= limit 20.00%", Severity.CRITICAL)
    with _sink(bot_api) as sink:
        sink.send(alert)
    [request] = bot_api.requests
    assert (request.token, request.method) == (TEST_TOKEN, "sendMessage")
    assert request.payload == {"chat_id": "42", "text": alert.render()}
    assert request.text is not None and request.text.startswith("[CRITICAL] Guard breach")


def test_an_overlong_text_is_cut_to_telegrams_limit(bot_api: BotApiServer) -> None:
    with _sink(bot_api) as sink:
        sink.send(Alert("Long", "x" * 10_000))
    [request] = bot_api.delivered
    assert request.text is not None and len(request.text) == MAX_MESSAGE_LENGTH


def test_a_429_is_retried_only_after_its_retry_after(bot_api: BotApiServer) -> None:
    bot_api.script(Reply.too_many(1))
    with _sink(bot_api, retry=RetryPolicy(first_delay=0.01, max_delay=5.0)) as sink:
        sink.send(Alert("Halted", "daily loss"))
    first, second = bot_api.requests
    assert (first.reply, second.reply) == ("too_many", "ok")
    assert second.at - first.at >= 1.0


def test_a_long_flood_ban_gives_up_a_non_critical_alert_at_once(bot_api: BotApiServer) -> None:
    bot_api.script(Reply.too_many(120))
    with _sink(bot_api) as sink, pytest.raises(AlertDeliveryError, match=r"after 1 attempt: HTTP 429"):
        sink.send(Alert("Trade", "filled", Severity.INFO))
    assert len(bot_api.requests) == 1


def test_server_errors_are_retried_until_delivered(bot_api: BotApiServer) -> None:
    bot_api.script(Reply.error(500), Reply.error(502, "Bad Gateway"))
    with _sink(bot_api) as sink:
        sink.send(Alert("Restarted", "LoopActor restarted"))
    assert [r.reply for r in bot_api.requests] == ["error", "error", "ok"]
    assert len(bot_api.delivered) == 1


def test_a_non_critical_alert_is_given_up_after_max_attempts(bot_api: BotApiServer) -> None:
    bot_api.script(*[Reply.error(500)] * 10)
    with _sink(bot_api) as sink, pytest.raises(AlertDeliveryError, match=r"after 3 attempts: HTTP 500") as info:
        sink.send(Alert("Warning", "drawdown 15%", Severity.WARNING))
    assert len(bot_api.requests) == 3
    assert TEST_TOKEN not in str(info.value)


def test_a_critical_alert_is_never_given_up_while_the_server_fails(bot_api: BotApiServer) -> None:
    bot_api.script(*[Reply.error(503, "Service Unavailable")] * 8)
    with _sink(bot_api) as sink:
        sink.send(Alert("Guard breach", "halted", Severity.CRITICAL))
    assert len(bot_api.requests) == 9
    assert len(bot_api.delivered) == 1


def test_an_answer_no_retry_can_fix_raises_at_once_even_when_critical(bot_api: BotApiServer) -> None:
    bot_api.script(Reply.error(400, "Bad Request: chat not found"))
    with _sink(bot_api) as sink, pytest.raises(AlertDeliveryError, match="chat not found"):
        sink.send(Alert("Guard breach", "halted", Severity.CRITICAL))
    assert len(bot_api.requests) == 1


def test_a_hung_request_hits_the_timeout_and_is_retried(bot_api: BotApiServer) -> None:
    bot_api.script(Reply.hang())
    started = time.monotonic()
    with _sink(bot_api, timeout=0.3) as sink:
        sink.send(Alert("Stall", "no cycle"))
    assert time.monotonic() - started >= 0.3
    assert [r.reply for r in bot_api.requests] == ["hang", "ok"]
    bot_api.release()


def test_requests_that_keep_hanging_are_reported(bot_api: BotApiServer) -> None:
    bot_api.script(Reply.hang(), Reply.hang(), Reply.hang())
    with _sink(bot_api, timeout=0.2) as sink, pytest.raises(AlertDeliveryError, match=r"no answer within 0.2s"):
        sink.send(Alert("Stall", "no cycle"))
    bot_api.release()
    assert len(bot_api.requests) == 3


def test_requests_to_the_chat_are_spaced_by_min_interval(bot_api: BotApiServer) -> None:
    with _sink(bot_api, min_interval=0.2) as sink:
        for i in range(3):
            sink.send(Alert("Trade", f"filled #{i}", Severity.INFO))
    arrivals = [r.at for r in bot_api.requests]
    assert len(arrivals) == 3
    assert all(b - a >= 0.2 for a, b in zip(arrivals, arrivals[1:]))


def test_identical_alerts_in_the_window_arrive_as_one_message_with_a_count(bot_api: BotApiServer) -> None:
    clock = ManualClock()
    alert = Alert("Feed down", "no price for EURUSD", key="feed")
    other = Alert("Trade", "filled", Severity.INFO)
    with _sink(bot_api, merge_window=60.0, clock=clock) as sink:
        for _ in range(5):
            sink.send(alert)
        sink.send(other)  # a distinct alert is not held back by the open window
        assert [r.text for r in bot_api.requests] == [alert.render(), other.render()]
        assert sink.next_flush_in() == 60.0
        clock.advance(59.0)
        assert sink.flush() == 0
        clock.advance(1.0)
        assert sink.flush() == 1
    texts = [r.text for r in bot_api.delivered]
    assert texts == [alert.render(), other.render(), alert.render(4)]
    assert "(x4)" in texts[-1]


def test_close_sends_the_repeats_still_waiting_for_their_window(bot_api: BotApiServer) -> None:
    alert = Alert("Bad reading", "equity nan")
    sink = _sink(bot_api, merge_window=3600.0)
    for _ in range(3):
        sink.send(alert)
    sink.close()
    assert [r.text for r in bot_api.delivered] == [alert.render(), alert.render(2)]
    with pytest.raises(AlertDeliveryError, match="closed"):
        sink.send(alert)


def test_close_stops_a_critical_alert_that_is_waiting_to_retry(bot_api: BotApiServer) -> None:
    bot_api.script(*[Reply.error(500)] * 100)
    sink = _sink(bot_api, retry=RetryPolicy(first_delay=30.0))
    alert = Alert("Guard breach", "halted", Severity.CRITICAL)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(sink.send, alert)
        bot_api.wait_for_requests(1)
        sink.close()
        with pytest.raises(AlertDeliveryError, match="closed while it waited"):
            pending.result(timeout=5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_token_never_appears_in_logs_errors_or_repr(
    bot_api: BotApiServer, log_lines: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    bot_api.script(*[Reply.error(500)] * 3, Reply.too_many(0))
    with _sink(bot_api) as sink:
        with pytest.raises(AlertDeliveryError) as info:
            sink.send(Alert("One", "fails"))
        errors.append(str(info.value))
        # A traceback logged with loguru's variable values must not show it either.
        try:
            raise info.value
        except AlertDeliveryError:
            logger.exception("delivery failed")
        sink.send(Alert("Two", "after a 429"))
        errors.append(repr(sink))
    unreachable = TelegramAlerts(TEST_TOKEN, "42", f"http://127.0.0.1:{_closed_port()}", retry=FAST, min_interval=0)
    with unreachable, pytest.raises(AlertDeliveryError) as info:
        unreachable.send(Alert("Three", "no server"))
    errors.append(str(info.value))
    assert "ConnectError" in errors[-1]
    secret = TEST_TOKEN.split(":")[1]
    captured = "\n".join(log_lines + [r.getMessage() for r in caplog.records] + errors)
    assert "attempt 1 failed" in captured and "HTTP Request" in captured  # the logs were captured
    assert secret not in captured


def test_from_settings_logs_unless_both_token_and_chat_are_set(log_lines: list[str]) -> None:
    assert isinstance(TelegramAlerts.from_settings(Settings()), LogAlerts)
    assert isinstance(TelegramAlerts.from_settings(Settings(telegram_bot_token=TEST_TOKEN)), LogAlerts)
    assert any("telegram_chat_id is not set" in line for line in log_lines)
    sink = TelegramAlerts.from_settings(Settings(telegram_bot_token=TEST_TOKEN, telegram_chat_id="-100123"))
    assert isinstance(sink, TelegramAlerts)
    assert repr(sink) == "TelegramAlerts(token='***', chat_id='-100123', base_url='https://api.telegram.org')"
    sink.close()


def test_bad_construction_values_are_named_without_showing_the_token() -> None:
    with pytest.raises(ValueError, match="telegram_chat_id .* got ''"):
        TelegramAlerts(TEST_TOKEN, "")
    with pytest.raises(ValueError, match="telegram_api_base_url .* got 'ftp://x'"):
        TelegramAlerts(TEST_TOKEN, "1", "ftp://x")
    with pytest.raises(ValueError, match="telegram_bot_token") as info:
        TelegramAlerts(TEST_TOKEN + "/x", "1")
    assert TEST_TOKEN not in str(info.value)


def test_each_change_of_the_trading_state_reaches_the_chat_at_once_even_under_one_title(bot_api: BotApiServer) -> None:
    # Merged by title, a second breach waited out the first one's 60 s window: the chat's last
    # message said "Trading resumed" while the account was halted again.
    broker = PaperBroker(10_000)
    clock = ManualClock()
    system = start_trading_system(Settings(max_drawdown_percent=5), broker, ListSignalSource(), clock=clock,
                                  loop_interval=None, alerts=_sink(bot_api, merge_window=60.0))

    def breach(entry: float, low: float) -> None:
        broker.update_price("X", entry)
        broker.submit_order(Order("X", "buy", 100))
        broker.update_price("X", low)  # 1,000 lost: more than 5% of the peak
        system.guard.tell(EquityReading(broker.account_equity(), clock.now(), 1))
        assert wait_until(lambda: not broker.open_positions())

    try:
        breach(100.0, 90.0)
        system.resume("alice", rebaseline=True)
        breach(90.0, 80.0)
        sent = bot_api.wait_for_requests(4, timeout=WAIT)
    finally:
        system.stop()
    assert [r.text for r in sent] == [
        "[CRITICAL] Trading halted: max_drawdown\nmax drawdown 10.00% >= limit 5.00% (peak 10000.00, equity 9000.00)",
        "[WARNING] Peak rebaselined\nby alice: peak 10000.00 -> 9000.00, day start 9000.00 -> 9000.00",
        "[INFO] Trading resumed\nresumed by alice",
        "[CRITICAL] Trading halted: max_drawdown\nmax drawdown 11.11% >= limit 5.00% (peak 9000.00, equity 8000.00)",
    ]


def test_an_alert_sent_again_after_a_try_that_may_have_arrived_is_marked_as_a_possible_repeat(
    bot_api: BotApiServer,
) -> None:
    # A 500 surely did not reach the chat: sent again as it was. A lost answer may have: the chat
    # may show it twice, so every later copy says it may be a repeat (not a second halt).
    bot_api.script(Reply.error(500), Reply.lost(), Reply.error(503, "Service Unavailable"))
    alert = Alert("Trading halted", "max drawdown 20.00% >= limit 20.00%", Severity.CRITICAL)
    with _sink(bot_api) as sink:
        sink.send(alert)
    first = alert.render(1)
    again = f"{first}\n(Sent again: an earlier try may have arrived, so this may be a repeat.)"
    assert [(r.text, r.reply) for r in bot_api.requests] == [
        (first, "error"), (first, "lost"), (again, "error"), (again, "ok")]
    assert bot_api.shown("42") == [first, again]


def test_a_check_of_the_token_that_gets_no_answer_says_so_instead_of_a_silent_pause() -> None:
    # A first start with a hung Bot API waited its timeout with no word in the log.
    unreachable = TelegramAlerts(TEST_TOKEN, "42", f"http://127.0.0.1:{_closed_port()}", retry=FAST, min_interval=0)
    with LogLines("INFO") as lines, unreachable:
        assert unreachable.check() is None  # not refused: alerts are retried until the API answers
    said = [line for line in lines.snapshot() if "Bot API" in line]
    assert said[0] == "INFO asking the Telegram Bot API about the token and the chat (getMe, getChat)"
    assert said[1].startswith("WARNING the Telegram Bot API did not answer getMe: ConnectError(")
    assert said[1].endswith("; the token and chat are not checked, and alerts are retried until it answers")
    assert TEST_TOKEN not in said[1] and len(said) == 2


def test_a_hung_bot_api_holds_a_later_critical_alert_for_one_timeout_and_the_first_comes_after_marked_late(
    bot_api: BotApiServer,
) -> None:
    # Each critical alert was retried inside the sink until delivered: behind one hung request,
    # every later critical alert (the next breach's) waited as long as the Bot API hung.
    bot_api.script(Reply.hang(), Reply.ok(), Reply.hang(), Reply.ok())
    sink = _sink(bot_api, timeout=0.3)
    ref = AlertActor.start(ChildContext.standalone("alerts"), sink=sink, retry=Backoff(0.02, 0.1, random_factor=0.0))
    try:
        ref.tell(SendAlert(Alert("Trading halted by hand", "halted by desk: news", Severity.CRITICAL)))
        ref.tell(SendAlert(Alert("Trading halted: max_drawdown", "max drawdown 21.00%", Severity.CRITICAL)))
        sent = bot_api.wait_for_replies("42", 4, timeout=WAIT)
    finally:
        ref.stop()
        sink.close()
        bot_api.release()
    first, second = "[CRITICAL] Trading halted by hand\n", "[CRITICAL] Trading halted: max_drawdown\nmax drawdown 21.00%"
    late = re.fullmatch(r"\[CRITICAL\] Trading halted by hand\n\(Late: raised at .+ UTC; alerts raised after it were "
                        r"delivered first\.\)\nhalted by desk: news\n\(Sent again: an earlier try may have arrived, so "
                        r"this may be a repeat\.\)", sent[2].text or "")
    assert late is not None, sent[2].text
    assert [(r.text, r.reply) for r in sent] == [
        (f"{first}halted by desk: news", "hang"), (second, "ok"), (sent[2].text, "hang"), (sent[2].text, "ok")]
    assert sent[1].at - sent[0].at < 0.3 + 1.0  # tried once the first try's timeout ran out, not after its retries
    assert bot_api.shown("42") == [second, sent[2].text]


def test_send_bounded_gives_an_alert_with_no_answer_back_at_once_marked_for_its_next_try(bot_api: BotApiServer) -> None:
    bot_api.script(Reply.hang())
    alert = Alert("Trading halted by hand", "halted by desk: news", Severity.CRITICAL)
    with _sink(bot_api, timeout=0.2) as sink, pytest.raises(AlertNotAnswered) as hung:
        sink.send_bounded(alert)
    bot_api.release()
    assert str(hung.value) == ("telegram alert 'Trading halted by hand' (critical) got no answer within 0.2s "
                               "(ReadTimeout): given back, to be sent again after the alerts behind it")
    assert hung.value.resend == Alert("Trading halted by hand", f"halted by desk: news\n{RESENT_NOTE}", Severity.CRITICAL)
    assert [r.reply for r in bot_api.requests] == ["hang"]
