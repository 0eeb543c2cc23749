"""Log set-up for examples and the command line; library code only logs, never adds sinks."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO, cast

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["configure_logging", "human_format"]

# Shown first and in this order when bound: they say which part of the runtime is speaking.
_LEADING_EXTRAS = ("actor", "loop_id")
# Bound for JSON logs, and not shown again in a line for people: its message already says them.
_MESSAGE_EXTRAS = ("metadata",)

# Every character that can end a line for a terminal or a log reader, or steer a terminal: C0 (newline,
# carriage return, vertical tab, form feed, ESC...), DEL, C1 (NEL among them) and the Unicode line and
# paragraph separators (str.splitlines splits on most of these). In a line for people each is shown as
# its escape, so one record stays one line and a value typed by a user (a halt reason from the chat)
# cannot forge a record of its own. A backslash is left as it is: Windows paths stay readable, and a
# typed "\n" cannot break the line either.
_CONTROLS = (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)
_ESCAPES = str.maketrans({chr(code): f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in _CONTROLS}
                         | {"\n": "\\n", "\r": "\\r", "\t": "\\t"})
# The record's keys that carry the escaped context and message to the format. They are not loguru's
# fields, so a JSON sink (which serialises only loguru's) and {extra} never show them.
_CONTEXT_FIELD = "_one_line_context"
_MESSAGE_FIELD = "_one_line_message"


def _one_line(text: str) -> str:
    return text.translate(_ESCAPES)


def human_format(record: Record) -> str:
    """loguru format for people: time, level, source, the bound context, message, exception.

    Bound extras appear as ``key=value`` after the source, ``actor`` and ``loop_id`` first (but an
    event's ``metadata``, which its message shows). The message and the values are on one line:
    a newline, a carriage return, a tab or any other control character in them is shown escaped
    (``\\n``, ``\\r``, ``\\t``, ``\\x1b``...). A logged exception's traceback follows on its own
    lines, as Python prints it.
    They reach the line as values of the record, never pasted into the template, so a brace or a
    colour tag in them cannot break the formatting.
    """
    extra = record["extra"]
    keys = [k for k in _LEADING_EXTRAS if k in extra]
    keys += sorted(k for k in extra if k not in _LEADING_EXTRAS and k not in _MESSAGE_EXTRAS and k.isidentifier())
    context = "".join(f" {key}={_one_line(str(extra[key]))}" for key in keys)
    # loguru formats the template with a copy of this record, made after this call: the escaped
    # texts travel in it (the documented way is record["extra"], which a JSON sink would print).
    fields = cast(dict[str, Any], record)
    fields[_CONTEXT_FIELD] = f" |{context}" if context else ""
    fields[_MESSAGE_FIELD] = _one_line(record["message"])
    return (
        "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
        f"<cyan>{{name}}:{{line}}</cyan>{{{_CONTEXT_FIELD}}} | <level>{{{_MESSAGE_FIELD}}}</level>\n{{exception}}"
    )


def configure_logging(level: str | int = "INFO", json: bool = False, sink: TextIO | Any | None = None) -> int:
    """Replace every loguru sink with one writing to ``sink`` at ``level`` and up; returns its id.

    ``sink`` is anything loguru accepts (a stream, a path, a callable); None means the current
    ``sys.stderr``, looked up at the call so that a replaced stderr is honoured.

    ``json=False`` writes `human_format` lines (coloured only when ``sink`` is a terminal);
    ``json=True`` writes one JSON object per line (loguru's ``serialize``), with bound extras
    under ``record.extra``. An unknown level raises ``ValueError`` naming it, and then the
    existing sinks are left as they were.
    """
    if isinstance(level, bool) or not isinstance(level, (str, int)):
        raise TypeError(f"log_level must be a level name or number, got {level!r} ({type(level).__name__})")
    if isinstance(level, str):
        level = level.strip().upper()
        try:
            logger.level(level)
        except ValueError:
            raise ValueError(
                f"log_level must be one of TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL, got {level!r}"
            ) from None
    elif level < 0:
        raise ValueError(f"log_level must be >= 0, got {level!r}")
    if not isinstance(json, bool):
        raise TypeError(f"log_json must be true or false, got {json!r} ({type(json).__name__})")
    if sink is None:
        sink = sys.stderr
    logger.remove()
    if json:
        return logger.add(sink, level=level, serialize=True, backtrace=False, diagnose=False)
    # diagnose=False: variable values in tracebacks can hold secrets (URLs with tokens).
    return logger.add(sink, level=level, format=human_format, backtrace=False, diagnose=False)
