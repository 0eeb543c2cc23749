"""Exit kinds are an `ExitKind` StrEnum: typed in the code, the plain string in logs and events."""

from __future__ import annotations

import json

import pytest
from actor_helpers import Journal, Recorder

from actors import ChildSpec, Supervisor
from actors.supervision.messages import ChildExited, ExitKind


def test_each_exit_kind_reads_as_the_plain_string_users_already_see():
    assert {kind.value for kind in ExitKind} == {
        "normal", "crashed", "start_failed", "gave_up", "dead", "hung", "restart_requested",
    }
    assert str(ExitKind.CRASHED) == "crashed"
    assert f"{ExitKind.START_FAILED}" == "start_failed"
    assert json.dumps({"how": ExitKind.NORMAL}) == '{"how": "normal"}'
    assert ExitKind.GAVE_UP == "gave_up"


def test_a_child_exit_report_converts_a_plain_string_and_refuses_an_unknown_kind():
    assert ChildExited("a", 1, "crashed").kind is ExitKind.CRASHED
    with pytest.raises(ValueError, match=r"^'exploded' is not a valid ExitKind$"):
        ChildExited("a", 1, "exploded")


def test_an_actor_stopped_by_its_supervisor_sees_its_exit_kind_as_the_enum():
    journal = Journal()
    handle = Supervisor.launch([ChildSpec("a", lambda ctx: Recorder.start(ctx, journal))])
    handle.stop()
    (ended,) = [entry for entry in journal.snapshot() if entry[0] == "ended"]
    assert ended == ("ended", "a", 1, "normal")
    assert ended[3] is ExitKind.NORMAL
