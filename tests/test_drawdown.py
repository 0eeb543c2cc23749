"""DrawdownTracker and max_drawdown: the peak, the drawdown, cash flows, batches and bad readings."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import bad_readings, cash_flows, equities, equity_curves

from runtime import DrawdownSnapshot, DrawdownTracker, max_drawdown

TIGHT = {"rel_tol": 1e-12, "abs_tol": 1e-12}


def reference_max_drawdown(curve: list[float], start: float | None = None) -> float:
    """max over i of 1 - e[i] / max(start, e[0..i]), written from the definition."""
    worst = 0.0
    peak = start if start is not None else curve[0]
    for equity in curve:
        peak = max(peak, equity)
        worst = max(worst, 1 - equity / peak)
    return worst


def fed(curve: list[float], start: float | None = None) -> DrawdownTracker:
    tracker = DrawdownTracker(curve[0] if start is None else start)
    for equity in curve:
        tracker.observe(equity)
    return tracker


# --- properties of the peak and the drawdown ---------------------------------------------------


@given(curve=equity_curves(max_size=60), start=equities())
def test_peak_never_decreases_and_is_at_least_every_reading_and_the_start(curve, start):
    tracker = DrawdownTracker(start)
    previous_peak = tracker.peak_equity
    for index, equity in enumerate(curve):
        tracker.observe(equity)
        assert tracker.peak_equity >= previous_peak
        assert tracker.peak_equity >= start
        assert tracker.peak_equity >= max(curve[: index + 1])
        assert tracker.peak_equity == max([start, *curve[: index + 1]])
        previous_peak = tracker.peak_equity


@given(curve=equity_curves(max_size=60))
def test_drawdown_is_zero_exactly_when_equity_is_at_the_peak(curve):
    tracker = DrawdownTracker(curve[0])
    for equity in curve:
        tracker.observe(equity)
        at_peak = tracker.latest_equity == tracker.peak_equity
        assert (tracker.drawdown == 0.0) is at_peak
        assert tracker.drawdown >= 0.0
        assert tracker.max_drawdown >= tracker.drawdown


@given(curve=equity_curves(max_size=60))
def test_max_drawdown_of_a_curve_equals_the_tracker_and_the_definition(curve):
    result = max_drawdown(curve)
    assert result == fed(curve).max_drawdown
    assert math.isclose(result, reference_max_drawdown(curve), **TIGHT)


@given(curve=equity_curves(max_size=40), start=equities())
def test_max_drawdown_with_a_start_equity_counts_the_start_as_the_first_peak(curve, start):
    result = max_drawdown(curve, start_equity=start)
    assert result == fed(curve, start).max_drawdown
    assert math.isclose(result, reference_max_drawdown(curve, start), **TIGHT)


def test_a_fall_from_100_to_80_is_a_20_percent_drawdown():
    assert max_drawdown([100.0, 120.0, 90.0, 150.0, 120.0]) == pytest.approx(0.25)
    assert max_drawdown([100.0, 80.0]) == 0.2


def test_a_rising_curve_has_no_drawdown():
    assert max_drawdown([1.0, 2.0, 3.0, 3.0, 10.0]) == 0.0


def test_an_empty_curve_has_no_drawdown_from_its_start_equity():
    assert max_drawdown([], start_equity=100.0) == 0.0


def test_an_empty_curve_without_a_start_equity_is_refused():
    with pytest.raises(ValueError, match=r"^equity_curve is empty and no start_equity was given$"):
        max_drawdown([])


def test_a_curve_starting_at_zero_is_refused_naming_the_value():
    with pytest.raises(ValueError, match=r"^start_equity must be > 0, got 0\.0$"):
        max_drawdown([0.0, 10.0])


def test_a_nan_in_a_curve_is_refused_naming_its_index():
    with pytest.raises(ValueError, match=r"^equities\[2\] must be a finite real number, got nan$"):
        max_drawdown([100.0, 90.0, math.nan, 80.0])


def test_a_bad_first_point_of_a_curve_is_named_as_the_first_point():
    with pytest.raises(TypeError, match=r"^equity_curve\[0\] must be a finite real number, got '100' \(str\)$"):
        max_drawdown(["100", 90.0])


def test_equity_below_zero_is_a_drawdown_above_one():
    tracker = DrawdownTracker(100.0)
    tracker.observe(-50.0)
    assert tracker.drawdown == 1.5
    assert tracker.max_drawdown == 1.5


def test_static_drawdown_measures_from_the_start_only():
    tracker = DrawdownTracker(100.0)
    tracker.observe(200.0)
    tracker.observe(150.0)
    assert tracker.drawdown == 0.25
    assert tracker.static_drawdown == 0.0
    tracker.observe(90.0)
    assert tracker.static_drawdown == pytest.approx(0.1)


# --- cash flows ---------------------------------------------------------------------------------


@given(data=st.data(), curve=equity_curves(max_size=30))
def test_a_cash_flow_changes_neither_the_drawdown_nor_the_max_drawdown(data, curve):
    tracker = fed(curve)
    amount = data.draw(cash_flows(tracker.latest_equity), label="amount")
    drawdown, worst, peak = tracker.drawdown, tracker.max_drawdown, tracker.peak_equity
    tracker.record_cash_flow(amount)
    assert math.isclose(tracker.drawdown, drawdown, rel_tol=1e-9, abs_tol=1e-12)
    assert tracker.max_drawdown == worst
    assert tracker.latest_equity == curve[-1] + amount
    assert tracker.peak_equity >= tracker.latest_equity
    if drawdown == 0.0:
        assert tracker.drawdown == 0.0
    expected_peak = peak * (curve[-1] + amount) / curve[-1]
    assert math.isclose(tracker.peak_equity, expected_peak, rel_tol=1e-9)


@given(data=st.data(), start=equities())
def test_a_state_after_any_cash_flow_can_be_snapshotted_and_restored(data, start):
    tracker = DrawdownTracker(start)
    amount = data.draw(cash_flows(start), label="amount")
    tracker.record_cash_flow(amount)
    snapshot = tracker.snapshot()
    assert snapshot.start_equity <= snapshot.peak_equity
    assert DrawdownTracker.restore(snapshot).snapshot() == snapshot


def test_a_deposit_at_the_start_keeps_start_below_the_peak_regression():
    # Scaling start and peak separately once left start one rounding above the peak, and then
    # snapshot() (so RiskMonitor.record(), so every save) raised.
    tracker = DrawdownTracker(431269.9776513136)
    tracker.record_cash_flow(1485187.8674264927)
    snapshot = tracker.snapshot()
    assert snapshot.start_equity <= snapshot.peak_equity == snapshot.latest_equity
    assert tracker.drawdown == 0.0


def test_a_withdrawal_is_not_a_drawdown():
    tracker = DrawdownTracker(1000.0)
    tracker.observe(800.0)
    tracker.record_cash_flow(-400.0)
    assert tracker.latest_equity == 400.0
    assert tracker.peak_equity == 500.0
    assert tracker.drawdown == pytest.approx(0.2)
    assert tracker.start_equity == 500.0


def test_a_cash_flow_that_would_empty_the_account_is_refused_and_changes_nothing():
    tracker = DrawdownTracker(1000.0)
    tracker.observe(900.0)
    before = tracker.snapshot()
    with pytest.raises(
        ValueError, match=r"^cash flow amount -900\.0 would take equity from 900\.0 to 0\.0 \(must stay > 0\)$"
    ):
        tracker.record_cash_flow(-900.0)
    assert tracker.snapshot() == before


def test_a_withdrawal_while_equity_is_negative_is_refused():
    tracker = DrawdownTracker(1000.0)
    tracker.observe(-10.0)
    before = tracker.snapshot()
    with pytest.raises(ValueError, match=r"^cannot record a cash flow of -5\.0 while equity is -10\.0 \(must be > 0\)$"):
        tracker.record_cash_flow(-5.0)
    assert tracker.snapshot() == before


def test_a_deposit_while_equity_is_negative_is_added_as_money_and_recapitalises_the_account():
    # Scaled by (equity + deposit) / equity the peak would go negative; refused, the next reading
    # took the new money for a recovery from a 101% drawdown to 1%.
    tracker = DrawdownTracker(10_000.0)
    tracker.observe(-100.0)
    tracker.record_cash_flow(10_000.0)
    assert tracker.snapshot() == DrawdownSnapshot(20_000.0, 20_000.0, 9_900.0, 1.01, recapitalised=True)
    assert (tracker.recapitalised, tracker.drawdown, tracker.static_drawdown) == (True, 0.505, 0.505)
    tracker.record_cash_flow(9_900.0)  # scaled again once equity is above zero, and still marked
    assert tracker.snapshot() == DrawdownSnapshot(40_000.0, 40_000.0, 19_800.0, 1.01, recapitalised=True)
    tracker.rebaseline()
    assert tracker.snapshot() == DrawdownSnapshot(40_000.0, 19_800.0, 19_800.0, 1.01)


@settings(max_examples=200)
@given(
    curve=equity_curves(max_size=20),
    loss=st.floats(1.0, 5.0),
    deposits=st.lists(st.floats(1e-2, 1e9), min_size=1, max_size=3),
)
def test_deposits_at_or_below_zero_keep_the_loss_in_money_and_the_mark_until_a_rebaseline(curve, loss, deposits):
    tracker = fed(curve)
    tracker.observe(tracker.peak_equity * (1 - loss))  # a loss of 100% to 500% of the peak
    for amount in deposits:
        money_lost = tracker.peak_equity - tracker.latest_equity
        start_gap = tracker.start_equity - tracker.latest_equity
        at_or_below_zero = tracker.latest_equity <= 0
        tracker.record_cash_flow(amount)
        if at_or_below_zero:  # (to the roundings of adding the amount to each)
            slack = 4 * math.ulp(tracker.peak_equity)
            assert math.isclose(tracker.peak_equity - tracker.latest_equity, money_lost, rel_tol=1e-12, abs_tol=slack)
            assert math.isclose(tracker.start_equity - tracker.latest_equity, start_gap, rel_tol=1e-12, abs_tol=slack)
        assert tracker.recapitalised and tracker.peak_equity >= tracker.latest_equity
        assert DrawdownTracker.restore(tracker.snapshot()).snapshot() == tracker.snapshot()
    if tracker.latest_equity > 0:
        start = tracker.start_equity
        tracker.rebaseline()
        assert (tracker.recapitalised, tracker.drawdown, tracker.start_equity) == (False, 0.0, start)


def test_a_nan_cash_flow_is_refused_naming_the_amount():
    tracker = DrawdownTracker(1000.0)
    with pytest.raises(ValueError, match=r"^amount must be a finite real number, got nan$"):
        tracker.record_cash_flow(math.nan)


# --- batches ------------------------------------------------------------------------------------


@given(data=st.data(), curve=equity_curves(max_size=60))
def test_observe_many_on_any_split_of_a_curve_equals_one_at_a_time(data, curve):
    cuts = sorted(data.draw(st.sets(st.integers(0, len(curve)), max_size=6), label="cuts"))
    batched = DrawdownTracker(curve[0])
    bounds = [0, *cuts, len(curve)]
    for low, high in zip(bounds, bounds[1:]):
        batched.observe_many(curve[low:high])
    assert batched.snapshot() == fed(curve).snapshot()


@given(data=st.data(), curve=equity_curves(max_size=30), bad=bad_readings())
def test_a_bad_value_in_a_batch_leaves_the_tracker_unchanged_and_names_index_and_value(data, curve, bad):
    tracker = DrawdownTracker(curve[0])
    tracker.observe_many(curve[: len(curve) // 2])
    before = tracker.snapshot()
    index = data.draw(st.integers(0, len(curve)), label="index")
    batch = [*curve[:index], bad, *curve[index:]]
    with pytest.raises((TypeError, ValueError)) as raised:
        tracker.observe_many(batch)
    assert f"equities[{index}]" in str(raised.value)
    assert repr(bad) in str(raised.value)
    assert tracker.snapshot() == before


@given(bad=bad_readings())
def test_every_bad_reading_is_refused_by_observe_and_named(bad):
    tracker = DrawdownTracker(100.0)
    before = tracker.snapshot()
    with pytest.raises((TypeError, ValueError), match=r"^equity must be a finite real number, got ") as raised:
        tracker.observe(bad)
    assert repr(bad) in str(raised.value)
    assert tracker.snapshot() == before


def test_nan_equity_is_refused_and_names_the_value():
    with pytest.raises(ValueError, match=r"^equity must be a finite real number, got nan$"):
        DrawdownTracker(100.0).observe(math.nan)


def test_infinite_equity_is_refused_and_names_the_value():
    with pytest.raises(ValueError, match=r"^equity must be a finite real number, got -inf$"):
        DrawdownTracker(100.0).observe(-math.inf)


def test_a_string_equity_is_refused_as_a_type_error_naming_the_value():
    with pytest.raises(TypeError, match=r"^equity must be a finite real number, got '12\.5' \(str\)$"):
        DrawdownTracker(100.0).observe("12.5")


def test_a_boolean_equity_is_refused():
    with pytest.raises(TypeError, match=r"^equity must be a finite real number, got True \(bool\)$"):
        DrawdownTracker(100.0).observe(True)


def test_integer_readings_are_taken_as_floats():
    tracker = DrawdownTracker(100)
    tracker.observe(80)
    assert tracker.drawdown == 0.2
    assert type(tracker.latest_equity) is float


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (0.0, "start_equity must be > 0, got 0.0"),
        (-1.0, "start_equity must be > 0, got -1.0"),
        (-1, "start_equity must be > 0, got -1"),
        (math.nan, "start_equity must be a finite real number, got nan"),
        (math.inf, "start_equity must be a finite real number, got inf"),
    ],
)
def test_a_start_equity_that_is_not_positive_and_finite_is_refused_naming_the_field(start, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        DrawdownTracker(start)


def test_the_smallest_positive_start_equity_is_accepted():
    tracker = DrawdownTracker(5e-324)
    assert (tracker.start_equity, tracker.peak_equity, tracker.latest_equity, tracker.max_drawdown) == (
        5e-324,
        5e-324,
        5e-324,
        0.0,
    )


# --- snapshots ----------------------------------------------------------------------------------


@given(curve=equity_curves(max_size=40), rest=equity_curves(max_size=20))
def test_a_restored_tracker_behaves_exactly_as_the_one_that_made_the_snapshot(curve, rest):
    original = fed(curve)
    restored = DrawdownTracker.restore(original.snapshot())
    for equity in rest:
        original.observe(equity)
        restored.observe(equity)
        assert restored.snapshot() == original.snapshot()


def test_a_snapshot_with_latest_above_the_peak_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"^latest_equity must be <= peak_equity, got 120\.0 > 110\.0$"):
        DrawdownSnapshot(100.0, 110.0, 120.0, 0.0)


def test_a_snapshot_with_the_peak_below_the_start_is_a_rebaselined_account_and_restores_exactly():
    # A rebaseline below the start moves the peak and keeps the start (a static floor is fixed).
    tracker = DrawdownTracker.restore(DrawdownSnapshot(100.0, 90.0, 80.0, 0.2))
    assert (tracker.drawdown, tracker.static_drawdown) == (pytest.approx(1 / 9), pytest.approx(0.2))
    tracker.record_cash_flow(80.0)  # doubles the account: the start doubles too, not pulled to the peak
    assert tracker.snapshot() == DrawdownSnapshot(200.0, 180.0, 160.0, 0.2)


def test_a_snapshot_says_recapitalised_only_as_true_or_false():
    with pytest.raises(TypeError, match=r"^recapitalised must be true or false, got 1 \(int\)$"):
        DrawdownSnapshot(100.0, 100.0, 100.0, 0.0, 1)


def test_a_snapshot_with_a_negative_max_drawdown_is_refused():
    with pytest.raises(ValueError, match=r"^max_drawdown must be >= 0, got -0\.1$"):
        DrawdownSnapshot(100.0, 100.0, 100.0, -0.1)


# --- the strategies themselves ------------------------------------------------------------------


@given(curve=equity_curves(max_size=80))
def test_equity_curves_stay_positive_and_realistic(curve):
    assert curve
    assert all(1e-2 <= equity <= 1e9 for equity in curve)


@settings(max_examples=50)
@given(data=st.data(), equity=equities())
def test_cash_flows_are_non_zero_and_keep_equity_positive(data, equity):
    amount = data.draw(cash_flows(equity))
    assert amount != 0
    assert equity + amount > 0


@given(curve=equity_curves(min_size=5, max_size=5))
def test_equity_curves_honour_their_size(curve):
    assert len(curve) == 5


def test_equity_curves_reach_crashes_and_rallies():
    # A strategy that never crashed would make every guard property vacuous.
    seen = {"crash": False, "rally": False}

    @settings(max_examples=200, database=None)
    @given(curve=equity_curves(min_size=2, max_size=20))
    def look(curve):
        if max_drawdown(curve) >= 0.5:
            seen["crash"] = True
        if max(curve) >= 2 * curve[0]:
            seen["rally"] = True

    look()
    assert seen == {"crash": True, "rally": True}


def test_cash_flows_refuse_an_equity_with_no_valid_flow():
    with pytest.raises(ValueError, match="equity"):
        cash_flows(0.0)


def test_equity_curves_refuse_a_start_outside_their_range():
    with pytest.raises(ValueError, match="start"):
        equity_curves(start=1e12)


def test_no_bad_reading_is_a_finite_number():
    @settings(max_examples=100, database=None)
    @given(bad=bad_readings())
    def check(bad):
        assert isinstance(bad, (bool, str, type(None))) or not math.isfinite(bad)

    check()


# --- exact values: every field, both sides of every bound ---------------------------------------


def state_of(tracker: DrawdownTracker) -> tuple[float, float, float, float]:
    return tracker.start_equity, tracker.peak_equity, tracker.latest_equity, tracker.max_drawdown


def test_a_new_tracker_starts_at_its_start_equity_with_no_drawdown():
    tracker = DrawdownTracker(250.0)
    assert state_of(tracker) == (250.0, 250.0, 250.0, 0.0)
    assert (tracker.drawdown, tracker.static_drawdown) == (0.0, 0.0)
    assert tracker.snapshot() == DrawdownSnapshot(250.0, 250.0, 250.0, 0.0)


def test_observe_moves_the_peak_only_above_it_and_keeps_the_worst_drawdown():
    tracker = DrawdownTracker(100.0)
    tracker.observe(100.0)  # at the peak: no new peak, no drawdown
    assert state_of(tracker) == (100.0, 100.0, 100.0, 0.0)
    tracker.observe(75.0)
    assert state_of(tracker) == (100.0, 100.0, 75.0, 0.25)
    tracker.observe(90.0)  # a smaller drawdown leaves the worst alone
    assert state_of(tracker) == (100.0, 100.0, 90.0, 0.25)
    assert tracker.drawdown == 0.1
    tracker.observe(200.0)
    assert state_of(tracker) == (100.0, 200.0, 200.0, 0.25)
    assert tracker.drawdown == 0.0
    tracker.observe(100.0)  # a worse drawdown from the new peak replaces it
    assert state_of(tracker) == (100.0, 200.0, 100.0, 0.5)


def test_observe_many_gives_every_field_as_one_at_a_time():
    tracker = DrawdownTracker(100.0)
    tracker.observe_many([100.0, 75, 90.0, 200.0, 150.0])
    assert state_of(tracker) == (100.0, 200.0, 150.0, 0.25)
    assert type(tracker.latest_equity) is float
    tracker.observe_many([])
    assert state_of(tracker) == (100.0, 200.0, 150.0, 0.25)
    tracker.observe_many([40.0])
    assert state_of(tracker) == (100.0, 200.0, 40.0, 0.8)


def test_observe_many_names_a_bad_reading_by_its_index_and_keeps_the_state():
    tracker = DrawdownTracker(100.0)
    with pytest.raises(TypeError, match=r"^equities\[1\] must be a finite real number, got '5' \(str\)$"):
        tracker.observe_many([90.0, "5", 80.0])
    with pytest.raises(ValueError, match=r"^equities\[0\] must be a finite real number, got inf$"):
        tracker.observe_many([math.inf])
    assert state_of(tracker) == (100.0, 100.0, 100.0, 0.0)


def test_static_drawdown_on_both_sides_of_the_start():
    tracker = DrawdownTracker(200.0)
    tracker.observe(150.0)
    assert tracker.static_drawdown == 0.25
    tracker.observe(200.0)
    assert tracker.static_drawdown == 0.0
    tracker.observe(300.0)
    assert tracker.static_drawdown == 0.0
    tracker.observe(-100.0)
    assert tracker.static_drawdown == 1.5


def test_the_repr_states_every_number():
    tracker = DrawdownTracker(100.0)
    tracker.observe(120.0)
    tracker.observe(90.0)
    assert repr(tracker) == (
        "DrawdownTracker(start=100.0, peak=120.0, latest=90.0, drawdown=0.250000, max_drawdown=0.250000)"
    )


def test_restore_gives_back_the_literal_fields_of_the_snapshot():
    restored = DrawdownTracker.restore(DrawdownSnapshot(100.0, 150.0, 120.0, 0.3))
    assert state_of(restored) == (100.0, 150.0, 120.0, 0.3)
    assert restored.drawdown == 0.2
    restored.observe(160.0)
    assert state_of(restored) == (100.0, 160.0, 160.0, 0.3)


def test_a_snapshot_accepts_its_boundaries():
    assert DrawdownSnapshot(100.0, 100.0, 100.0, 0.0).max_drawdown == 0.0
    assert DrawdownSnapshot(100.0, 100.0, -5.0, 1.05).latest_equity == -5.0


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ((0.0, 100.0, 100.0, 0.0), ValueError, "start_equity must be > 0, got 0.0"),
        ((100.0, 0.0, 0.0, 0.0), ValueError, "peak_equity must be > 0, got 0.0"),
        ((100.0, 100.0, math.nan, 0.0), ValueError, "latest_equity must be a finite real number, got nan"),
        ((100.0, 100.0, 100.0, "0"), TypeError, "max_drawdown must be a finite real number, got '0' (str)"),
    ],
)
def test_a_snapshot_names_a_bad_field_and_its_value(fields, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        DrawdownSnapshot(*fields)


def test_at_exactly_zero_equity_a_withdrawal_is_refused_and_a_deposit_is_added_as_money():
    tracker = DrawdownTracker(100.0)
    tracker.observe(0.0)
    before = tracker.snapshot()
    with pytest.raises(ValueError, match=r"^cannot record a cash flow of -50\.0 while equity is 0\.0 \(must be > 0\)$"):
        tracker.record_cash_flow(-50.0)
    assert tracker.snapshot() == before
    tracker.record_cash_flow(50.0)
    assert tracker.snapshot() == DrawdownSnapshot(150.0, 150.0, 50.0, 1.0, recapitalised=True)


def test_a_withdrawal_to_just_above_zero_is_taken_and_one_to_exactly_zero_is_not():
    tracker = DrawdownTracker(100.0)
    with pytest.raises(ValueError, match=r"^cash flow amount -100\.0 would take equity from 100\.0 to 0\.0 \(must stay > 0\)$"):
        tracker.record_cash_flow(-100)
    tracker.record_cash_flow(-99.0)
    assert state_of(tracker) == (1.0, 1.0, 1.0, 0.0)


def test_a_deposit_at_the_peak_moves_start_peak_and_latest_together():
    tracker = DrawdownTracker(100.0)
    tracker.record_cash_flow(50)
    assert state_of(tracker) == (150.0, 150.0, 150.0, 0.0)
    assert type(tracker.latest_equity) is float
    assert tracker.drawdown == 0.0


def test_a_deposit_below_the_peak_scales_the_peak_and_the_start():
    tracker = DrawdownTracker(100.0)
    tracker.observe(200.0)
    tracker.observe(100.0)
    tracker.record_cash_flow(100.0)
    assert state_of(tracker) == (200.0, 400.0, 200.0, 0.5)
    assert tracker.drawdown == 0.5


def test_a_flow_after_gains_scales_a_start_below_the_peak():
    tracker = DrawdownTracker(100.0)
    tracker.observe(400.0)
    tracker.record_cash_flow(-200.0)
    assert state_of(tracker) == (50.0, 200.0, 200.0, 0.0)


def test_rebaseline_sets_the_peak_to_the_latest_and_keeps_the_start_and_the_worst():
    # The start is a static floor's base: a rebaseline that moved it lowered the floor.
    tracker = DrawdownTracker(100.0)
    tracker.observe(120.0)
    tracker.observe(60.0)
    tracker.rebaseline()
    assert state_of(tracker) == (100.0, 60.0, 60.0, 0.5)
    assert (tracker.drawdown, tracker.static_drawdown) == (0.0, 0.4)


@pytest.mark.parametrize(("equity", "shown"), [(0.0, "0.0"), (-3.0, "-3.0")])
def test_rebaseline_at_zero_or_below_is_refused_and_changes_nothing(equity, shown):
    tracker = DrawdownTracker(100.0)
    tracker.observe(equity)
    before = tracker.snapshot()
    with pytest.raises(ValueError, match=rf"^cannot rebaseline while equity is {re.escape(shown)} \(must be > 0\)$"):
        tracker.rebaseline()
    assert tracker.snapshot() == before


def test_rebaseline_just_above_zero_is_taken():
    tracker = DrawdownTracker(100.0)
    tracker.observe(1e-300)
    tracker.rebaseline()
    assert (tracker.start_equity, tracker.peak_equity) == (100.0, 1e-300)


def test_max_drawdown_with_a_start_names_a_bad_first_point_by_its_batch_index():
    with pytest.raises(TypeError, match=r"^equities\[0\] must be a finite real number, got None \(NoneType\)$"):
        max_drawdown([None, 90.0], start_equity=100.0)
    assert max_drawdown([90.0], start_equity=100.0) == 0.1
    assert max_drawdown([120.0, 90.0]) == 0.25
    assert max_drawdown(iter([100, 50])) == 0.5


def test_max_drawdown_takes_an_int_first_point_and_refuses_a_nan_one():
    assert max_drawdown([100, 80.0]) == 0.2
    with pytest.raises(ValueError, match=r"^equity_curve\[0\] must be a finite real number, got nan$"):
        max_drawdown([math.nan, 80.0])


def test_a_number_too_large_for_a_float_is_refused_by_its_size_not_its_digits():
    from fractions import Fraction

    from runtime.validation import brief, finite_number

    with pytest.raises(ValueError, match=r"^equity must be a finite real number, got an integer of 1,329 bits, too large for a float$"):
        finite_number("equity", 10**400)
    with pytest.raises(ValueError) as refused:
        finite_number("equity", Fraction(10**400, 7))
    assert str(refused.value) == (
        "equity must be a finite real number, got Fraction(" + "1" + "0" * 50 + "... (Fraction), too large for a float"
    )
    assert finite_number("equity", 10**300) == 1e300
    assert brief(-(10**5000)) == "an integer of 16,610 bits" and brief("x" * 100) == "'" + "x" * 59 + "... (str)"


def test_a_cash_flow_that_would_take_a_figure_past_a_floats_range_is_refused_and_changes_nothing():
    tracker = DrawdownTracker(1.5e308)
    before = tracker.snapshot()
    with pytest.raises(ValueError) as refused:
        tracker.record_cash_flow(0.5e308)
    assert str(refused.value) == (
        "cash flow amount 5e+307 at equity 1.5e+308 would take the account's figures past a float's range"
    )
    assert tracker.snapshot() == before
