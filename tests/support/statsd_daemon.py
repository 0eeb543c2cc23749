"""Etsy's reference statsd daemon (Node.js) on 127.0.0.1, started per test module.

The daemon is installed by ``npm install --silent --prefix tests/statsd-daemon`` (the README's
test command runs it). Without it the fixture FAILS rather than skips: CI must run these tests.
Figures are read back over the daemon's management port (``counters``, ``gauges``, ``timers``),
whose answer is Node's ``util.inspect`` of the object, parsed here by `parse_inspect`.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

__all__ = [
    "DAEMON_DIR",
    "INSTALL_COMMAND",
    "StatsdDaemon",
    "StatsdDaemonError",
    "parse_inspect",
    "statsd_daemon",
]

DAEMON_DIR = Path(__file__).resolve().parents[1] / "statsd-daemon"
INSTALL_COMMAND = "npm install --silent --prefix tests/statsd-daemon"
_STATS_JS = DAEMON_DIR / "node_modules" / "statsd" / "stats.js"
_PROBE = "tradewarden_fixture_probe"

T = TypeVar("T")


class StatsdDaemonError(RuntimeError):
    """The daemon could not be started or did not answer; the message says what to do."""


def _free_port(kind: int) -> int:
    # The port is released before the daemon binds it; a clash is rare and is retried by start().
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StatsdDaemon:
    """One statsd daemon process on 127.0.0.1 with free UDP and management ports.

    Flushing is effectively off (an hour) and no backend is loaded, so figures stay in the
    daemon's memory where `counters`, `gauges` and `timers` read them. `start` returns only when
    the management port answers and a probe datagram has been counted, i.e. UDP is bound.
    """

    def __init__(self, workdir: Path, *, node: str | None = None, stats_js: Path = _STATS_JS) -> None:
        self.workdir = Path(workdir)
        self.host = "127.0.0.1"
        self.port = 0
        self.mgmt_port = 0
        self._node = node or shutil.which("node")
        self._stats_js = stats_js
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.workdir / "statsd.log"
        self._pause = threading.Event()  # never set: its wait() is an interruptible short pause

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> StatsdDaemon:
        """Start the daemon and wait until it counts UDP figures; raise `StatsdDaemonError`
        naming the install command when it is not installed, or with its log when it fails."""
        if self._node is None:
            raise StatsdDaemonError(
                f"Node.js ('node') is not on PATH; the statsd daemon tests need Node.js 18+ and {INSTALL_COMMAND}"
            )
        if not self._stats_js.is_file():
            raise StatsdDaemonError(
                f"the statsd daemon is not installed ({self._stats_js} is missing); run: {INSTALL_COMMAND}"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        last_error = ""
        for _ in range(3):  # a port taken between choosing and binding it: choose again
            try:
                self._launch(deadline)
                return self
            except StatsdDaemonError as exc:
                last_error = str(exc)
                self.stop()
                if "EADDRINUSE" not in last_error or time.monotonic() >= deadline:
                    break
        raise StatsdDaemonError(last_error)

    def _launch(self, deadline: float) -> None:
        self.port = _free_port(socket.SOCK_DGRAM)
        self.mgmt_port = _free_port(socket.SOCK_STREAM)
        config = {
            "address": self.host,
            "port": self.port,
            "mgmt_address": self.host,
            "mgmt_port": self.mgmt_port,
            "flushInterval": 3_600_000,
            "backends": [],
            "deleteIdleStats": False,
            "title": False,
            "automaticConfigReload": False,
        }
        config_path = self.workdir / "statsd-config.js"
        config_path.write_text(json.dumps(config, indent=2))
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [self._node, str(self._stats_js), str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready(deadline)

    def _wait_ready(self, deadline: float) -> None:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            while True:
                self._check_alive()
                try:
                    probe.sendto(f"{_PROBE}:1|c".encode(), (self.host, self.port))
                    if _PROBE in self.counters(timeout=0.5):
                        self.command(f"delcounters {_PROBE}", timeout=2.0)
                        return
                except OSError:
                    pass  # management port not listening yet
                if time.monotonic() >= deadline:
                    raise StatsdDaemonError(f"statsd daemon did not become ready in time; log:\n{self.log()}")
                self._pause.wait(0.02)
        finally:
            probe.close()

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise StatsdDaemonError(
                f"statsd daemon exited with code {self._process.returncode}; log:\n{self.log()}"
            )

    def stop(self) -> None:
        """Stop the daemon (terminate, then kill if it lingers) and wait for it to exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log(self) -> str:
        """What the daemon has written to stdout and stderr so far."""
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def __enter__(self) -> StatsdDaemon:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the management port ----------------------------------------------------------------

    def command(self, command: str, timeout: float = 5.0) -> str:
        """Send one management command and return its answer up to (not including) ``END``."""
        with socket.create_connection((self.host, self.mgmt_port), timeout=timeout) as conn:
            conn.sendall(command.encode("ascii") + b"\n")
            buffer = b""
            while b"END\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    raise StatsdDaemonError(f"management port closed before END; got {buffer!r}")
                buffer += chunk
        return buffer.decode("utf-8").split("END\n", 1)[0]

    def counters(self, timeout: float = 5.0) -> dict[str, Any]:
        """Every counter the daemon holds, by full (prefixed) name."""
        return parse_inspect(self.command("counters", timeout))

    def gauges(self, timeout: float = 5.0) -> dict[str, Any]:
        """Every gauge the daemon holds, by full (prefixed) name."""
        return parse_inspect(self.command("gauges", timeout))

    def timers(self, timeout: float = 5.0) -> dict[str, list[float]]:
        """Every timer's recorded durations (ms), by full (prefixed) name."""
        return parse_inspect(self.command("timers", timeout))

    def wait_for(self, read: Callable[[], T], until: Callable[[T], bool], timeout: float = 5.0) -> T:
        """Poll ``read()`` until ``until(value)`` holds and return the value; UDP gives no receipt,
        so this is how a test waits for figures to arrive. Fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = read()
            if until(value):
                return value
            if time.monotonic() >= deadline:
                pytest.fail(f"statsd daemon never held the expected figures within {timeout}s; last read: {value!r}")
            self._pause.wait(0.01)


# -- Node's util.inspect output ---------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<punct>[{}\[\]:,])
      | '(?P<squote>(?:[^'\\]|\\.)*)'
      | "(?P<dquote>(?:[^"\\]|\\.)*)"
      | (?P<more>\.\.\.\ \d+\ more\ items?)
      | (?P<number>-?(?:Infinity|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|NaN)
      | (?P<ident>[A-Za-z_$][\w$]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    position, end = 0, len(text.rstrip())
    while position < end:
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"cannot parse util.inspect output at {position}: {text[position:position + 40]!r}")
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        yield kind, match.group(kind)


def parse_inspect(text: str) -> Any:
    """Parse Node's ``util.inspect`` of plain objects, arrays, strings and numbers.

    An array that Node truncated (``... N more items``) raises ``ValueError``: a partial list
    must not pass for the whole.
    """
    tokens = list(_tokens(text))
    value, index = _parse_value(tokens, 0)
    if index != len(tokens):
        raise ValueError(f"trailing tokens after util.inspect value: {tokens[index:]!r}")
    return value


def _unescape(raw: str) -> str:
    return raw.encode("utf-8").decode("unicode_escape") if "\\" in raw else raw


def _parse_value(tokens: list[tuple[str, str]], index: int) -> tuple[Any, int]:
    kind, raw = tokens[index]
    if kind == "punct" and raw == "{":
        result: dict[str, Any] = {}
        index += 1
        while tokens[index] != ("punct", "}"):
            key_kind, key = tokens[index]
            if key_kind not in ("squote", "dquote", "ident"):
                raise ValueError(f"expected an object key, got {key!r}")
            if tokens[index + 1] != ("punct", ":"):
                raise ValueError(f"expected ':' after key {key!r}")
            result[_unescape(key)], index = _parse_value(tokens, index + 2)
            if tokens[index] == ("punct", ","):
                index += 1
        return result, index + 1
    if kind == "punct" and raw == "[":
        items: list[Any] = []
        index += 1
        while tokens[index] != ("punct", "]"):
            if tokens[index][0] == "more":
                raise ValueError(f"util.inspect truncated an array ({tokens[index][1]})")
            item, index = _parse_value(tokens, index)
            items.append(item)
            if tokens[index] == ("punct", ","):
                index += 1
        return items, index + 1
    if kind in ("squote", "dquote"):
        return _unescape(raw), index + 1
    if kind == "number":
        if re.fullmatch(r"-?\d+", raw):
            return int(raw), index + 1
        return float(raw.replace("Infinity", "inf")), index + 1
    raise ValueError(f"unexpected token {raw!r} in util.inspect output")


# -- the pytest fixture -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def statsd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatsdDaemon]:
    """A running statsd daemon for the test module; FAILS (never skips) when it is not installed."""
    daemon = StatsdDaemon(tmp_path_factory.mktemp("statsd"))
    try:
        daemon.start()
    except StatsdDaemonError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield daemon
    finally:
        daemon.stop()
