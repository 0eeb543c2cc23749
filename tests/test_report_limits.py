"""The report shows every active limit: the lines it draws, the text it prints, and which guard fired."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest
from test_examples import clean_env, run_example

from runtime.replay.limits import EquityPath, LimitLevel, ReportLimits, describe_limits, limit_levels
from runtime.replay.report import GuardTrigger, RunSummary, report_figure
from runtime.settings import Settings

T0 = datetime(2024, 1, 1, 22, tzinfo=UTC)
TIMES = [T0 + timedelta(hours=h) for h in range(4)]  # two hours on Jan 1, two on Jan 2 (UTC)
EQUITIES = [10_000.0, 9_500.0, 9_000.0, 9_300.0]
CLOSES = EquityPath(10_000.0, TIMES, EQUITIES, EQUITIES)  # no position inside any bar reached lower
# The same closes, with the worst inside the last bar: 8,800 (its close is 9,300).
INSIDE = EquityPath(10_000.0, TIMES, EQUITIES, [10_000.0, 9_500.0, 9_000.0, 8_800.0])


def summary_of(path: EquityPath, triggers=()) -> RunSummary:
    return RunSummary(path.start_equity, path.closes[-1], path.max_drawdown(), guard_triggers=triggers)


def test_a_static_floor_min_equity_and_a_daily_loss_are_equity_lines_with_their_warnings():
    limits = ReportLimits(0.2, trailing=False, min_equity=500.0, daily_loss=0.05, warn_at=0.5)
    assert limit_levels(limits, CLOSES) == [
        LimitLevel("max_drawdown", "static floor 8,000.00 (20% below start)", "equity", (8_000.0,) * 4),
        LimitLevel("max_drawdown", "static floor warning 9,000.00", "equity", (9_000.0,) * 4, True),
        LimitLevel("min_equity", "min equity 500.00", "equity", (500.0,) * 4),
        LimitLevel("min_equity", "min equity warning 1,000.00", "equity", (1_000.0,) * 4, True),
        # The day's limit steps at midnight, from the equity carried into the day (the guard's
        # start of day): the start on the first, the 23:00 close of 9,500 on the second.
        LimitLevel("daily_loss", "daily loss limit 5%", "equity", (9_500.0, 9_500.0, 9_025.0, 9_025.0)),
        LimitLevel("daily_loss", "daily loss warning 2.5%", "equity", (9_750.0, 9_750.0, 9_262.5, 9_262.5), True),
    ]


def test_a_trailing_limit_is_a_drawdown_line_and_the_days_follow_the_trading_zone():
    limits = ReportLimits(0.2, min_equity=0.0, daily_loss=0.1, timezone="Asia/Tokyo")  # midnight is 15:00 UTC
    levels = limit_levels(limits, CLOSES)
    assert levels == [
        LimitLevel("max_drawdown", "max drawdown limit 20%", "drawdown", (0.2,) * 4),
        LimitLevel("daily_loss", "daily loss limit 10%", "equity", (9_000.0,) * 4),
    ]


def test_a_resume_that_rebaselined_moves_the_days_start_and_the_peak_from_its_bar_on_but_never_the_static_floor():
    # A resume at 00:00 (the third bar) set the guard's peak and day's start to 9,000; a static
    # floor is fixed for the account's life, so it stays at 8,000.
    path = EquityPath(10_000.0, TIMES, EQUITIES, [10_000.0, 9_500.0, 9_000.0, 8_800.0], [(TIMES[2], 9_000.0)])
    assert path.day_starts(ZoneInfo("UTC")) == [10_000.0, 10_000.0, 9_000.0, 9_000.0]
    assert path.drawdowns() == [0.0, 0.05, 0.0, (9_000.0 - 8_800.0) / 9_000.0]  # the peak from 9,000 on
    limits = ReportLimits(0.2, trailing=False, min_equity=0.0, warn_at=0.5)
    assert limit_levels(limits, path) == [
        LimitLevel("max_drawdown", "static floor 8,000.00 (20% below start)", "equity", (8_000.0,) * 4),
        LimitLevel("max_drawdown", "static floor warning 9,000.00", "equity", (9_000.0,) * 4, True),
    ]
    assert describe_limits(limits, path, summary_of(path)) == [
        "Limits:",
        # Past the warning level (9,000): trading was held reducing, and the limit did not fire.
        "  max drawdown 20.00% (static): floor 8,000.00, lowest equity 8,800.00 (12.00% below start); "
        "not fired, past its warning level 10.00%",
        "  warnings at 50% of each limit",
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
    assert describe_limits(static, CLOSES, summary_of(CLOSES, fired)) == [
        "Limits:",
        # Exactly at the warning level reaches it, as the guard judges; 9,000 is well above min equity's 1,000.
        "  max drawdown 20.00% (static): floor 8,000.00, lowest equity 9,000.00 (10.00% below start); "
        "not fired, past its warning level 10.00%",
        "  min equity 500.00: lowest equity 9,000.00; not fired",
        # The second day starts from the 9,500 carried into it, as the trigger's reason says.
        "  daily loss 5.00% (trading days in UTC): worst day 5.26%; fired 2024-01-02 00:00 UTC",
        "  warnings at 50% of each limit",
    ]
    trailing = ReportLimits(0.05)
    hit = [GuardTrigger(TIMES[1], "max_drawdown", "max drawdown 5.00% >= limit 5.00%")]
    assert describe_limits(trailing, CLOSES, summary_of(CLOSES, hit)) == [
        "Limits:",
        "  max drawdown 5.00% (trailing): worst 10.00% below the peak; fired 2024-01-01 23:00 UTC",
    ]


def test_each_limit_that_did_not_fire_says_whether_the_run_went_past_its_warning_level():
    limits = ReportLimits(0.5, min_equity=4_600.0, daily_loss=0.1, warn_at=0.5)
    assert describe_limits(limits, CLOSES, summary_of(CLOSES)) == [
        "Limits:",
        "  max drawdown 50.00% (trailing): worst 10.00% below the peak; not fired",  # its warning is 25%
        "  min equity 4,600.00: lowest equity 9,000.00; not fired, past its warning level 9,200.00",
        "  daily loss 10.00% (trading days in UTC): worst day 5.26%; not fired, past its warning level 5.00%",
        "  warnings at 50% of each limit",
    ]
    # Exactly at min equity's warning level is not past it: that guard's rule is "strictly below".
    at_line = ReportLimits(0.5, min_equity=4_500.0, warn_at=0.5)
    assert describe_limits(at_line, CLOSES, summary_of(CLOSES))[2] == "  min equity 4,500.00: lowest equity 9,000.00; not fired"


def test_the_worst_of_each_limit_counts_the_worst_inside_each_bar_not_only_the_closes():
    # The closes alone say 9,000 at worst; inside the last bar the guard saw 8,800.
    assert (INSIDE.lowest(), CLOSES.lowest()) == (8_800.0, 9_000.0)
    assert INSIDE.drawdowns() == pytest.approx([0.0, 0.05, 0.1, 0.12])
    assert INSIDE.max_drawdown() == pytest.approx(0.12)
    static = ReportLimits(0.2, trailing=False, min_equity=500.0, daily_loss=0.1)
    assert describe_limits(static, INSIDE, summary_of(INSIDE)) == [
        "Limits:",
        "  max drawdown 20.00% (static): floor 8,000.00, lowest equity 8,800.00 (12.00% below start); not fired",
        "  min equity 500.00: lowest equity 8,800.00; not fired",
        "  daily loss 10.00% (trading days in UTC): worst day 7.37%; not fired",  # (9,500 - 8,800) / 9,500
    ]
    # The trailing line says the summary's figure, so the two can never disagree.
    guard_saw = RunSummary(10_000.0, 9_300.0, 0.1796875)
    assert describe_limits(ReportLimits(0.2), INSIDE, guard_saw) == [
        "Limits:",
        "  max drawdown 20.00% (trailing): worst 17.97% below the peak; not fired",
    ]


def test_an_equity_path_takes_the_worst_inside_each_bar_from_the_readings_the_guard_was_shown():
    closes = list(zip(TIMES, EQUITIES))
    # 9,900 and 9,200 are above their bars' closes: those bars' best, not their worst.
    inside = {TIMES[1]: (9_900.0,), TIMES[3]: (8_800.0,), TIMES[2]: (9_200.0,)}
    assert EquityPath.of(10_000.0, closes, inside) == attrs.evolve(
        INSIDE, highs=[10_000.0, 9_900.0, 9_200.0, 9_300.0], rises=[10_000.0, 9_900.0, 9_200.0, 8_800.0]
    )  # (a close that is its bar's low comes after every reading in it)
    assert list(INSIDE.rows()) == list(zip(TIMES, EQUITIES, INSIDE.lows, EQUITIES))  # (no best: the closes)
    with pytest.raises(ValueError, match=r"^lows\[3\] must be <= closes\[3\] 9300.0, got 9400.0$"):
        EquityPath(10_000.0, TIMES, EQUITIES, EQUITIES[:3] + [9_400.0])
    with pytest.raises(ValueError, match=r"^times, closes and lows must have the same length, got 4, 4 and 3$"):
        EquityPath(10_000.0, TIMES, EQUITIES, EQUITIES[:3])
    with pytest.raises(ValueError, match=r"^highs\[1\] must be >= closes\[1\] 9500.0, got 9400.0$"):
        EquityPath(10_000.0, TIMES, EQUITIES, EQUITIES, highs=[10_000.0, 9_400.0, 9_000.0, 9_300.0])
    with pytest.raises(ValueError, match=r"^highs must have as many values as closes \(4\), got 3$"):
        EquityPath(10_000.0, TIMES, EQUITIES, EQUITIES, highs=EQUITIES[:3])


def test_an_equity_path_measures_each_bar_in_the_order_its_path_met_its_high_and_low():
    # Inside the second bar the guard saw 9,500 then 11,000 (a rising bar: its low first): its
    # close, 9,500, is 13.64% below that high, deeper than the low against the peak before (5%).
    # Inside the third it saw 12,000 then 8,500 (a falling bar: its high first): the low is
    # measured from 12,000. The last bar's readings are all above its close, which is its low:
    # they all came before it.
    closes = list(zip(TIMES, EQUITIES))
    inside = {TIMES[1]: (9_500.0, 11_000.0), TIMES[2]: (12_000.0, 8_500.0), TIMES[3]: (9_400.0, 9_350.0)}
    path = EquityPath.of(10_000.0, closes, inside)
    assert path.lows == (10_000.0, 9_500.0, 8_500.0, 9_300.0)
    assert path.highs == (10_000.0, 11_000.0, 12_000.0, 9_400.0)
    assert path.rises == (10_000.0, 11_000.0, 12_000.0, 9_400.0)  # (the second's low is its close too: last)
    assert path.drawdowns() == pytest.approx([0.0, 1_500.0 / 11_000.0, 3_500.0 / 12_000.0, 2_700.0 / 12_000.0])
    assert list(path.rows())[2] == (TIMES[2], 9_000.0, 8_500.0, 12_000.0)
    with pytest.raises(ValueError, match=r"^rises must have as many values as closes \(4\), got 1$"):
        EquityPath(10_000.0, TIMES, EQUITIES, EQUITIES, rises=[10_000.0])
    with pytest.raises(ValueError, match=r"^rises\[1\] must be within lows\[1\] 9500.0 and highs\[1\] 9500.0, got 9600.0$"):
        EquityPath(10_000.0, TIMES, EQUITIES, EQUITIES, rises=[10_000.0, 9_600.0, 9_000.0, 9_300.0])


def test_an_equity_path_measures_a_low_from_an_open_that_raised_the_peak_before_it():
    # A review: long 80 at 100, a bar opening at 110 (a gap up: 10,800, a new peak), down to 99
    # (9,920) and closing at its high, 111 (10,880). The guard measured the low from the open:
    # 8.15%, past a 7.5% warning; the chart said 0.80%, from the peak before the bar.
    times = TIMES[:2]
    path = EquityPath.of(10_000.0, list(zip(times, [10_000.0, 10_880.0])), {times[1]: (10_800.0, 9_920.0, 10_880.0)})
    assert path.rises == (10_000.0, 10_800.0)
    assert path.drawdowns() == pytest.approx([0.0, 880.0 / 10_800.0])


def legends(figure) -> list[list[str]]:
    return [[text.get_text() for text in axes.get_legend().get_texts()] for axes in figure.axes]


def test_the_chart_draws_every_level_and_names_the_guard_that_fired():
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    limits = ReportLimits(0.2, trailing=False, min_equity=500.0, daily_loss=0.05, warn_at=0.5)
    fired = [GuardTrigger(TIMES[2], "daily_loss", "daily loss 5.26% >= limit 5.00%")]
    figure = report_figure(TIMES, EQUITIES, 0.2, fired, [TIMES[2]], levels=limit_levels(limits, CLOSES))
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
    trailing = report_figure(TIMES, EQUITIES, 0.2, levels=limit_levels(ReportLimits(0.2, warn_at=0.75), CLOSES))
    assert legends(trailing)[1] == ["drawdown from peak", "max drawdown limit 20%", "max drawdown warning 15%"]


def test_the_chart_draws_the_worst_inside_each_bar_and_the_drawdown_there():
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    figure = report_figure(TIMES, EQUITIES, 0.2, lows=INSIDE.lows, start_equity=10_000.0,
                           levels=limit_levels(ReportLimits(0.2), INSIDE))
    equity, drawdown = legends(figure)
    assert equity == ["equity", "lowest inside each bar"]
    assert drawdown == ["drawdown from peak, worst in each bar", "max drawdown limit 20%"]
    (curve,) = [line for line in figure.axes[1].get_lines() if line.get_label().startswith("drawdown from peak")]
    assert list(curve.get_ydata()) == pytest.approx([0.0, 5.0, 10.0, 12.0])  # percent: the worst is 12, not 10
    assert figure.axes[0].get_ylim()[0] < 8_800.0  # the lowest inside a bar is in view


def test_a_static_floor_run_shows_its_floor_and_says_it_did_not_fire(tmp_path):
    # Today such a run draws the trailing drawdown past a 20% line and says only "Guards fired: none".
    result = run_example("paper_trading.py", "--out", "static", cwd=tmp_path, env=clean_env(DRAWDOWN_TRAILING="0"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "static"
    with (out / "equity.csv").open(encoding="utf-8", newline="") as handle:
        lowest = min(float(row["worst_equity"]) for row in csv.DictReader(handle))  # inside the bars too
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


def test_a_limit_whose_warning_held_the_account_reducing_says_so_beside_not_fired(tmp_path):
    # The line used to say only "not fired", as if the limit had never mattered, though the
    # account traded reducing for the last 88 bars and three orders were refused.
    result = run_example("paper_trading.py", "--max-drawdown", "40", "--out", "warned", cwd=tmp_path,
                         env=clean_env(GUARD_WARN_FRACTION="0.5"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "warned" / "summary.json").read_text(encoding="utf-8"))
    assert summary["guard_triggers"] == []
    assert [span["state"] for span in summary["state_spans"]] == ["reducing"]
    assert (
        f"  max drawdown 40.00% (trailing): worst {summary['max_drawdown']:.2%} below the peak; "
        "not fired, past its warning level 20.00%\n"
    ) in result.stdout


def test_a_run_where_the_guard_fires_says_which_and_when(tmp_path):
    result = run_example("paper_trading.py", "--bars", "120", "--out", "fired", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "fired" / "summary.json").read_text(encoding="utf-8"))
    (trigger,) = summary["guard_triggers"]
    when = datetime.fromisoformat(trigger["time"])
    assert f"  max drawdown 20.00% (trailing): worst {summary['max_drawdown']:.2%} below the peak; fired {when:%Y-%m-%d %H:%M} UTC\n" in result.stdout
