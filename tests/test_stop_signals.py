"""`StopSignals`: SIGTERM and SIGINT read by a service's main thread, never acted on in a handler."""

from __future__ import annotations

import os
import signal

import pytest

from actors.service.stop_signals import StopSignals


def test_each_stop_signal_is_named_by_wait_and_ends_nothing_while_entered() -> None:
    before = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    with StopSignals() as signals:
        assert signals.wait(0.05) is None
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt
        assert signals.wait(5.0) == "SIGINT"
        os.kill(os.getpid(), signal.SIGTERM)  # the process lives on
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.wait(5.0) == "SIGTERM"
    assert {number: signal.getsignal(number) for number in before} == before
    assert signal.set_wakeup_fd(-1) == -1  # the wake-up descriptor was put back too


def test_wait_outside_the_with_block_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"^StopSignals.wait outside its with block$"):
        StopSignals().wait(0)


def test_wait_without_a_timeout_returns_the_signal_already_received() -> None:
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.wait(None) == "SIGTERM"
