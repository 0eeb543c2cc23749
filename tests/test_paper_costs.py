"""The paper broker's costs and margin: commission, spread (fixed or a bar's own), slippage and the
leverage limit, from `PaperCosts`, the settings and the replay's command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from test_examples import clean_env, journal, run_example

from runtime import BrokerError, Fill, Order, OrderRejected, PaperBroker, Position, Settings, SettingsError, Side
from runtime.adapters.paper import PaperCosts
from runtime.events import EventType
from runtime.payloads import TradeFailed
from runtime.replay.prices import synthetic_bars
from runtime.replay.refusals import readable_error

AT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def broker_at(price: float, cash: float = 10_000.0, **costs: float | None) -> PaperBroker:
    broker = PaperBroker(cash, costs=PaperCosts(**costs))  # type: ignore[arg-type]
    broker.update_price("X", price, AT)
    return broker


def test_a_commission_per_lot_leaves_cash_on_every_fill_and_is_the_fills_cost():
    broker = broker_at(100.0, commission_per_lot=0.5)
    opened = broker.submit_order(Order("X", Side.BUY, 10.0, client_id="c-1"))
    assert opened == Fill(opened.position_id, "X", Side.BUY, 10.0, 100.0, AT, -5.0, "c-1", 5.0)
    assert broker.cash == 9_995.0 and broker.account_equity() == 9_995.0
    broker.update_price("X", 110.0, AT)
    closed = broker.submit_order(Order("X", Side.SELL, 10.0, client_id="c-2"))
    assert closed == Fill(opened.position_id, "X", Side.SELL, 10.0, 110.0, AT, 95.0, "c-2", 5.0)
    # What the fills put into cash adds up to the account's result.
    assert broker.cash == 10_000.0 + opened.realised_pnl + closed.realised_pnl == 10_090.0


def test_a_percent_commission_is_charged_on_the_fills_notional_with_the_contract_size():
    broker = PaperBroker(10_000.0, contract_size=100.0, costs=PaperCosts(commission_percent=0.1))
    broker.update_price("X", 50.0, AT)
    fill = broker.submit_order(Order("X", Side.BUY, 2.0, client_id="c-1"))
    # 2 lots x 100 units x 50 = 10,000 notional; 0.1% of it is 10.
    assert (fill.realised_pnl, fill.costs, broker.cash) == (-10.0, 10.0, 9_990.0)
    position = broker.close_position(fill.position_id)
    assert (position.realised_pnl, position.costs, broker.cash) == (-10.0, 10.0, 9_980.0)


def test_a_fixed_spread_makes_buys_pay_the_ask_and_values_longs_at_the_bid_and_shorts_at_the_ask():
    broker = broker_at(100.0, spread=0.5)
    assert broker.spread("X") == 0.5
    long = broker.submit_order(Order("X", Side.BUY, 10.0, client_id="c-1"))
    assert (long.price, long.costs, long.realised_pnl) == (100.5, 5.0, 0.0)
    assert broker.open_positions() == [Position(long.position_id, "X", Side.BUY, 10.0, 100.5, -5.0)]
    assert broker.account_equity() == 9_995.0
    flat = broker.submit_order(Order("X", Side.SELL, 10.0, client_id="c-2"))
    assert (flat.price, flat.costs, flat.realised_pnl) == (100.0, 0.0, -5.0)
    short = broker.submit_order(Order("X", Side.SELL, 4.0, client_id="c-3"))
    assert short.price == 100.0
    assert broker.open_positions() == [Position(short.position_id, "X", Side.SELL, 4.0, 100.0, -2.0)]
    assert broker.account_equity() == 9_993.0


def test_a_bars_spread_in_points_replaces_the_fixed_one_once_the_point_is_known():
    broker = broker_at(1.10000, spread=0.0002, point=0.00001)
    broker.update_price("X", 1.10000, AT, spread_points=7)
    assert broker.spread("X") == pytest.approx(0.00007)
    fill = broker.submit_order(Order("X", Side.BUY, 1_000.0, client_id="c-1"))
    assert fill.price == pytest.approx(1.10007) and fill.costs == pytest.approx(0.07)
    broker.update_price("X", 1.10010, AT)  # no spread given: the bar's stays
    assert broker.spread("X") == pytest.approx(0.00007)
    # Without a point, a spread in points cannot be priced and the fixed spread is used.
    unpriced = broker_at(1.1, spread=0.0002)
    unpriced.update_price("X", 1.1, AT, spread_points=7)
    assert unpriced.spread("X") == 0.0002


def test_slippage_makes_every_fill_worse_than_its_quote():
    broker = broker_at(100.0, spread=0.2, slippage=0.1)
    bought = broker.submit_order(Order("X", Side.BUY, 10.0, client_id="c-1"))
    assert bought.price == pytest.approx(100.3) and bought.costs == pytest.approx(3.0)
    sold = broker.close_position(bought.position_id)
    assert sold.price == pytest.approx(99.9) and sold.costs == pytest.approx(1.0)
    assert sold.realised_pnl == pytest.approx(-4.0) and broker.cash == pytest.approx(9_996.0)


def test_an_order_past_the_leverage_limit_is_refused_by_name_and_changes_nothing():
    broker = broker_at(100.0, max_leverage=100.0)
    before = (broker.cash, broker.account_equity(), broker.open_positions())
    with pytest.raises(BrokerError) as refused:
        broker.submit_order(Order("X", Side.BUY, 1e9, client_id="c-1"))
    assert str(refused.value) == (
        "order refused: buy 1e+09 X would hold notional 100,000,000,000.00 on equity 10,000.00, "
        "leverage 10,000,000.0:1, over max_leverage 100:1"
    )
    assert (broker.cash, broker.account_equity(), broker.open_positions()) == before
    assert broker.find_fill("c-1") is None
    # Up to the limit is filled; the tickets go on as if the refused order had never come.
    fill = broker.submit_order(Order("X", Side.BUY, 10_000.0, client_id="c-2"))
    assert fill.position_id == "1" and broker.net_volume("X") == 10_000.0


def test_orders_that_reduce_exposure_pass_whatever_the_leverage():
    broker = broker_at(100.0, max_leverage=10.0)
    fill = broker.submit_order(Order("X", Side.BUY, 1_000.0, client_id="c-1"))  # 10:1
    broker.update_price("X", 95.0, AT)  # equity 5,000: now 19:1
    with pytest.raises(BrokerError, match=r"^order refused: buy 1 X would hold notional 95,095.00 on equity 5,000.00, "
                       r"leverage 19.0:1, over max_leverage 10:1$"):
        broker.submit_order(Order("X", Side.BUY, 1.0, client_id="c-2"))
    assert broker.submit_order(Order("X", Side.SELL, 500.0, client_id="c-3")).volume == 500.0
    assert broker.close_position(fill.position_id).volume == 500.0
    assert broker.open_positions() == []


def test_without_a_limit_any_leverage_is_filled_as_before():
    broker = broker_at(100.0)
    assert PaperCosts().max_leverage is None
    assert broker.submit_order(Order("X", Side.BUY, 1e9)).volume == 1e9


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("commission_per_lot", -1.0, ValueError, "commission_per_lot must be a number >= 0, got -1.0"),
        ("commission_percent", 100.0, ValueError, "commission_percent must be a percentage in [0, 100), got 100.0"),
        ("spread", float("nan"), ValueError, "spread must be a finite real number, got nan"),
        ("point", 0.0, ValueError, "point must be a number > 0 or None (off), got 0.0"),
        ("slippage", "0.1", TypeError, "slippage must be a finite real number, got '0.1' (str)"),
        ("max_leverage", -5.0, ValueError, "max_leverage must be a number > 0 or None (off), got -5.0"),
    ],
)
def test_bad_costs_are_refused_naming_the_field_and_the_value(field, value, error, message):
    with pytest.raises(error) as refused:
        PaperCosts(**{field: value})
    assert str(refused.value) == message


def test_a_bad_spread_in_points_is_refused_and_the_price_is_not_taken():
    broker = broker_at(100.0, point=0.01)
    with pytest.raises(ValueError, match=r"^spread_points must be >= 0, got -3 for 'X'$"):
        broker.update_price("X", 101.0, AT, spread_points=-3)
    assert broker.price("X") == 100.0
    with pytest.raises(TypeError, match=r"^costs must be a PaperCosts, got 1 \(int\)$"):
        PaperBroker(costs=1)  # type: ignore[arg-type]


def test_the_costs_come_from_the_settings_and_the_environment_with_a_100_to_1_default():
    defaults = PaperBroker.from_settings(Settings(), 10_000.0)
    assert (defaults.costs, defaults.contract_size, defaults.cash) == (PaperCosts(max_leverage=100.0), 1.0, 10_000.0)
    env = {
        "PAPER_COMMISSION_PER_LOT": "2.5", "PAPER_COMMISSION_PERCENT": "0.01", "PAPER_SPREAD": "0.0002",
        "PAPER_POINT": "0.00001", "PAPER_SLIPPAGE": "0.00005", "PAPER_MAX_LEVERAGE": "off", "CONTRACT_SIZE": "100000",
    }
    broker = PaperBroker.from_settings(Settings.load(environ=env), 5_000.0)
    assert broker.costs == PaperCosts(2.5, 0.01, 0.0002, 0.00001, 0.00005, None)
    assert (broker.contract_size, broker.cash) == (100_000.0, 5_000.0)
    with pytest.raises(SettingsError) as refused:
        Settings.load(environ={"PAPER_SLIPPAGE": "-1"})
    assert str(refused.value) == "PAPER_SLIPPAGE='-1': paper_slippage must be >= 0, got -1.0"
    with pytest.raises(SettingsError) as refused:
        Settings.load(environ={"PAPER_MAX_LEVERAGE": "0"})
    assert str(refused.value) == "PAPER_MAX_LEVERAGE='0': paper_max_leverage must be > 0, got 0.0"


# --- through the whole replay -----------------------------------------------------------------


def test_a_volume_typo_is_refused_by_the_broker_and_journaled_as_a_failed_trade(tmp_path):
    # Today's bug: --volume 1e9 on 10,000 was filled and reported +6,191,000%.
    result = run_example("paper_trading.py", "--bars", "120", "--volume", "1e9", "--out", "typo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "max leverage 100:1" in result.stdout
    summary = json.loads((tmp_path / "typo" / "summary.json").read_text(encoding="utf-8"))
    assert (summary["fills"], summary["final_equity"]) == (0, 10_000.0)
    assert "Equity: GBP 10,000.00 -> GBP 10,000.00 (+GBP 0.00, +0.00%)" in result.stdout
    events = journal(tmp_path / "typo")
    closes = {bar.time: bar.close for bar in synthetic_bars(120)}
    failed = [(e.timestamp, TradeFailed.from_event(e)) for e in events if e.event_type is EventType.TRADE_FAILED]
    assert failed, "the buy signals must reach the broker and fail there"
    assert summary["orders_refused_by"] == {"broker": len(failed)}
    assert f"Orders refused: {len(failed)}: broker {len(failed)} (the broker refused or failed it)\n" in result.stdout
    # The summary says why, not only how many (a trader's trial: the reason was only in the journal).
    first_at, first = failed[0]
    reason = readable_error(first.error)
    assert reason.startswith("OrderRejected: order refused: buy 1e+09 SYNTH would hold notional ")
    assert summary["first_refusals"] == [
        {"cause": "broker", "time": first_at.isoformat(), "reason": reason, "alike": len(failed)}
    ]
    assert (
        f"  broker, first {first_at:%Y-%m-%d %H:%M} UTC: {reason} (all {len(failed)} alike but for their figures)\n"
    ) in result.stdout
    for at, trade in failed:
        notional = 1e9 * closes[at]
        assert (trade.side, trade.volume, trade.rejected, trade.refused_by) == (Side.BUY, 1e9, False, None)
        assert trade.error == repr(OrderRejected(
            f"order refused: buy 1e+09 SYNTH would hold notional {notional:,.2f} on equity 10,000.00, "
            f"leverage {notional / 10_000:,.1f}:1, over max_leverage 100:1"
        ))


def test_the_replay_flags_set_the_costs_and_off_lifts_the_limit(tmp_path):
    result = run_example(
        "paper_trading.py", "--bars", "120", "--commission-per-lot", "0.25", "--spread", "0.05",
        "--slippage", "0.01", "--max-leverage", "off", "--out", "costly", cwd=tmp_path,
        env=clean_env(PAPER_COMMISSION_PERCENT="0.02"),
    )
    assert result.returncode == 0, result.stderr
    assert "  paper costs: commission 0.25/lot + 0.02%, spread 0.05, slippage 0.01; max leverage any" in result.stdout
    executed = [e for e in journal(tmp_path / "costly") if e.event_type is EventType.TRADE_EXECUTED]
    assert executed
    for event in executed:
        price, volume = event.metadata["price"], event.metadata["filled_volume"]
        commission = volume * 0.25 + volume * price * 0.02 / 100
        slipped = (0.05 + 0.01 if event.metadata["side"] == "buy" else 0.01) * volume
        assert event.metadata["costs"] == pytest.approx(commission + slipped)
    bad = run_example("paper_trading.py", "--spread", "-1", "--out", "bad", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--spread must be a finite number >= 0, got '-1'" in bad.stderr
    bad = run_example("paper_trading.py", "--max-leverage", "0", "--out", "bad", cwd=tmp_path)
    assert bad.returncode == 2
    assert "argument --max-leverage: --max-leverage must be a finite number > 0 or off, got '0'" in bad.stderr


def test_tradewarden_run_builds_its_paper_broker_with_the_configs_costs(tmp_path):
    from actors.service.config import RunConfig
    from actors.service.live import _broker

    path = tmp_path / "live.toml"
    path.write_text(
        '[tradewarden]\nstate_db = "state.db"\npaper_spread = 0.5\npaper_max_leverage = 20.0\n\n'
        '[broker]\nkind = "paper"\ncash = 5000.0\n',
        encoding="utf-8",
    )
    broker = _broker(RunConfig.load(path))
    assert isinstance(broker, PaperBroker)
    assert (broker.costs, broker.cash) == (PaperCosts(spread=0.5, max_leverage=20.0), 5_000.0)


def test_tradewarden_run_values_its_paper_account_with_the_configs_contract_size(tmp_path):
    # A trader's trial: contract_size was used for the pre-trade limits' notional, never for the
    # paper account's profit and loss.
    from actors.service.config import RunConfig
    from actors.service.live import _broker

    path = tmp_path / "live.toml"
    path.write_text(
        '[tradewarden]\nstate_db = "state.db"\ncontract_size = 100000\n\n[broker]\nkind = "paper"\ncash = 10000.0\n',
        encoding="utf-8",
    )
    broker = _broker(RunConfig.load(path))
    broker.update_price("EURUSD", 1.1020, AT)
    broker.submit_order(Order("EURUSD", Side.BUY, 0.1, client_id="c-1"))
    broker.update_price("EURUSD", 1.0964, AT)  # 56 pips down
    assert broker.account_equity() == pytest.approx(10_000.0 - 56.0)
    closed = broker.submit_order(Order("EURUSD", Side.SELL, 0.1, client_id="c-2"))
    assert closed.realised_pnl == pytest.approx(-56.0)


def write_mt5_eurusd(path) -> None:
    # Falling, then rising (the MA(2/4) crossover buys at 07:00), then falling (it sells at 11:00).
    closes = [1.1050, 1.1040, 1.1030, 1.1020, 1.1010, 1.1000, 1.1010, 1.1020,
              1.1030, 1.1040, 1.1030, 1.1010, 1.0990, 1.0970, 1.0960, 1.0950]
    lines = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    for hour, close in enumerate(closes):
        lines.append(
            f"2024.03.04\t{hour:02d}:00:00\t{close:.5f}\t{close + 0.0002:.5f}\t{close - 0.0002:.5f}\t{close:.5f}\t100\t0\t12"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_replay_values_its_fills_with_the_configs_contract_size(tmp_path):
    # A trader's trial: with contract_size = 100000 and 0.1 lots of EURUSD, a 10-pip loss showed
    # as -0.0001 in fills.csv and the equity stayed at 10,000.00.
    prices = tmp_path / "EURUSD_H1.csv"
    write_mt5_eurusd(prices)
    config = tmp_path / "lots.toml"
    config.write_text("contract_size = 100000\n", encoding="utf-8")
    result = run_example(
        "paper_trading.py", "--prices", str(prices), "--config", str(config), "--volume", "0.1",
        "--fast", "2", "--slow", "4", "--out", "lots", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    fills = (tmp_path / "lots" / "fills.csv").read_text(encoding="utf-8").splitlines()
    assert [line.rsplit(",", 1)[0] for line in fills[1:]] == [
        "2024-03-04T07:00:00+00:00,EURUSD_H1,buy,0.1,1.1020,0.0000,0.0000,signal",
        "2024-03-04T11:00:00+00:00,EURUSD_H1,sell,0.1,1.1010,0.0000,-10.0000,signal",
    ]
    summary = json.loads((tmp_path / "lots" / "summary.json").read_text(encoding="utf-8"))
    assert summary["final_equity"] == 9_990.0
    assert "Equity: GBP 10,000.00 -> GBP 9,990.00 (-GBP 10.00, -0.10%)\n" in result.stdout


def write_generic_csv(path) -> None:
    rows = [f"2024-03-04T{hour:02d}:00:00+00:00,{1.1 + hour / 1000:.4f},{1.1 + hour / 1000:.4f},1.1,1.1" for hour in range(24)]
    path.write_text("timestamp,open,high,low,close\n" + "\n".join(rows) + "\n", encoding="utf-8")


def test_point_on_a_file_without_a_spread_column_is_refused_naming_the_flag_and_the_file(tmp_path):
    # A trader's trial: --point on a file with no <SPREAD> added no spread, without a word.
    prices = tmp_path / "plain.csv"
    write_generic_csv(prices)
    result = run_example("paper_trading.py", "--prices", str(prices), "--point", "0.00001", "--out", "run", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"paper_trading: --point 1e-05 prices each bar's <SPREAD> column (an MT5 export's), but {str(prices)!r} has "
        "none, so it would add no spread: give the spread in price units with --spread instead\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_paper_point_from_the_settings_on_a_file_without_a_spread_column_is_warned_of(tmp_path):
    prices = tmp_path / "plain.csv"
    write_generic_csv(prices)
    result = run_example(
        "paper_trading.py", "--prices", str(prices), "--spread", "0.0002", "--out", "run", cwd=tmp_path,
        env=clean_env(PAPER_POINT="0.00001"),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "  paper costs: commission 0/lot + 0%, spread 0.0002, slippage 0; max leverage 100:1\n"
        f"  warning: paper_point 1e-05 (from --config or PAPER_POINT) adds no spread: {str(prices)!r} has no "
        "<SPREAD> column, so every fill uses the fixed spread, 0.0002 (--spread)\n"
    ) in result.stdout


def test_point_on_an_mt5_export_prices_each_bars_spread_column(tmp_path):
    prices = tmp_path / "EURUSD_H1.csv"
    write_mt5_eurusd(prices)  # <SPREAD> 12 on every bar
    result = run_example(
        "paper_trading.py", "--prices", str(prices), "--point", "0.00001", "--fast", "2", "--slow", "4",
        "--out", "run", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "  paper costs: commission 0/lot + 0%, spread 0 (or a bar's <SPREAD> x 1e-05), slippage 0;" in result.stdout
    assert "warning" not in result.stdout
    executed = [e for e in journal(tmp_path / "run") if e.event_type is EventType.TRADE_EXECUTED]
    assert [(e.metadata["side"], round(e.metadata["price"], 5)) for e in executed] == [("buy", 1.10212), ("sell", 1.101)]
