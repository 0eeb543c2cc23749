"""Two replays into one --out folder: the second is refused before it touches anything, and the
first's files stay its own."""

from __future__ import annotations

import json
import signal
from collections import Counter

from support.processes import Child
from test_examples import RUN_TIMEOUT, clean_env, equity_rows, example, journal, run_example

from runtime.adapters.sqlite import SqliteStore


def test_a_second_replay_into_a_folder_a_replay_is_writing_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "conc"
    out.mkdir()
    SqliteStore(out / "state.db").close()  # an earlier run's: the first replay moves it away, then claims anew
    first = example("paper_trading.py", "--bars", "400", "--speed", "7200", "--progress", "on", "--out", "conc")
    with Child(first, cwd=tmp_path, env=clean_env()) as running:
        running.wait_for("2/400 bars", RUN_TIMEOUT, stream="stderr")  # under way (2 bars/s), its files open
        database = (out / "state.db").stat()
        before = sorted(path.name for path in out.iterdir())
        assert "state.db.previous" in before

        second = run_example("paper_trading.py", "--bars", "100", "--out", "conc", cwd=tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr == (
            "paper_trading: --out 'conc' is in use: another replay is writing it (its state.db is claimed); "
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
