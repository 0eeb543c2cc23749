"""What a replay's summary tells a trader: every fill of fills.csv counted by why, the position
still open at the end with its unrealised profit, the orders refused, counted by cause, and each
stretch in which the guard held trading halted or reducing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.processes import Finished
from test_examples import clean_env, run_example


def test_the_summary_counts_every_row_of_fills_csv_the_guards_close_included(tmp_path):
    result = run_example("paper_trading.py", "--bars", "120", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "run"
    rows = (out / "fills.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert [row.split(",")[7] for row in rows] == ["signal", "signal", "signal", "guard"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["fills"], summary["fills_by_why"]) == (4, {"guard": 1, "signal": 3})
    assert "\nFills: 4 in fills.csv: 3 by signal, 1 closed by the guard   Restarts: 0\n" in result.stdout
    # The buy signal after the guard halted trading is refused, and said so; nothing is left open.
    assert (summary["orders_refused"], summary["orders_refused_by"]) == (1, {"trading_state": 1})
    assert (summary["open_positions"], summary["unrealised_pnl"]) == ([], 0.0)
    assert (
        "\nOpen at the end: none (flat)\n"
        "Orders refused: 1: trading_state 1 (the guard was halted: 1)\n"
        "Guards fired: 1\n"
    ) in result.stdout


def write_prices(path: Path, closes: list[float]) -> None:
    """Hourly bars from 2024-03-04 04:00 UTC, each opening at the close before, a quarter wider."""
    start = datetime(2024, 3, 4, 4, tzinfo=UTC)
    lines = ["timestamp,open,high,low,close"]
    previous = closes[0]
    for index, close in enumerate(closes):
        low, high = min(previous, close) - 0.25, max(previous, close) + 0.25
        lines.append(f"{(start + timedelta(hours=index)).isoformat()},{previous:.2f},{high:.2f},{low:.2f},{close:.2f}")
        previous = close
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# Three swings on the first day (a buy and a sell, then two buys past max_trades_per_day 2), a
# quiet night, and a climb on the second day that the last buy rides to the end.
SWINGS = [100.0] * 4 + [99, 98] + [99, 100, 101, 100, 99, 98] * 3 + [98] * 3 + [99, 100, 101, 102, 103]


def test_the_summary_shows_the_position_open_at_the_end_and_the_orders_a_limit_refused(tmp_path):
    prices = tmp_path / "DEMO.csv"
    write_prices(prices, SWINGS)
    result = run_example(
        "paper_trading.py", "--prices", str(prices), "--fast", "2", "--slow", "4", "--volume", "10",
        "--spread", "0.01", "--commission-per-lot", "0.013", "--out", "run",
        cwd=tmp_path, env=clean_env(MAX_TRADES_PER_DAY="2"),
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "run"
    assert (out / "fills.csv").read_text(encoding="utf-8").splitlines()[1:] == [
        "2024-03-04T11:00:00+00:00,DEMO,buy,10,100.01,0.2300,-0.1300,signal,fast MA(2) 99.5 crossed above slow MA(4) 99",
        "2024-03-04T14:00:00+00:00,DEMO,sell,10,99.00,0.1300,-10.2300,signal,fast MA(2) 99.5 crossed below slow MA(4) 100",
        "2024-03-05T07:00:00+00:00,DEMO,buy,10,99.01,0.2300,-0.1300,signal,fast MA(2) 98.5 crossed above slow MA(4) 98.25",
    ]
    # Cash is 10,000 - 0.13 - 10.23 - 0.13 = 9,989.51; the long of 10 from 99.01 is worth
    # (103 - 99.01) x 10 = 39.90 at the last close (the bid), so the final equity is 10,029.41.
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["open_positions"] == [{"symbol": "DEMO", "side": "long", "volume": 10.0, "entry_price": 99.01}]
    assert (summary["unrealised_pnl"], summary["final_equity"]) == (39.9, 10_029.41)
    assert (summary["orders_refused"], summary["orders_refused_by"]) == (2, {"max_trades_per_day": 2})
    assert summary["first_refusals"] == [{
        "cause": "max_trades_per_day", "time": "2024-03-04T17:00:00+00:00",
        "reason": "trades 3 on 2024-03-04 (UTC) > limit 2 for DEMO", "alike": 2,
    }]
    assert (summary["fills"], summary["fills_by_why"], summary["price_digits"]) == (3, {"signal": 3}, 2)
    assert (
        "\nEquity: GBP 10,000.00 -> GBP 10,029.41 (+GBP 29.41, +0.29%)\n"
        # From 10,012.27 at the 12:00 bar's high to 9,986.91 inside the next day's 08:00 bar.
        "Max drawdown: 0.25%\n"
        "Fills: 3 in fills.csv: 3 by signal   Restarts: 0\n"
        "Open at the end: long 10 DEMO from 99.01; unrealised +GBP 39.90 at the last close, in the final equity\n"
        "Orders refused: 2: max_trades_per_day 2\n"
        "  max_trades_per_day, first 2024-03-04 17:00 UTC: trades 3 on 2024-03-04 (UTC) > limit 2 for DEMO "
        "(all 2 alike but for their figures)\n"
        "Guards fired: none\n"
        "Trading halted or reducing: never\n"
    ) in result.stdout


def run_crossover(tmp_path: Path, closes: list[float], settings: str) -> Finished:
    """The MA(2/3) crossover trading 100 DEMO on ``closes`` (`write_prices`), with ``settings``
    (TOML lines of the ``[tradewarden]`` table), its report in ``tmp_path / "run"``."""
    prices = tmp_path / "DEMO.csv"
    write_prices(prices, closes)
    config = tmp_path / "settings.toml"
    config.write_text(f"[tradewarden]\n{settings}", encoding="utf-8")
    return run_example(
        "paper_trading.py", "--prices", str(prices), "--fast", "2", "--slow", "3", "--volume", "100",
        "--config", str(config), "--out", "run", cwd=tmp_path,
    )


def test_after_a_cooldown_resumes_with_a_new_baseline_the_summary_starts_from_the_accounts_own_start(tmp_path):
    # A buy at 99, a crash inside a bar that halts at 20% below the peak of 10,525 (the bar
    # before's high, 104.25), closed at 83.20; the cooldown's automatic resume two hours later,
    # which sets the guard's start to the 8,420 then, and a buy at 72: the run still began with
    # 10,000.
    result = run_crossover(
        tmp_path, [100.0, 99, 98, 97, 98, 99, 101, 102, 103, 104, 70, 71, 72, 72, 72, 72],
        'cooldown_rules = "max_drawdown"\ncooldown_seconds = 7200\n',
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert (summary["start_equity"], summary["final_equity"]) == (10_000.0, 8_420.0)
    assert "\nEquity: GBP 10,000.00 -> GBP 8,420.00 (-GBP 1,580.00, -15.80%)\n" in result.stdout
    assert "rebaselined 1" in result.stdout


def test_a_static_floor_is_not_lowered_by_a_cooldown_and_the_run_stays_halted_saying_why(tmp_path):
    # Halted at the 8,000 floor at 14:00. The cooldown's resume at 16:00 used to set the start to
    # 8,000, so the floor fell to 6,400 unattended; a static floor is fixed, so the account stays
    # halted, and the alert says why.
    prices = tmp_path / "DEMO.csv"
    write_prices(prices, [100.0, 99, 98, 97, 98, 99, 101, 102, 103, 104, 70, 71, 72, 72, 72, 73, 74, 70, 66, 64, 64, 64])
    config = tmp_path / "static.toml"
    config.write_text(
        '[tradewarden]\ncooldown_rules = "max_drawdown"\ncooldown_seconds = 7200\ndrawdown_trailing = false\n',
        encoding="utf-8",
    )
    result = run_example(
        "paper_trading.py", "--prices", str(prices), "--fast", "2", "--slow", "3", "--volume", "100",
        "--config", str(config), "--out", "run", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "\n  max drawdown 20.00% (static): floor 8,000.00, lowest equity 8,000.00 (20.00% below start); fired "
        "2024-03-04 14:00 UTC\n"
    ) in result.stdout
    assert "\nEquity: GBP 10,000.00 -> GBP 8,000.00 (-GBP 2,000.00, -20.00%)\n" in result.stdout
    assert "rebaselined" not in result.stdout and "Guards fired: 1\n" in result.stdout
    assert (
        "ALERT Automatic resume refused: the cooldown after max_drawdown ended, but resume refused, even with a "
        "rebaseline: static drawdown 20.00% >= limit 20.00% (start 10000.00, floor 8000.00, equity 8000.00); a static "
        "floor is fixed for the account's life; trading stays halted until resumed\n"
    ) in result.stderr


def test_a_warning_that_keeps_the_account_reducing_after_a_resume_is_named_with_when_why_and_how_long(tmp_path):
    # A buy at 99 rides to 104 (a peak of 10,525 at that bar's high, 104.25), then a bar falls
    # to 96: the 3% daily loss from the day's 10,000 halts and closes there (equity 9,700). The
    # cooldown resumes at the next day's start, where the drawdown of 7.84% is past the 5% warning: the account is reducing from
    # then to the end, and the buy signals refused while halted and while reducing say so.
    result = run_crossover(
        tmp_path,
        [100.0, 99, 98, 97, 98, 99, 101, 102, 103, 104, 96] + [95, 95, 96, 95, 95, 96, 95, 95, 95] + [95, 96, 97, 98, 99, 100],
        'max_drawdown_percent = 10\ndaily_loss_percent = 3\nguard_warn_fraction = 0.5\n'
        'cooldown_rules = "daily_loss"\ncooldown_seconds = 3600\n',
    )
    assert result.returncode == 0, result.stderr
    breach = "daily loss 3.00% >= limit 3.00% (start of day 10000.00, equity 9700.00)"
    warning = "warning: max drawdown 7.84% >= warning 5.00% (limit 10.00%, peak 10525.00, equity 9700.00)"
    resumed = "resumed automatically: the cooldown after daily_loss ended"
    assert result.stdout.split("Open at the end: none (flat)\n")[1].split("Events: ")[0] == (
        "Orders refused: 3: trading_state 3 (the guard was halted: 2, reducing: 1)\n"
        "Guards fired: 1\n"
        f"  2024-03-04 14:00 UTC  daily_loss: {breach}\n"
        "Trading halted or reducing: halted 1 time, 10 bars; reducing 1 time, 6 bars\n"
        f"  2024-03-04 14:00 UTC  halted for 10 bars (10h), 2 orders refused: {breach}\n"
        f"    until 2024-03-05 00:00 UTC, then active: {resumed}\n"
        f"  2024-03-05 00:00 UTC  reducing for 6 bars (5h), 1 order refused: {warning}\n"
        "    to the last bar, 2024-03-05 05:00 UTC: still reducing when the run ended\n"
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["state_spans"] == [
        {"state": "halted", "start": "2024-03-04T14:00:00+00:00", "end": "2024-03-05T00:00:00+00:00",
         "reason": breach, "bars": 10, "orders_refused": 2, "next_state": "active", "ended_by": resumed},
        {"state": "reducing", "start": "2024-03-05T00:00:00+00:00", "end": "2024-03-05T05:00:00+00:00",
         "reason": warning, "bars": 6, "orders_refused": 1, "next_state": None, "ended_by": None},
    ]
    assert (tmp_path / "run" / "report.png").stat().st_size > 10_000
