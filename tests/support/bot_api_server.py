"""A real local HTTP server speaking the Telegram Bot API's sendMessage, getUpdates and getMe.

`BotApiServer.say` queues a message from a chat, which getUpdates hands out as Telegram does: long
polling up to the request's ``timeout``, from the request's ``offset`` on. Each sendMessage
request takes the next scripted `Reply` (then plain success once the script runs out):
success, a 5xx, a 429 with ``parameters.retry_after``, any other error, a hang that holds the
connection open until `BotApiServer.release` (or the server closes), or a lost answer: the message
is carried out but the connection closes without an answer. `BotApiServer.shown` is what a chat
shows. getMe answers with `BotApiServer.username`, or fails (500) while it is None. Every request
is recorded with its arrival time, so tests assert what arrived and when.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["TEST_TOKEN", "Reply", "Received", "BotApiServer", "bot_api"]

# Shaped like a real token (bot id, colon, 35 characters) so scrubbing is tested on the real form.
TEST_TOKEN = "987654321:AAHtestTOKENsecret_abcdefghijklmnopq"

_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>\w+)$")


@dataclass(frozen=True)
class Reply:
    """How the server answers one request: ``kind`` is ok, error, too_many, hang or lost."""

    kind: str
    status: int = 200
    description: str = ""
    retry_after: float = 0

    @classmethod
    def ok(cls) -> Reply:
        """200 with ``{"ok": true, "result": <the message>}``."""
        return cls("ok")

    @classmethod
    def error(cls, status: int = 500, description: str = "Internal Server Error") -> Reply:
        """``status`` with ``{"ok": false, "error_code": status, "description": ...}``."""
        return cls("error", status, description)

    @classmethod
    def too_many(cls, retry_after: float) -> Reply:
        """429 with ``parameters.retry_after``, exactly as Telegram's flood control answers."""
        return cls("too_many", 429, f"Too Many Requests: retry after {retry_after:g}", retry_after)

    @classmethod
    def hang(cls) -> Reply:
        """Hold the connection, answering nothing, until released."""
        return cls("hang")

    @classmethod
    def lost(cls) -> Reply:
        """Carry the message out (the chat shows it), then close the connection without an answer,
        as when Telegram's answer is lost on its way back."""
        return cls("lost")


@dataclass(frozen=True)
class Received:
    """One request as it arrived: token and method from the path, the JSON body, the
    ``time.monotonic()`` of arrival, and the kind of reply it got."""

    token: str
    method: str
    payload: Any
    at: float
    reply: str

    @property
    def text(self) -> str | None:
        """The message text sent, if any."""
        return self.payload.get("text") if isinstance(self.payload, dict) else None


class BotApiServer:
    """The server on 127.0.0.1 at a free port; `url` is the base URL to give the client."""

    def __init__(self, token: str = TEST_TOKEN) -> None:
        self.token = token
        self._script: deque[Reply] = deque()
        self._received: list[Received] = []
        self._changed = threading.Condition()
        self._release = threading.Event()
        self._closed = threading.Event()
        self._message_ids = iter(range(1, 1_000_000))
        self._updates: list[dict[str, Any]] = []
        self.username: str | None = "tradewarden_test_bot"
        """The bot's username that getMe answers with; None makes getMe fail with a 500."""
        self.chats: set[str] | None = None
        """The chat ids getChat knows (any other is 400 "chat not found"); None knows every chat."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner._handle(self)

            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval keeps close() quick: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="bot-api-server", daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> BotApiServer:
        """Start serving on a background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Release hung requests and long polls, stop serving and close the socket."""
        self._release.set()
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BotApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._changed:
            self._script.extend(replies)

    def release(self) -> None:
        """Let every hung request (and any later hang) end without an answer."""
        self._release.set()

    def say(self, chat_id: int, text: str, date: int | None = None) -> None:
        """A user in ``chat_id`` sends ``text`` to the bot: the next getUpdates hands it out.
        Its ``date`` is now (unix seconds), or ``date`` for a message sent earlier."""
        with self._changed:
            update_id = 1000 + len(self._updates)
            self._updates.append({"update_id": update_id, "message": {
                "message_id": next(self._message_ids), "date": int(time.time()) if date is None else date,
                "chat": {"id": chat_id, "type": "private"}, "text": text}})
            self._changed.notify_all()

    def replies(self, chat_id: int | str) -> list[Received]:
        """The sendMessage requests to ``chat_id``, in arrival order."""
        return [r for r in self.requests if r.method == "sendMessage" and str(r.payload.get("chat_id")) == str(chat_id)]

    def wait_for_replies(self, chat_id: int | str, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` sendMessage requests to ``chat_id`` arrived; fail after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.replies(chat_id)) >= count, timeout):
                pytest.fail(f"expected {count} replies to {chat_id} within {timeout}s, got {self.replies(chat_id)!r}")
        return self.replies(chat_id)

    @property
    def requests(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._changed:
            return list(self._received)

    def shown(self, chat_id: int | str) -> list[str | None]:
        """The texts ``chat_id`` shows, in order: each sendMessage to it the server carried out
        (answered with success, or whose answer was lost)."""
        return [r.text for r in self.replies(chat_id) if r.reply in ("ok", "lost")]

    @property
    def delivered(self) -> list[Received]:
        """The sendMessage requests that got a success answer, in arrival order."""
        return [r for r in self.requests if r.method == "sendMessage" and r.reply == "ok"]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least ``count`` requests arrived; fail the test after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= count, timeout):
                pytest.fail(f"expected {count} requests within {timeout}s, got {len(self._received)}: {self._received!r}")
            return list(self._received)

    # -- the handler ----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        match = _PATH.match(handler.path)
        token, method = (match["token"], match["method"]) if match else ("", "")
        if method == "getUpdates" and token == self.token:
            self._get_updates(handler, payload if isinstance(payload, dict) else {}, arrived)
            return
        with self._changed:
            username = self.username
            if token != self.token:
                reply = Reply.error(401, "Unauthorized")
            elif method == "getMe":
                reply = Reply.ok() if username is not None else Reply.error()
            elif method == "getChat":
                chat = payload.get("chat_id") if isinstance(payload, dict) else None
                known = self.chats is None or str(chat) in self.chats
                reply = Reply.ok() if known else Reply.error(400, "Bad Request: chat not found")
            elif method != "sendMessage":
                reply = Reply.error(404, "Not Found: method not found")
            else:
                reply = self._script.popleft() if self._script else Reply.ok()
            self._received.append(Received(token, method, payload, arrived, reply.kind))
            self._changed.notify_all()
        if reply.kind == "hang":
            self._release.wait(30)  # bounded, so a forgotten release cannot wedge the test run
            handler.close_connection = True
            return
        if reply.kind == "lost":
            handler.close_connection = True  # the socket closes with nothing written to it
            return
        answer: dict[str, Any]
        if reply.kind == "ok" and method == "getChat":
            answer, status = {"ok": True, "result": {"id": payload["chat_id"], "type": "private"}}, 200
        elif reply.kind == "ok" and method == "getMe":
            answer = {"ok": True, "result": {"id": int(self.token.split(":")[0]), "is_bot": True,
                                             "first_name": "tradewarden test", "username": username}}
            status = 200
        elif reply.kind == "ok":
            text = payload.get("text") if isinstance(payload, dict) else None
            chat = payload.get("chat_id") if isinstance(payload, dict) else None
            answer = {
                "ok": True,
                "result": {
                    "message_id": next(self._message_ids),
                    "date": int(time.time()),
                    "chat": {"id": chat, "type": "private"},
                    "text": text,
                },
            }
            status = 200
        else:
            answer = {"ok": False, "error_code": reply.status, "description": reply.description}
            if reply.kind == "too_many":
                answer["parameters"] = {"retry_after": reply.retry_after}
            status = reply.status
        self._answer(handler, status, answer)

    def _get_updates(self, handler: BaseHTTPRequestHandler, payload: dict[str, Any], arrived: float) -> None:
        offset = payload.get("offset", 0)
        with self._changed:
            self._received.append(Received(self.token, "getUpdates", payload, arrived, "ok"))
            self._changed.notify_all()
            # Long polling, as Telegram: answer as soon as there is something, else at the timeout.
            self._changed.wait_for(
                lambda: self._closed.is_set() or any(u["update_id"] >= offset for u in self._updates),
                min(float(payload.get("timeout", 0)), 30.0),
            )
            result = [u for u in self._updates if u["update_id"] >= offset]
        self._answer(handler, 200, {"ok": True, "result": result})

    def _answer(self, handler: BaseHTTPRequestHandler, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (timed out) first


@pytest.fixture
def bot_api() -> Iterator[BotApiServer]:
    """A started `BotApiServer` expecting `TEST_TOKEN`, closed after the test."""
    server = BotApiServer().start()
    try:
        yield server
    finally:
        server.close()
