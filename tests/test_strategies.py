"""Tests for the moving-average crossover: parameters, crosses, the position it tracks, and poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from statistics import fmean

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runtime import Side, SignalSource
from runtime.replay.prices import Bar
from runtime.replay.strategies import MovingAverageCrossover

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def bars_from(closes: list[float]) -> list[Bar]:
    """Hourly flat bars (open = high = low = close) from T0."""
    return [Bar(T0 + timedelta(hours=i), c, c, c, c) for i, c in enumerate(closes)]


def feed(strategy: MovingAverageCrossover, closes: list[float]) -> list[tuple[int, object]]:
    """Feed closes one bar at a time, polling after each; returns (bar index, signal) pairs."""
    out = []
    for index, bar in enumerate(bars_from(closes)):
        strategy.on_bar(bar)
        out.extend((index, signal) for signal in strategy.poll(bar.time))
    return out


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fast": 3, "slow": 3}, ValueError, "fast must be < slow, got fast 3 and slow 3"),
        ({"fast": 5, "slow": 2}, ValueError, "fast must be < slow, got fast 5 and slow 2"),
        ({"fast": 0}, ValueError, "fast must be a whole number >= 1, got 0"),
        ({"slow": 2.5}, TypeError, "slow must be a whole number >= 1, got 2.5 (float)"),
        ({"fast": True}, TypeError, "fast must be a whole number >= 1, got True (bool)"),
        ({"volume": 0}, ValueError, "volume must be > 0, got 0"),
        ({"volume": float("nan")}, ValueError, "volume must be a finite real number, got nan"),
        ({"volume": "1"}, TypeError, "volume must be a finite real number, got '1'"),
        ({"symbol": " "}, ValueError, "symbol must be a non-empty string, got ' '"),
    ],
)
def test_bad_parameters_are_refused_naming_field_and_value(kwargs, error, message):
    args = {"symbol": "EURUSD", "fast": 2, "slow": 4, "volume": 1.0} | kwargs
    with pytest.raises(error) as caught:
        MovingAverageCrossover(**args)
    assert message in str(caught.value)


def test_it_is_a_signal_source():
    strategy: SignalSource = MovingAverageCrossover("EURUSD")
    assert strategy.poll(T0) == []


def test_buys_on_the_cross_up_and_sells_the_held_volume_on_the_cross_down():
    strategy = MovingAverageCrossover("EURUSD", fast=2, slow=4, volume=0.5)
    # Bars 0-3 fill the slow window (falling: fast below slow); bar 5 crosses up; on bar 8 the
    # averages are equal (10 and 10), which is no cross; bar 9 crosses down.
    closes = [10.0, 9.0, 8.0, 7.0, 7.5, 9.0, 11.0, 12.0, 8.0, 6.0]
    signals = feed(strategy, closes)
    assert [(i, s.side, s.volume) for i, s in signals] == [(5, Side.BUY, 0.5), (9, Side.SELL, 0.5)]
    buy, sell = signals[0][1], signals[1][1]
    assert buy.symbol == "EURUSD" and buy.at == T0 + timedelta(hours=5)
    assert buy.reason == "fast MA(2) 8.25 crossed above slow MA(4) 7.875"
    assert sell.at == T0 + timedelta(hours=9)
    assert sell.reason == "fast MA(2) 7 crossed below slow MA(4) 9.25"
    assert strategy.position == 0


def test_no_signal_until_a_real_cross_and_not_on_the_first_full_window():
    strategy = MovingAverageCrossover("X", fast=2, slow=4)
    # Rising from the start: fast is above slow on the first full window, which is no cross.
    assert feed(strategy, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == []
    # Flat prices: the averages are equal, which is not a cross either way.
    flat = MovingAverageCrossover("X", fast=2, slow=4)
    assert feed(flat, [5.0] * 10) == []


def test_long_only_no_short_on_a_cross_down_while_flat_and_no_adding():
    strategy = MovingAverageCrossover("X", fast=2, slow=3, volume=2.0)
    # up-cross, down-cross, up-cross, down-cross: buy, sell, buy, sell; never two buys in a row.
    closes = [5, 4, 3, 5, 6, 3, 2, 5, 7, 2, 1]
    sides = [s.side for _, s in feed(strategy, [float(c) for c in closes])]
    assert sides == [Side.BUY, Side.SELL, Side.BUY, Side.SELL]
    # Starting in an up-trend then falling: the first cross is down, and it is ignored while flat.
    flat = MovingAverageCrossover("X", fast=2, slow=3)
    assert feed(flat, [1.0, 2.0, 3.0, 4.0, 1.0, 0.5]) == []


def test_sync_position_stops_it_selling_what_a_guard_already_closed():
    strategy = MovingAverageCrossover("X", fast=2, slow=3, volume=1.0)
    signals = feed(strategy, [5.0, 4.0, 3.0, 5.0, 6.0])
    assert [s.side for _, s in signals] == [Side.BUY]
    strategy.sync_position(0.0)  # a guard liquidated the position
    later = [Bar(T0 + timedelta(hours=10 + i), c, c, c, c) for i, c in enumerate([3.0, 2.0])]
    for bar in later:
        strategy.on_bar(bar)
    assert strategy.poll(later[-1].time) == []
    with pytest.raises(ValueError, match=r"volume must be >= 0 \(the strategy is long-only\), got -1"):
        strategy.sync_position(-1)


def test_synced_holding_is_not_added_to_and_is_what_gets_sold():
    strategy = MovingAverageCrossover("X", fast=2, slow=3, volume=1.0)
    assert feed(strategy, [5.0, 4.0, 3.0]) == []  # fast below slow, flat
    strategy.sync_position(2.5)  # the broker reports a position the strategy did not open
    later = [Bar(T0 + timedelta(hours=10 + i), c, c, c, c) for i, c in enumerate([5.0, 6.0, 3.0, 2.0])]
    signals = []
    for bar in later:
        strategy.on_bar(bar)
        signals.extend(strategy.poll(bar.time))
    # The cross up does not add to a long position; the cross down sells exactly what is held.
    assert [(s.side, s.volume) for s in signals] == [(Side.SELL, 2.5)]
    assert strategy.position == 0


def test_poll_hands_signals_over_once_in_order():
    strategy = MovingAverageCrossover("X", fast=2, slow=3)
    for bar in bars_from([5.0, 4.0, 3.0, 5.0, 6.0, 3.0, 2.0]):
        strategy.on_bar(bar)  # no poll in between: both signals wait
    first = strategy.poll(T0)
    assert [s.side for s in first] == [Side.BUY, Side.SELL]
    assert first[0].at < first[1].at
    assert strategy.poll(T0) == []


def test_bars_must_move_forward_in_time():
    strategy = MovingAverageCrossover("X", fast=2, slow=3)
    strategy.on_bar(Bar(T0, 1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"bar time 2024-01-01T00:00:00\+00:00 is not after the previous"):
        strategy.on_bar(Bar(T0, 2.0, 2.0, 2.0, 2.0))
    with pytest.raises(TypeError, match=r"bar must be a Bar, got 1.5"):
        strategy.on_bar(1.5)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    closes=st.lists(st.floats(min_value=0.5, max_value=200.0), min_size=0, max_size=120),
    fast=st.integers(min_value=1, max_value=6),
    extra=st.integers(min_value=1, max_value=10),
    volume=st.floats(min_value=0.01, max_value=50.0),
)
def test_never_oversells_and_every_signal_is_a_true_cross(closes, fast, extra, volume):
    slow = fast + extra
    strategy = MovingAverageCrossover("X", fast=fast, slow=slow, volume=volume)
    held = 0.0
    for index, signal in feed(strategy, closes):
        window = closes[: index + 1]
        fast_now, slow_now = fmean(window[-fast:]), fmean(window[-slow:])
        if signal.side is Side.BUY:
            assert held == 0.0, "bought while already long"
            assert signal.volume == volume
            held += signal.volume
            assert fast_now > slow_now
        else:
            assert signal.volume == held, "sold other than exactly what it held"
            held -= signal.volume
            assert fast_now < slow_now
        assert held >= 0.0
        assert index >= slow  # a cross needs a previous full window
    assert strategy.position == held


def _crosses(closes: list[float], fast: int, slow: int, volume: float) -> list[tuple[int, Side, float, str]]:
    # The crossover spelt out plainly: each average the sum of its window's list slice, divided.
    found, above, held = [], None, 0.0
    for index in range(slow - 1, len(closes)):
        window = closes[index + 1 - slow : index + 1]
        fast_ma, slow_ma = sum(window[-fast:]) / fast, sum(window) / slow
        if fast_ma == slow_ma:
            continue
        previous, above = above, fast_ma > slow_ma
        if previous is None or previous == above:
            continue
        reason = f"fast MA({fast}) {fast_ma:.6g} crossed {'above' if above else 'below'} slow MA({slow}) {slow_ma:.6g}"
        if above and held == 0:
            held = volume
            found.append((index, Side.BUY, volume, reason))
        elif not above and held > 0:
            found.append((index, Side.SELL, held, reason))
            held = 0.0
    return found


@settings(max_examples=200, deadline=None)
@given(
    closes=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.7]) | st.floats(0.05, 2.0), max_size=80),
    fast=st.integers(min_value=1, max_value=6),
    extra=st.integers(min_value=1, max_value=10),
)
# The last window, summed left to right, averages just above its close 0.2 (a sell); summed right
# to left, just below: the order of the additions decides.
@example(closes=[0.3, 0.7, 0.2, 0.3, 0.1, 0.3, 0.2], fast=1, extra=2)
def test_every_signal_and_reason_is_the_one_the_sums_of_the_windows_give(closes, fast, extra):
    # The strategy sums its windows without copying them; the figures, and so every decision, must
    # be the plain sums' to the bit (ties included: repeated closes make equal averages often).
    strategy = MovingAverageCrossover("X", fast=fast, slow=fast + extra, volume=2.0)
    made = [(index, s.side, s.volume, s.reason) for index, s in feed(strategy, closes)]
    assert made == _crosses(closes, fast, fast + extra, 2.0)
