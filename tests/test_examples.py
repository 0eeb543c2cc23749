"""The examples end to end, each in its own process: exit codes, files, and agreement with the journal."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import attrs
import pytest
from support.processes import Child, Finished, run

from runtime.adapters.sqlite import APPLICATION_ID, SqliteStore
from runtime.events import EventType
from runtime.replay.limits import EquityPath
from runtime.replay.prices import Bar, synthetic_bars
from runtime.replay.report import RunSummary, format_summary
from runtime.risk.guards import LIMIT_TOLERANCE
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT = 120.0
SUMMARY_KEYS = {
    "interrupted", "bars_played", "bars_total", "start_equity", "final_equity", "max_drawdown", "fills", "fills_by_why", "guard_triggers", "restarts",
    "orders_refused", "orders_refused_by", "first_refusals", "open_positions", "unrealised_pnl", "price_digits",
    "events_by_type", "state_spans",
}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any tradewarden setting, so a developer's own
    variables cannot change what the examples do under test."""
    names = {var for field in attrs.fields(Settings) for var in field.metadata["env"]}
    env = {key: value for key, value in os.environ.items() if key not in names}
    env.update(extra)
    return env


def example(name: str, *args: str, python: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, *python, str(EXAMPLES / name), *args]


def run_example(name: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Finished:
    return run(example(name, *args), cwd=cwd, env=env or clean_env(), timeout=RUN_TIMEOUT)


def journal(out: Path):
    with SqliteStore(out / "state.db") as store:
        return store.events()


def started_and_stopped_once(events) -> bool:
    """LOOP_STARTED once, then LOOP_STOPPED last. LOOP_STARTED need not be first: the guard journals
    ORDER_SUBMITTED and its outcome itself, durably, while LOOP_STARTED reaches the journal through
    the emitter's own worker, which a busy machine can delay past the first order."""
    marks = [e.event_type for e in events if e.event_type in (EventType.LOOP_STARTED, EventType.LOOP_STOPPED)]
    return marks == [EventType.LOOP_STARTED, EventType.LOOP_STOPPED] and events[-1].event_type is EventType.LOOP_STOPPED


def equity_csv(out: Path) -> list[tuple[datetime, float, float, float]]:
    """equity.csv's rows: each bar's time, equity at its close, and the lowest and the highest
    the guard saw in it."""
    lines = (out / "equity.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "timestamp,equity,worst_equity,best_equity"
    rows = []
    for line in lines[1:]:
        stamp, value, worst, best = line.split(",")
        assert float(worst) <= float(value) <= float(best), line
        rows.append((datetime.fromisoformat(stamp), float(value), float(worst), float(best)))
    return rows


def equity_rows(out: Path) -> list[tuple[datetime, float]]:
    """equity.csv's time and equity after each bar."""
    return [(moment, value) for moment, value, _, _ in equity_csv(out)]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR", "a PNG starts with its IHDR chunk"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def png_title(path: Path) -> str | None:
    """The Title a PNG's tEXt chunk gives, as image viewers show it."""
    data = path.read_bytes()
    at = 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        if kind == b"tEXt" and body.startswith(b"Title\0"):
            return body.split(b"\0", 1)[1].decode("latin-1")
        at += 12 + length
    return None


def check_paper_run(out: Path, bars: list[Bar], limit: float) -> dict:
    """Every promise of a finished paper run: files, summary keys, agreement with the journal and
    with the equity series, and the guard firing exactly where the data says it must."""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary) == SUMMARY_KEYS
    assert (summary["interrupted"], summary["bars_played"], summary["bars_total"]) == (False, len(bars), len(bars))
    assert "interrupted" not in png_title(out / "report.png")

    events = journal(out)
    counts = Counter(event.event_type.value for event in events)
    assert summary["events_by_type"] == dict(counts)
    with (out / "fills.csv").open(encoding="utf-8", newline="") as handle:
        fills = list(csv.DictReader(handle))
    assert summary["fills"] == len(fills) == counts["trade_executed"] + counts["position_closed"]
    assert summary["fills_by_why"] == dict(Counter(row["why"] for row in fills))
    assert summary["orders_refused"] == counts["trade_failed"]
    assert summary["restarts"] == counts["actor_restarted"] == 0
    triggered = [e for e in events if e.event_type is EventType.GUARD_TRIGGERED]
    assert summary["guard_triggers"] == [
        {"time": e.metadata["at"], "guard": e.metadata["guard"], "reason": e.metadata["reason"]} for e in triggered
    ]
    # Every change away from active trading starts a stretch, in journal order, with its reason.
    stopped = [e for e in events if e.event_type is EventType.TRADING_STATE_CHANGED and e.metadata["to"] != "active"]
    assert [(s["start"], s["state"], s["reason"]) for s in summary["state_spans"]] == [
        (e.timestamp.isoformat(), e.metadata["to"], e.metadata["reason"]) for e in stopped
    ]
    assert started_and_stopped_once(events)
    assert counts["stall_detected"] == 0

    rows = equity_rows(out)
    assert [t for t, _ in rows] == [bar.time for bar in bars]  # one row per bar, in order
    values = [v for _, v in rows]
    assert summary["final_equity"] == values[-1]
    # The worst the guard saw, inside bars included: its tracker's, which its stored record
    # follows in steps of 0.1 point, and no less than equity.csv's.
    with SqliteStore(out / "state.db") as store:
        record = store.load_guard(Settings().loop_id)
    assert record is not None and 0 <= summary["max_drawdown"] - record.drawdown.max_drawdown < 1e-3
    times, closes, lows, highs = zip(*equity_csv(out))
    path = EquityPath(summary["start_equity"], times, closes, lows, highs=highs)
    assert summary["max_drawdown"] >= path.max_drawdown() - 1e-9

    # Where the data says the guard must fire: the first bar whose drawdown reaches the limit
    # (as the guard rounds it: a liquidation inside a bar fills where the limit was crossed),
    # each bar read as the guard reads it, its low and its high included.
    first_breach = next(
        (moment for moment, drawdown in zip(path.times, path.drawdowns()) if drawdown >= limit * (1 - LIMIT_TOLERANCE)),
        None,
    )
    assert first_breach is not None, "the series must breach the limit for this check to mean anything"
    assert triggered and triggered[0].metadata["guard"] == "max_drawdown"
    assert datetime.fromisoformat(summary["guard_triggers"][0]["time"]) == first_breach
    # ...and the guard closed the position there: the equity is flat from that bar on.
    closed = [e for e in events if e.event_type is EventType.POSITION_CLOSED]
    assert closed and closed[0].timestamp == first_breach
    after = [v for t, v in rows if t >= first_breach]
    assert after == pytest.approx([after[0]] * len(after))

    width, height = png_size(out / "report.png")
    assert 400 <= width <= 4000 and 300 <= height <= 4000
    return summary


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("paper")
    result = run_example("paper_trading.py", "--bars", "120", cwd=cwd)
    return cwd, result


def test_paper_trading_on_the_synthetic_series_agrees_with_its_journal(default_run):
    cwd, result = default_run
    assert result.returncode == 0, result.stderr
    out = cwd / "paper-run"  # the default --out
    check_paper_run(out, synthetic_bars(120), 0.20)
    assert "SYNTHETIC DATA" in result.stdout
    assert "Positions closed by the guard:" in result.stdout
    # It ends with format_summary's text of what summary.json holds.
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    expected = format_summary(RunSummary.from_json_dict(summary), "GBP")
    assert result.stdout.rstrip().endswith(expected)
    assert "Guards fired: 1" in expected


def test_a_second_run_into_the_same_folder_starts_from_a_fresh_state(default_run):
    cwd, first = default_run
    assert first.returncode == 0, first.stderr
    out = cwd / "paper-run"
    before = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    again = run_example("paper_trading.py", "--bars", "120", cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert "was moved to" in again.stdout
    assert (out / "state.db.previous").exists()
    # Not halted from the start by the previous run's latch: the same trades, the same trigger.
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == before
    check_paper_run(out, synthetic_bars(120), 0.20)


def test_the_guard_flags_are_honoured(tmp_path):
    result = run_example("paper_trading.py", "--bars", "120", "--max-drawdown", "35", "--out", "dd35", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = check_paper_run(tmp_path / "dd35", synthetic_bars(120), 0.35)
    assert "limit 35.00%" in summary["guard_triggers"][0]["reason"]


def write_mt5(path: Path, bars: list[Bar]) -> None:
    lines = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    for bar in bars:
        lines.append(
            f"{bar.time:%Y.%m.%d}\t{bar.time:%H:%M:%S}\t{bar.open}\t{bar.high}\t{bar.low}\t{bar.close}"
            f"\t{int(bar.volume)}\t0\t12"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_an_mt5_export_with_a_weekend_gap_replays_without_a_false_stall(tmp_path):
    # The synthetic prices with a 48-hour gap after bar 60, as a market closed for a weekend.
    bars = [
        attrs.evolve(bar, time=bar.time + timedelta(hours=48)) if index > 60 else bar
        for index, bar in enumerate(synthetic_bars(150))
    ]
    prices = tmp_path / "EURX_H1.csv"
    write_mt5(prices, bars)
    result = run_example(
        "paper_trading.py", "--prices", str(prices), "--symbol", "EURX", "--volume", "100", "--out", "mt5",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" not in result.stdout and f"prices from {prices}" in result.stdout
    check_paper_run(tmp_path / "mt5", bars, 0.20)


def test_without_matplotlib_it_says_how_to_install_the_plot_extra_and_still_finishes(tmp_path):
    hidden = tmp_path / "hide-matplotlib" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("matplotlib is hidden for this test")\n', encoding="utf-8")
    env = clean_env(PYTHONPATH=str(hidden.parent))
    result = run_example("paper_trading.py", "--bars", "100", "--out", "noplot", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "pip install -e '.[plot]'" in result.stdout
    out = tmp_path / "noplot"
    assert not (out / "report.png").exists()
    assert {p.name for p in out.iterdir()} >= {"state.db", "equity.csv", "summary.json"}
    assert "Guards fired: 1" in result.stdout


def test_ctrl_c_stops_cleanly_and_writes_the_files_for_the_bars_played(tmp_path):
    command = example("paper_trading.py", "--bars", "400", "--speed", "7200", "--progress", "on", "--out", "interrupted")
    with Child(command, cwd=tmp_path, env=clean_env()) as child:
        child.wait_for("2/400 bars", RUN_TIMEOUT, stream="stderr")  # the replay is under way (2 bars/s)
        child.send_signal(signal.SIGINT)
        finished = child.finish(RUN_TIMEOUT)
    assert finished.returncode == 130, finished.stderr
    out = tmp_path / "interrupted"
    rows = equity_rows(out)
    assert 2 <= len(rows) < 400
    assert f"stopped cleanly after {len(rows)} of 400 bars" in finished.stdout
    events = journal(out)
    assert events[-1].event_type is EventType.LOOP_STOPPED and events[-1].metadata["how"] == "normal"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary) == SUMMARY_KEYS
    assert summary["events_by_type"] == dict(Counter(e.event_type.value for e in events))
    # A trader's trial: an interrupted run's summary.json and chart read like a full run's.
    assert (summary["interrupted"], summary["bars_played"], summary["bars_total"]) == (True, len(rows), 400)
    assert png_title(out / "report.png") == (
        f"tradewarden paper run: SYNTH (SYNTHETIC DATA): interrupted after {len(rows)} of 400 bars"
    )


def whole_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and data[-8:-4] == b"IEND"


def check_files_of_an_interrupted_run(out: Path, moment: str) -> None:
    """None of the files, or all of them, each whole and agreeing with the journal."""
    names = {path.name for path in out.iterdir()} if out.exists() else set()
    if not names:
        return
    rows = equity_rows(out)
    assert names == {"state.db", "equity.csv", "fills.csv", "summary.json"} | ({"report.png"} if rows else set()), moment
    with sqlite3.connect(f"file:{out / 'state.db'}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID, moment
    events = journal(out)
    assert started_and_stopped_once(events), moment
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["events_by_type"] == dict(Counter(e.event_type.value for e in events)), moment
    assert summary["final_equity"] == (rows[-1][1] if rows else summary["start_equity"]), moment
    if rows:
        assert whole_png(out / "report.png"), moment


# Where Ctrl-C lands: just after the child writes a marker (stderr carries -X importtime's line for
# each import as it completes, and the progress bar), then after a delay. The first marker is
# the first import after the example's own SIGINT handler; earlier, Python itself is starting.
INTERRUPTS = [
    *(("stderr", "| argparse\n", delay) for delay in (0.0, 0.1, 0.25, 0.5, 1.0)),
    ("stderr", "| actors.emitter\n", 0.0),
    ("stderr", "| runtime.replay.strategies\n", 0.0),
    ("stdout", "tradewarden paper trading:", 0.0),
    ("stderr", "] 1/120 bars", 0.0),
    ("stderr", "120/120 bars", 0.0),
    ("stderr", "| matplotlib.backends.backend_agg\n", 0.0),
    ("stderr", "| matplotlib.figure\n", 0.0),
]


def interrupt_paper_run(cwd: Path, stream: str, marker: str, delay: float) -> Finished:
    # --speed gives the replay a second and a half, long enough for every delay to land in the run.
    command = example(
        "paper_trading.py", "--bars", "120", "--speed", "288000", "--progress", "on", "--out", "out",
        python=("-X", "importtime"),
    )
    with Child(command, cwd=cwd, env=clean_env()) as child:
        child.wait_for(marker, RUN_TIMEOUT, stream=stream)
        timer = threading.Timer(delay, child.send_signal, (signal.SIGINT,))
        timer.start()
        try:
            return child.finish(RUN_TIMEOUT)
        finally:
            timer.cancel()


def test_ctrl_c_at_any_moment_exits_130_without_a_traceback_and_leaves_whole_files_or_none(tmp_path):
    folders = [tmp_path / f"run{index}" for index in range(len(INTERRUPTS))]
    for folder in folders:
        folder.mkdir()
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda args: interrupt_paper_run(*args), [
            (folder, *moment) for folder, moment in zip(folders, INTERRUPTS)
        ]))
    for folder, (stream, marker, delay), finished in zip(folders, INTERRUPTS, runs):
        moment = f"Ctrl-C {delay}s after {marker!r} on {stream}"
        stderr = "".join(line for line in finished.stderr.splitlines(keepends=True) if "import time:" not in line)
        assert finished.returncode == 130, f"{moment}: exit {finished.returncode}\n{stderr}"
        assert "Traceback" not in stderr, f"{moment}:\n{stderr}"
        check_files_of_an_interrupted_run(folder / "out", moment)


@pytest.fixture
def mounted_tmpfs(tmp_path):
    """Mount a tmpfs with the given options on a new folder (root only); unmounted after the test."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        done = run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        run(["umount", str(folder)], timeout=30)


def refused(result: Finished, message: str) -> None:
    """Exit 2 with ``message`` as the only line on stderr: no traceback, no alert, no stall."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert re.fullmatch(message + r"\n", result.stderr), result.stderr


def test_an_out_that_is_a_file_or_under_one_is_refused_by_name(tmp_path):
    (tmp_path / "afile").write_text("mine\n", encoding="utf-8")
    refused(
        run_example("paper_trading.py", "--out", "afile", cwd=tmp_path),
        r"paper_trading: --out must be a folder, got 'afile', which is a file",
    )
    refused(
        run_example("paper_trading.py", "--out", "afile/run", cwd=tmp_path),
        r"paper_trading: --out 'afile/run' cannot be used: Not a directory",
    )
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "mine\n"


def test_an_out_that_cannot_be_written_is_refused_by_name(tmp_path, mounted_tmpfs):
    if os.geteuid() == 0:  # root writes through chmod: a read-only file system stops it
        folder = mounted_tmpfs("readonly", "ro,size=16m")
    else:
        folder = tmp_path / "readonly"
        folder.mkdir(mode=0o500)
    refused(
        run_example("paper_trading.py", "--out", str(folder), cwd=tmp_path),
        rf"paper_trading: --out '{re.escape(str(folder))}' is not writable",
    )


def test_a_nearly_full_disk_is_refused_before_the_run(tmp_path, mounted_tmpfs):
    folder = mounted_tmpfs("full", "size=64k")
    refused(
        run_example("paper_trading.py", "--out", str(folder), cwd=tmp_path),
        rf"paper_trading: --out '{re.escape(str(folder))}' has 64 KiB free, a run needs 8 MiB "
        r"\(the journal's write-ahead log alone grows to 4 MiB\)",
    )
    assert list(folder.iterdir()) == []


def test_an_unknown_log_level_is_refused_by_name(tmp_path):
    refused(
        run_example("paper_trading.py", "--out", "run", cwd=tmp_path, env=clean_env(LOG_LEVEL="LOUD")),
        r"paper_trading: log_level must be one of TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL, "
        r"got 'LOUD'",
    )
    assert not (tmp_path / "run").exists()


def test_a_state_db_that_is_not_ours_is_refused_and_never_moved(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with sqlite3.connect(out / "state.db") as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    before = (out / "state.db").read_bytes()
    refused(
        run_example("paper_trading.py", "--out", "run", cwd=tmp_path),
        r"paper_trading: state_db 'run/state\.db' is not a tradewarden state database "
        r"\(application_id 0x0, expected 0x54574431; schema objects: users\); "
        r"it was left untouched \(not replaced, not migrated\)",
    )
    assert sorted(path.name for path in out.iterdir()) == ["state.db"]
    assert (out / "state.db").read_bytes() == before


def test_help_explains_every_option_and_bad_input_is_named(tmp_path):
    result = run_example("paper_trading.py", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--prices", "--symbol", "--volume", "--config", "--max-drawdown", "--min-equity", "--daily-loss",
                 "--speed", "--statsd", "--telegram-token", "--telegram-chat", "--log-json", "--out"):
        assert flag in result.stdout
    missing = run_example("paper_trading.py", "--prices", "no-such-file.csv", cwd=tmp_path)
    assert missing.returncode == 2 and "no-such-file.csv" in missing.stderr
    bad = run_example("paper_trading.py", "--max-drawdown", "-5", cwd=tmp_path)
    assert bad.returncode == 2 and "--max-drawdown must be a finite number > 0, got '-5'" in bad.stderr

    # A value the settings refuse is named by its flag, not by the setting it sets.
    for args, message in [
        (("--max-drawdown", "150"), "argument --max-drawdown: max_drawdown_percent must be a percentage in (0, 100], "
                                    "got 150.0"),
        (("--daily-loss", "150"), "argument --daily-loss: daily_loss_percent must be a percentage in (0, 100], got 150.0"),
        (("--min-equity", "-5"), "argument --min-equity: min_equity must be >= 0, got -5.0"),
        (("--commission-percent", "100"), "argument --commission-percent: paper_commission_percent must be a "
                                          "percentage in [0, 100), got 100.0"),
    ]:
        refused(run_example("paper_trading.py", *args, "--out", "run", cwd=tmp_path), re.escape(f"paper_trading: {message}"))
    assert not (tmp_path / "run").exists()


def test_a_timezone_without_a_prices_file_is_refused_and_a_bad_one_with_a_file_is_named(tmp_path):
    for zone in ("Nowhere/Else", "UTC"):  # the demo's bars are in UTC: any zone given for them is ignored
        alone = run_example("paper_trading.py", "--timezone", zone, "--out", "run", cwd=tmp_path)
        assert alone.returncode == 2 and alone.stdout == ""
        assert alone.stderr.startswith("usage: paper_trading.py [-h]")
        assert alone.stderr.endswith(
            "paper_trading.py: error: --timezone applies only to a --prices file (the demo's own bars are in UTC)\n"
        )
    prices = tmp_path / "prices.csv"
    prices.write_text("timestamp,open,high,low,close\n2024-01-02 10:00,1.1,1.2,1.0,1.1\n", encoding="utf-8")
    bad = run_example("paper_trading.py", "--prices", str(prices), "--timezone", "Nowhere/Else", "--out", "run",
                      cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("usage: paper_trading.py [-h]")
    assert bad.stderr.endswith(
        "paper_trading.py: error: --timezone must be an IANA time zone name such as Europe/London, got 'Nowhere/Else'\n"
    )
    assert not (tmp_path / "run").exists()


def test_bars_with_a_prices_file_is_refused_as_the_file_is_replayed_whole(tmp_path):
    prices = tmp_path / "prices.csv"
    prices.write_text("timestamp,open,high,low,close\n2024-01-02 10:00,1.1,1.2,1.0,1.1\n", encoding="utf-8")
    both = run_example("paper_trading.py", "--prices", str(prices), "--bars", "200", "--out", "run", cwd=tmp_path)
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr.startswith("usage: paper_trading.py [-h]")
    assert both.stderr.endswith(
        "paper_trading.py: error: --bars applies only to the demo's own series (a --prices file is replayed whole)\n"
    )
    assert not (tmp_path / "run").exists()


def test_crash_recovery_restarts_every_way_of_dying_and_keeps_the_peak(tmp_path):
    result = run_example("crash_recovery.py", "--out", "drills", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "peak equity kept across every crash: yes" in result.stdout
    drills = json.loads((tmp_path / "drills" / "drills.json").read_text(encoding="utf-8"))
    assert [(d["actor"], d["how"].split(" (")[0].split(",")[0]) for d in drills] == [
        ("guard", "exception in a told message"), ("guard", "hang"), ("guard", "stopped on its own"),
        ("guard", "start failure"), ("loop", "exception in a told message"), ("loop", "hang"),
        ("loop", "stopped on its own"), ("loop", "start failure"),
    ]
    for drill in drills:
        # Bars pass only while the hung loop is found; its successor trades them, so the peak
        # may rise then (a gain), never fall.
        assert drill["bars_passed"] is (drill["how"].startswith("hang") and drill["actor"] == "loop"), drill
        assert drill["restarted"] and drill["peak_kept"], drill
        if drill["bars_passed"]:
            assert drill["peak_after"] >= drill["peak_before"], drill
        else:
            assert drill["peak_after"] == drill["peak_before"], drill
    causes = [drill["causes"][0] for drill in drills]
    assert "guard crash" in causes[0] and "liveness probe" in causes[1] and "StoreOutage" in causes[3]
    assert "loop crash" in causes[4] and "did not answer" in causes[5] and "StoreOutage" in causes[7]
    # The journal agrees: one ACTOR_RESTARTED per drill, with the same causes.
    restarted = [e for e in journal(tmp_path / "drills") if e.event_type is EventType.ACTOR_RESTARTED]
    assert [(e.metadata["actor"], str(e.metadata["cause"] or "(no cause given)")) for e in restarted] == [
        (d["actor"], d["causes"][0]) for d in drills
    ]


@pytest.mark.parametrize("bars", [100, 120])
def test_crash_recovery_on_a_short_series_reports_drills_it_had_no_time_for_as_not_run(tmp_path, bars):
    result = run_example("crash_recovery.py", "--bars", str(bars), "--out", "drills", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    drills = json.loads((tmp_path / "drills" / "drills.json").read_text(encoding="utf-8"))
    assert all(drill["ok"] for drill in drills), drills
    assert re.search(
        rf"^Drills run: {len(drills)} of 8, each restarted: yes; peak equity kept across every crash: yes\n"
        r"Not run, the series ended before their moment: .+ \(more bars run them all, e\.g\. the default --bars 400\)$",
        result.stdout, re.MULTILINE,
    ), result.stdout
    assert len(drills) < 8


def test_embedded_escalation_reaches_the_host_supervisor(tmp_path):
    result = run_example("embedded.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "crash 1: restarted inside the trading system" in out
    assert "host supervisor notified: child 'trading' failed and was restarted" in out
    assert "restarts exceeded 1" in out
    assert "host event actor heard from the fail-safe: trading_state_changed to halted; position_closed" in out
    assert "trading incarnation 2, restarts 1" in out
    assert "guard is halted" in out and out.rstrip().endswith("host: stopped")
