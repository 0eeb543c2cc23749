"""examples/fleet.py end to end in its own process, on the session's Ray cluster (RAY_ADDRESS),
as README's "Many accounts" section runs it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from support.processes import run
from support.ray_cluster import RayCluster
from test_examples import EXAMPLES, clean_env

from runtime.adapters.sqlite import SqliteStore
from runtime.events import EventType
from runtime.risk.guards import TradingState

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _table(out: str, step: str) -> dict[str, tuple[str, str, str]]:
    block = out.split(f"-- {step}\n", 1)[1].split("\n-- ", 1)[0]
    rows = re.findall(r"^(acct-\d) (\w+) (\w+) equity=10000.0 peak=10000.0 pid=(\d+)$", block, re.M)
    return {account: (health, state, pid) for account, health, state, pid in rows}


def test_the_fleet_example_halts_an_account_kills_its_worker_and_gets_it_back_halted(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    assert "python examples/fleet.py" in README
    out = tmp_path / "run"
    done = run([sys.executable, str(EXAMPLES / "fleet.py"), str(out)], env=clean_env(RAY_ADDRESS=ray_cluster.address),
               timeout=300)
    assert done.returncode == 0, done.stderr
    started, halted, after = (_table(done.stdout, step) for step in ("started", "acct-2 halted", "after SIGKILL"))
    assert {a: row[:2] for a, row in started.items()} == {"acct-1": ("ok", "active"), "acct-2": ("ok", "active")}
    assert {a: row[:2] for a, row in halted.items()} == {"acct-1": ("ok", "active"), "acct-2": ("ok", "halted")}
    assert {a: row[:2] for a, row in after.items()} == {a: row[:2] for a, row in halted.items()}
    assert after["acct-2"][2] != halted["acct-2"][2] and after["acct-1"][2] == halted["acct-1"][2]
    assert re.search(r"^acct-2 restarted by Ray in \d+\.\ds, still halted$", done.stdout, re.M)
    for account in ("acct-1", "acct-2"):
        with SqliteStore(out / f"{account}.db") as store:
            record = store.load_guard(account)
            events = store.events(account)
        expected = TradingState.HALTED if account == "acct-2" else TradingState.ACTIVE
        assert record is not None and record.trading_state is expected
        assert events[-1].event_type is EventType.LOOP_STOPPED  # removed cleanly at the end


def test_the_readme_fleet_example_runs_against_a_cluster(ray_cluster: RayCluster, monkeypatch, capsys) -> None:
    [block] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "Fleet.connect(" in b]
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    exec(compile(block, "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == ["acct-1 ok active 10000.0", "halted", "active"]
