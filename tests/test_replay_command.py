"""`tradewarden replay`: the paper replay under the command's own name, in its usage and its messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from support.processes import Finished, run
from test_examples import RUN_TIMEOUT, clean_env


def tradewarden(*args: str, cwd: Path) -> Finished:
    return run([sys.executable, "-m", "actors.service", *args], cwd=cwd, env=clean_env(), timeout=RUN_TIMEOUT)


def test_replay_help_names_the_command_not_the_example_file(tmp_path):
    result = tradewarden("replay", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tradewarden replay [-h] [--prices FILE] [--symbol SYMBOL]")
    assert "paper_trading" not in result.stdout
    for flag in ("--prices", "--max-drawdown", "--speed", "--out"):
        assert flag in result.stdout


def test_replay_names_itself_in_its_errors(tmp_path):
    bad_flag = tradewarden("replay", "--max-drawdown", "-5", cwd=tmp_path)
    assert bad_flag.returncode == 2
    assert bad_flag.stderr.startswith("usage: tradewarden replay [-h]")
    assert bad_flag.stderr.endswith(
        "tradewarden replay: error: argument --max-drawdown: --max-drawdown must be a finite number > 0, got '-5'\n"
    )
    for empty in ("", "   "):  # (an empty one used to fall back to the default symbol silently)
        bad_symbol = tradewarden("replay", "--symbol", empty, "--out", "run", cwd=tmp_path)
        assert bad_symbol.returncode == 2
        assert bad_symbol.stderr.endswith(
            f"tradewarden replay: error: argument --symbol: --symbol must be a non-empty string, got {empty!r}\n"
        )
    assert not (tmp_path / "run").exists()
    spaced = tradewarden("replay", "--symbol", " X1 ", "--bars", "100", "--out", "run", cwd=tmp_path)
    assert spaced.returncode == 0 and spaced.stdout.startswith("tradewarden paper trading: 100 bars of X1 ("), spaced.stdout
    missing = tradewarden("replay", "--prices", "no-such-file.csv", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("tradewarden replay: ") and "no-such-file.csv" in missing.stderr


def test_replay_runs_the_paper_replay_and_writes_its_report(tmp_path):
    result = tradewarden("replay", "--bars", "100", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Wrote state.db, equity.csv, fills.csv, summary.json, report.png to run/" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["fills"] == len((tmp_path / "run" / "fills.csv").read_text(encoding="utf-8").splitlines()) - 1


def test_a_replay_given_a_run_config_says_which_of_its_tables_it_does_not_read(tmp_path):
    config = Path(__file__).parents[1] / "examples" / "live.toml"
    result = tradewarden("replay", "--bars", "100", "--config", str(config), "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"  not read from {config}: [broker], [feed], [strategy] (for `tradewarden run`; a replay takes the "
            "account, bars and strategy from its own flags)\n") in result.stdout
