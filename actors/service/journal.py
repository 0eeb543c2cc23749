"""Reading the event journal of a state file read-only, beside the process that writes it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from runtime.adapters.sqlite import APPLICATION_ID
from runtime.errors import TradewardenError
from runtime.events import Event, EventType
from runtime.validation import member

__all__ = ["JournalError", "JournalReader", "parse_since"]


class JournalError(TradewardenError, ValueError):
    """The journal cannot be read, or a query of it is malformed; the message names which."""


def parse_since(field: str, text: str) -> datetime:
    """An ISO 8601 time (a time without a zone is UTC) as an aware UTC datetime; `JournalError`
    naming ``field`` and the text otherwise."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise JournalError(f"{field} must be an ISO 8601 time such as 2024-01-01T12:00:00Z, got {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


class JournalReader:
    """The events of a tradewarden state file, opened read-only (SQLite ``mode=ro``) for each
    query: it never writes, never holds a lock between queries, and in WAL mode never blocks
    the writer. Each event comes with its sequence number, for following the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise JournalError(f"{str(self.path)!r} is a folder, not a state file")
        if not self.path.is_file():
            raise JournalError(f"state file {str(self.path)!r} does not exist")
        with self._connect() as conn:
            try:
                application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise JournalError(f"state file {str(self.path)!r} is not an SQLite database: {exc}") from None
        if application_id != APPLICATION_ID:
            raise JournalError(f"state file {str(self.path)!r} is not a tradewarden state file")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
                yield conn
        except sqlite3.OperationalError as exc:
            raise JournalError(f"state file {str(self.path)!r} cannot be read: {exc}") from None

    def events(
        self,
        *,
        loop_id: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        latest: bool = False,
    ) -> list[tuple[int, Event]]:
        """Events oldest first, filtered by loop, type (an `EventType` value), time (strictly
        after ``since``) and sequence (after ``after_seq``); at most ``limit``: the first ones,
        or with ``latest`` the last ones."""
        where: list[str] = ["seq > ?"]
        params: list[object] = [after_seq]
        if loop_id is not None:
            where.append("loop_id = ?")
            params.append(loop_id)
        if event_type is not None:
            where.append("json_extract(event, '$.event_type') = ?")
            params.append(member("type", EventType, event_type).value)
        if since is not None:
            # Timestamps are journaled as UTC isoformat, whose text order is time order (a
            # whole second sorts before its fractions: '+' < '.'), so the file filters them.
            where.append("json_extract(event, '$.timestamp') > ?")
            params.append(since.astimezone(UTC).isoformat())
        order = "DESC" if latest else "ASC"
        sql = f"SELECT seq, event FROM events WHERE {' AND '.join(where)} ORDER BY seq {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as conn:
            rows = conn.execute(sql, params).fetchall()
        if latest:
            rows.reverse()
        try:
            return [(seq, Event.from_json(text)) for seq, text in rows]
        except ValueError as exc:
            raise JournalError(f"state file {str(self.path)!r}: an event is unreadable: {exc}") from None

    def __repr__(self) -> str:
        return f"JournalReader({str(self.path)!r})"
