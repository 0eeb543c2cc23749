"""What a fleet says about one account: its trading state, equity, peak and health."""

from __future__ import annotations

import enum

import attrs

from runtime.errors import TradewardenError
from runtime.risk.guards import TradingState

__all__ = ["AccountNotTrading", "AccountStatus", "HaltNotDurable", "HaltOutcome", "HaltPending", "Health", "NotQuarantined"]


class AccountNotTrading(TradewardenError, RuntimeError):
    """Asked to halt, resume, trade or drill an account that has no trading system running
    (starting, quarantined, fenced or stopped); the message names the account and its health."""


class HaltNotDurable(TradewardenError, RuntimeError):
    """A halt pressed while the account starts that could not be saved in its state store (not
    open yet, failing, or kept in memory): its starting process holds it, and saves it once it
    can, but it is lost if that process is lost first. The message names the account, what it
    is doing and why the halt was not saved; halt it again once the account has started."""


class NotQuarantined(TradewardenError, RuntimeError):
    """Asked to lift the quarantine of an account that is not quarantined: nothing was done. The
    message names the account and its health."""


class Health(enum.Enum):
    """How an account's incarnation is doing, as far as the fleet can tell."""

    OK = "ok"  # trading system running and answering
    STARTING = "starting"  # opening its store, waiting out a restart backoff, or building its system
    QUARANTINED = "quarantined"  # not trading: too many restarts, or its store stayed down (HALTED)
    FENCED = "fenced"  # a newer incarnation claimed the account: this one halted itself
    UNREACHABLE = "unreachable"  # did not answer within the timeout (restarting, or a zombie)
    STOPPED = "stopped"  # the trading system ended and the process is about to exit


@attrs.frozen
class AccountStatus:
    """One account in `Fleet.accounts`. ``trading_state``, ``equity`` and ``peak`` are None when
    the account did not answer or has no guard running (``detail`` says why); ``node`` and
    ``pid`` say where the answering incarnation runs, ``epoch`` is its claim on the state store
    (None for a store without fencing)."""

    account_id: str
    health: Health
    trading_state: TradingState | None = None
    equity: float | None = None
    peak: float | None = None
    detail: str = ""
    node: str | None = None
    pid: int | None = None
    epoch: int | None = None


@attrs.frozen
class HaltPending:
    """What `Fleet.halt` answers for an account that is still starting (waiting out a restart
    backoff, building its broker and signal source) once the halt is saved in the account's
    state store: whichever incarnation starts the account next (this one, or another should its
    process be lost) takes it before anything else, so the account starts HALTED and it is
    journaled and alerted as a manual halt by ``by`` for ``reason``. ``detail`` says so and what
    the account is doing."""

    account_id: str
    by: str
    reason: str
    detail: str


# What `HaltOutcome.done` may say, the first two of which mean the halt holds.
_HALT_DONE = ("halted", "halt_pending", "not_saved", "refused", "unknown")


@attrs.frozen
class HaltOutcome:
    """One account's answer to `Fleet.halt_all`, worded as the control API's per-account halt:
    ``done`` is ``halted`` (``previous_state`` is the state before: HALTED for a quarantined
    account, once the halt is saved for whatever starts it next), ``halt_pending`` (an account
    still starting, the halt saved in its state store; ``detail`` says so), ``not_saved``
    (`HaltNotDurable`), ``refused`` (`AccountNotTrading`: fenced or stopped) or ``unknown``
    (Ray failed the call, or the account did not answer in time: the halt may still land);
    ``error`` says why for the last three."""

    account_id: str
    done: str = attrs.field(validator=attrs.validators.in_(_HALT_DONE))
    previous_state: TradingState | None = None
    detail: str = ""
    error: str = ""

    @property
    def saved(self) -> bool:
        """True when the halt holds: the account was halted, or the halt is saved for its start."""
        return self.done in ("halted", "halt_pending")
