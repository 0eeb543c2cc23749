"""Child processes for tests: each pipe has one reader, every wait has a timeout, and a wait that
times out fails with the child's thread stacks.

The stacks come from faulthandler: every child runs with ``PYTHONFAULTHANDLER=1``, so on
`DUMP_SIGNAL` a Python child writes the traceback of each of its threads to stderr and dies,
which needs nothing in the child's own code. A test that has given up on a child wants it gone
anyway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

import attrs
import pytest

__all__ = ["DUMP_SIGNAL", "Child", "Finished", "run"]

DUMP_SIGNAL = signal.SIGABRT
_DUMP_WAIT = 10.0  # seconds a child gets to write its stacks and exit
_SHOWN = 20_000  # characters of each stream shown in a failure


@attrs.frozen
class Finished:
    """A child that has exited, with everything it wrote."""

    returncode: int
    stdout: str
    stderr: str


class Child:
    """A running child process. Its stdout and stderr are each read, whole and raw, by a thread
    of their own from the start, so no output is lost between one way of reading and another, and
    a child never blocks on a full pipe. Use it as a context manager: leaving kills the child if
    it is still running. Given ``stdout`` (a file descriptor, such as a pipe whose reader has
    gone), the child writes its stdout there instead, and none of it is read here."""

    def __init__(self, args: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None, stdout: int = subprocess.PIPE) -> None:
        self.args = list(args)
        self.process = subprocess.Popen(
            self.args, cwd=cwd, env={**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"},
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
        )
        self._changed = threading.Condition()
        self._output = {"stdout": bytearray(), "stderr": bytearray()}
        self._readers = [
            threading.Thread(target=self._read, args=(name, pipe.fileno()), daemon=True, name=f"child-{name}")
            for name, pipe in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
            if pipe is not None
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, fd: int) -> None:
        while chunk := os.read(fd, 65536):
            with self._changed:
                self._output[name] += chunk
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self, stream: str = "stdout") -> str:
        """What the child has written to ``stream`` so far."""
        with self._changed:
            return self._output[stream].decode(errors="replace")

    def lines(self, wanted: int, timeout: float) -> list[str]:
        """The first ``wanted`` whole lines of stdout, once written; fails the test if the child
        exits first or is slower than ``timeout`` seconds."""
        self._await(lambda: self.text().count("\n") >= wanted, f"{wanted} lines on stdout", timeout)
        return self.text().split("\n")[:wanted]

    def wait_for(self, marker: str, timeout: float, stream: str = "stdout") -> None:
        """Return once ``marker`` appears in ``stream``; fails the test if the child exits first
        or is slower than ``timeout`` seconds."""
        self._await(lambda: marker in self.text(stream), f"{marker!r} on {stream}", timeout)

    def finish(self, timeout: float) -> Finished:
        """Wait for the child to exit and for the last of its output; fails the test with its
        stacks if that takes longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._fail(f"did not exit within {timeout}s")
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        return Finished(self.process.returncode, self.text("stdout"), self.text("stderr"))

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the child."""
        self.process.send_signal(signum)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(_DUMP_WAIT)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def _await(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                if self.process.poll() is not None and not any(reader.is_alive() for reader in self._readers):
                    pytest.fail(
                        f"{self.args}: exited with {self.process.returncode} before {what}\n"
                        f"{self._shown()}", pytrace=False,
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.5))  # the 0.5 s only to notice an exit without output
            else:
                return
        self._fail(f"no {what} within {timeout}s")

    def _fail(self, why: str) -> None:
        if self.process.poll() is None:
            self.process.send_signal(DUMP_SIGNAL)
            try:
                self.process.wait(_DUMP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(_DUMP_WAIT)
        pytest.fail(f"{self.args}: {why}; its threads at that moment are in its stderr\n{self._shown()}", pytrace=False)

    def _shown(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.text(name)[-_SHOWN:]}" for name in ("stdout", "stderr"))


def run(args: Sequence[str], *, timeout: float, cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None) -> Finished:
    """Run a child to its end, like `subprocess.run`, with the stacks of one that overruns."""
    with Child(args, cwd=cwd, env=env) as child:
        return child.finish(timeout)

