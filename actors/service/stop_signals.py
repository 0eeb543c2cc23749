"""SIGTERM and SIGINT for a service's main thread, with no lock taken in a signal handler."""

from __future__ import annotations

import signal
import socket
import time
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopSignals"]

_STOPS = (signal.SIGTERM, signal.SIGINT)


def _ignore(number: int, frame: FrameType | None) -> None:
    """Nothing: the signal is read from the wake-up socket instead. A Python handler runs
    between two bytecodes of the main thread, possibly while that thread holds a lock: setting
    an Event or writing a log line there can deadlock the thread that must stop the service."""


class StopSignals:
    """While entered (in the main thread), SIGTERM and SIGINT no longer end the process: `wait`
    returns the first one's name. The signal handler does nothing in Python; the interpreter
    writes each signal's number to a socket that `wait` reads, so a signal never waits on a lock
    and wakes the waiting thread at once. Leaving puts the previous handlers back; a signal that
    arrives while the service stops (after `wait` returned) is ignored, so a second Ctrl-C does
    not cut a clean stop short."""

    def __init__(self) -> None:
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1

    def __enter__(self) -> StopSignals:
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)  # the interpreter writes to it from its C signal handler
        try:
            self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        except BaseException:  # not the main thread: nothing is left open
            self._close_sockets()
            raise
        self._previous = {number: signal.signal(number, _ignore) for number in _STOPS}
        return self

    def wait(self, timeout: float | None) -> str | None:
        """The name of the first stop signal (``"SIGTERM"`` or ``"SIGINT"``) received within
        ``timeout`` seconds (None: until one arrives), or None when none came."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("StopSignals.wait outside its with block")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                return None
            reader.settimeout(left)  # (blocking until then: no select, so any descriptor number works)
            try:
                received = reader.recv(64)
            except TimeoutError:
                return None
            for number in received:  # other signals with a Python handler are written here too
                if number in _STOPS:
                    return signal.Signals(number).name

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for end in (self._reader, self._writer):
            if end is not None:
                end.close()
        self._reader = self._writer = None
