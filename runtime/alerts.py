"""The alert port: a message for a human, and the default sink that only logs it."""

from __future__ import annotations

import enum
from typing import Protocol

import attrs
from loguru import logger

from runtime.errors import TradewardenError

__all__ = ["Severity", "Alert", "AlertNotAnswered", "AlertSink", "LogAlerts"]


class Severity(enum.Enum):
    """How urgently a person should look."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@attrs.frozen
class Alert:
    """A message for a person. ``key`` groups identical alerts for merging; ``critical`` ones
    (a guard breach, a supervisor giving up) are never dropped. ``merge=False`` marks news
    that is never merged or held back, such as a change of the trading state: the latest
    message in the chat must say the state now."""

    title: str
    text: str
    severity: Severity = attrs.field(default=Severity.WARNING, converter=Severity)
    key: str = ""
    merge: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    @property
    def critical(self) -> bool:
        """True for alerts that must always reach a person."""
        return self.severity is Severity.CRITICAL

    def render(self, count: int = 1) -> str:
        """The text a person reads; ``count`` > 1 says how many identical alerts were merged."""
        suffix = f" (x{count})" if count > 1 else ""
        return f"[{self.severity.value.upper()}] {self.title}{suffix}\n{self.text}"


class AlertNotAnswered(TradewardenError, RuntimeError):
    """The alert service gave no answer to one try within the sink's timeout (it hangs), and the
    sink gives the alert back instead of waiting on it again: ``resend`` is the alert to send
    again later (its text marked as a possible repeat when the try may have reached the chat).
    Raised by a sink's optional ``send_bounded`` (see `AlertSink`)."""

    def __init__(self, message: str, resend: Alert) -> None:
        super().__init__(message)
        self.resend = resend


class AlertSink(Protocol):
    """Delivers alerts. It may block or raise: the runtime calls it off the guard's thread.

    An alert whose `send` raised is sent again by the alert actor with a capped backoff (a
    CRITICAL one until delivered, others up to 5 times), unless the sink has a true
    ``retries_itself`` attribute, as `TelegramAlerts` does: then a raise is final.

    A sink may also offer ``send_bounded(alert)``, which the alert actor then calls instead of
    `send`: the same, except that a try with no answer within the sink's timeout is not tried
    again there but raises `AlertNotAnswered`, so that one hung request holds the alerts
    behind it no longer than that timeout. The actor sends its ``resend`` again after them."""

    def send(self, alert: Alert) -> None:
        """Deliver one alert, or raise why it could not be delivered."""
        ...


class LogAlerts:
    """The default sink when nothing else is configured: each alert becomes a log line."""

    def send(self, alert: Alert) -> None:
        """Log the alert at a level matching its severity."""
        level = {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL"}[alert.severity.value]
        logger.bind(component="alerts").log(level, "ALERT {}: {}", alert.title, alert.text)
