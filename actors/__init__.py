"""tradewarden's actors: concurrency only, thin shells over `runtime`.

Layout: `supervisor` (OTP-style supervision), `address` (stable addresses with a stash),
`context` (an incarnation's links, revoked when abandoned), `timers` (keyed fixed-rate timers),
`base` (`SupervisedActor`), the actors `guard`, `loop`, `heartbeat`, `emitter` and `alerts`,
`messages` (frozen message values), and `system` (`start_trading_system`, `TradingSystem`).
"""

from actors.address import Address, ChildUnavailable, StashOverflow
from actors.alerts import AlertActor
from actors.base import SupervisedActor
from actors.context import ChildContext, IncarnationRevoked
from actors.emitter import EmitterActor, Subscribers
from actors.guard import GuardActor
from actors.heartbeat import HeartbeatActor, HeartbeatStats
from actors.loop import LoopActor
from actors.supervisor import Backoff, ChildInfo, ChildSpec, Restart, Strategy, Supervisor, SupervisorHandle
from actors.system import TradingSystem, start_trading_system
from actors.timers import Timers

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
