"""tradewarden's actors: concurrency only, thin shells over `runtime`.

Layout: `supervisor` (OTP-style supervision), `address` (stable addresses with a stash),
`context` (an incarnation's links, revoked when abandoned), `timers` (keyed fixed-rate timers),
`base` (`SupervisedActor`), the actors `guard`, `loop`, `heartbeat`, `emitter` and `alerts`,
`messages` (frozen message values), and `system` (`start_trading_system`, `TradingSystem`).
"""

from actors.alerts import AlertActor
from actors.emitter import EmitterActor, Subscribers
from actors.guard import GuardActor
from actors.heartbeat import HeartbeatActor, HeartbeatStats
from actors.loop import LoopActor
from actors.supervision.address import Address, ChildUnavailable, StashOverflow
from actors.supervision.base import SupervisedActor
from actors.supervision.context import ChildContext, IncarnationRevoked
from actors.supervision.supervisor import Backoff, ChildInfo, ChildSpec, Restart, Strategy, Supervisor, SupervisorHandle
from actors.supervision.timers import Timers
from actors.system import TradingSystem, start_trading_system

__all__ = [
    "Address",
    "AlertActor",
    "Backoff",
    "ChildContext",
    "ChildInfo",
    "ChildSpec",
    "ChildUnavailable",
    "EmitterActor",
    "GuardActor",
    "HeartbeatActor",
    "HeartbeatStats",
    "IncarnationRevoked",
    "LoopActor",
    "Restart",
    "StashOverflow",
    "Strategy",
    "Subscribers",
    "SupervisedActor",
    "Supervisor",
    "SupervisorHandle",
    "Timers",
    "TradingSystem",
    "start_trading_system",
]
