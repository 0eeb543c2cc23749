"""What `/api/status` and `/health` report, read from a running system through its addresses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

import pykka
from loguru import logger

from actors.messages import GuardStatus, Ping
from actors.service.hub import EventHub
from actors.supervision.address import ChildUnavailable
from actors.supervision.supervisor import ChildInfo
from actors.system import TradingSystem
from runtime.payloads import Heartbeat
from runtime.risk.guards import DailyLossGuard, Guard, GuardState, MaxDrawdownGuard, MinEquityGuard

__all__ = ["StatusReader", "limits", "status_text", "health_problems"]

_log = logger.bind(component="control")
_ACTORS = ("emitter", "alerts", "guard", "loop", "heartbeat")


def limits(guards: list[Guard], state: GuardState) -> list[dict[str, Any]]:
    """Each guard rule, the equity at which it fires and how far the account is from it.

    ``breach_at`` is the equity that fires the rule (from the peak, the start or the day's start
    it measures from); ``headroom`` is equity minus that, negative once past it; ``warn_at`` is
    the equity below which the rule warns (REDUCING), or None without a warning level.
    """
    equity = state.current_equity
    out = []
    for guard in guards:
        warn: float | None = getattr(guard, "warn_at", None)  # every rule has one; the Guard protocol does not say so
        if isinstance(guard, MaxDrawdownGuard):
            base = state.peak_equity if guard.trailing else state.entry_equity
            rule: dict[str, Any] = {"limit_percent": guard.limit_percent, "trailing": guard.trailing}
            breach_at = base * (1 - guard.limit_percent / 100)
            warn_at = None if warn is None else base * (1 - guard.limit_percent * warn / 100)
        elif isinstance(guard, MinEquityGuard):
            rule, breach_at = {"min_equity": guard.min_equity}, guard.min_equity
            warn_at = None if warn is None else guard.min_equity / warn
        elif isinstance(guard, DailyLossGuard):
            day_start = state.day_start_equity if state.day_start_equity is not None else equity
            rule = {"limit_percent": guard.limit_percent, "timezone": guard.timezone, "day_start_equity": day_start}
            breach_at = day_start * (1 - guard.limit_percent / 100)
            warn_at = None if warn is None else day_start * (1 - guard.limit_percent * warn / 100)
        else:
            continue
        out.append({"guard": guard.name, **rule, "breach_at": breach_at, "warn_at": warn_at,
                    "headroom": equity - breach_at})
    return out


def _positions(system: TradingSystem) -> list[dict[str, Any]]:
    # A read of the account, like the loop's own: only the guard sends orders to the broker.
    return [{"position_id": p.position_id, "symbol": p.symbol, "side": p.side.value, "volume": p.volume,
             "entry_price": p.entry_price, "unrealised_pnl": p.unrealised_pnl} for p in system.broker.open_positions()]


class _Part:
    # One part of a status read from the system, and its last answer with when it came.

    def __init__(self, name: str, who: str, read: Callable[[], Any]) -> None:
        self.name = name
        self.who = who  # what is late, in a stale part's reason
        self.read = read
        self.last: tuple[Any, float, datetime] | None = None


class _Reads:
    # Reads of the system that may be slow (an ask of a busy actor, a slow broker), run in order
    # on a daemon thread of their own (a broker call cannot be cancelled, and must not hold up
    # the interpreter's exit), each begun once the one before has answered or failed: a later
    # part shows the system as it was after the earlier part's answer. At most one run in flight.

    def __init__(self, *parts: _Part) -> None:
        self.parts = parts
        self._lock = threading.Lock()
        self._running: list[Future[Any]] = []
        self._started = 0.0

    def fetch(self) -> tuple[list[Future[Any]], float, list[bool]]:
        # The run in flight (or a new one): each part's future, when the run started, and which
        # parts had answered already when it was handed out (answers older than this request).
        with self._lock:
            if self._running and not self._running[-1].done():
                return self._running, self._started, [future.done() for future in self._running]
            self._running, self._started = [Future() for _ in self.parts], time.monotonic()
            threading.Thread(target=self._run, args=(self._running,), name=f"tradewarden-status-{self.parts[0].name}",
                             daemon=True).start()
            return self._running, self._started, [False] * len(self.parts)

    def _run(self, futures: list[Future[Any]]) -> None:
        for part, future in zip(self.parts, futures):
            try:
                value = part.read()
            except BaseException as exc:  # handed to the reader, which says why it is stale
                future.set_exception(exc)
                continue
            with self._lock:
                part.last = (value, time.monotonic(), datetime.now(UTC))
            future.set_result(value)


def _state_since(hub: EventHub) -> str | None:
    change = hub.last_state_change()
    return change.timestamp.isoformat() if change is not None else None


def _heartbeat(hub: EventHub) -> dict[str, Any] | None:
    last = hub.last_heartbeat()
    if last is None:
        return None
    event, age = last
    beat = Heartbeat.from_event(event)
    return {"at": event.timestamp.isoformat(), "age_seconds": round(age, 3), "beat": beat.beat,
            "positions_open": beat.positions_open, "account_equity": beat.account_equity}


class StatusReader:
    """What `/api/status` and the Telegram `/status` report, within a bound however busy the system is.

    Each read asks the guard, then lists the broker's positions once the guard has answered, and
    asks the supervisor meanwhile; it waits at most ``timeout`` seconds for them. The positions
    shown are never older than the guard's answer shown beside them, so a status never lists a
    position that the guard's answer says it has closed (a HALTED guard done liquidating is shown
    with the account flat). A part that has not answered by then (a guard deep in a liquidation
    or a long `EquityBatch`, a slow broker) is shown as its last answer and named in ``stale``
    with why, as of when, and its age: while the guard is late, so are the positions listed
    after it. Its read goes on in the background, one at a time, and the next status shows the
    answer once it comes (each background read waits at most ``background_timeout`` seconds for
    an actor). A read that has been running for ``timeout`` already is not waited for again:
    while the guard stays busy, status answers at once, from the last answer.
    """

    def __init__(self, system: TradingSystem, hub: EventHub, background_timeout: float = 60.0) -> None:
        self.system = system
        self.hub = hub
        self._reads = (
            _Reads(_Part("guard", "the guard", lambda: system.guard_status(timeout=background_timeout)),
                   _Part("positions", "the broker", lambda: _positions(system))),
            # The supervisor answers from its own thread, which a probe of a busy child may hold.
            _Reads(_Part("supervisor", "the supervisor", lambda: system.supervisor.children(timeout=background_timeout))),
        )

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """The trading state, its reason and since when, equity, peak, drawdown, each limit with
        its headroom and warning level, open positions (``positions``, listed after the guard's
        answer, and ``positions_open``, how many that list holds; None when the broker has never
        listed them: the loop's own count, from its last cycle, is in ``last_heartbeat``), the
        last heartbeat, restarts, every child's incarnation, and ``stale``: {part: {"reason",
        "as_of", "age_seconds"}} for each part (guard, positions, supervisor) shown from an
        earlier answer or not at all ({} when every part is fresh). Answers within about
        ``timeout`` seconds. Raises `pykka.Timeout` when the guard has not answered and never
        answered before."""
        runs = [reads.fetch() for reads in self._reads]
        # Each read is waited for until ``timeout`` after its run started: a run already that old
        # (the guard busy for longer) is not waited for again, so the answer comes at once.
        for futures, started, _ in runs:
            for future in futures:
                wait([future], max(0.0, started + timeout - time.monotonic()))
        stale: dict[str, dict[str, Any]] = {}
        values: dict[str, Any] = {}
        for reads, (futures, _, answered_before) in zip(self._reads, runs):
            for index, part in enumerate(reads.parts):
                late = _late(reads.parts, futures, answered_before, index, timeout)
                values[part.name] = _shown(part, late, futures[index], stale)
        guard: GuardStatus | None = values["guard"]
        if guard is None:
            raise pykka.Timeout(f"the guard did not answer within {timeout:g}s, and never answered before")
        return _report(self.system, self.hub, guard, values["positions"], values["supervisor"] or {}, stale)


def _late(parts: tuple[_Part, ...], futures: list[Future[Any]], answered_before: list[bool], index: int,
          timeout: float) -> str | None:
    # Why part ``index`` of a run is not shown from this request's answer, or None when it is.
    future = futures[index]
    pending = next((n for n, earlier in enumerate(futures) if not earlier.done()), None)
    if pending is not None and pending < index:
        return f"read after {parts[pending].who}'s answer, which did not come within {timeout:g}s"
    if pending == index:
        return f"{parts[index].who} did not answer within {timeout:g}s"
    error = future.exception()
    if error is not None:
        reason = f"{parts[index].who} could not be read: {error!r}"
        _log.warning("status: {}", reason)
        return reason
    if answered_before[index] and pending is not None:
        # An answer from a run still in flight, given before this request: read again only
        # once the part it waits for answers.
        return f"read again after {parts[pending].who}'s answer, which did not come within {timeout:g}s"
    return None


def _shown(part: _Part, late: str | None, future: Future[Any], stale: dict[str, dict[str, Any]]) -> Any:
    # The part's answer to this request, or its last one named in ``stale`` with ``late``.
    if late is None:
        return future.result()
    last = part.last
    if last is None:
        stale[part.name] = {"reason": late, "as_of": None, "age_seconds": None}
        return None
    value, at, wall = last
    stale[part.name] = {"reason": late, "as_of": wall.isoformat(), "age_seconds": round(time.monotonic() - at, 3)}
    return value


def _report(
    system: TradingSystem, hub: EventHub, guard: GuardStatus,
    positions: list[dict[str, Any]] | None, children_info: dict[str, ChildInfo], stale: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    state: GuardState = guard.state
    children = {
        name: {"incarnation": child.incarnation, "alive": child.alive, "restarts": child.restarts}
        for name, child in children_info.items()
    }
    return {
        "loop_id": system.settings.loop_id,
        "trading_state": state.trading_state.value,
        "reason": state.reason,
        "state_since": _state_since(hub),
        "equity": state.current_equity,
        "peak_equity": state.peak_equity,
        "start_equity": state.entry_equity,
        "drawdown": state.current_drawdown,
        "max_drawdown": state.max_drawdown,
        "last_check_time": state.last_check_time.isoformat() if state.last_check_time else None,
        "limits": limits(system.settings.guards(), state),
        # Counted from the list beside it, never from the loop's last cycle (up to an interval
        # old: it would still count a position a kill switch has just closed).
        "positions_open": len(positions) if positions is not None else None,
        "positions": positions,
        "liquidating": guard.liquidating,
        "block_counts": guard.block_counts,
        "bad_readings": guard.bad_readings,
        "last_heartbeat": _heartbeat(hub),
        "restarts": sum(child["restarts"] for child in children.values()),
        "gave_up": system.gave_up,
        "children": children,
        "stale": stale,
    }


def status_text(status: dict[str, Any]) -> str:
    """`status` as a few lines of text, for the command line and the Telegram `/status`."""
    lines = [
        f"loop {status['loop_id']}: {status['trading_state'].upper()}" + (f" ({status['reason']})" if status["reason"] else ""),
        f"  equity {status['equity']:,.2f}  peak {status['peak_equity']:,.2f}  drawdown {status['drawdown']:.2%}",
        f"  open positions {'unknown' if status['positions_open'] is None else status['positions_open']}"
        + ("  (liquidating)" if status["liquidating"] else ""),
    ]
    for limit in status["limits"]:
        lines.append(f"  {limit['guard']}: fires at equity {limit['breach_at']:,.2f}, headroom {limit['headroom']:,.2f}")
    beat = status["last_heartbeat"]
    lines.append(f"  last heartbeat: #{beat['beat']} {beat['age_seconds']:.1f}s ago" if beat else "  last heartbeat: none yet")
    children = ", ".join(f"{name} #{child['incarnation']}" for name, child in status["children"].items())
    lines.append(f"  actors: {children}; restarts {status['restarts']}" + ("; SUPERVISOR GAVE UP" if status["gave_up"] else ""))
    for part, why in status.get("stale", {}).items():
        since = f"shown as of {why['age_seconds']:.1f}s ago" if why["as_of"] else "not shown"
        lines.append(f"  stale: {part} ({why['reason']}; {since})")
    return "\n".join(lines)


def _answers(system: TradingSystem, name: str, timeout: float) -> str | None:
    try:
        system.address(name).ask(Ping(), timeout=timeout)
    except (pykka.Timeout, ChildUnavailable, pykka.ActorDeadError) as exc:
        return f"the {name} did not answer a ping within {timeout:g}s ({type(exc).__name__})"
    return None


def health_problems(system: TradingSystem, hub: EventHub, timeout: float = 2.0) -> list[str]:
    """Why the system is not healthy, or [] when it is: the supervisor has not given up, every
    actor answers a ping within ``timeout`` seconds (all asked at once, so one hung actor does not
    eat the others' time), and the last heartbeat is fresh: within two intervals plus the
    heartbeat's own wait (a process that has not beaten yet gets as long from its start)."""
    problems = []
    if system.gave_up:
        problems.append("the supervisor gave up (restart intensity exceeded); trading is halted")
    with ThreadPoolExecutor(len(_ACTORS), thread_name_prefix="tradewarden-health") as pool:
        answers = list(pool.map(lambda name: _answers(system, name, timeout), _ACTORS))
    problems += [answer for answer in answers if answer is not None]
    settings = system.settings
    allowed = 2 * settings.heartbeat_interval_seconds + settings.heartbeat_timeout
    last = hub.last_heartbeat()
    if last is None:
        waited = time.monotonic() - hub.started
        if waited > allowed:
            problems.append(f"no heartbeat in the {waited:.1f}s since start (allowed {allowed:g}s)")
    elif last[1] > allowed:
        problems.append(f"the last heartbeat was {last[1]:.1f}s ago (allowed {allowed:g}s)")
    return problems
