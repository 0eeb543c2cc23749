"""What a replay prints before its first bar: the size of its trades against the account, and
every setting that can stop or refuse one, so a trader sees them before the run, not after."""

from __future__ import annotations

from pathlib import Path

from test_examples import run_example
from test_paper_costs import write_mt5_eurusd


def write_closes(path: Path, closes: list[float]) -> None:
    rows = [
        f"2024-03-{1 + day // 24:02d}T{day % 24:02d}:00:00+00:00,{close},{close},{close},{close}"
        for day, close in enumerate(closes)
    ]
    path.write_text("timestamp,open,high,low,close\n" + "\n".join(rows) + "\n", encoding="utf-8")


def header(stdout: str) -> list[str]:
    return stdout.split("\n\n", 1)[0].splitlines()


def test_the_header_gives_the_volumes_notional_and_its_leverage_from_the_lowest_to_the_highest_close(tmp_path):
    # A trader's trial: BTCUSD's default volume, 10,000 / its first close 5.55, was bought at 375.98,
    # 68:1, while the help said "about 1x leverage" and nothing in the output showed it.
    prices = tmp_path / "coin.csv"
    write_closes(prices, [50.0, 40.0] + [45.0] * 20 + [6000.0])
    result = run_example("paper_trading.py", "--prices", str(prices), "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert header(result.stdout)[2:4] == [
        "  strategy: MA(5/20) crossover, volume 200; paper account GBP 10,000.00",
        "  size: volume 200 at the first close 50 is notional GBP 10,000.00, leverage 1.0:1 on the starting cash; "
        "every buy trades this volume, so leverage runs from 0.8:1 (lowest close 40) to 120.0:1 (highest close 6000); "
        "buys over max leverage 100:1 are refused",
    ]


def test_the_default_volume_is_one_times_the_cash_at_the_first_close_with_the_contract_size(tmp_path):
    prices = tmp_path / "EURUSD_H1.csv"
    write_mt5_eurusd(prices)
    config = tmp_path / "lots.toml"
    config.write_text("contract_size = 100000\n", encoding="utf-8")
    result = run_example("paper_trading.py", "--prices", str(prices), "--config", str(config), "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert header(result.stdout)[2:4] == [
        "  strategy: MA(5/20) crossover, volume 0.090498; paper account GBP 10,000.00",
        "  size: volume 0.090498 x contract size 100000 at the first close 1.1050 is notional GBP 10,000.03, leverage "
        "1.0:1 on the starting cash; every buy trades this volume, so leverage runs from 1.0:1 (lowest close 1.0950) "
        "to 1.0:1 (highest close 1.1050)",
    ]


def test_every_setting_that_can_stop_or_refuse_trading_is_stated_before_the_first_bar(tmp_path):
    # A trader's trial: the position stop, the cooldown and the trading day's time zone were never
    # printed, and the warning levels only after the run.
    config = tmp_path / "guards.toml"
    config.write_text(
        'daily_loss_percent = 3\ntrading_timezone = "Europe/London"\nguard_warn_fraction = 0.8\n'
        'position_stop_percent = 2\nposition_stop_basis = "entry"\ncooldown_rules = "daily_loss,max_drawdown"\n'
        "cooldown_seconds = 3600\nmax_order_volume = 500\nmax_trades_per_day = 4\nmax_orders_per_second = 5\n"
        "runaway_refusals = 10\n",
        encoding="utf-8",
    )
    result = run_example("paper_trading.py", "--bars", "120", "--config", str(config), "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert header(result.stdout)[5:11] == [
        "  guards: max drawdown 20% (trailing), min equity 500.00, daily loss 3%; warnings (trading reducing) at 80% "
        "of each: drawdown 16.00%, equity below 625.00, daily loss 2.40%",
        "  trading day: midnight to midnight in Europe/London (for daily loss, max_trades_per_day, the daily_loss "
        "cooldown)",
        "  position stop: a position is closed once its loss reaches 2% of its entry value",
        "  cooldown: trading resumes by itself after a halt by daily_loss at the next trading day, by max_drawdown "
        "3600 s after it (any other halt latches until resumed)",
        "  pre-trade limits: max_order_volume 500, max_orders_per_second 5, max_trades_per_day 4, runaway loop at 10 "
        "refusals in 60 s (then reducing)",
        "  replay: as fast as possible; heartbeat every 3600 data seconds",
    ]
    # ...and the report after the run measures the worst day in that zone, and says so.
    assert "\n  daily loss 3.00% (trading days in Europe/London): worst day " in result.stdout


def test_with_the_defaults_the_header_names_the_three_guards_and_nothing_that_is_off(tmp_path):
    result = run_example("paper_trading.py", "--bars", "120", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert header(result.stdout)[5:7] == [
        "  guards: max drawdown 20% (trailing), min equity 500.00, daily loss off",
        "  replay: as fast as possible; heartbeat every 3600 data seconds",
    ]


def test_a_file_of_one_bar_is_one_bar(tmp_path):
    prices = tmp_path / "one.csv"
    write_closes(prices, [1.1])
    result = run_example("paper_trading.py", "--prices", str(prices), "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert header(result.stdout)[0] == f"tradewarden paper trading: 1 bar of ONE (prices from {prices})"
