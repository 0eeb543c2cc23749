"""tradewarden's actors: concurrency only, thin shells over `runtime`.

Layout: `actors.supervision` is the generic OTP layer (supervisor, stable addresses, contexts,
timers, the `SupervisedActor` base, its messages), with nothing of trading in it. Beside it are
the trading actors `guard` (the order gateway and the trading state), `loop`, `heartbeat`,
`emitter` and `alerts`; `messages` (the frozen values they exchange); `system`
(`start_trading_system`, `TradingSystem`); and `replay` (the data-time replay driver).

Everything a user imports is exported here; the modules stay importable for the rest.
"""

from actors.alerts import AlertActor
from actors.emitter import EmitterActor, EventSink, JournalSink, Subscribers, journal_sink, log_sink
from actors.guard import GuardActor
from actors.heartbeat import HeartbeatActor, HeartbeatStats
from actors.loop import LoopActor, NoGuard
from actors.messages import (
    CashFlow,
    Crash,
    EquityBatch,
    EquityReading,
    GetGuardState,
    GetMetrics,
    GuardStatus,
    Halt,
    HaltNotSaved,
    Hang,
    LoopStatus,
    MarketData,
    OrderOutcome,
    PlaceOrder,
    Resume,
    RunCycle,
)
from actors.pressed_halts import HaltNotConfirmed
from actors.replay import PaperFeed, Replay, ReplayResult, replay_bars
from actors.supervision.address import Address, ChildUnavailable, StashOverflow
from actors.supervision.base import DrillsDisabled, SupervisedActor
from actors.supervision.context import ChildContext, IncarnationRevoked
from actors.supervision.messages import ExitKind
from actors.supervision.supervisor import (
    Backoff,
    ChildInfo,
    ChildSpec,
    Restart,
    Restarted,
    Strategy,
    Supervisor,
    SupervisorHandle,
)
from actors.supervision.timers import Timers
from actors.system import TradingSystem, start_trading_system

__all__ = [
    "Address",
    "AlertActor",
    "Backoff",
    "CashFlow",
    "ChildContext",
    "ChildInfo",
    "ChildSpec",
    "ChildUnavailable",
    "Crash",
    "DrillsDisabled",
    "EmitterActor",
    "EquityBatch",
    "EquityReading",
    "EventSink",
    "ExitKind",
    "GetGuardState",
    "GetMetrics",
    "GuardActor",
    "GuardStatus",
    "Halt",
    "HaltNotConfirmed",
    "HaltNotSaved",
    "Hang",
    "HeartbeatActor",
    "HeartbeatStats",
    "IncarnationRevoked",
    "JournalSink",
    "LoopActor",
    "LoopStatus",
    "MarketData",
    "NoGuard",
    "OrderOutcome",
    "PaperFeed",
    "PlaceOrder",
    "Replay",
    "ReplayResult",
    "Restart",
    "Restarted",
    "Resume",
    "RunCycle",
    "StashOverflow",
    "Strategy",
    "Subscribers",
    "SupervisedActor",
    "Supervisor",
    "SupervisorHandle",
    "Timers",
    "TradingSystem",
    "journal_sink",
    "log_sink",
    "replay_bars",
    "start_trading_system",
]
