"""A TradingSystem starts once, and says it is not started when asked before its start."""

from __future__ import annotations

import pytest

from actors import TradingSystem
from runtime import ListSignalSource, ManualClock, MemoryStore, PaperBroker, Settings, TradingState


def _system() -> TradingSystem:
    return TradingSystem(Settings(), PaperBroker(10_000), ListSignalSource(), store=MemoryStore(), clock=ManualClock(),
                         loop_interval=None)


def test_a_second_start_is_refused_by_name_and_runs_nothing_more_and_a_start_after_stop_is_a_fresh_one():
    system = _system().start()
    before = system.children()
    try:
        with pytest.raises(RuntimeError) as again:
            system.start()
        assert str(again.value) == (
            "this trading system is already started: a second start would run a second guard and loop on the same "
            "account; stop() it first")
        assert {name: info.incarnation for name, info in system.children().items()} == {
            name: info.incarnation for name, info in before.items()}
    finally:
        system.stop()
    system.start()  # afresh, from the store it was given
    system.stop()


@pytest.mark.parametrize(("call", "what"), [
    (lambda s: s.guard_status(timeout=1), "asking for the guard's status"),
    (lambda s: s.resume("desk", timeout=1), "resuming"),
])
def test_before_start_the_guard_calls_say_the_system_is_not_started(call, what):
    with pytest.raises(RuntimeError) as refused:
        call(_system())
    assert str(refused.value) == f"the trading system is not started: start() it before {what}"


def test_a_halt_before_start_is_kept_by_the_store_and_carried_out_as_the_system_starts():
    system = _system()
    assert system.halt("desk", "news at 14:30") is TradingState.ACTIVE  # what the store held
    (pending,) = system.store.load_pending_halts(system.settings.loop_id)
    assert (pending.by, pending.reason) == ("desk", "news at 14:30")
    system.start()
    try:
        state = system.guard_status().state
        assert (state.trading_state, state.reason) == (TradingState.HALTED, "halted by desk: news at 14:30")
        assert system.store.load_pending_halts(system.settings.loop_id) == []
    finally:
        system.stop()
