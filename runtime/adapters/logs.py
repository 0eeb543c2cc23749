"""Log set-up for examples and the command line; library code only logs, never adds sinks."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["configure_logging", "human_format"]

# Shown first and in this order when bound: they say which part of the runtime is speaking.
_LEADING_EXTRAS = ("actor", "loop_id")
# Bound for JSON logs, and not shown again in a line for people: its message already says them.
_MESSAGE_EXTRAS = ("metadata",)


def human_format(record: Record) -> str:
    """loguru format for people: time, level, source, the bound context, message, exception.

    Bound extras appear as ``key=value`` after the source, ``actor`` and ``loop_id`` first (but an
    event's ``metadata``, which its message shows).
    Values are referenced through the record (``{extra[...]}``), never pasted into the template,
    so a brace in a value cannot break the formatting.
    """
    extra = record["extra"]
    keys = [k for k in _LEADING_EXTRAS if k in extra]
    keys += sorted(k for k in extra if k not in _LEADING_EXTRAS and k not in _MESSAGE_EXTRAS and k.isidentifier())
    context = "".join(f" {key}={{extra[{key}]}}" for key in keys)
    return (
        "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
        "<cyan>{name}:{line}</cyan>" + (f" |{context}" if context else "") + " | <level>{message}</level>\n{exception}"
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
