"""The metrics port over UDP statsd: fire-and-forget figures that never block or raise."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

import statsd
from loguru import logger

from runtime.metrics import MetricsSink, NullMetrics
from runtime.validation import finite_number, text, whole_number

if TYPE_CHECKING:
    from runtime.settings import Settings

__all__ = ["StatsdMetrics"]


class _NonBlockingClient(statsd.StatsClient):
    # The stock client sends on a blocking socket and silently swallows send errors. A full
    # socket buffer must not stall the guard's thread, and a drop should be counted, so the
    # socket is made non-blocking and every send failure is reported to the owner.
    def __init__(self, host: str, port: int, prefix: str | None, on_drop: Any) -> None:
        super().__init__(host, port, prefix)
        self._sock.setblocking(False)
        self._on_drop = on_drop

    def _send(self, data: str) -> None:
        try:
            self._sock.sendto(data.encode("ascii"), self._addr)
        except Exception as exc:  # OSError, BlockingIOError, UnicodeEncodeError, a closed socket
            self._on_drop(exc)


_DATAGRAM = 1432  # bytes: fits one Ethernet frame with IP and UDP headers, as statsd advises


class StatsdMetrics:
    """A `MetricsSink` that sends figures over UDP to a statsd daemon.

    With ``flush_interval`` 0 every figure is one datagram, sent at once. With a positive
    ``flush_interval`` (what `from_settings` uses) figures are summed in memory (counters added,
    gauges kept at their last value, every timing kept) and a daemon thread sends them packed
    into few datagrams every ``flush_interval`` seconds, and on `close`: a replay that reports a
    gauge per bar then costs a datagram per flush, not one per bar.

    Promises: ``incr``, ``gauge`` and ``timing`` never block (the socket is non-blocking) and
    never raise; a figure that cannot be sent (daemon unreachable, socket buffer full, a
    non-finite value, a name that is not ASCII) is dropped, counted in `dropped`, and the first
    drop is logged once as a warning. Names pass through unchanged after ``prefix + "."``, so
    dotted names such as ``analytics_events_total.trade_executed`` arrive as written.

    The host name is resolved once, here; an unresolvable host or a bad port raises
    ``ValueError`` naming it, so a misconfiguration fails at start-up rather than silently.
    """

    def __init__(
        self, host: str, port: int = 8125, prefix: str | None = "tradewarden", *, flush_interval: float = 0.0
    ) -> None:
        text("statsd_host", host)
        if whole_number("statsd_port", port, 1) > 65535:
            raise ValueError(f"statsd_port must be a port number in 1..65535, got {port!r}")
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"statsd_prefix must be a string or None, got {prefix!r} ({type(prefix).__name__})")
        if finite_number("statsd_flush_seconds", flush_interval) < 0:
            raise ValueError(f"statsd_flush_seconds must be a number of seconds >= 0, got {flush_interval!r}")
        self._host = host
        self._port = port
        self._prefix = prefix or None
        self._lock = threading.Lock()
        self._dropped = 0
        try:
            self._client = _NonBlockingClient(host, port, self._prefix, self._drop)
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"statsd_host {host!r} (port {port}) cannot be resolved: {exc}") from None
        self._pending: list[str] | None = None
        if flush_interval > 0:
            self._pending = []
            self._counts: dict[str, int] = {}
            self._gauges: dict[str, float] = {}
            self._closed = threading.Event()
            self._flusher = threading.Thread(
                target=self._flush_every, args=(flush_interval,), name="tradewarden-statsd", daemon=True
            )
            self._flusher.start()

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsSink:
        """A `StatsdMetrics` for ``settings.statsd_host``/``port``/``prefix``, or `NullMetrics`
        when no statsd host is configured."""
        if settings.statsd_host is None:
            return NullMetrics()
        return cls(
            settings.statsd_host, settings.statsd_port, settings.statsd_prefix,
            flush_interval=settings.statsd_flush_seconds,
        )

    def incr(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name`` (sent as ``prefix.name:count|c``)."""
        if self._pending is not None:
            if self._refused(name):
                return
            with self._lock:
                self._counts[name] = self._counts.get(name, 0) + count
            return
        try:
            self._client.incr(name, count)
        except Exception as exc:
            self._drop(exc)

    def gauge(self, name: str, value: float) -> None:
        """Set the gauge ``name`` to ``value``; a negative value is sent as statsd needs it
        (a reset to 0 then the value, in one datagram), a non-finite one is dropped."""
        try:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"gauge {name!r} value must be finite, got {value!r}")
            if self._pending is not None:
                if not self._refused(name):
                    with self._lock:
                        self._gauges[name] = number
                return
            self._client.gauge(name, number)
        except Exception as exc:
            self._drop(exc)

    def timing(self, name: str, milliseconds: float) -> None:
        """Record one duration of ``milliseconds`` under the timer ``name``; non-finite is dropped."""
        try:
            number = float(milliseconds)
            if not math.isfinite(number):
                raise ValueError(f"timing {name!r} milliseconds must be finite, got {milliseconds!r}")
            if self._pending is not None:
                if not self._refused(name):
                    with self._lock:
                        self._pending.append(f"{self._name(name)}:{number:0.6f}|ms")
                return
            self._client.timing(name, number)
        except Exception as exc:
            self._drop(exc)

    @property
    def dropped(self) -> int:
        """How many figures could not be sent since this sink was made."""
        with self._lock:
            return self._dropped

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` figures are sent to, as configured."""
        return (self._host, self._port)

    def flush(self) -> None:
        """Send what has been summed since the last flush (nothing to do without a flush interval)."""
        if self._pending is None:
            return
        with self._lock:
            lines, self._pending = self._pending, []
            counts, self._counts = self._counts, {}
            gauges, self._gauges = self._gauges, {}
        lines += [f"{self._name(name)}:{count}|c" for name, count in counts.items()]
        for name, value in gauges.items():
            # statsd reads "-5" as "subtract 5": a negative gauge is a reset to 0 and the value,
            # kept in one datagram so the pair is never split.
            gauge = f"{self._name(name)}:{value!r}|g"
            lines.append(f"{self._name(name)}:0|g\n{gauge}" if value < 0 else gauge)
        packet: list[str] = []
        size = 0
        for line in lines:
            if packet and size + len(line) + 1 > _DATAGRAM:
                self._client._send("\n".join(packet))
                packet, size = [], 0
            packet.append(line)
            size += len(line) + 1
        if packet:
            self._client._send("\n".join(packet))

    def _refused(self, name: str) -> bool:
        # Checked when a figure is recorded, so one bad figure cannot spoil a packed datagram,
        # and nothing piles up after close.
        if self._closed.is_set():
            self._drop(RuntimeError("the sink is closed"))
            return True
        if not name.isascii():
            self._drop(UnicodeError(f"metric name {name!r} is not ASCII"))
            return True
        return False

    def _flush_every(self, interval: float) -> None:
        while not self._closed.wait(interval):
            self.flush()

    def _name(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def close(self) -> None:
        """Send what is still summed, then close the socket; later figures are dropped (and
        counted), never raised."""
        if self._pending is not None:
            self._closed.set()
            self._flusher.join(timeout=5.0)
            self.flush()
        try:
            self._client.close()
        except OSError:
            pass

    def _drop(self, exc: BaseException) -> None:
        with self._lock:
            self._dropped += 1
            first = self._dropped == 1
        if first:
            # Logged once: a dead daemon would otherwise log on every figure, on the hot path.
            logger.bind(component="metrics").warning(
                "statsd {}:{}: a figure was dropped ({}: {}); further drops are only counted",
                self._host,
                self._port,
                type(exc).__name__,
                exc,
            )

    def __repr__(self) -> str:
        return f"StatsdMetrics(host={self._host!r}, port={self._port!r}, prefix={self._prefix!r})"

