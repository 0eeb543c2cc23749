"""Slow and hostile clients of the control API never delay the guard, and are cut off.

While many connections sit idle, trickle their headers (slowloris), pipeline requests they never
read, send oversized headers or bodies, and hold event streams they never read, a breach is
liquidated: the journal shows GUARD_TRIGGERED and every POSITION_CLOSED, and another client still
gets its answers. Then the server has closed every hostile connection.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
from actor_helpers import WAIT, EventLog, LogLines, wait_until
from support.control_server import TOKEN, paper_with_positions, served

from actors import TradingSystem
from actors.messages import EquityReading
from actors.service.control import MAX_STREAMS
from actors.service.hub import EventHub
from actors.service.journal import JournalReader
from runtime import EventType, ListSignalSource, Settings
from runtime.adapters.sqlite import SqliteStore

AUTH = {"authorization": f"Bearer {TOKEN}"}
POSITIONS = 20


def connect(address: tuple[str, int], receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connecting, so the window offered stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(address)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes the connection (EOF or reset) within WAIT seconds."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection."""
    sock.settimeout(WAIT)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


@contextmanager
def hostile_system(tmp_path) -> Iterator[tuple]:
    db = str(tmp_path / "state.db")
    hub, events = EventHub(), EventLog()
    system = TradingSystem(Settings(loop_id="hostile", max_drawdown_percent=10.0, min_equity=1_000.0),
                           paper_with_positions(POSITIONS), ListSignalSource(), store=SqliteStore(db),
                           subscribers=[hub, events], loop_interval=None)
    with served(system, hub, db, request_timeout=1.0, send_timeout=1.0) as api:
        yield api, events, db


def test_a_liquidation_completes_and_the_api_answers_while_hostile_clients_hold_connections(tmp_path):
    with hostile_system(tmp_path) as (api, events, db), LogLines() as lines:
        address = api.address
        idle = [connect(address) for _ in range(100)]
        slowloris = [connect(address) for _ in range(50)]
        for sock in slowloris:
            sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        # Pipelines 400 requests for the 21 kB dashboard script (8 MB, past what the kernel's
        # buffers hold: 4 MB at most) and never reads an answer.
        non_reader = connect(address, receive_buffer=4096)
        non_reader.sendall(b"GET /static/dashboard.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 400)
        streams = [connect(address, receive_buffer=4096) for _ in range(5)]
        for sock in streams:
            sock.sendall(f"GET /api/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert wait_until(lambda: api.hub.listeners == 5)
        huge_body = connect(address)
        huge_body.sendall(f"POST /api/halt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n".encode() + b"{" * 65536)
        huge_headers = connect(address)
        # Headers that never end: buffered up to 16 KiB, then refused.
        huge_headers.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 65536)

        # The breach: 20% below the peak, past the 10% limit.
        api.system.guard.tell(EquityReading(80_000.0, datetime.now(UTC)))
        seen = events.wait_for(lambda seen: sum(e.event_type is EventType.POSITION_CLOSED for e in seen) == POSITIONS
                               and any(e.event_type is EventType.GUARD_TRIGGERED for e in seen))
        assert [e.metadata["guard"] for e in seen if e.event_type is EventType.GUARD_TRIGGERED] == ["max_drawdown"]
        journal = JournalReader(db)
        # The guard journals its closes itself, the emitter the rest: each in its own time.
        def journaled(kind: str) -> int:
            return len(journal.events(loop_id="hostile", event_type=kind, limit=100))

        assert wait_until(lambda: (journaled("position_closed"), journaled("guard_triggered")) == (POSITIONS, 1))

        # Another client is answered, and sees the halt.
        with httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
            assert wait_until(lambda: client.get("/api/status").json()["trading_state"] == "halted")
            status = client.get("/api/status").json()
            assert (status["positions"], status["stale"]) == ([], {})
            assert client.get("/health").json() == {"status": "ok", "problems": []}

        # Oversized requests were refused with a reason.
        assert answer(huge_body).split(b"\r\n")[0] == b"HTTP/1.1 413 Request Entity Too Large"
        oversized = answer(huge_headers)
        assert oversized.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request"
        assert oversized.endswith(b"Invalid HTTP request received.")
        # Every hostile connection is closed by the server: the idle and slowloris ones after the
        # request timeout, the non-reader after the send timeout.
        assert all(closed_by_server(sock) for sock in idle + slowloris)
        assert wait_until(lambda: any("read nothing for 1s; its response was dropped" in line for line in lines.snapshot()))
        assert closed_by_server(non_reader)
        assert any(line.startswith("WARNING control: closed a connection from 127.0.0.1:")
                   and line.endswith("whose request did not arrive within 1s") for line in lines.snapshot())
        for sock in idle + slowloris + streams + [non_reader, huge_body, huge_headers]:
            sock.close()
        assert wait_until(lambda: api.hub.listeners == 0)


def test_one_event_stream_past_the_limit_is_refused(tmp_path):
    with hostile_system(tmp_path) as (api, _, _db):
        streams = [connect(api.address) for _ in range(MAX_STREAMS)]
        for sock in streams:
            sock.sendall(f"GET /api/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert wait_until(lambda: api.hub.listeners == MAX_STREAMS)
        with httpx.Client(base_url=api.url, headers=AUTH, timeout=WAIT) as client:
            refused = client.get("/api/events/stream")
            assert (refused.status_code, refused.json()) == (
                503, {"error": f"{MAX_STREAMS} event streams are open already; close one, or poll /api/events"},
            )
            assert client.get("/api/status").status_code == 200
        for sock in streams:
            sock.close()
        assert wait_until(lambda: api.hub.listeners == 0)


@pytest.mark.parametrize("body", [b"", b'{"reason": "x"'])
def test_a_body_that_never_ends_is_cut_off_at_the_request_timeout(tmp_path, body):
    with hostile_system(tmp_path) as (api, _, _db):
        sock = connect(api.address)
        sock.sendall(f"POST /api/halt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode() + body)
        assert closed_by_server(sock)
        sock.close()
        assert api.system.guard_status().state.trading_state.value == "active"
