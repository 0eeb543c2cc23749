"""The child-process helper the process tests share: no output lost, and stacks on a timeout."""

from __future__ import annotations

import sys

import pytest
from support.processes import Child, run

# Writes its lines in one go, so that they reach the pipe together, then waits to be killed.
_BURST = "import sys, time; sys.stdout.write(''.join(f'E {i}\\n' for i in range(500))); sys.stdout.flush(); time.sleep(60)"

# A worker thread parked in a function whose name the stacks must show.
_PARKED = """
import threading, time
def parked_in_a_named_function():
    time.sleep(60)
threading.Thread(target=parked_in_a_named_function).start()
print("parked", flush=True)
"""


def test_lines_read_while_the_child_runs_are_followed_by_the_rest_with_none_lost() -> None:
    with Child([sys.executable, "-c", _BURST]) as child:
        assert child.lines(1, timeout=30) == ["E 0"]
        child.process.kill()
        finished = child.finish(timeout=30)
    assert finished.stdout.splitlines() == [f"E {i}" for i in range(500)]


def test_a_wait_that_times_out_fails_with_the_childs_thread_stacks() -> None:
    with Child([sys.executable, "-c", _PARKED]) as child:
        child.wait_for("parked", timeout=30)
        with pytest.raises(pytest.fail.Exception, match=r"no 'never printed' on stdout within 0\.5s") as failure:
            child.wait_for("never printed", timeout=0.5)
    assert "parked_in_a_named_function" in str(failure.value)
    assert child.process.poll() is not None


def test_a_child_that_overruns_its_run_fails_with_its_stacks() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"did not exit within 1s") as failure:
        run([sys.executable, "-c", _PARKED], timeout=1)
    assert "parked_in_a_named_function" in str(failure.value)


def test_a_child_that_exits_before_the_wanted_output_is_reported_with_its_code() -> None:
    with Child([sys.executable, "-c", "import sys; print('one'); sys.exit(3)"]) as child:
        with pytest.raises(pytest.fail.Exception, match=r"exited with 3 before 2 lines on stdout"):
            child.lines(2, timeout=30)
