"""What `tradewarden status`, `halt`, `resume` and `journal` write, and where: an answer on stdout,
an error on stderr and said once, and nothing more (no traceback) when the reader of their output
has gone. Each runs as a child process against a control server on a real port."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from actor_helpers import WAIT, wait_until
from support.control_server import TOKEN, Served, served
from support.live_bot import TRADEWARDEN, free_port
from support.processes import Child, Finished, run

from actors import TradingSystem
from actors.service.hub import EventHub
from actors.service.journal import JournalReader
from runtime import ListSignalSource, PaperBroker, RiskMonitor, Settings
from runtime.adapters.sqlite import SqliteStore
from runtime.adapters.state_claim import StateFileClaim

AUTH = {"authorization": f"Bearer {TOKEN}"}


@contextmanager
def control_api(tmp_path: Path, **settings: Any) -> Iterator[tuple[Served, str]]:
    """A paper account of 10,000 with its control server, and its state file."""
    db, hub = str(tmp_path / "state.db"), EventHub()
    system = TradingSystem(Settings(loop_id="cli", **settings), PaperBroker(10_000.0), ListSignalSource(),
                           store=SqliteStore(db), subscribers=[hub], loop_interval=None)
    with served(system, hub, db) as api:
        yield api, db


def tradewarden(*args: str, token: str = TOKEN) -> Finished:
    return run([*TRADEWARDEN, *args], timeout=60, env={**os.environ, "CONTROL_TOKEN": token})


def with_reader_gone(*args: str) -> Finished:
    """The command run with a stdout whose reader closed it before it wrote a byte (as ``| head``
    does once it has read what it wanted)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        child = Child([*TRADEWARDEN, *args], env={**os.environ, "CONTROL_TOKEN": TOKEN}, stdout=write_end)
    finally:
        os.close(write_end)
    with child:
        return child.finish(60)


@pytest.mark.parametrize("args", [
    ("status",), ("status", "--json"), ("halt", "--reason", "drill"), ("resume",), ("resume", "--json"),
])
def test_a_wrong_token_is_said_on_stderr_with_exit_3_and_nothing_on_stdout(tmp_path, args):
    # It was printed on stdout, where a script reading the answer took it for one.
    with control_api(tmp_path) as (api, _):
        done = tradewarden(*args, "--url", api.url, token="wrong-token")
        status = httpx.get(api.url + "/api/status", headers=AUTH, timeout=WAIT).json()
    error = (json.dumps({"error": "wrong bearer token"}, indent=2) if "--json" in args
             else f"{args[0]} failed (401): wrong bearer token")
    assert (done.returncode, done.stdout, done.stderr) == (3, "", error + "\n")
    assert status["trading_state"] == "active"


def test_a_refused_resume_is_said_once_on_stderr_in_the_apis_words_with_exit_1(tmp_path):
    # It read "resume refused (409): resume refused: ...". Under its minimum, the account refuses
    # every resume, a rebaselining one too.
    with control_api(tmp_path, min_equity=20_000.0) as (api, _):
        # (What follows the limit in the first is the monitor's advice, worded there.)
        for flags, refusal in (((), r"resume refused: equity 10000\.00 < minimum 20000\.00; "),
                               (("--rebaseline",), r"resume refused, even with a rebaseline: equity 10000\.00 < minimum "
                                                   r"20000\.00$")):
            answer = httpx.post(api.url + "/api/resume", json={"rebaseline": bool(flags)}, headers=AUTH, timeout=WAIT)
            assert (answer.status_code, sorted(answer.json()), answer.json()["done"]) == (409, ["done", "error", "rebaseline_helps"], "refused")
            error = answer.json()["error"]
            assert re.match(refusal, error)
            done = tradewarden("resume", *flags, "--url", api.url)
            assert (done.returncode, done.stdout, done.stderr) == (1, "", error + "\n")
        as_json = tradewarden("resume", "--json", "--url", api.url)
    assert (as_json.returncode, as_json.stdout, json.loads(as_json.stderr)["done"]) == (1, "", "refused")


def test_journal_given_a_folder_says_it_is_a_folder_not_a_state_file(tmp_path):
    folder = tradewarden("journal", "--db", str(tmp_path))
    assert (folder.returncode, folder.stdout, folder.stderr) == (
        2, "", f"tradewarden journal: {str(tmp_path)!r} is a folder, not a state file\n")
    missing = tradewarden("journal", "--db", str(tmp_path / "missing.db"))
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        2, "", f"tradewarden journal: state file {str(tmp_path / 'missing.db')!r} does not exist\n")


def test_a_reader_that_closes_the_pipe_early_ends_each_command_quietly_and_what_it_did_stands(tmp_path):
    # `tradewarden status --json | head -c 10` ended in a BrokenPipeError traceback.
    with control_api(tmp_path) as (api, db):
        for args in (("status",), ("status", "--json"), ("resume",), ("halt", "--reason", "drill")):
            done = with_reader_gone(*args, "--url", api.url)
            assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), args
        assert httpx.get(api.url + "/api/status", headers=AUTH, timeout=WAIT).json()["trading_state"] == "halted"
        assert wait_until(lambda: JournalReader(db).events(event_type="trading_state_changed"))  # something to print
        journal = with_reader_gone("journal", "--db", db)
    assert (journal.returncode, journal.stdout, journal.stderr) == (0, "", "")


def test_halt_and_resume_journal_who_pressed_them(tmp_path):
    with control_api(tmp_path) as (api, db):
        halted = tradewarden("halt", "--reason", "drill", "--by", "alice", "--url", api.url)
        assert (halted.returncode, halted.stdout) == (0, "halted (was active): drill\n")
        resumed = tradewarden("resume", "--by", "bob", "--url", api.url)
        assert (resumed.returncode, resumed.stdout) == (0, "resumed (was halted)\n")
        assert wait_until(lambda: len(JournalReader(db).events(event_type="trading_state_changed")) == 2)
        changes = [event.metadata["reason"] for _, event in JournalReader(db).events(event_type="trading_state_changed")]
    assert changes == ["halted by alice: drill", "resumed by bob"]


def test_a_halt_with_no_bot_answering_is_saved_for_the_next_start_unless_a_process_still_holds_the_file(tmp_path):
    db = tmp_path / "state.db"
    with SqliteStore(db) as store:  # the state file of a bot that is not running (crashed, or stopped)
        store.save_guard("desk-1", RiskMonitor(10_000.0, []).record())
    config = tmp_path / "bot.toml"
    port = free_port()
    # Without the bot's loop id (set only in its service's environment, say), it would be saved
    # for a loop the file does not hold, and never taken.
    config.write_text(f'[tradewarden]\nstate_db = "{db.as_posix()}"\ncontrol_port = {port}\n')
    elsewhere = tradewarden("halt", "--config", str(config), "--reason", "venue down")
    assert (elsewhere.returncode, elsewhere.stdout) == (3, "")
    assert elsewhere.stderr.splitlines()[-1] == (
        f"tradewarden halt: {str(db)!r} holds no loop 'main' (it holds 'desk-1'): set LOOP_ID (or loop_id in --config) "
        "to the bot's")
    config.write_text(f'[tradewarden]\nloop_id = "desk-1"\nstate_db = "{db.as_posix()}"\ncontrol_port = {port}\n')

    held = StateFileClaim.of(str(db))  # a process holds the file, but its API does not answer
    try:
        hung = tradewarden("halt", "--config", str(config), "--reason", "venue down", "--by", "alice")
    finally:
        assert held is not None
        held.close()
    assert (hung.returncode, hung.stdout) == (3, "")
    assert hung.stderr.splitlines()[-1] == (
        f"tradewarden halt: the process holding {str(db)!r} does not answer: stop it (SIGTERM, else kill it), then "
        "halt again to save the halt for its next start")
    with SqliteStore(db) as store:
        assert store.load_pending_halts("desk-1") == store.load_pending_halts("main") == []

    saved = tradewarden("halt", "--config", str(config), "--reason", "venue down", "--by", "alice")
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout == (f"halt pending for loop 'desk-1': no bot runs on {str(db)!r}; its next start takes the halt "
                            "before any order (HALTED, every position closed): venue down\n")
    assert saved.stderr.startswith("tradewarden halt: ")  # (that the API did not answer, first)
    store = SqliteStore(db)
    system = TradingSystem(Settings(loop_id="desk-1"), PaperBroker(10_000.0), ListSignalSource(), store=store,
                           loop_interval=None).start()
    try:
        state = system.guard_status(timeout=WAIT).state
        assert (state.trading_state.value, state.reason) == ("halted", "halted by alice: venue down")
    finally:
        system.stop()
        store.close()
