"""A trading system on SQLite, killed with SIGKILL at random points, comes back in a new process
with its peak, its latched HALTED state, its lifetime totals and every acknowledged event."""

from __future__ import annotations

import json
import random
import signal
import sys
from pathlib import Path

import pytest
from support.processes import Child
from support.trading_child import readings

REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().parent / "support" / "trading_child.py"


def child(*args: str) -> Child:
    return Child([sys.executable, str(CHILD), *args], cwd=REPO)


def run_until_killed(db: Path, seed: int, start: int, wanted: int) -> list[str]:
    with child("run", str(db), str(seed), str(start)) as running:
        running.lines(wanted, timeout=60)
        running.send_signal(signal.SIGKILL)
        finished = running.finish(timeout=10)
    assert finished.returncode == -signal.SIGKILL, finished.stderr
    return finished.stdout.split("\n")[:-1]  # the last piece is empty or cut short by the kill


def restore(db: Path) -> dict:
    with child("restore", str(db)) as restoring:
        finished = restoring.finish(timeout=60)
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_trading_process_restarts_with_its_peak_halt_totals_and_journal(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    db = tmp_path / "state.db"
    acked_events: set[str] = set()
    sent: list[float] = []
    halted = False
    start = 0
    for kill in range(3):  # three kills, each run carrying on from the file the last one left
        wanted = rng.randint(20, 400)
        lines = run_until_killed(db, seed, start, wanted)
        peaks = [(float(line.split()[1]), line.split()[2]) for line in lines if line.startswith("P ")]
        totals = [tuple(map(int, line.split()[1:])) for line in lines if line.startswith("T ")]
        acked_events |= {line.split()[1] for line in lines if line.startswith("E ")}
        sent += readings(seed, start)[: len(peaks) + 1]  # at most one reading sent but not answered
        start += len(peaks)
        halted = halted or any(s == "halted" for _, s in peaks)

        state = restore(db)
        context = f"seed {seed}, kill {kill + 1} after {wanted} lines"
        journal = state["journal"]
        assert len(journal) == len(set(journal)), f"{context}: an event was journaled twice"
        missing = acked_events - set(journal)
        assert not missing, f"{context}: acknowledged events lost: {sorted(missing)[:5]}"
        if peaks:
            assert state["peak"] >= peaks[-1][0], f"{context}: the peak went back"
        assert state["peak"] in {10_000.0, *sent}, f"{context}: the peak is not a reading that was sent"
        if halted:
            assert state["state"] == "halted", f"{context}: the HALTED latch was lost"
        if totals:
            signals, trades = totals[-1]
            assert state["signals"] >= signals and state["trades"] >= trades, f"{context}: totals went back"
