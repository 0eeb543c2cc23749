"""A replay's report gives the worst the guard saw, inside bars included, and agrees with the
guard's own record in the state store: a bar whose low nearly breaches while it closes near the peak."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_examples import run_example

from runtime.adapters.sqlite import SqliteStore
from runtime.settings import Settings

# Long 100 from 102 (the MA(1/2) crossover buys at the 22:00 close); 23:00, a rising bar, meets
# its low of 101.5 first (9,950, under the start), then closes at its high, the peak, 12,800;
# 00:00, the next day's first bar, falls: its path meets its high, 130.5 (a peak of 12,850),
# before its low, 107 (10,500: 18.29% below that peak, 17.97% below the day's start of 12,800,
# two points from the 20% limits), and closes at 128, where the crossover sells. Judged at the
# closes only, the worst is 12,600: 1.56%.
PRICES = """timestamp,open,high,low,close
2024-03-04T20:00:00+00:00,100,100,100,100
2024-03-04T21:00:00+00:00,100,100,99,99
2024-03-04T22:00:00+00:00,99,102,99,102
2024-03-04T23:00:00+00:00,102,130,101.5,130
2024-03-05T00:00:00+00:00,130,130.5,107,128
2024-03-05T01:00:00+00:00,128,128,128,128
"""
WORST = (12_850.0 - 10_500.0) / 12_850.0  # 0.18287937...


@pytest.fixture(scope="module")
def near_miss(tmp_path_factory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("near-miss")
    (cwd / "GAP.csv").write_text(PRICES, encoding="utf-8")
    result = run_example(
        "paper_trading.py", "--prices", "GAP.csv", "--fast", "1", "--slow", "2", "--volume", "100",
        "--min-equity", "9900", "--daily-loss", "20", "--out", "run", cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return cwd / "run", result.stdout


def test_the_printed_report_gives_the_worst_inside_the_bars_for_every_limit(near_miss):
    _, stdout = near_miss
    assert (
        "Limits:\n"
        "  max drawdown 20.00% (trailing): worst 18.29% below the peak; not fired\n"
        "  min equity 9,900.00: lowest equity 9,950.00; not fired\n"
        "  daily loss 20.00% (trading days in UTC): worst day 17.97%; not fired\n"
        "\n"
        "Equity: GBP 10,000.00 -> GBP 12,600.00 (+GBP 2,600.00, +26.00%)\n"
        "Max drawdown: 18.29%\n"
        "Fills: 2 in fills.csv: 2 by signal   Restarts: 0\n"
    ) in stdout


def test_summary_json_and_equity_csv_agree_with_the_guards_own_record(near_miss):
    out, _ = near_miss
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["start_equity"], summary["final_equity"], summary["max_drawdown"]) == (10_000.0, 12_600.0, WORST)
    assert summary["guard_triggers"] == []
    with SqliteStore(out / "state.db") as store:
        record = store.load_guard(Settings().loop_id)
    assert record is not None
    assert record.drawdown.max_drawdown == summary["max_drawdown"]
    assert (record.drawdown.peak_equity, record.day_start_equity) == (12_850.0, 12_800.0)
    # The close after each bar, and beside it the lowest and the highest equity the guard saw in the bar.
    assert (out / "equity.csv").read_text(encoding="utf-8").splitlines() == [
        "timestamp,equity,worst_equity,best_equity",
        "2024-03-04T20:00:00+00:00,10000.0000,10000.0000,10000.0000",
        "2024-03-04T21:00:00+00:00,10000.0000,10000.0000,10000.0000",
        "2024-03-04T22:00:00+00:00,10000.0000,10000.0000,10000.0000",
        "2024-03-04T23:00:00+00:00,12800.0000,9950.0000,12800.0000",
        "2024-03-05T00:00:00+00:00,12600.0000,10500.0000,12850.0000",
        "2024-03-05T01:00:00+00:00,12600.0000,12600.0000,12600.0000",
    ]

