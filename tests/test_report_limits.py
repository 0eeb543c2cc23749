"""The report shows every active limit: the lines it draws, the text it prints, and which guard fired."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pytest
from test_examples import clean_env, run_example

from runtime.replay.limits import LimitLevel, ReportLimits, describe_limits, limit_levels
from runtime.replay.report import GuardTrigger, report_figure
from runtime.settings import Settings

T0 = datetime(2024, 1, 1, 22, tzinfo=UTC)
TIMES = [T0 + timedelta(hours=h) for h in range(4)]  # two hours on Jan 1, two on Jan 2 (UTC)
EQUITIES = [10_000.0, 9_500.0, 9_000.0, 9_300.0]


def test_a_static_floor_min_equity_and_a_daily_loss_are_equity_lines_with_their_warnings():
    limits = ReportLimits(0.2, trailing=False, min_equity=500.0, daily_loss=0.05, warn_at=0.5)
    assert limit_levels(limits, TIMES, EQUITIES, 10_000.0) == [
        LimitLevel("max_drawdown", "static floor 8,000.00 (20% below start)", "equity", (8_000.0,) * 4),
        LimitLevel("max_drawdown", "static floor warning 9,000.00", "equity", (9_000.0,) * 4, True),
        LimitLevel("min_equity", "min equity 500.00", "equity", (500.0,) * 4),
        LimitLevel("min_equity", "min equity warning 1,000.00", "equity", (1_000.0,) * 4, True),
        # The day's limit steps at midnight, from the first equity of each day.
        LimitLevel("daily_loss", "daily loss limit 5%", "equity", (9_500.0, 9_500.0, 8_550.0, 8_550.0)),
        LimitLevel("daily_loss", "daily loss warning 2.5%", "equity", (9_750.0, 9_750.0, 8_775.0, 8_775.0), True),
    ]


def test_a_trailing_limit_is_a_drawdown_line_and_the_days_follow_the_trading_zone():
    limits = ReportLimits(0.2, min_equity=0.0, daily_loss=0.1, timezone="Asia/Tokyo")  # midnight is 15:00 UTC
    levels = limit_levels(limits, TIMES, EQUITIES, 10_000.0)
    assert levels == [
        LimitLevel("max_drawdown", "max drawdown limit 20%", "drawdown", (0.2,) * 4),
        LimitLevel("daily_loss", "daily loss limit 10%", "equity", (9_000.0,) * 4),
    ]


def test_the_limits_come_from_the_settings():
    settings = Settings(max_drawdown_percent=12.5, drawdown_trailing=False, min_equity=750.0, daily_loss_percent=3.0,
                        guard_warn_fraction=0.8, trading_timezone="Europe/London")
    assert ReportLimits.from_settings(settings) == ReportLimits(0.125, False, 750.0, 0.03, 0.8, "Europe/London")
    assert ReportLimits.from_settings(Settings()) == ReportLimits(0.2, True, 500.0, None, None, "UTC")
    with pytest.raises(ValueError, match=r"^max_drawdown must be a fraction in \(0, 1\], got 20$"):
        ReportLimits(20)


def test_the_text_names_each_limit_how_close_the_run_came_and_whether_it_fired():
    fired = [GuardTrigger(TIMES[2], "daily_loss", "daily loss 5.26% >= limit 5.00% (start of day 9500.00, equity 9000.00)")]
    static = ReportLimits(0.2, trailing=False, min_equity=500.0, daily_loss=0.05, warn_at=0.5)
    assert describe_limits(static, TIMES, EQUITIES, 10_000.0, fired) == [
        "Limits:",
        "  max drawdown 20.00% (static): floor 8,000.00, lowest equity 9,000.00 (10.00% below start); not fired",
        "  min equity 500.00: lowest equity 9,000.00; not fired",
        "  daily loss 5.00%: worst day 5.00%; fired 2024-01-02 00:00 UTC",
        "  warnings at 50% of each limit",
    ]
    trailing = ReportLimits(0.05)
    hit = [GuardTrigger(TIMES[1], "max_drawdown", "max drawdown 5.00% >= limit 5.00%")]
    assert describe_limits(trailing, TIMES, EQUITIES, 10_000.0, hit) == [
        "Limits:",
        "  max drawdown 5.00% (trailing): worst 10.00% below the peak; fired 2024-01-01 23:00 UTC",
    ]


def legends(figure) -> list[list[str]]:
    return [[text.get_text() for text in axes.get_legend().get_texts()] for axes in figure.axes]


def test_the_chart_draws_every_level_and_names_the_guard_that_fired():
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    limits = ReportLimits(0.2, trailing=False, min_equity=500.0, daily_loss=0.05, warn_at=0.5)
    fired = [GuardTrigger(TIMES[2], "daily_loss", "daily loss 5.26% >= limit 5.00%")]
    figure = report_figure(TIMES, EQUITIES, 0.2, fired, [TIMES[2]], levels=limit_levels(limits, TIMES, EQUITIES, 10_000.0))
    equity, drawdown = legends(figure)
    assert equity == [
        "equity",
        "static floor 8,000.00 (20% below start)",
        "static floor warning 9,000.00",
        "min equity 500.00 (below the chart)",
        "min equity warning 1,000.00 (below the chart)",
        "daily loss limit 5%",
        "daily loss warning 2.5%",
        "position closed",
        "daily_loss fired",
    ]
    assert drawdown == ["drawdown from peak"]  # a static floor is not a drawdown from the peak
    low, high = figure.axes[0].get_ylim()
    assert low < 8_000.0 and high > 10_000.0  # the floor is in view; the far-off minimum is not
    assert low > 1_000.0
    trailing = report_figure(TIMES, EQUITIES, 0.2, levels=limit_levels(ReportLimits(0.2, warn_at=0.75), TIMES, EQUITIES, 10_000.0))
    assert legends(trailing)[1] == ["drawdown from peak", "max drawdown limit 20%", "max drawdown warning 15%"]


def test_a_static_floor_run_shows_its_floor_and_says_it_did_not_fire(tmp_path):
    # Today such a run draws the trailing drawdown past a 20% line and says only "Guards fired: none".
    result = run_example("paper_trading.py", "--out", "static", cwd=tmp_path, env=clean_env(DRAWDOWN_TRAILING="0"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "static"
    with (out / "equity.csv").open(encoding="utf-8", newline="") as handle:
        lowest = min(float(row["equity"]) for row in csv.DictReader(handle))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["guard_triggers"] == [] and summary["max_drawdown"] > 0.2
    assert (
        "Limits:\n"
        f"  max drawdown 20.00% (static): floor 8,000.00, lowest equity {lowest:,.2f} "
        f"({(10_000.0 - lowest) / 10_000.0:.2%} below start); not fired\n"
        f"  min equity 500.00: lowest equity {lowest:,.2f}; not fired\n"
        "\nEquity: "
    ) in result.stdout
    assert "Guards fired: none" in result.stdout


def test_a_run_where_the_guard_fires_says_which_and_when(tmp_path):
    result = run_example("paper_trading.py", "--bars", "120", "--out", "fired", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "fired" / "summary.json").read_text(encoding="utf-8"))
    (trigger,) = summary["guard_triggers"]
    when = datetime.fromisoformat(trigger["time"])
    assert f"  max drawdown 20.00% (trailing): worst {summary['max_drawdown']:.2%} below the peak; fired {when:%Y-%m-%d %H:%M} UTC\n" in result.stdout
