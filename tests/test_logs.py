"""configure_logging: human lines with the bound context, JSON lines that parse and carry it."""

from __future__ import annotations

import inspect
import io
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from loguru import logger

from actors.emitter import log_sink
from runtime.adapters.logs import configure_logging
from runtime.payloads import TradingStateChanged
from runtime.risk.guards import TradingState


@pytest.fixture(autouse=True)
def restore_loguru() -> Iterator[None]:
    # configure_logging replaces every sink; put a plain stderr sink back for the other tests.
    yield
    logger.remove()
    logger.add(sys.stderr)


def test_json_lines_parse_and_carry_bound_extras() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, sink=out)
    logger.bind(actor="GuardActor", loop_id="main").warning("drawdown {:.1%}", 0.185)
    logger.debug("plain")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["record"]["message"] == "drawdown 18.5%"
    assert first["record"]["level"]["name"] == "WARNING"
    assert first["record"]["extra"] == {"actor": "GuardActor", "loop_id": "main"}
    assert second["record"]["extra"] == {}


def test_human_lines_show_actor_and_loop_first_then_other_extras() -> None:
    out = io.StringIO()
    configure_logging("INFO", sink=out)
    logger.bind(component="alerts", loop_id="main", actor="AlertActor").info("sent {}", "{not a field}")
    logger.info("no context")
    with_context, without = out.getvalue().splitlines()
    assert "| actor=AlertActor loop_id=main component=alerts | sent {not a field}" in with_context
    assert " | INFO     | " in with_context
    assert "=" not in without.split(" | ", 3)[2] and without.endswith("| no context")


def test_the_level_filters_and_a_bad_level_is_named_and_changes_nothing() -> None:
    out = io.StringIO()
    configure_logging("warning", sink=out)
    logger.info("hidden")
    logger.error("shown")
    with pytest.raises(ValueError, match="log_level .* got 'LOUD'"):
        configure_logging("loud", sink=io.StringIO())
    logger.error("still here")
    lines = out.getvalue().splitlines()
    assert [line.rsplit("| ", 1)[1] for line in lines] == ["shown", "still here"]


def test_an_event_logged_carries_its_metadata_as_json_and_says_it_once_to_people() -> None:
    event = TradingStateChanged(TradingState.ACTIVE, TradingState.HALTED, "halted by desk: news").event(
        "main", datetime(2024, 3, 4, 9, tzinfo=UTC))
    out = io.StringIO()
    configure_logging("INFO", json=True, sink=out)
    log_sink(event)
    [record] = (json.loads(line)["record"] for line in out.getvalue().splitlines())
    assert record["extra"] == {"loop_id": "main", "event": "trading_state_changed",
                               "metadata": {"from": "active", "to": "halted", "reason": "halted by desk: news"}}
    people = io.StringIO()
    configure_logging("INFO", sink=people)
    log_sink(event)
    line = people.getvalue()
    assert line.count("halted by desk: news") == 1
    assert line.endswith(" | loop_id=main event=trading_state_changed | event trading_state_changed "
                         "{'from': 'active', 'to': 'halted', 'reason': 'halted by desk: news'}\n")


def _next_line() -> int:
    """The number of the line after the caller's: where the call a test looks for is."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno + 1


def test_a_newline_in_a_message_or_a_bound_value_is_shown_escaped_on_one_line_and_json_keeps_it() -> None:
    # A halt reason with a newline went into the log as a second line, which a reader takes for a
    # record of its own: a reason typed in the chat could forge one.
    reason = "news\n2024-03-04 09:00:00.000 | INFO     | actors.guard:1 | resumed by desk"
    people = io.StringIO()
    configure_logging("INFO", sink=people)
    line = _next_line()
    logger.bind(actor="GuardActor", reason=reason).warning("halted: {}", reason)
    [shown] = people.getvalue().splitlines()
    assert shown.split(" | ", 1)[1] == (
        f"WARNING  | {__name__}:{line} | actor=GuardActor reason=news\\n2024-03-04 09:00:00.000 | INFO     |"
        " actors.guard:1 | resumed by desk | halted: news\\n2024-03-04 09:00:00.000 | INFO     | actors.guard:1 |"
        " resumed by desk")

    machines = io.StringIO()
    configure_logging("INFO", json=True, sink=machines)
    logger.bind(actor="GuardActor", reason=reason).warning("halted: {}", reason)
    [record] = (json.loads(line)["record"] for line in machines.getvalue().splitlines())
    assert record["message"] == f"halted: {reason}"
    assert record["extra"] == {"actor": "GuardActor", "reason": reason}


def test_every_control_character_is_shown_as_its_escape_and_other_text_as_it_is() -> None:
    # Carriage returns and the Unicode separators end a line for some readers; ESC steers a terminal.
    people = io.StringIO()
    configure_logging("INFO", sink=people)
    logger.info("a\rb\tc\x1b[31mred\x00\x07\x0b\x0c\x7f\x85\u2028\u2029 é € C:\\logs {x} <red>")
    [shown] = people.getvalue().splitlines()
    assert shown.rsplit(" | ", 1)[1] == (
        "a\\rb\\tc\\x1b[31mred\\x00\\x07\\x0b\\x0c\\x7f\\x85\\u2028\\u2029 é € C:\\logs {x} <red>")


def test_a_logged_exception_keeps_its_traceback_on_lines_of_its_own_below_the_escaped_message() -> None:
    people = io.StringIO()
    configure_logging("INFO", sink=people)
    try:
        raising = _next_line()
        raise ValueError("bad\nvalue")
    except ValueError:
        logged = _next_line()
        logger.bind(actor="GuardActor").exception("liquidation failed for {}", "news\nforged")
    lines = people.getvalue().splitlines()
    assert lines[0].split(" | ", 1)[1] == (
        f"ERROR    | {__name__}:{logged} | actor=GuardActor | liquidation failed for news\\nforged")
    function = "test_a_logged_exception_keeps_its_traceback_on_lines_of_its_own_below_the_escaped_message"
    assert lines[1:] == [
        "Traceback (most recent call last):",
        f'  File "{__file__}", line {raising}, in {function}',
        '    raise ValueError("bad\\nvalue")',
        "ValueError: bad",
        "value",
    ]
