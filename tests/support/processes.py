"""Child processes for kill tests: read what a child acknowledged before it was killed."""

from __future__ import annotations

import selectors
import subprocess
import time

import pytest


def read_acknowledgements(process: subprocess.Popen[str], wanted: int, timeout: float = 20.0) -> list[str]:
    """Read ``wanted`` lines from the child's stdout, failing the test if it is slower than
    ``timeout`` seconds or exits first."""
    lines: list[str] = []
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while len(lines) < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                pytest.fail(f"the child acknowledged only {len(lines)} of {wanted} writes in {timeout}s")
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"the child exited early ({process.wait()}): {process.stderr.read() if process.stderr else ''}")
            lines.append(line.strip())
    return lines
