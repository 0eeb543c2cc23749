"""What `/api/status` and `/health` report, read from a running system through its addresses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
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
from runtime.replay.report import PRICE_DIGITS_UNKNOWN, format_price
from runtime.risk.guards import DailyLossGuard, Guard, GuardState, MaxDrawdownGuard, MinEquityGuard

__all__ = ["StatusReader", "limits", "status_text", "health_problems"]

_log = logger.bind(component="control")
_PINGED = ("emitter", "guard", "loop", "heartbeat")  # the actors that trade: see health_problems


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
    # The entry price is shown as a replay's summary shows it: an average of fills loses its
    # float noise (1.2000000000000002 is 1.2) and no digit a trader reads; the broker's own
    # value, which the guard and the limits use, is untouched.
    return [{"position_id": p.position_id, "symbol": p.symbol, "side": p.side.value, "volume": p.volume,
             "entry_price": float(format_price(p.entry_price, PRICE_DIGITS_UNKNOWN, p.volume)),
             "unrealised_pnl": p.unrealised_pnl} for p in system.broker.open_positions()]


@dataclass(frozen=True)
class _Answer:
    # One answer of a read, numbered (1, 2, ...) among its source's answers, with when it came;
    # ``after`` is the number of the guard's answer the read began after (0 for reads that
    # follow none), which says whether a list of positions may be shown beside a guard answer.
    value: Any
    number: int
    after: int
    at: float  # time.monotonic()
    wall: datetime


class _Source:
    # One read of the system that may be slow (an ask of a busy actor, a slow broker): at most
    # one in flight, on a daemon thread of its own (a broker call cannot be cancelled, and must
    # not hold up the interpreter's exit), and its last answer kept. ``after`` says, when a read
    # begins, which guard answer it follows.

    def __init__(self, name: str, who: str, read: Callable[[], Any], after: Callable[[], int] = lambda: 0) -> None:
        self.name = name
        self.who = who  # what is late, in a stale part's reason
        self._read = read
        self._after = after
        self._lock = threading.Lock()
        self._running: Future[_Answer] | None = None
        self._started = 0.0
        self.last: _Answer | None = None

    def fetch(self) -> tuple[Future[_Answer], float]:
        # The read in flight (or a new one) and when it started.
        with self._lock:
            if self._running is None or self._running.done():
                self._running, self._started = Future(), time.monotonic()
                threading.Thread(target=self._run, args=(self._running, self._after()),
                                 name=f"tradewarden-status-{self.name}", daemon=True).start()
            return self._running, self._started

    def answered(self) -> int:
        # The number of the last answer (0 before the first).
        with self._lock:
            return self.last.number if self.last is not None else 0

    def _run(self, future: Future[_Answer], after: int) -> None:
        try:
            value = self._read()
        except BaseException as exc:  # handed to the reader, which says why it is stale
            future.set_exception(exc)
            return
        with self._lock:
            number = self.last.number + 1 if self.last is not None else 1
            self.last = answer = _Answer(value, number, after, time.monotonic(), datetime.now(UTC))
        future.set_result(answer)

    def outcome(self, run: tuple[Future[_Answer], float], deadline: float, timeout: float) -> _Answer | str:
        # The answer of ``run`` (from `fetch`), or why there is none. A read is waited for until
        # ``timeout`` after it started, and no later than the request's ``deadline``: one already
        # that old (a busy guard, a hung broker) is not waited for again, so the answer comes at once.
        future, started = run
        wait([future], max(0.0, min(deadline, started + timeout) - time.monotonic()))
        if not future.done():
            return f"{self.who} did not answer within {timeout:g}s"
        error = future.exception()
        if error is not None:
            reason = f"{self.who} could not be read: {error!r}"
            _log.warning("status: {}", reason)
            return reason
        return future.result()


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

    Each read asks the guard and the supervisor at once, and lists the broker's positions once
    the guard has answered it; it waits at most ``timeout`` seconds in all. The guard is asked
    on every read (one ask in flight at a time), whatever the broker does, so a halt shows as
    soon as the guard answers, even while the broker hangs.

    The positions shown were always listed after the guard's answer shown beside them, so a
    status never lists a position that the guard's answer says it has closed (a HALTED guard
    done liquidating is shown with the account flat). Each list is kept with the guard answer
    it followed: when this read's list does not come in time (a slow or failing broker, or a
    guard that did not answer, so nothing was listed), the last list is shown only if it
    followed the guard answer shown; one older than that answer is never shown as current:
    ``positions`` and ``positions_open`` are then None (unknown).

    A part that has not answered in time is shown as its last answer (or not at all) and named
    in ``stale`` with why, as of when, and its age. Its read goes on in the background, one at
    a time, and a later status shows the answer once it comes (each background read waits at
    most ``background_timeout`` seconds for an actor). A read that has been running for
    ``timeout`` already is not waited for again: while the guard stays busy or the broker hung,
    status answers at once.
    """

    def __init__(self, system: TradingSystem, hub: EventHub, background_timeout: float = 60.0) -> None:
        self.system = system
        self.hub = hub
        self._guard = _Source("guard", "the guard", lambda: system.guard_status(timeout=background_timeout))
        self._positions = _Source("positions", "the broker", lambda: _positions(system), after=self._guard.answered)
        # The supervisor answers from its own thread, which a probe of a busy child may hold.
        self._children = _Source("supervisor", "the supervisor",
                                 lambda: system.supervisor.children(timeout=background_timeout))

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """The trading state, its reason and since when, equity, peak, drawdown, each limit with
        its headroom and warning level, open positions (``positions``, listed after the guard's
        answer shown, and ``positions_open``, how many that list holds; both None when no list
        that followed that answer is at hand: the loop's own count, from its last cycle, is in
        ``last_heartbeat``), the last heartbeat, restarts, every child's incarnation, and
        ``stale``: {part: {"reason", "as_of", "age_seconds"}} for each part (guard, positions,
        supervisor) shown from an earlier answer (``as_of`` and ``age_seconds`` say when it
        came) or not at all (both None); {} when every part is fresh. Answers within about
        ``timeout`` seconds. Raises `pykka.Timeout` when the guard has not answered and never
        answered before."""
        deadline = time.monotonic() + timeout
        guard_run, children_run = self._guard.fetch(), self._children.fetch()
        stale: dict[str, dict[str, Any]] = {}
        guard_read = self._guard.outcome(guard_run, deadline, timeout)
        guard = _or_last(self._guard, guard_read, stale)
        if guard is None:
            raise pykka.Timeout(f"the guard did not answer within {timeout:g}s, and never answered before")
        positions = self._listed(guard, guard_read, deadline, timeout, stale)
        children = _or_last(self._children, self._children.outcome(children_run, deadline, timeout), stale)
        return _report(self.system, self.hub, guard.value, positions, children.value if children else {}, stale)

    def _listed(self, guard: _Answer, guard_read: _Answer | str, deadline: float, timeout: float,
                stale: dict[str, dict[str, Any]]) -> list[dict[str, Any]] | None:
        # The positions to show beside ``guard``: listed now when the guard answered this read
        # (``guard_read``), else the last list if it followed ``guard``, else None (unknown).
        if isinstance(guard_read, str):
            # Nothing is listed before the guard answers: a list read now could show a
            # liquidation half done beside the state the guard had before it.
            late = f"read after the guard's answer, and {guard_read}"
        else:
            listed = self._positions.outcome(self._positions.fetch(), deadline, timeout)
            if isinstance(listed, _Answer) and listed.after < guard.number:
                # A list begun before this guard answer, for an earlier read: list again after it.
                listed = self._positions.outcome(self._positions.fetch(), deadline, timeout)
            if isinstance(listed, _Answer):
                return listed.value
            late = listed
        last = self._positions.last
        if last is not None and last.after < guard.number:
            late += "; its last list was read before the guard's answer shown"
            last = None
        shown = _stale("positions", late, last, stale)
        return shown.value if shown is not None else None


def _or_last(source: _Source, read: _Answer | str, stale: dict[str, dict[str, Any]]) -> _Answer | None:
    # ``read`` when it is an answer, else the source's last answer, named in ``stale`` with why.
    return read if isinstance(read, _Answer) else _stale(source.name, read, source.last, stale)


def _stale(part: str, reason: str, shown: _Answer | None, stale: dict[str, dict[str, Any]]) -> _Answer | None:
    # Names ``part`` in ``stale`` with why and when ``shown`` came (None: not shown); returns ``shown``.
    stale[part] = {
        "reason": reason,
        "as_of": shown.wall.isoformat() if shown is not None else None,
        "age_seconds": round(time.monotonic() - shown.at, 3) if shown is not None else None,
    }
    return shown


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
        # The guard's record first: a journal that lost the change (a full disk) must not hide it.
        "state_since": guard.state_since.isoformat() if guard.state_since is not None else _state_since(hub),
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


def _alerts_run(system: TradingSystem, timeout: float) -> str | None:
    try:
        child = system.supervisor.children(timeout=timeout).get("alerts")
    except (pykka.Timeout, pykka.ActorDeadError) as exc:
        return f"the supervisor did not say whether the alerts run within {timeout:g}s ({type(exc).__name__})"
    return None if child is not None and child.alive else "the alerts are not running"


def _answers(system: TradingSystem, name: str, timeout: float) -> str | None:
    try:
        system.address(name).ask(Ping(), timeout=timeout)
    except (pykka.Timeout, ChildUnavailable, pykka.ActorDeadError) as exc:
        return f"the {name} did not answer a ping within {timeout:g}s ({type(exc).__name__})"
    return None


def health_problems(system: TradingSystem, hub: EventHub, timeout: float = 2.0) -> list[str]:
    """Why the system is not healthy, or [] when it is: the supervisor has not given up, every
    actor that trades answers a ping within ``timeout`` seconds (all asked at once, so one hung
    actor does not eat the others' time), the alert sender runs, and the last heartbeat is
    fresh: within two intervals plus the heartbeat's own wait (a process that has not beaten yet
    gets as long from its start).

    The alert sender is not pinged: it waits inside a slow or dead chat service for as long as a
    critical alert takes to deliver, and a watchdog that restarted the bot for that would only
    lose the alert it was sending (Telegram's outage is not the bot's)."""
    problems = []
    if system.gave_up:
        problems.append("the supervisor gave up (restart intensity exceeded); trading is halted")
    with ThreadPoolExecutor(len(_PINGED) + 1, thread_name_prefix="tradewarden-health") as pool:
        answers = pool.map(lambda name: _answers(system, name, timeout), _PINGED)
        alerts = pool.submit(_alerts_run, system, timeout)
        problems += [answer for answer in answers if answer is not None]
        if (problem := alerts.result()) is not None:
            problems.append(problem)
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
