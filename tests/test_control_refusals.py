"""Where the control APIs meet the trading system: a value it refuses is a 400 naming the field
and the value, never a 500, and a system that does not answer is a 503. The single system's API
and the fleet's answer through the same `calling`, whichever process raised the error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pykka
import pytest

from actors.messages import Halt
from actors.service.control import BadRequest, calling


def _answer(call: Callable[[], Any]) -> Any:
    try:
        return asyncio.run(calling(call, (pykka.Timeout,), "the trading system did not answer: "))
    except BadRequest as exc:
        return exc.status, str(exc)


def _no_answer() -> None:
    raise pykka.Timeout("'guard' did not come back within 5.0s")


def _broken() -> None:
    raise RuntimeError("a defect, not a refusal")


def test_a_refused_value_is_a_400_with_its_message_and_no_answer_a_503() -> None:
    assert _answer(lambda: Halt(" ", "desk closed")) == (400, "by must be a non-empty string, got ' '")
    assert _answer(lambda: Halt("ops", 3)) == (400, "reason must be a non-empty string, got 3 (int)")
    assert _answer(_no_answer) == (503, "the trading system did not answer: 'guard' did not come back within 5.0s")
    assert _answer(lambda: "halted") == "halted"
    with pytest.raises(RuntimeError, match=r"^a defect, not a refusal$"):  # any other error is not a refusal
        _answer(_broken)
