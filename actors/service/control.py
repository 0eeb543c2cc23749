"""The control API as a Starlette app: status, events, halt, resume, health, metrics and the dashboard.

Every call into the trading system (an ask to the guard, a journal query) runs in the
threadpool, so the event loop, and with it `/health`, never waits on an actor.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pykka
from loguru import logger
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from actors.messages import HaltNotSaved
from actors.pressed_halts import HaltNotConfirmed
from actors.service.auth import BearerToken, RequireToken
from actors.service.cross_site import RefuseCrossSite
from actors.service.dashboard import PUBLIC_PATHS, dashboard_routes
from actors.service.hub import EventHub
from actors.service.journal import JournalError, JournalReader, parse_since
from actors.service.status import StatusReader, health_problems
from actors.supervision.address import ChildUnavailable
from actors.system import TradingSystem
from runtime.adapters.prometheus import CONTENT_TYPE_LATEST, PrometheusMetrics
from runtime.events import EventType
from runtime.metrics import MetricsSink
from runtime.risk.guards import TradingState
from runtime.risk.monitor import ResumeRefused
from runtime.validation import member

__all__ = [
    "MAX_BODY_BYTES", "MAX_EVENTS", "MAX_STREAMS", "SEND_TIMEOUT", "BadRequest", "SendTimeout", "answering", "calling",
    "control_app", "read_body", "refused_value", "resumed",
]

MAX_BODY_BYTES = 16 * 1024
MAX_EVENTS = 1_000
MAX_STREAMS = 16
"""Event streams open at once; one more gets 503 (each costs the emitter a hand-off per event)."""
SEND_TIMEOUT = 10.0
"""Seconds one piece of a response may wait for a client that does not read; then it is dropped."""
_KEEPALIVE_SECONDS = 15.0
_log = logger.bind(component="control")


class BadRequest(Exception):
    """A request refused with ``status`` and a message naming the field and the value; the
    routes answer it as ``{"error": message}``, after the ``fields`` given (what the endpoint's
    other answers carry, such as the account)."""

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields


def _error(status: int, message: str, **fields: Any) -> JSONResponse:
    return JSONResponse({**fields, "error": message}, status_code=status)


async def read_body(request: Request, fields: dict[str, type], required: set[str]) -> dict[str, Any]:
    """The request's JSON object, read up to `MAX_BODY_BYTES`, with only ``fields`` (each of its
    type; a string not blank) and every ``required`` one; else `BadRequest` (400, 413) naming it.

    The request must say its body is JSON (``Content-Type: application/json``, an empty body
    too), else `BadRequest` 415 naming the header's value: a browser sends any other type (a
    form, ``text/plain``) from any page without asking the server first, and every request that
    changes something reads its body here."""
    content_type = request.headers.get("content-type")
    if content_type is None or content_type.split(";", 1)[0].strip().lower() != "application/json":
        got = "none" if content_type is None else repr(content_type)
        raise BadRequest(415, f"the Content-Type header must be application/json, got {got}")
    # Read at most MAX_BODY_BYTES whatever Content-Length claims, so a huge body costs nothing.
    declared = request.headers.get("content-length")
    if declared is not None and _whole(declared) and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(413, f"the body is {declared} bytes; at most {MAX_BODY_BYTES} are accepted")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise BadRequest(413, f"the body is over {MAX_BODY_BYTES} bytes; at most {MAX_BODY_BYTES} are accepted")
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw, object_pairs_hook=_once_each)
        except _Repeated as exc:
            raise BadRequest(400, str(exc)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"the body is not valid JSON: {exc}") from None
        except RecursionError:  # arrays or objects nested past the interpreter's recursion limit
            raise BadRequest(400, "the body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(400, f"the body must be a JSON object, got {_json_kind(data)}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadRequest(400, f"unknown field {unknown[0]!r}; known: {', '.join(sorted(fields))}")
    missing = sorted(required - set(data))
    if missing:
        raise BadRequest(400, f"field {missing[0]!r} is required")
    for name, value in data.items():
        kind = fields[name]
        if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
            expected = "a non-empty string" if kind is str else "true or false"
            raise BadRequest(400, f"field {name!r} must be {expected}, got {json.dumps(value)}")
    return data


class _Repeated(ValueError):
    """A JSON object that names a field twice."""


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A field given twice is ambiguous ({"reason": "a", "reason": "b"}): json would keep the last
    # without a word, and a client that meant the first would never know.
    data: dict[str, Any] = {}
    for name, value in pairs:
        if name in data:
            raise _Repeated(f"the body gives field {name!r} twice")
        data[name] = value
    return data


def not_found_json(request: Request, exc: Exception) -> Response:
    """A 404 or 405 as the API's other errors are, ``{"error": ...}`` naming the method and path
    (and the methods allowed), not Starlette's plain text."""
    status = getattr(exc, "status_code", 404)
    target = f"{request.method} {request.url.path}"
    if status == 405:
        headers = getattr(exc, "headers", None) or {}
        allowed = sorted(method.strip() for method in headers.get("Allow", "").split(",") if method.strip())
        return _error(405, f"method not allowed: {target} (allowed: {', '.join(allowed) or 'none'})")
    return _error(status, f"no such endpoint: {target}")


def _json_kind(value: Any) -> str:
    # What a parsed JSON value is, in JSON's words: a client sent JSON, not Python's NoneType.
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null, true, false
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "a number"


def answering(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """The route for ``endpoint``: a `BadRequest` it raises is answered as ``{"error": ...}``
    with its status; any other exception is a defect of ours, answered 500 ``{"error":
    "internal error: ...; its traceback is in the log"}`` with its traceback logged."""

    async def run(request: Request) -> Response:
        try:
            response: Response = await endpoint(request)
            return response
        except BadRequest as exc:
            return _error(exc.status, str(exc), **exc.fields)
        except Exception as exc:
            _log.opt(exception=exc).error("control: {} {} failed: {!r}", request.method, request.url.path, exc)
            return _error(500, f"internal error: {exc!r}; its traceback is in the log")

    return run


_REFUSAL = re.compile(r"\S+ must be .+, got .+", re.DOTALL)


def refused_value(exc: BaseException) -> bool:
    """True for a `TypeError` or `ValueError` that the validation boundary raised on purpose.

    `runtime.validation` and the message validators built on it raise plain `TypeError` and
    `ValueError`, and word every refusal ``<field> must be <expected>, got <value>``; that form,
    which survives the trip back from a fleet's account through Ray, is what tells one from a
    defect's (``unsupported operand type(s) for -``, ``heartbeat metadata is missing 'beat'``)."""
    return isinstance(exc, (TypeError, ValueError)) and _REFUSAL.fullmatch(str(exc)) is not None


async def calling(call: Callable[[], Any], unavailable: tuple[type[Exception], ...], prefix: str) -> Any:
    """What ``call`` returns, run in the threadpool so that the event loop never waits on it.

    A value the system refused at its validation boundary (see `refused_value`), whichever
    process raised it: `BadRequest` 400 with its message, which names the field and the value.
    One of ``unavailable``: `BadRequest` 503, ``prefix`` then its message. Anything else is
    raised as itself: the caller's to answer (a `ResumeRefused`), else a defect that
    `answering` answers 500 with its traceback logged."""
    try:
        return await run_in_threadpool(call)
    except (TypeError, ValueError) as exc:
        if not refused_value(exc):
            raise
        _log.warning("control: refused, {}", exc)
        raise BadRequest(400, str(exc)) from None
    except unavailable as exc:
        raise BadRequest(503, f"{prefix}{exc}") from None


def resumed(previous: TradingState, rebaseline: bool) -> tuple[str, str]:
    """What a resume that was not refused did, from the state it found: ``(done, message)``.

    ``done`` is ``resumed`` when the account was HALTED or REDUCING; on an ACTIVE account
    nothing was lifted: ``already_active``, or ``rebaselined`` when the peak and the day's start
    were still set to today's equity (journaled as REBASELINED and alerted, like any rebaseline).
    """
    if previous is not TradingState.ACTIVE:
        how = " with a new baseline" if rebaseline else ""
        return "resumed", f"resumed{how} (was {previous.value})"
    if rebaseline:
        return "rebaselined", "already active: nothing to resume; the peak and the day's start were set to today's equity"
    return "already_active", "already active: nothing to resume"


def _query(request: Request) -> dict[str, Any]:
    params = request.query_params
    _only(params, {"limit", "since", "type"})
    query: dict[str, Any] = {}
    if "since" in params:
        try:
            query["since"] = parse_since("since", params["since"])
        except ValueError as exc:
            raise BadRequest(400, str(exc)) from None
    if (event_type := _event_type(params)) is not None:
        query["event_type"] = event_type
    query["limit"] = event_limit(params.get("limit", "100"))
    return query


def _stream_query(request: Request) -> str | None:
    # The stream replays nothing (the journal and the live events reach this server by separate
    # workers, in no common order), so a since or a limit is refused, never ignored: a client
    # reconnecting with since= must not believe it has caught up.
    params = request.query_params
    for name in ("since", "limit"):
        if name in params:
            raise BadRequest(400, f"{name} is not taken by the event stream, which sends only the events that come "
                                  f"after it connects: read earlier ones from the journal with GET /api/events?{name}=...")
    _only(params, {"type"})
    return _event_type(params)


def _only(params: QueryParams, known: set[str]) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadRequest(400, f"unknown query parameter {unknown[0]!r}; known: {', '.join(sorted(known))}")


def _event_type(params: QueryParams) -> str | None:
    # The ``type`` query parameter as an EventType value, or None without one.
    if "type" not in params:
        return None
    try:
        return member("type", EventType, params["type"]).value
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None


def event_limit(text: str) -> int:
    """The ``limit`` query parameter: a whole number of events in 1..`MAX_EVENTS`, else 400."""
    if not _whole(text) or not 1 <= int(text) <= MAX_EVENTS:
        raise BadRequest(400, f"limit must be a whole number in 1..{MAX_EVENTS}, got {text!r}")
    return int(text)


def _whole(text: str) -> bool:
    # ASCII digits only: str.isdigit also takes "²", which int() refuses.
    return text.isascii() and text.isdigit()


class SendTimeout:
    """ASGI middleware: a response piece that waits over ``timeout`` seconds for its client is
    dropped with the connection (logged)."""

    # A client that stops reading fills the socket and makes every later send wait: bound that
    # wait, then give up on the response (uvicorn closes the connection), so such a client holds
    # neither a task, nor an event stream's queue, for longer than ``timeout``.

    def __init__(self, app: Any, timeout: float) -> None:
        self._app = app
        self._timeout = timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        timeout = self._timeout

        async def bounded(message: Any) -> None:
            try:
                await asyncio.wait_for(send(message), timeout)
            except TimeoutError:
                raise _ClientStalled(scope.get("client"), timeout) from None

        try:
            await self._app(scope, receive, bounded)
        except* _ClientStalled as stalled:
            _log.warning("control: {}", stalled.exceptions[0])


class _ClientStalled(Exception):
    def __init__(self, client: Any, timeout: float) -> None:
        who = f"{client[0]}:{client[1]}" if client else "a client"
        super().__init__(f"{who} read nothing for {timeout:g}s; its response was dropped")


def control_app(
    system: TradingSystem,
    hub: EventHub,
    journal: JournalReader,
    prometheus: PrometheusMetrics,
    metrics: MetricsSink,
    token: BearerToken | None,
    ask_timeout: float = 5.0,
    status_timeout: float = 1.0,
    send_timeout: float = SEND_TIMEOUT,
) -> Any:
    """The control API of ``system`` as an ASGI app, every route but ``/health`` and the
    dashboard's static files behind ``token``, and none open to a page on another site (see
    `RefuseCrossSite`; a POST's body must be JSON, see `read_body`).

    Answers are JSON (``/metrics`` is the Prometheus text format); a bad request gets a 4xx with
    ``{"error": ...}`` naming the field and the value, and changes nothing; an actor that does
    not answer within ``ask_timeout`` gives 503. ``/api/status`` answers within about
    ``status_timeout`` seconds however busy the guard is: what has not answered by then is its
    last answer, named in ``stale`` (see `StatusReader`). A client that reads nothing of its
    answer for ``send_timeout`` seconds is dropped, and at most `MAX_STREAMS` event streams are
    open at once.
    """
    reader = StatusReader(system, hub)

    async def on_system(call: Callable[[], Any]) -> Any:
        return await calling(call, (pykka.Timeout, ChildUnavailable, pykka.ActorDeadError), "the trading system did not answer: ")

    async def health(request: Request) -> Response:
        problems = await run_in_threadpool(health_problems, system, hub)
        if problems:
            return JSONResponse({"status": "unhealthy", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ok", "problems": []})

    async def get_status(request: Request) -> Response:
        return JSONResponse(await on_system(lambda: reader.status(status_timeout)))

    async def get_events(request: Request) -> Response:
        query = _query(request)
        try:
            rows = await run_in_threadpool(
                lambda: journal.events(loop_id=system.settings.loop_id, latest="since" not in query, **query)
            )
        except JournalError as exc:
            return _error(503, str(exc))
        return JSONResponse({"events": [{"seq": seq, **json.loads(event.to_json())} for seq, event in rows]})

    async def stream_events(request: Request) -> Response:
        wanted = _stream_query(request)
        if hub.listeners >= MAX_STREAMS:
            raise BadRequest(503, f"{MAX_STREAMS} event streams are open already; close one, or poll /api/events")
        listener = hub.listen()

        async def lines() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                while not listener.overflowed:
                    try:
                        event = await asyncio.wait_for(listener.queue.get(), _KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if wanted is None or event.event_type.value == wanted:
                        yield f"event: {event.event_type.value}\nid: {event.event_id}\ndata: {event.to_json()}\n\n"
                yield "event: overflow\ndata: {\"error\": \"this client fell too far behind; reconnect\"}\n\n"
            finally:
                hub.remove(listener)

        return StreamingResponse(lines(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    async def halt(request: Request) -> Response:
        body = await read_body(request, {"reason": str, "by": str}, required={"reason"})
        by = body.get("by", "control API")

        def press() -> Any:
            try:
                return system.halt(by, body["reason"], timeout=ask_timeout)
            except HaltNotConfirmed as exc:  # in force all the same: not a 503 that would say it was not taken
                return exc

        try:
            previous = await on_system(press)
        except HaltNotSaved as exc:
            _log.error("halt through the control API by {} not saved: {}", by, exc)
            return JSONResponse({"done": "not_saved", "previous_state": exc.previous.value, "by": by,
                                 "reason": body["reason"], "error": str(exc)}, status_code=503)
        if isinstance(previous, HaltNotConfirmed):
            _log.warning("halt through the control API by {} recorded, not yet confirmed: {}", by, body["reason"])
            return JSONResponse({"done": "recorded", "by": by, "reason": body["reason"], "error": str(previous)},
                                status_code=202)
        _log.warning("halted through the control API by {}: {}", by, body["reason"])
        return JSONResponse({"done": "halted", "previous_state": previous.value, "by": by, "reason": body["reason"]})

    async def resume(request: Request) -> Response:
        # Sent when it arrived: a halt latched while it waited (a busy guard) was not seen by its sender.
        arrived = system.clock.now()
        body = await read_body(request, {"rebaseline": bool, "by": str}, required=set())
        by, rebaseline = body.get("by", "control API"), body.get("rebaseline", False)
        try:
            previous = await on_system(
                lambda: system.resume(by, rebaseline=rebaseline, timeout=ask_timeout, sent_at=arrived)
            )
        except ResumeRefused as exc:
            return JSONResponse({"done": "refused", "error": str(exc), "rebaseline_helps": exc.rebaseline_helps},
                                status_code=409)
        done, message = resumed(previous, rebaseline)
        _log.warning("resume through the control API by {}: {}", by, message)
        return JSONResponse({"done": done, "previous_state": previous.value, "by": by, "rebaseline": rebaseline,
                             "message": message})

    async def scrape(request: Request) -> Response:
        return Response(prometheus.exposition(), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/health", answering(health), methods=["GET"]),
        Route("/api/status", answering(get_status), methods=["GET"]),
        Route("/api/events", answering(get_events), methods=["GET"]),
        Route("/api/events/stream", answering(stream_events), methods=["GET"]),
        Route("/api/halt", answering(halt), methods=["POST"]),
        Route("/api/resume", answering(resume), methods=["POST"]),
        Route("/metrics", answering(scrape), methods=["GET"]),
        *dashboard_routes(),
    ]
    app = RequireToken(Starlette(routes=routes, exception_handlers={404: not_found_json, 405: not_found_json}), token,
                       metrics, exempt=PUBLIC_PATHS | {"/health"})
    return SendTimeout(RefuseCrossSite(app, metrics), send_timeout)
