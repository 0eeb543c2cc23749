"""The control API of a fleet: every account's state, one account's status and journal, halt and
resume per account, the fleet-wide halt, and the dashboard's fleet view, from a driver connected to the Ray cluster.

`tradewarden fleet` serves it (see `serve_fleet`); the routes, the token, the limits on bodies
and slow clients and the dashboard's static files are the same as a single system's control API.
Every call into the fleet (a Ray call to the controller or an account) runs in the threadpool,
so the event loop never waits on Ray.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actors.fleet import (
    AccountNotTrading,
    AccountStatus,
    Fleet,
    FleetError,
    HaltNotDurable,
    HaltOutcome,
    HaltPending,
    NotQuarantined,
)
from actors.service.auth import BearerToken, RequireToken
from actors.service.control import (
    SEND_TIMEOUT,
    BadRequest,
    SendTimeout,
    answering,
    calling,
    event_limit,
    not_found_json,
    read_body,
    resumed,
)
from actors.service.cross_site import RefuseCrossSite
from actors.service.dashboard import PUBLIC_PATHS, dashboard_routes
from actors.service.server import ControlServer, bind
from actors.service.stop_signals import StopSignals
from runtime.metrics import MetricsSink, NullMetrics
from runtime.risk.monitor import ResumeRefused
from runtime.settings import Settings

__all__ = ["account_json", "fleet_app", "halt_json", "serve_fleet"]

_log = logger.bind(component="fleet-control")


def account_json(status: AccountStatus) -> dict[str, Any]:
    """One account as the fleet API shows it: every field of `AccountStatus`, plus its drawdown
    from the peak (a fraction; None without both figures)."""
    drawdown = None
    if status.equity is not None and status.peak:
        drawdown = max(0.0, (status.peak - status.equity) / status.peak)
    return {
        "account_id": status.account_id,
        "health": status.health.value,
        "trading_state": status.trading_state.value if status.trading_state is not None else None,
        "equity": status.equity,
        "peak": status.peak,
        "drawdown": drawdown,
        "detail": status.detail,
        "node": status.node,
        "pid": status.pid,
        "epoch": status.epoch,
    }


def halt_json(outcome: HaltOutcome) -> dict[str, Any]:
    """One account in the fleet-wide halt's answer, with the fields of its own halt's answer:
    ``previous_state`` once halted, ``detail`` once pending, ``error`` when not saved, refused
    or unknown."""
    if outcome.done == "halted":
        assert outcome.previous_state is not None  # (always set when halted)
        return {"account_id": outcome.account_id, "done": outcome.done, "previous_state": outcome.previous_state.value}
    if outcome.done == "halt_pending":
        return {"account_id": outcome.account_id, "done": outcome.done, "detail": outcome.detail}
    return {"account_id": outcome.account_id, "done": outcome.done, "error": outcome.error}


def _limit(request: Request) -> int:
    params = request.query_params
    unknown = sorted(set(params) - {"limit"})
    if unknown:
        raise BadRequest(400, f"unknown query parameter {unknown[0]!r}; known: limit")
    return event_limit(params.get("limit", "100"))


def fleet_app(
    fleet: Fleet, token: BearerToken | None, metrics: MetricsSink | None = None, status_timeout: float = 5.0,
    ask_timeout: float = 10.0, send_timeout: float = SEND_TIMEOUT,
) -> Any:
    """The fleet's control API as an ASGI app, every route but ``/health`` and the dashboard's
    static files behind ``token``, and none open to a page on another site, as a single
    system's (`control_app`):

    - ``GET /api/fleet``: ``{"namespace", "accounts": [...], "counters"}``, every account asked
      at once and gathered within ``status_timeout`` (one that does not answer is listed as
      ``unreachable``);
    - ``GET /api/fleet/{account}``: one account; ``GET /api/fleet/{account}/events?limit=``: its
      journal, the latest ``limit`` (100, at most 1000) oldest first;
    - ``POST /api/fleet/halt`` ``{"reason", "by"}``: the kill switch for every account at once
      (see `Fleet.halt_all`), each account's answer listed as its own halt's; 200 when every
      halt holds, else 503 naming the accounts whose halt does not;
    - ``POST /api/fleet/{account}/halt`` ``{"reason", "by"}`` and ``.../resume``
      ``{"rebaseline", "by"}``: as the single system's halt and resume. A halt of an account
      still starting is saved in its state store (202, ``"done": "halt_pending"``: it starts
      HALTED, whichever worker starts it), or 503 (``"done": "not_saved"``) when it could not
      be saved (only the starting worker holds it); one of a quarantined account answers its
      state before, HALTED; 409 when the account is fenced or stopped, or the resume is refused
      (past a hard limit, or the account is not trading: starting, quarantined, fenced or
      stopped).

    - ``POST /api/fleet/{account}/unquarantine`` ``{"by"}``: lifts a quarantine (see
      `Fleet.unquarantine`): 202 once a halt that keeps it HALTED as it starts again is saved
      and its restart asked; 409 when it is not quarantined, or another lift of it is under way
      (two people pressing it at once: one restart, one halt); 503 when that halt could not be
      saved (the quarantine stays). A ``by`` left out, on every route, is ``fleet control API``.

    An account not in the fleet gets 404 naming it; a bad body 400 or 413 naming the field and
    the value, and so does a value the account itself refuses; an account that does not answer
    within ``ask_timeout``, or that Ray cannot reach (restarting, or gone until the controller
    re-creates it), 503, and a halt, resume or unquarantine names it: ``{"account_id", "done":
    "unknown", "error"}`` (the call may still land).
    """
    metrics = metrics or NullMetrics()

    async def on_fleet(call: Callable[[], Any]) -> Any:
        # A validation error raised inside an account comes back through Ray as itself (see
        # `Fleet`): 400 with its message, as for a single system.
        return await calling(call, (FleetError,), "")

    async def on_account(account_id: str, call: Callable[[], Any]) -> Any:
        # Ray could not complete a call on the account (its worker restarting, or gone until the
        # controller re-creates it): 503 naming the account, as its other answers do; what the
        # call did is unknown (a halt may still land).
        try:
            return await calling(call, (), "")
        except FleetError as exc:
            raise BadRequest(503, str(exc), account_id=account_id, done="unknown") from None

    async def known(request: Request) -> str:
        account_id = request.path_params["account"]
        ids = await on_fleet(fleet.account_ids)
        if account_id not in ids:
            raise BadRequest(404, f"account {account_id!r} is not in the fleet (namespace {fleet.namespace!r}); "
                                  f"its accounts: {', '.join(ids) or 'none'}")
        return str(account_id)

    async def health(request: Request) -> Response:
        try:
            ids = await run_in_threadpool(fleet.account_ids)
        except FleetError as exc:
            return JSONResponse({"status": "unhealthy", "problems": [str(exc)]}, status_code=503)
        return JSONResponse({"status": "ok", "problems": [], "accounts": len(ids)})

    async def list_accounts(request: Request) -> Response:
        statuses = await on_fleet(lambda: fleet.accounts(timeout=status_timeout))
        counters = await on_fleet(fleet.counters)
        return JSONResponse({"namespace": fleet.namespace, "accounts": [account_json(s) for s in statuses],
                             "counters": counters})

    async def one_account(request: Request) -> Response:
        account_id = await known(request)
        return JSONResponse(account_json(await on_fleet(lambda: fleet.status(account_id, timeout=status_timeout))))

    async def events(request: Request) -> Response:
        limit = _limit(request)
        account_id = await known(request)
        journal = await on_fleet(lambda: fleet.journal(account_id, limit=limit, timeout=ask_timeout))
        return JSONResponse({"account_id": account_id, "events": [json.loads(event.to_json()) for event in journal]})

    async def halt(request: Request) -> Response:
        body = await read_body(request, {"reason": str, "by": str}, required={"reason"})
        account_id = await known(request)
        by = body.get("by", "fleet control API")
        try:
            previous = await on_account(account_id, lambda: fleet.halt(account_id, by, body["reason"], timeout=ask_timeout))
        except AccountNotTrading as exc:
            return JSONResponse({"account_id": account_id, "done": "refused", "error": str(exc)}, status_code=409)
        except HaltNotDurable as exc:
            _log.error("account {} halt through the fleet control API by {} not saved: {}", account_id, by, exc)
            return JSONResponse({"account_id": account_id, "done": "not_saved", "error": str(exc)}, status_code=503)
        if isinstance(previous, HaltPending):
            _log.warning("account {} halt saved through the fleet control API by {}: {}", account_id, by, body["reason"])
            return JSONResponse({"account_id": account_id, "done": "halt_pending", "by": by, "reason": body["reason"],
                                 "detail": previous.detail}, status_code=202)
        _log.warning("account {} halted through the fleet control API by {}: {}", account_id, by, body["reason"])
        return JSONResponse({"account_id": account_id, "done": "halted", "previous_state": previous.value, "by": by,
                             "reason": body["reason"]})

    async def halt_all(request: Request) -> Response:
        body = await read_body(request, {"reason": str, "by": str}, required={"reason"})
        by, reason = body.get("by", "fleet control API"), body["reason"]
        outcomes = await on_fleet(lambda: fleet.halt_all(by, reason, timeout=ask_timeout))
        answer: dict[str, Any] = {"done": "halted", "by": by, "reason": reason,
                                  "accounts": [halt_json(outcome) for outcome in outcomes]}
        unsaved = [outcome for outcome in outcomes if not outcome.saved]
        if not unsaved:
            _log.warning("every account ({}) halted through the fleet control API by {}: {}", len(outcomes), by, reason)
            return JSONResponse(answer)
        named = ", ".join(f"{outcome.account_id} ({outcome.done})" for outcome in unsaved)
        error = (f"the halt does not hold for {len(unsaved)} of {len(outcomes)} accounts: {named}; each one's error "
                 "says why: halt them again")
        _log.error("fleet halt through the fleet control API by {} ({}): {}", by, reason, error)
        return JSONResponse({**answer, "done": "not_saved", "error": error}, status_code=503)

    async def resume(request: Request) -> Response:
        body = await read_body(request, {"rebaseline": bool, "by": str}, required=set())
        account_id = await known(request)
        by, rebaseline = body.get("by", "fleet control API"), body.get("rebaseline", False)
        arrived = datetime.now(UTC)  # a halt latched after this, its sender had not seen
        try:
            previous = await on_account(account_id, lambda: fleet.resume(account_id, by, rebaseline=rebaseline,
                                                                       timeout=ask_timeout, sent_at=arrived))
        except ResumeRefused as exc:
            return JSONResponse({"account_id": account_id, "done": "refused", "error": str(exc),
                                 "rebaseline_helps": exc.rebaseline_helps}, status_code=409)
        except AccountNotTrading as exc:
            return JSONResponse({"account_id": account_id, "done": "refused", "error": str(exc)}, status_code=409)
        done, message = resumed(previous, rebaseline)
        _log.warning("account {}: resume through the fleet control API by {}: {}", account_id, by, message)
        return JSONResponse({"account_id": account_id, "done": done, "previous_state": previous.value, "by": by,
                             "rebaseline": rebaseline, "message": message})

    async def unquarantine(request: Request) -> Response:
        body = await read_body(request, {"by": str}, required=set())
        account_id = await known(request)
        by = body.get("by", "fleet control API")
        try:
            detail = await on_account(account_id, lambda: fleet.unquarantine(account_id, by, timeout=ask_timeout))
        except NotQuarantined as exc:
            return JSONResponse({"account_id": account_id, "done": "refused", "error": str(exc)}, status_code=409)
        except HaltNotDurable as exc:
            _log.error("account {} quarantine not lifted through the fleet control API by {}: {}", account_id, by, exc)
            return JSONResponse({"account_id": account_id, "done": "not_saved", "error": str(exc)}, status_code=503)
        _log.warning("account {} quarantine lifted through the fleet control API by {}: {}", account_id, by, detail)
        return JSONResponse({"account_id": account_id, "done": "restarting", "by": by, "detail": detail},
                            status_code=202)

    routes = [
        Route("/health", answering(health), methods=["GET"]),
        Route("/api/fleet", answering(list_accounts), methods=["GET"]),
        Route("/api/fleet/halt", answering(halt_all), methods=["POST"]),
        Route("/api/fleet/{account}", answering(one_account), methods=["GET"]),
        Route("/api/fleet/{account}/events", answering(events), methods=["GET"]),
        Route("/api/fleet/{account}/halt", answering(halt), methods=["POST"]),
        Route("/api/fleet/{account}/resume", answering(resume), methods=["POST"]),
        Route("/api/fleet/{account}/unquarantine", answering(unquarantine), methods=["POST"]),
        *dashboard_routes(),
    ]
    app = RequireToken(Starlette(routes=routes, exception_handlers={404: not_found_json, 405: not_found_json}), token,
                       metrics, exempt=PUBLIC_PATHS | {"/health"})
    return SendTimeout(RefuseCrossSite(app, metrics), send_timeout)


def serve_fleet(settings: Settings, address: str, namespace: str) -> int:
    """`tradewarden fleet`: join the cluster at ``address``, serve the fleet in ``namespace`` on
    ``control_host:control_port`` (with ``control_token``) until SIGTERM or SIGINT, then release
    the fleet (its accounts keep trading). Exit 0 after a requested stop, 2 when the address
    cannot be served or the cluster joined."""
    token = BearerToken(settings.control_token) if settings.control_token else None
    try:
        sock = bind(settings.control_host, settings.control_port, token=settings.control_token)
    except RuntimeError as exc:
        print(f"tradewarden fleet: {exc}", file=sys.stderr)
        return 2
    try:
        fleet = Fleet.connect(address, namespace=namespace)
    except Exception as exc:  # Ray's own errors: no cluster there, a refused token
        sock.close()
        print(f"tradewarden fleet: cannot join the Ray cluster at {address!r}: {exc}", file=sys.stderr)
        return 2
    server = None
    with StopSignals() as signals:
        try:
            server = ControlServer(fleet_app(fleet, token), sock).start()
            host, port = server.address
            print(f"fleet {namespace!r} on http://{host}:{port}/ (Ctrl-C stops serving; the accounts keep trading)",
                  flush=True)
            _log.info("{} received: letting go of the fleet", signals.wait(None))
        finally:
            if server is not None:
                server.stop()
            else:
                sock.close()
            fleet.release()
    return 0
