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
