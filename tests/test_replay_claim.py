"""Two replays into one --out folder: the second is refused before it touches anything, and the
first's files stay its own."""

from __future__ import annotations

import json
import signal
from collections import Counter

from support.processes import Child, run
from test_examples import RUN_TIMEOUT, clean_env, equity_rows, example, journal, run_example

from runtime.adapters.sqlite import SqliteStore
from runtime.store import PendingHalt


def test_a_second_replay_into_a_folder_a_replay_is_writing_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "conc"
    out.mkdir()
    SqliteStore(out / "state.db").close()  # an earlier run's: the first replay moves it away, then claims anew
    (out / "summary.json").write_text("{}\n", encoding="utf-8")  # (a replay's, finished)
    first = example("paper_trading.py", "--bars", "400", "--speed", "7200", "--progress", "on", "--out", "conc")
    with Child(first, cwd=tmp_path, env=clean_env()) as running:
        running.wait_for("2/400 bars", RUN_TIMEOUT, stream="stderr")  # under way (2 bars/s), its files open
        database = (out / "state.db").stat()
        before = sorted(path.name for path in out.iterdir())
        assert "state.db.previous" in before

        second = run_example("paper_trading.py", "--bars", "100", "--out", "conc", cwd=tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr == (
            "paper_trading: --out 'conc' is in use: its state.db is claimed by another running replay, demo or bot; "
            "wait for it to end, or give this run another --out\n"
        )
        assert second.stdout == ""
        # Nothing moved, renamed or written: the first replay's database is the same file.
        assert sorted(path.name for path in out.iterdir()) == before
        assert ((out / "state.db").stat().st_ino, (out / "state.db").stat().st_dev) == (database.st_ino, database.st_dev)

        running.send_signal(signal.SIGINT)
        finished = running.finish(RUN_TIMEOUT)
    assert finished.returncode == 130, finished.stderr
    # Every file is the first replay's: its journal, its equity for the bars it played, its summary.
    rows = equity_rows(out)
    assert f"stopped cleanly after {len(rows)} of 400 bars" in finished.stdout
    events = journal(out)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["events_by_type"] == dict(Counter(e.event_type.value for e in events))
    assert summary["final_equity"] == rows[-1][1]
    assert (out / "state.db").stat().st_ino == database.st_ino


def test_a_replay_after_the_first_has_ended_is_not_refused(tmp_path):
    for _ in range(2):
        result = run_example("paper_trading.py", "--bars", "100", "--out", "again", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert "fresh state: the previous run's state.db was moved to again/state.db.previous" in result.stdout
    assert sorted(path.name for path in (tmp_path / "again").iterdir()) == [
        "equity.csv", "fills.csv", "report.png", "state.db", "state.db.previous", "summary.json",
    ]


def test_a_replay_into_a_folder_with_a_state_db_no_replay_finished_is_refused_and_moves_nothing(tmp_path):
    # A stopped bot's, say, with its HALTED latch: moved aside, its next start would trade.
    out = tmp_path / "bot"
    out.mkdir()
    with SqliteStore(out / "state.db") as store:
        store.save_pending_halt("main", PendingHalt("ops", "desk closed"))
    before = sorted(p.name for p in out.iterdir())
    done = run(example("paper_trading.py", "--bars", "100", "--out", "bot"), cwd=tmp_path, env=clean_env(),
               timeout=RUN_TIMEOUT)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", (
        "paper_trading: --out 'bot' holds a state.db that no replay finished (no summary.json beside it), perhaps a "
        "bot's with its latch: give this run another --out, or move that file away yourself\n"))
    assert sorted(p.name for p in out.iterdir()) == before
    with SqliteStore(out / "state.db") as store:
        assert [h.reason for h in store.load_pending_halts("main")] == ["desk closed"]


def test_a_wal_left_without_its_database_is_dropped_and_the_previous_run_kept(tmp_path):
    out = tmp_path / "run"
    assert run(example("paper_trading.py", "--bars", "100", "--out", "run"), cwd=tmp_path, env=clean_env(),
               timeout=RUN_TIMEOUT).returncode == 0
    assert run(example("paper_trading.py", "--bars", "100", "--out", "run"), cwd=tmp_path, env=clean_env(),
               timeout=RUN_TIMEOUT).returncode == 0
    with SqliteStore(out / "state.db.previous") as store:
        kept = len(store.events())
    (out / "state.db").unlink()  # the user starts over, leaving the last run's WAL behind
    (out / "state.db-wal").write_bytes(b"left over")
    done = run(example("paper_trading.py", "--bars", "100", "--out", "run"), cwd=tmp_path, env=clean_env(),
               timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "fresh state" not in done.stdout
    with SqliteStore(out / "state.db.previous") as store:
        assert len(store.events()) == kept > 0
