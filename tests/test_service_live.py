"""`tradewarden run` in a real process, driven over real HTTP and through the command line."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess

import httpx
import pytest
from actor_helpers import wait_until
from prometheus_client.parser import text_string_to_metric_families
from support.bot_api_server import TEST_TOKEN
from support.live_bot import ROOT, TOKEN, TRADEWARDEN, Bot, free_port
from support.processes import Child, run

from actors.service.server import MIN_EXPOSED_TOKEN, ServerError, bind
from actors.system import STATE_FILE_LOST_ADVICE
from runtime.adapters.sqlite import SqliteStore
from runtime.store import PendingHalt

LIVE_TOML = ROOT / "examples" / "live.toml"
JSON = {"content-type": "application/json"}  # what a body sent as raw bytes must say it is

VOLATILE = """
[tradewarden]
loop_id = "volatile"
state_db = "{db}"
max_drawdown_percent = 1.0
min_equity = 500.0
loop_interval_seconds = 0.2
heartbeat_interval_seconds = 1.0

[broker]
kind = "paper"
cash = 10000.0

[feed]
kind = "synthetic"
seed = 3
interval_seconds = 0.05
volatility = 0.02

[strategy]
class = "runtime.replay.strategies:MovingAverageCrossover"

[strategy.options]
fast = 2
slow = 4
volume = 50.0
"""


def scrape(bot: Bot) -> dict[str, float]:
    text = bot.get("/metrics").text
    return {
        sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_example_config_runs_answers_status_and_stops_cleanly_on_sigterm(bots):
    bot = bots(LIVE_TOML)
    shown = bot.cli("status")
    assert shown.returncode == 0, shown.stderr
    assert re.match(r"^loop paper-live: ACTIVE\n  equity 10,000\.00  peak 10,000\.00  drawdown 0\.00%\n", shown.stdout)
    status = json.loads(bot.cli("status", "--json").stdout)
    assert status["trading_state"] == "active"
    assert [limit["guard"] for limit in status["limits"]] == ["max_drawdown", "min_equity", "daily_loss"]
    assert status["limits"][0]["breach_at"] == pytest.approx(9_000.0)
    assert set(status["children"]) == {"emitter", "alerts", "guard", "loop", "heartbeat"}
    events = bot.get("/api/events?type=loop_started").json()["events"]
    assert [event["event_type"] for event in events] == ["loop_started"]
    assert bot.terminate() == 0
    stopped = bot.journal("--type", "loop_stopped")
    assert [event["metadata"]["how"] for event in stopped] == ["normal"]


def test_a_burst_of_signals_stops_it_once_cleanly_with_nothing_taken_in_a_signal_handler(bots):
    # The handler used to log and set an Event the main thread waited on: a signal landing while
    # that thread held the Event's lock (or loguru's) deadlocked it, and the bot traded on.
    bot = bots(LIVE_TOML)
    for _ in range(40):
        bot.process.send_signal(signal.SIGINT)
    bot.process.send_signal(signal.SIGTERM)
    try:
        code = bot.process.wait(30)
    except subprocess.TimeoutExpired:
        bot.fail("the child did not stop within 30s of 40 SIGINTs and a SIGTERM")
        raise
    output = bot.log.read_text()
    assert code == 0, output[-5_000:]
    assert "deadlock avoided" not in output and "Traceback" not in output
    # One stop, named after whichever signal the main thread read first (the kernel delivers
    # pending signals to any thread, so their order is not the order they were sent in).
    [stopping] = [line.split(" | ")[-1] for line in output.splitlines() if "received: stopping" in line]
    assert stopping in ("SIGINT received: stopping", "SIGTERM received: stopping")
    stopped = bot.journal("--type", "loop_stopped")
    assert [event["metadata"]["how"] for event in stopped] == ["normal"]


def test_a_breach_halts_a_resume_is_refused_then_rebaselined_and_the_kill_switch_halts(bots, tmp_path):
    config = tmp_path / "volatile.toml"
    config.write_text(VOLATILE.format(db=tmp_path / "state.db"))
    bot = bots(config)

    # Nobody without the token changes anything, however they ask.
    intruder = bot.post("/api/halt", token="wrong", json={"reason": "intruder"})
    assert (intruder.status_code, intruder.json()) == (401, {"error": "wrong bearer token"})
    anonymous = bot.post("/api/resume", token=None, json={"rebaseline": True})
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": "no bearer token (send 'Authorization: Bearer <CONTROL_TOKEN>')"}
    assert bot.get("/api/status", token="wrong").status_code == 401
    basic = httpx.get(bot.url + "/api/status", headers={"authorization": "Basic " + TOKEN}, timeout=10)
    assert (basic.status_code, basic.json()) == (401, {"error": "the Authorization header scheme is 'Basic', not "
                                                                "Bearer (send 'Authorization: Bearer <CONTROL_TOKEN>')"})
    bare = httpx.get(bot.url + "/api/status", headers={"authorization": "wrong-token-sent-bare"}, timeout=10)
    assert (bare.status_code, bare.json()) == (401, {"error": "the Authorization header has no scheme, not Bearer "
                                                              "(send 'Authorization: Bearer <CONTROL_TOKEN>')"})
    malformed = bot.post("/api/halt", content=b"{reason: nope", headers=JSON)
    assert malformed.status_code == 400
    assert re.match(r"^the body is not valid JSON: ", malformed.json()["error"])
    for body, kind in ((b"null", "null"), (b'["stop"]', "an array"), (b'"stop"', "a string"), (b"3", "a number"),
                       (b"true", "true")):
        not_an_object = bot.post("/api/halt", content=body, headers=JSON)
        assert (not_an_object.status_code, not_an_object.json()) == (
            400, {"error": f"the body must be a JSON object, got {kind}"})
    unknown = bot.post("/api/halt", json={"reason": "x", "force": True})
    assert (unknown.status_code, unknown.json()) == (400, {"error": "unknown field 'force'; known: by, reason"})
    wrong_type = bot.post("/api/resume", json={"rebaseline": "yes"})
    assert wrong_type.json() == {"error": "field 'rebaseline' must be true or false, got \"yes\""}
    huge = bot.post("/api/halt", content=b"{" + b" " * 100_000 + b"}", headers=JSON)
    assert (huge.status_code, huge.json()) == (413, {"error": "the body is 100002 bytes; at most 16384 are accepted"})
    bad_query = bot.get("/api/events?type=nonsense")
    assert bad_query.status_code == 400
    assert re.match(r"^type must be one of 'signal_received', .*, got 'nonsense'$", bad_query.json()["error"])
    superscript = bot.get("/api/events?limit=\u00b2")  # a digit to str.isdigit, not to int()
    assert (superscript.status_code, superscript.json()) == (400, {"error": "limit must be a whole number in 1..1000, got '\u00b2'"})

    halted = bot.wait_for(
        "a drawdown breach", lambda: (s := bot.get("/api/status").json())["trading_state"] == "halted" and s, timeout=60
    )
    assert re.match(r"^max drawdown \d+\.\d\d% >= limit 1\.00% ", halted["reason"])
    assert halted["positions_open"] == 0 or halted["liquidating"]

    blank = bot.cli("halt", "--reason", " ")
    assert (blank.returncode, blank.stdout, blank.stderr) == (
        2, "", 'halt failed (400): field \'reason\' must be a non-empty string, got " "\n')
    latin = bot.cli("halt", "--reason", "caf\udce9")  # b"caf\xe9": Latin-1 bytes in a UTF-8 command line
    assert (latin.returncode, latin.stdout, latin.stderr) == (
        2, "", "tradewarden halt: --reason must be text that UTF-8 can carry, got 'caf\\udce9'\n")
    refused = bot.cli("resume")
    assert (refused.returncode, refused.stdout) == (1, ""), refused.stderr
    assert re.match(r"^resume refused: max drawdown ", refused.stderr)
    assert bot.get("/api/status").json()["trading_state"] == "halted"
    as_api = bot.post("/api/resume", json={"by": "desk"}).json()
    assert (as_api["done"], as_api["rebaseline_helps"]) == ("refused", True)  # a trailing limit: it would help

    rebaselined = bot.cli("resume", "--rebaseline")
    assert (rebaselined.returncode, rebaselined.stdout) == (0, "resumed with a new baseline (was halted)\n")

    killed = bot.cli("halt", "--reason", "operator test")
    assert killed.returncode == 0, killed.stderr
    assert re.match(r"^halted \(was (active|reducing|halted)\): operator test$", killed.stdout)
    assert bot.get("/api/status").json()["trading_state"] == "halted"

    with httpx.stream("GET", bot.url + "/api/events/stream?type=heartbeat",
                      headers={"authorization": f"Bearer {TOKEN}"}, timeout=10) as stream:
        data = next(line for line in stream.iter_lines() if line.startswith("data: "))
    assert json.loads(data.removeprefix("data: "))["event_type"] == "heartbeat"

    figures = scrape(bot)
    assert figures["tradewarden_drawdown_block_total"] >= 1
    assert figures["tradewarden_control_auth_failures_total"] == 5  # the wrong token, none, a wrong token again, a Basic scheme and a bare one
    assert figures["tradewarden_analytics_events_total{event_type=guard_triggered}"] >= 1
    assert figures["tradewarden_trading_state"] == 2

    assert bot.terminate() == 0
    journal = bot.journal()
    types = [event["event_type"] for event in journal]
    # No POSITION_CLOSED is required: the breach may come from the account read right after the
    # strategy's own closing fill, when nothing is left open to close.
    assert {"guard_triggered", "rebaselined"} <= set(types)
    assert types[-1] == "loop_stopped"
    reasons = " ".join(json.dumps(event["metadata"]) for event in journal)
    assert "intruder" not in reasons
    assert "operator test" in reasons


def test_a_resume_of_an_active_account_says_nothing_was_halted_and_a_rebaseline_on_it_says_what_it_moved(bots):
    bot = bots(LIVE_TOML)
    plain = bot.cli("resume")
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, "already active: nothing to resume\n", "")
    answer = bot.post("/api/resume", json={"by": "desk"})
    assert (answer.status_code, answer.json()) == (200, {
        "done": "already_active", "previous_state": "active", "by": "desk", "rebaseline": False,
        "message": "already active: nothing to resume",
    })

    # Allowed, as any rebaseline is: journaled and alerted, and the answer says what it moved.
    moved = "already active: nothing to resume; the peak and the day's start were set to today's equity"
    rebaselined = bot.cli("resume", "--rebaseline")
    assert (rebaselined.returncode, rebaselined.stdout, rebaselined.stderr) == (0, moved + "\n", "")
    as_json = bot.cli("resume", "--rebaseline", "--json")
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, {
        "done": "rebaselined", "previous_state": "active", "by": "tradewarden resume", "rebaseline": True, "message": moved,
    })
    assert bot.get("/api/status").json()["trading_state"] == "active"

    assert bot.terminate() == 0
    assert [event["metadata"]["by"] for event in bot.journal("--type", "rebaselined")] == ["tradewarden resume"] * 2
    assert bot.journal("--type", "trading_state_changed") == []  # nothing was lifted


def test_a_telegram_token_or_chat_the_bot_api_refuses_fails_the_start_naming_it(tmp_path, bot_api):
    # Alerts to them would all be lost, a breach's too, without a word until one was due.
    bot_api.chats = {"-1001"}
    config = tmp_path / "bot.toml"
    config.write_text(VOLATILE.format(db=tmp_path / "state.db"))
    for token, chat, refused in (
        ("123:wrong-token", "-1001", "telegram_bot_token: the Bot API refuses the token: HTTP 401: Unauthorized"),
        (TEST_TOKEN, "-1002", "telegram_chat_id: the Bot API refuses chat '-1002': HTTP 400: Bad Request: chat not found"),
    ):
        env = {**os.environ, "CONTROL_PORT": str(free_port()), "TELEGRAM_BOT_TOKEN": token, "TELEGRAM_CHAT_ID": chat,
               "TELEGRAM_API_BASE_URL": bot_api.url}
        done = subprocess.run([*TRADEWARDEN, "run", "--config", str(config)], capture_output=True, text=True, timeout=60,
                              env=env)
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr.splitlines()[-1] == f"tradewarden run: {refused}"
        assert "wrong-token" not in done.stderr
    assert not (tmp_path / "state.db").exists()  # nothing started


def test_an_account_that_has_traded_starts_with_a_telegram_token_the_bot_api_refuses_said_at_critical(
    tmp_path, bot_api, bots
):
    # Its open positions need their guard more than the chat does: refusing to start it would
    # leave them unguarded, restart after restart.
    SqliteStore(tmp_path / "state.db").close()  # it has run before
    bot = bots(LIVE_TOML, TELEGRAM_BOT_TOKEN="123:wrong-token", TELEGRAM_CHAT_ID="-1001",
               TELEGRAM_API_BASE_URL=bot_api.url)
    assert bot.get("/api/status").json()["trading_state"] == "active"
    assert bot.terminate() == 0
    said = [line for line in bot.log.read_text().splitlines() if "alerts will not reach the chat" in line]
    assert len(said) == 1 and said[0].endswith(
        "telegram_bot_token: the Bot API refuses the token: HTTP 401: Unauthorized: alerts will not reach the chat until "
        "this is mended")
    assert "CRITICAL" in said[0] and "wrong-token" not in bot.log.read_text()


def test_a_bad_config_fails_before_anything_starts_naming_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(VOLATILE.format(db=tmp_path / "state.db").replace("interval_seconds = 0.05", "interval_seconds = -1"))
    env = {**os.environ, "CONTROL_PORT": str(free_port())}  # (never the default port another bot may hold)
    done = subprocess.run([*TRADEWARDEN, "run", "--config", str(config)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert done.stderr == f"tradewarden run: {config}: feed.interval_seconds must be a number > 0, got -1\n"
    assert not (tmp_path / "state.db").exists()


def test_an_unknown_log_level_fails_before_anything_starts_naming_it(tmp_path):
    config = tmp_path / "live.toml"
    config.write_text(VOLATILE.format(db=tmp_path / "state.db"))
    env = {**os.environ, "LOG_LEVEL": "LOUD", "CONTROL_PORT": str(free_port())}
    done = subprocess.run([*TRADEWARDEN, "run", "--config", str(config)], capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stderr) == (2, "tradewarden run: LOG_LEVEL: log_level must be one of TRACE, DEBUG, INFO, "
                                                 "SUCCESS, WARNING, ERROR, CRITICAL, got 'LOUD'\n")
    assert not (tmp_path / "state.db").exists()


def test_a_heartbeat_interval_too_small_to_halve_fails_before_anything_starts_naming_it(tmp_path):
    # Valid alone as a number > 0, but its half (the heartbeat's timeout, and the dead man's
    # switch's wait) is 0.0: the run used to end with a traceback from deep in the system.
    config = tmp_path / "live.toml"
    config.write_text(VOLATILE.format(db=tmp_path / "state.db"))
    env = {**os.environ, "HEALTHCHECK_PING_URL": "http://127.0.0.1:9/ping", "HEARTBEAT_INTERVAL_SECONDS": "5e-324",
           "CONTROL_PORT": str(free_port())}
    done = run([*TRADEWARDEN, "run", "--config", str(config)], timeout=60, env=env, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "tradewarden run: HEARTBEAT_INTERVAL_SECONDS='5e-324': "
                                                 "heartbeat_interval_seconds must be a number of seconds whose half "
                                                 "(the heartbeat's timeout) is > 0, got 5e-324\n")
    assert not (tmp_path / "state.db").exists()


SLOW_TO_BUILD = """
[tradewarden]
loop_id = "slow"
state_db = "{db}"

[broker]
kind = "paper"

[feed]
kind = "synthetic"

[strategy]
class = "support.slow_start:SlowToBuild"
"""


def test_ctrl_c_before_the_run_has_started_stops_it_quietly_with_0_as_any_ctrl_c_does(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text(SLOW_TO_BUILD.format(db=tmp_path / "state.db"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "CONTROL_PORT": str(free_port())}
    with Child([*TRADEWARDEN, "run", "--config", str(config)], env=env, cwd=tmp_path) as bot:
        bot.wait_for("building the strategy\n", timeout=60)  # before its signal handling, as while it imports
        bot.send_signal(signal.SIGINT)
        done = bot.finish(30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "building the strategy\n", "")
    assert not (tmp_path / "state.db").exists()


def test_a_broken_pipe_inside_a_run_is_its_failure_never_taken_for_a_reader_of_its_output_gone(tmp_path):
    # A command whose reader closed stdout early ends quietly with 0; a run writes nothing there,
    # and a 0 would tell systemd (Restart=on-failure) that it had stopped as asked.
    config = tmp_path / "hung.toml"
    config.write_text(SLOW_TO_BUILD.format(db=tmp_path / "state.db").replace("slow_start:SlowToBuild", "hung_up:HungUp"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "CONTROL_PORT": str(free_port())}
    done = run([*TRADEWARDEN, "run", "--config", str(config)], timeout=60, env=env, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr.splitlines()[-1:]) == (
        1, "", ["BrokenPipeError: [Errno 32] the model server hung up"])


def test_ctrl_c_during_a_status_that_waits_on_a_silent_api_exits_130_unfinished_and_quietly(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, and never answers
        silent.settimeout(60)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Child([*TRADEWARDEN, "status", "--url", url], cwd=tmp_path) as asking:
            try:
                connection, _ = silent.accept()  # the command is waiting for its answer
            except TimeoutError:
                ended = asking.finish(0.1)  # still running: fails the test with the command's threads
                pytest.fail(f"the command exited with {ended.returncode} before asking: {ended.stderr}")
            with connection:
                asking.send_signal(signal.SIGINT)
                done = asking.finish(30)
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")


def test_a_second_bot_on_the_same_state_file_is_refused_and_the_first_trades_on(bots, tmp_path):
    bot = bots(LIVE_TOML)
    env = {**bot.env, "CONTROL_PORT": str(free_port())}
    second = subprocess.run([*TRADEWARDEN, "run", "--config", str(LIVE_TOML)], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    assert second.returncode == 2
    assert second.stderr.splitlines()[-1] == (
        f"tradewarden run: state_db {str(bot.db)!r} is in use by another running bot: two bots on one state file "
        "would both trade the account; stop the other, or give this one its own STATE_DB")
    assert bot.get("/health", token=None).status_code == 200
    assert bot.terminate() == 0
    assert [e["metadata"]["incarnation"] for e in bot.journal("--type", "loop_started")] == [1]  # the second never started


def test_a_state_file_deleted_under_a_running_bot_is_said_at_critical_and_a_second_bot_is_still_refused(bots, tmp_path):
    # The claim held the deleted file, not the path: a second bot started on a new file there and
    # traded the account beside the first, which went on with every write refused.
    bot = bots(LIVE_TOML)
    for suffix in ("", "-wal", "-shm"):
        os.unlink(f"{bot.db}{suffix}")
    lost = (f"state_db {str(bot.db)!r} was deleted while this bot had it open, so nothing it saves now is kept; this "
            f"bot now holds the path, so no second bot starts on it until this one stops. {STATE_FILE_LOST_ADVICE}")
    bot.wait_for("the critical log line", lambda: "CRITICAL | actors.system" in bot.log.read_text()
                 and lost in bot.log.read_text())
    assert bot.get("/api/status").json()["trading_state"] == "active"  # not halted: nothing was closed for it
    env = {**bot.env, "CONTROL_PORT": str(free_port())}
    second = run([*TRADEWARDEN, "run", "--config", str(LIVE_TOML)], timeout=60, env=env, cwd=tmp_path)
    assert second.returncode == 2
    assert second.stderr.splitlines()[-1] == (
        f"tradewarden run: state_db {str(bot.db)!r} is in use by another running bot: two bots on one state file "
        "would both trade the account; stop the other, or give this one its own STATE_DB")
    assert bot.terminate() == 0


def test_an_unreachable_statsd_host_fails_before_anything_starts_naming_it(tmp_path):
    config = tmp_path / "live.toml"
    config.write_text(VOLATILE.format(db=tmp_path / "state.db"))
    env = {**os.environ, "STATSD_HOST": "no.such.host.invalid", "CONTROL_PORT": str(free_port())}  # (not 8787: another bot's)
    done = subprocess.run([*TRADEWARDEN, "run", "--config", str(config)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    # (the resolver's own words after the colon depend on the machine's DNS)
    assert done.stderr.startswith("tradewarden run: statsd_host 'no.such.host.invalid' (port 8125) cannot be resolved: ")
    assert not (tmp_path / "state.db").exists()


def test_a_non_loopback_control_host_with_a_guessable_token_is_refused_before_anything_starts(tmp_path):
    env = {**os.environ, "CONTROL_HOST": "0.0.0.0", "CONTROL_TOKEN": "a", "STATE_DB": str(tmp_path / "state.db"),
           "CONTROL_PORT": str(free_port())}
    done = subprocess.run([*TRADEWARDEN, "run", "--config", str(LIVE_TOML)], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", (
        "tradewarden run: control_token must be at least 16 characters to expose the control API on '0.0.0.0', "
        "got one of 1\n"))
    assert not (tmp_path / "state.db").exists()


def test_a_non_loopback_control_host_without_a_token_is_refused_before_anything_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CONTROL_TOKEN"}
    env.update(CONTROL_HOST="0.0.0.0", STATE_DB=str(tmp_path / "state.db"))
    done = subprocess.run([*TRADEWARDEN, "run", "--config", str(LIVE_TOML)], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "tradewarden run: control_host '0.0.0.0' is not a loopback address: set CONTROL_TOKEN (control_token) "
        "before exposing the control API\n"
    )
    assert not (tmp_path / "state.db").exists()


def test_the_demo_prints_the_dashboard_address_and_token_and_serves_the_page(tmp_path):
    port = free_port()
    # A live bot's settings exported in the shell reach neither the demo nor that bot's file.
    live = tmp_path / "live.db"
    with SqliteStore(live) as store:
        store.save_pending_halt("demo", PendingHalt("ops", "the live bot's halt"))
    before = live.read_bytes()
    env = {**os.environ, "CONTROL_TOKEN": TOKEN, "STATE_DB": str(live), "CONTROL_PORT": str(free_port()),
           "MAX_DRAWDOWN_PERCENT": "50"}
    (tmp_path / "demo").mkdir()
    with SqliteStore(tmp_path / "demo" / "state.db") as store:  # an old demo's, halted: the new one starts afresh
        store.save_pending_halt("demo", PendingHalt("ops", "an old demo's halt"))
    with Child([*TRADEWARDEN, "demo", "--port", str(port), "--dir", str(tmp_path / "demo")], env=env, cwd=tmp_path) as demo:
        [line] = demo.lines(1, timeout=60)
        assert line == f"dashboard: http://127.0.0.1:{port}/  token: {TOKEN}  (Ctrl-C stops the demo)"
        pages: list[httpx.Response] = []

        def serving() -> bool:
            try:
                pages[:] = [httpx.get(f"http://127.0.0.1:{port}/", timeout=5)]
            except httpx.HTTPError:
                return False
            return True

        if not wait_until(serving, 30):
            ended = demo.finish(0.1)  # still running: fails the test with the demo's threads
            pytest.fail(f"the demo exited with {ended.returncode} before serving: {ended.stderr}")
        [page] = pages
        assert page.status_code == 200 and "<title>tradewarden</title>" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).status_code == 401
        status = httpx.get(f"http://127.0.0.1:{port}/api/status", headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert status.json()["trading_state"] == "active"
        # A second demo in the same folder is refused before it touches the running one's files.
        second = run([*TRADEWARDEN, "demo", "--port", str(free_port()), "--dir", str(tmp_path / "demo")], timeout=60,
                     env={**os.environ, "CONTROL_TOKEN": TOKEN})
        assert (second.returncode, second.stdout, second.stderr) == (2, "", (
            f"tradewarden demo: --dir {str(tmp_path / 'demo')!r} is in use: its state.db is claimed by another running "
            "demo or bot; stop it, or give this demo another --dir\n"))
        events = httpx.get(f"http://127.0.0.1:{port}/api/events", headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert events.status_code == 200 and events.json()["events"][0]["event_type"] == "loop_started"
        demo.send_signal(signal.SIGTERM)
        ended = demo.finish(30)
        assert ended.returncode == 0
    assert ended.stderr.splitlines()[0] == (
        "tradewarden demo: ignoring MAX_DRAWDOWN_PERCENT, STATE_DB, CONTROL_PORT from the environment: the demo runs "
        "on its own settings")
    assert live.read_bytes() == before


@pytest.mark.parametrize(("flags", "error"), [
    (["--port", "0"], "tradewarden demo: --port must be a port number in 1..65535, got 0\n"),
    (["--port", "99999"], "tradewarden demo: --port must be a port number in 1..65535, got 99999\n"),
    (["--dir", "afile"], "tradewarden demo: --dir must be a folder, got 'afile', which is a file\n"),
])
def test_a_demo_given_a_bad_port_or_folder_exits_2_naming_it_and_writes_nothing(tmp_path, flags, error):
    (tmp_path / "afile").write_text("mine\n")
    done = run([*TRADEWARDEN, "demo", *flags], timeout=60, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and (tmp_path / "afile").read_text() == "mine\n"


@pytest.mark.parametrize("old_demo", [False, True])
def test_a_demo_on_a_port_in_use_exits_2_naming_it_before_printing_or_writing_anything(tmp_path, old_demo):
    # It used to print a dashboard address that was someone else's server, then fail as
    # `tradewarden run`, leaving its config and an empty state file (an old demo's emptied).
    folder = tmp_path / "demo"
    if old_demo:
        folder.mkdir()
        with SqliteStore(folder / "state.db") as store:
            store.save_pending_halt("demo", PendingHalt("ops", "an old demo's halt"))
        (folder / "demo.toml").write_text("# an old demo's config\n")
    before = {str(path): path.read_bytes() if path.is_file() else "a folder" for path in tmp_path.rglob("*")}
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run([*TRADEWARDEN, "demo", "--port", str(port), "--dir", str(folder)], timeout=60, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", (
        f"tradewarden demo: control API cannot listen on 127.0.0.1:{port}: "
        f"[Errno {errno.EADDRINUSE}] {os.strerror(errno.EADDRINUSE)}\n"))
    assert {str(path): path.read_bytes() if path.is_file() else "a folder" for path in tmp_path.rglob("*")} == before


@pytest.mark.parametrize("length", [15, 16])
def test_a_token_of_16_characters_is_the_least_that_may_guard_a_non_loopback_address(length):
    token = "t" * length
    if length < MIN_EXPOSED_TOKEN:
        with pytest.raises(ServerError) as refused:
            bind("0.0.0.0", 0, token=token)
        assert str(refused.value) == (
            "control_token must be at least 16 characters to expose the control API on '0.0.0.0', got one of 15")
    else:
        bind("0.0.0.0", 0, token=token).close()
    bind("127.0.0.1", 0, token="t").close()  # on loopback any token will do
