"""Paper trading: replay a price series through the whole supervised trading system on a paper broker.

Run it with no arguments for the bundled demonstration (synthetic data, clearly labelled):

    .venv/bin/python examples/paper_trading.py

A moving-average crossover (`runtime.replay.strategies.MovingAverageCrossover`) trades a `PaperBroker`
through the full actor system (guard, loop, heartbeat, emitter, alerts under one supervisor).
The replay runs in data time (`actors.replay`): heartbeats, timers and trading days follow the
bars. Everything a run makes goes in ``--out`` (default ``./paper-run/``):

* ``state.db``: the SQLite state store and event journal the system ran on;
* ``equity.csv``: ``timestamp,equity,worst_equity,best_equity``: the equity after every bar, and
  the lowest equity the guard saw in it (what was held marked at the bar's worst price, or where a
  limit was crossed when one was) and the highest (marked at the bar's best price);
* ``fills.csv``: every fill, ``timestamp,symbol,side,volume,price,costs,realised_pnl,why,reason``
  (why: ``signal``, ``order``, ``guard`` or ``fail-safe``), from the journal;
* ``summary.json``: interrupted, bars_played and bars_total, start_equity, final_equity, max_drawdown (a fraction: the worst the guard saw,
  inside bars included), fills (the rows of
  fills.csv) and fills_by_why, guard_triggers, state_spans (every stretch the guard held trading
  halted or reducing: when, why, until when and why then, its bars and the orders it refused),
  restarts, orders_refused, orders_refused_by and first_refusals (each cause's first, with its reason),
  open_positions and their unrealised_pnl, price_digits and events_by_type, all derived from the
  journal and the equity series;
* ``report.png``: the equity curve and drawdown with every active limit and warning level drawn,
  guard firings (by guard), closed positions and refused orders marked, each stretch of halted or
  reducing trading shaded, and what is still open
  at the end written under it
  (needs the ``plot`` extra; without it the run still finishes and says how to install it).

The same program is the ``tradewarden replay`` command (`actors.service.cli`), which passes its
own name to `main` for its usage line and its messages.

A run claims its ``--out`` folder's ``state.db`` (`runtime.adapters.state_claim.StateFileClaim`)
before it touches anything there, and holds it until its last file is written: a second replay
into the same folder, while one runs, is refused (exit code 2) and changes nothing.

Each run starts from a fresh state: a ``state.db`` left in ``--out`` by an earlier run is moved
to ``state.db.previous`` first (a file of that name that is not a tradewarden database is refused
and left alone). The stored peak equity and HALTED latch belong to the paper
account that earlier run traded; this run's paper account starts again from its starting cash,
so inheriting them would halt it (or measure its drawdown) against money it never had.

Ctrl-C stops cleanly at any moment (exit code 130): before a file is touched it just leaves;
after, the replay ends after the bar in hand, the system stops in reverse start order (the loop
journals LOOP_STOPPED), and the files are written for the bars played, each one whole (written
beside its place and renamed into it), and marked: summary.json's interrupted, bars_played and
bars_total, and the chart's title ("interrupted after N of M bars").
"""

from __future__ import annotations

import os
import signal

if __name__ == "__main__":
    # Ctrl-C before the run has touched a file leaves nothing to stop or save, so it leaves at once
    # and quietly. Installed before the imports below, which take tenths of a second (more on a busy
    # machine): a KeyboardInterrupt raised in them would end the program with a traceback.
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))

import argparse
import contextlib
import json
import math
import shutil
import socket
import statistics
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from actors.emitter import journal_sink, log_sink
from actors.replay import PaperFeed, Replay, ReplayResult
from actors.system import TradingSystem
from runtime.adapters.logs import configure_logging
from runtime.adapters.paper import PaperBroker
from runtime.adapters.sqlite import SqliteStore, StoreError
from runtime.adapters.state_claim import StateFileClaim, StateFileHeld, StateFileInUse
from runtime.adapters.statsd import StatsdMetrics
from runtime.adapters.telegram import TelegramAlerts
from runtime.broker import Side
from runtime.clock import ManualClock
from runtime.events import Event, EventType
from runtime.payloads import GuardTriggered, PositionClosed
from runtime.replay.active_settings import active_settings_lines
from runtime.replay.limits import EquityPath, ReportLimits, describe_limits, limit_levels
from runtime.replay.prices import (
    SYNTHETIC_MIN_LENGTH,
    SYNTHETIC_SYMBOL,
    SYNTHETIC_VOLUME,
    Bar,
    PriceDataError,
    load_series,
    synthetic_bars,
)
from runtime.replay.refusals import first_refusals
from runtime.replay.report import (
    PLOT_INSTALL_HINT,
    PRICE_DIGITS_UNKNOWN,
    GuardTrigger,
    RunSummary,
    end_of_run_lines,
    fills_from_events,
    format_price,
    format_summary,
    open_positions,
    plot_report,
    price_digits,
    refusals_from_events,
    write_equity_csv,
    write_fills_csv,
)
from runtime.replay.spans import state_spans
from runtime.replay.strategies import MovingAverageCrossover
from runtime.risk.monitor import GuardRecord
from runtime.settings import Settings, SettingsError

__all__ = ["main", "parse_args", "summarize"]

PROG = "paper_trading.py"
DEFAULT_OUT = "paper-run"
STATE_DB = "state.db"
EQUITY_CSV = "equity.csv"
FILLS_CSV = "fills.csv"
SUMMARY_JSON = "summary.json"
REPORT_PNG = "report.png"
MIN_FREE_BYTES = 8 * 2**20
SYNTHETIC_BARS = 400
"""How many hourly bars the demo makes when `--bars` is not given."""
SYNTHETIC_LABEL = "SYNTHETIC DATA: a made-up demonstration series, not market history"


class UsageError(ValueError):
    """A command-line value that cannot be used; the message names the flag and the value."""


# --- the command line ------------------------------------------------------------------------


def _positive_float(flag: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number > 0, got {text!r}")
        return value

    return parse


def _symbol(text: str) -> str:
    # An empty --symbol would fall back to the default silently: say so instead.
    symbol = text.strip()
    if not symbol:
        raise argparse.ArgumentTypeError(f"--symbol must be a non-empty string, got {text!r}")
    return symbol


def _non_negative_float(flag: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number >= 0, got {text!r}")
        return value

    return parse


def _leverage(text: str) -> float | str:
    # "off" is kept as a word until the settings are made: None there means "not given here".
    if text.strip().lower() == "off":
        return "off"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"--max-leverage must be a finite number > 0 or off, got {text!r}")
    return value


def _bar_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bars must be a whole number, got {text!r}") from None
    if value < SYNTHETIC_MIN_LENGTH:
        raise argparse.ArgumentTypeError(f"--bars must be >= {SYNTHETIC_MIN_LENGTH}, got {text!r}")
    return value


def _statsd_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"--statsd must be HOST:PORT, got {text!r}")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--statsd port must be a whole number, got {port!r} in {text!r}") from None
    return host.strip("[]"), number


def parse_args(argv: Sequence[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    """The command line of the program called ``prog`` (its usage line and errors say that
    name); ``--help`` explains every option. ``--timezone`` without ``--prices``, and ``--bars``
    with it, are refused as bad usage (exit code 2): the one is for a file's times, the other for
    the demo's own series."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Replay a price series through the supervised tradewarden system on a paper broker, "
            "with a moving-average crossover as the signal source, and write a report. "
            "With no arguments it replays the bundled synthetic series (made-up data), on which "
            "the 20% drawdown guard fires and closes the open position."
        ),
        epilog=(
            "Settings come from --config, then the environment (MAX_DRAWDOWN_PERCENT, MIN_EQUITY_GBP, "
            "DAILY_LOSS_PERCENT, STATSD_HOST, TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID, LOG_JSON, LOG_LEVEL, ...), "
            "then these flags. Each run starts from a fresh state: an earlier run's state.db in --out is "
            "moved to state.db.previous."
        ),
    )
    data = parser.add_argument_group("prices and strategy")
    data.add_argument(
        "--prices", metavar="FILE",
        help="price bars to replay: a CSV with a header timestamp,open,high,low,close[,volume][,symbol] "
        "(the time may be a Date[,Time] or Datetime column, or an unnamed first column; Adj Close is skipped) "
        "or a MetaTrader 5 history export (tab-separated <DATE> <TIME> <OPEN> ...). "
        "Default: the bundled synthetic series (made-up data, labelled as such)",
    )
    data.add_argument(
        "--symbol", type=_symbol,
        help="the symbol to trade; picks its rows from a CSV with a symbol column. "
        f"Default: {SYNTHETIC_SYMBOL} for the synthetic series, else the file's symbol column, else the file's name",
    )
    data.add_argument(
        "--timezone",
        help="time zone of the --prices file's timestamps written without an offset (MT5 exports use the "
        "broker's server time); default UTC",
    )
    data.add_argument(
        "--bars", type=_bar_count,
        help=f"length of the synthetic series in hourly bars (>= {SYNTHETIC_MIN_LENGTH}; default {SYNTHETIC_BARS}); "
        "a --prices file is replayed whole",
    )
    data.add_argument(
        "--volume", type=_positive_float("--volume"),
        help=f"volume each buy signal trades, the same on every buy, so its leverage follows the price (the "
        "header shows it at the first, lowest and highest close). Default: "
        f"{SYNTHETIC_VOLUME:g} on the synthetic series; on a file, the starting cash divided by the first close "
        "times contract_size: 1x leverage at the first close, more on a buy at a higher price",
    )
    data.add_argument("--cash", type=_positive_float("--cash"), default=10_000.0, help="starting cash (default 10000)")

    costs = parser.add_argument_group("paper broker costs and margin (the bid is the bar's price; a buy pays the spread)")
    costs.add_argument(
        "--commission-per-lot", type=_non_negative_float("--commission-per-lot"), metavar="AMOUNT",
        help="commission per unit of volume on every fill (or PAPER_COMMISSION_PER_LOT; default 0)",
    )
    costs.add_argument(
        "--commission-percent", type=_non_negative_float("--commission-percent"), metavar="PERCENT",
        help="commission in percent of each fill's notional (or PAPER_COMMISSION_PERCENT; default 0)",
    )
    costs.add_argument(
        "--spread", type=_non_negative_float("--spread"), metavar="PRICE",
        help="a fixed spread in price units (or PAPER_SPREAD; default 0)",
    )
    costs.add_argument(
        "--point", type=_positive_float("--point"), metavar="PRICE",
        help="the price of one point (e.g. 0.00001 for EURUSD): each bar's MT5 <SPREAD> in points becomes "
        "its spread (or PAPER_POINT; default: the file's spreads are not used). Refused for a file without "
        "a <SPREAD> column",
    )
    costs.add_argument(
        "--slippage", type=_non_negative_float("--slippage"), metavar="PRICE",
        help="price units by which every fill is worse than its quote (or PAPER_SLIPPAGE; default 0)",
    )
    costs.add_argument(
        "--max-leverage", type=_leverage, metavar="RATIO",
        help="refuse an order that would hold a notional above RATIO x equity; 'off' allows any "
        "(or PAPER_MAX_LEVERAGE; default 100)",
    )
    data.add_argument("--fast", type=int, default=5, help="bars in the fast moving average (default 5)")
    data.add_argument("--slow", type=int, default=20, help="bars in the slow moving average (default 20)")

    guards = parser.add_argument_group("guards and settings")
    guards.add_argument("--config", metavar="FILE", help="a TOML settings file (keys are the Settings field names)")
    guards.add_argument(
        "--max-drawdown", type=_positive_float("--max-drawdown"), metavar="PERCENT",
        help="halt and close every position when equity falls this many percent below its peak (default 20)",
    )
    guards.add_argument(
        "--min-equity", type=float, metavar="AMOUNT",
        help="halt and close every position when equity falls below this amount (default 500)",
    )
    guards.add_argument(
        "--daily-loss", type=_positive_float("--daily-loss"), metavar="PERCENT",
        help="halt when the loss since the start of the trading day (in data time) reaches this percent "
        "(default: off)",
    )
    guards.add_argument(
        "--heartbeat-interval", type=_positive_float("--heartbeat-interval"), metavar="SECONDS",
        help="heartbeat period in data seconds. Default: HEARTBEAT_INTERVAL_SECONDS if set, else one bar "
        "(a live default of 10 s would beat hundreds of times between hourly bars)",
    )

    run = parser.add_argument_group("running")
    run.add_argument(
        "--speed", type=_positive_float("--speed"),
        help="data seconds replayed per real second, e.g. 3600 plays an hour of bars each second. "
        "Default: as fast as the system handles the bars",
    )
    run.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR",
        help=f"folder for state.db, equity.csv, fills.csv, summary.json and report.png (default ./{DEFAULT_OUT}/)",
    )
    run.add_argument(
        "--progress", choices=("auto", "on", "off"), default="auto",
        help="progress bar on stderr: auto shows it when stderr is a terminal (default auto)",
    )

    outside = parser.add_argument_group("metrics, alerts and logs")
    outside.add_argument(
        "--statsd", type=_statsd_address, metavar="HOST:PORT",
        help="send metrics to a statsd daemon (default: STATSD_HOST/STATSD_PORT, else none)",
    )
    outside.add_argument(
        "--telegram-token", metavar="TOKEN",
        help="Telegram bot token for alerts (or TELEGRAM_BOT_TOKEN); needs --telegram-chat too. "
        "Without both, alerts are logged",
    )
    outside.add_argument("--telegram-chat", metavar="CHAT_ID", help="Telegram chat id for alerts (or TELEGRAM_CHAT_ID)")
    outside.add_argument(
        "--log-json", action="store_true", default=None, help="log one JSON object per line (or LOG_JSON=1)"
    )
    outside.add_argument("--log-level", help="log level: DEBUG, INFO, WARNING, ... (or LOG_LEVEL; default INFO)")
    outside.add_argument(
        "--log-events", action="store_true",
        help="also log every event, one line each (the journal in state.db always has them all)",
    )
    args = parser.parse_args(argv)
    if args.timezone is not None and args.prices is None:
        # The synthetic bars are made in UTC: a zone would be ignored without a word.
        parser.error("--timezone applies only to a --prices file (the demo's own bars are in UTC)")
    if args.timezone is not None:
        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            parser.error(f"--timezone must be an IANA time zone name such as Europe/London, got {args.timezone!r}")
    if args.bars is not None and args.prices is not None:
        parser.error("--bars applies only to the demo's own series (a --prices file is replayed whole)")
    return args


# --- pieces of a run -------------------------------------------------------------------------


def _settings(args: argparse.Namespace, out: Path, bars: Sequence[Bar]) -> Settings:
    overrides: dict[str, Any] = {"state_db": str(out / STATE_DB)}
    # A bad value is named by the flag that gave it, not by the setting the flag sets.
    flags = {
        "state_db": "--out", "statsd_host": "--statsd", "statsd_port": "--statsd",
        "paper_max_leverage": "--max-leverage", "heartbeat_interval_seconds": "--heartbeat-interval",
    }
    for flag, field in (
        ("max_drawdown", "max_drawdown_percent"),
        ("min_equity", "min_equity"),
        ("daily_loss", "daily_loss_percent"),
        ("telegram_token", "telegram_bot_token"),
        ("telegram_chat", "telegram_chat_id"),
        ("log_json", "log_json"),
        ("log_level", "log_level"),
        ("commission_per_lot", "paper_commission_per_lot"),
        ("commission_percent", "paper_commission_percent"),
        ("spread", "paper_spread"),
        ("point", "paper_point"),
        ("slippage", "paper_slippage"),
    ):
        value = getattr(args, flag)
        flags[field] = "--" + flag.replace("_", "-")
        if value is not None:
            overrides[field] = value
    if args.statsd is not None:
        overrides["statsd_host"], overrides["statsd_port"] = args.statsd
    if args.max_leverage is not None:
        overrides["paper_max_leverage"] = None if args.max_leverage == "off" else args.max_leverage
    configured = Settings.load(args.config, override_names=flags, **overrides)

    # Heartbeats and the stall watchdog run in data time here. One beat per bar unless the user
    # chose otherwise; the loop cycles only when a bar arrives, so a gap in the data (a weekend)
    # is not a stall: the stall limit covers the longest gap.
    spacing = _spacing(bars)
    default_interval = attrs.fields(Settings).heartbeat_interval_seconds.default
    interval = args.heartbeat_interval or (
        configured.heartbeat_interval_seconds if configured.heartbeat_interval_seconds != default_interval else spacing
    )
    replay_overrides: dict[str, Any] = {"heartbeat_interval_seconds": interval}
    if configured.heartbeat_timeout_seconds is None or configured.heartbeat_timeout_seconds >= interval:
        # The heartbeat's question to the loop waits in real seconds: a short wait, whatever the bar size.
        replay_overrides["heartbeat_timeout_seconds"] = min(5.0, interval / 2)
    if configured.stall_after_seconds is None:
        replay_overrides["stall_after_seconds"] = max(3 * interval, _longest_gap(bars) + interval)
    return Settings.load(args.config, override_names=flags, **overrides, **replay_overrides)


def _unusable_out(name: str, out: Path, exc: Exception) -> int:
    """Say why ``--out`` cannot be used, on one line; the exit code for bad input."""
    if isinstance(exc, OSError):
        print(f"{name}: --out {str(out)!r} cannot be used: {exc.strerror or exc}", file=sys.stderr)
    else:
        print(f"{name}: {exc}", file=sys.stderr)
    return 2


def _run_tables(config: str | None) -> list[str]:
    """The tables of a run config other than [tradewarden], which a replay does not read (a
    config Settings.load refused has already been reported)."""
    if config is None:
        return []
    try:
        data = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    return sorted(key for key, value in data.items() if key != "tradewarden" and isinstance(value, dict))


def _spacing(bars: Sequence[Bar]) -> float:
    gaps = [(b.time - a.time).total_seconds() for a, b in zip(bars, bars[1:])]
    return float(statistics.median(gaps)) if gaps else 3600.0


def _longest_gap(bars: Sequence[Bar]) -> float:
    return max(((b.time - a.time).total_seconds() for a, b in zip(bars, bars[1:])), default=0.0)


def _bars(args: argparse.Namespace) -> tuple[list[Bar], str, bool]:
    if args.prices is None:
        return synthetic_bars(SYNTHETIC_BARS if args.bars is None else args.bars), args.symbol or SYNTHETIC_SYMBOL, True
    zone = "UTC" if args.timezone is None else args.timezone
    series = load_series(args.prices, symbol=args.symbol, timezone=zone, symbol_field="--symbol")
    # The file's own symbol column says what it holds better than the file's name does.
    return list(series.bars), args.symbol or series.symbol or Path(args.prices).stem.upper(), False


def _claim(out: Path) -> StateFileClaim:
    # The same claim a running bot takes on its state file: a replay and a bot, or two replays, on
    # one folder would each rotate and rewrite the other's files.
    try:
        claim = StateFileClaim.of(str(out / STATE_DB))
    except StateFileHeld:
        raise UsageError(
            f"--out {str(out)!r} is in use: its {STATE_DB} is claimed by another running replay, demo or bot; "
            "wait for it to end, or give this run another --out"
        ) from None
    assert claim is not None  # (None only for a memory store, which has no path)
    return claim


def _claim_fresh_state(out: Path) -> tuple[StateFileClaim, str | None]:
    """Claim ``out``'s state file for this run, then start it fresh (`_fresh_state`); the claim,
    and the name the previous run's database was moved to, if any."""
    held = _claim(out)
    try:
        rotated = _fresh_state(out)
        if rotated is not None:
            # The claim went with the file it locks, now state.db.previous: the new state.db is
            # claimed before the store makes it, so a replay started meanwhile is refused.
            renewed = _claim(out)
            held.close()
            held = renewed
    except BaseException:
        held.close()
        raise
    return held, rotated


def _fresh_state(out: Path) -> str | None:
    # A run owns its state: the previous run's database (and its WAL files, which SQLite finds by
    # name) is kept once as state.db.previous rather than carried on from. Only a file that is
    # ours: opening it refuses, and leaves alone, anything else called state.db. An empty
    # state.db with no WAL (the claim made it) holds nothing to keep.
    database = out / STATE_DB
    if database.stat().st_size == 0:
        # Made by the claim just now; a WAL beside it belonged to a database since deleted (a WAL
        # database's first page is on disk before any frame of its WAL): nothing to keep.
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        return None
    SqliteStore(database).close()
    if not (out / SUMMARY_JSON).exists():
        # Not a finished replay's: perhaps a stopped bot's, whose HALTED latch must not be moved
        # out of its way (its next start would trade).
        raise UsageError(
            f"--out {str(out)!r} holds a {STATE_DB} that no replay finished (no {SUMMARY_JSON} beside it), "
            "perhaps a bot's with its latch: give this run another --out, or move that file away yourself"
        )
    target = out / f"{STATE_DB}.previous"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
        source = Path(f"{database}{suffix}")
        if source.exists():
            source.replace(Path(f"{target}{suffix}"))
    return target.name


def _usable_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a folder, got {str(out)!r}, which is a file")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {str(out)!r} is not writable")
    # A disk that fills during the run fails the store under the running actors, which then do
    # what a live system must (alert, restart, give up and halt): refuse a nearly full one first.
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise UsageError(
            f"--out {str(out)!r} has {free // 1024} KiB free, a run needs {MIN_FREE_BYTES // 2**20} MiB "
            "(the journal's write-ahead log alone grows to 4 MiB)"
        )


class _CtrlC:
    """Ctrl-C once a run has touched its files: noted, and the replay told to end after the bar in
    hand. It never raises an exception in the main thread, so the system always stops in order
    and every file is written whole, whenever the key is pressed (and however often).

    The replay is stopped from a thread of its own, woken through `signal.set_wakeup_fd`: a signal
    handler runs in the main thread between any two bytecodes, possibly inside the replay's own
    locks, so it must not take them itself.
    """

    def __init__(self) -> None:
        self._pressed = threading.Event()
        self._stop: Callable[[], None] | None = None
        self._wakeup, writer = socket.socketpair()
        writer.setblocking(False)
        self._writer = writer  # kept open for the life of the run: the wakeup fd must stay valid
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        # A Python handler must be set for the wakeup fd to hear the signal; it has nothing to do.
        signal.signal(signal.SIGINT, lambda signum, frame: None)
        threading.Thread(target=self._watch, name="ctrl-c", daemon=True).start()

    def _watch(self) -> None:
        while received := self._wakeup.recv(64):
            if signal.SIGINT in received:
                self._pressed.set()
                if self._stop is not None:
                    self._stop()

    def stops(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` on Ctrl-C, at once if it was pressed already."""
        self._stop = stop
        if self._pressed.is_set():
            stop()

    @property
    def pressed(self) -> bool:
        """True once Ctrl-C was pressed."""
        return self._pressed.is_set()


def _replace_whole(path: Path, write: Callable[[Path], bool]) -> bool:
    # Written beside the file and renamed over it, so that the file at ``path`` is always a whole
    # one, whenever the run is interrupted or killed. The suffix is kept: plot_report picks the
    # image format by it.
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        written = write(partial)
        if written:
            partial.replace(path)
        return written
    finally:
        partial.unlink(missing_ok=True)


class _Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self._stream = stream
        self._last = 0.0

    def __call__(self, done: int, total: int, at: datetime) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = int(width * done / max(total, 1))
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} bars  {at:%Y-%m-%d %H:%M} UTC"
        )
        if done >= total:
            self._stream.write("\n")
        self._stream.flush()

    def close(self) -> None:
        """End the line if the bar was drawn and the run ended early."""
        if self._last:
            self._stream.write("\n")
            self._stream.flush()


def summarize(
    events: Sequence[Event], path: EquityPath, guard_drawdown: float = 0.0, digits: int = PRICE_DIGITS_UNKNOWN,
    *, bars_total: int | None = None,
) -> RunSummary:
    """The run's summary from its journal and its equity path, so they always agree: fills are
    fills.csv's rows (`fills_from_events`) counted by why, guard triggers GUARD_TRIGGERED events
    (at the reading they judged), the stretches of halted or reducing trading TRADING_STATE_CHANGED
    events over the path's bars (`state_spans`), restarts ACTOR_RESTARTED events, refused orders TRADE_FAILED
    events (`refusals_from_events`) counted by cause, with the first of each and its reason. The max drawdown is the worst of the path's
    (inside bars included) and ``guard_drawdown``, the guard's own tracker's: the guard also judged
    the account before each order, which no bar's equity shows. The path's start is the paper
    account's starting cash, so the final equity less it and every fill's realised profit is what
    the positions still open are worth at the last close. ``digits`` are the decimals of the
    instrument's prices (`price_digits`). ``bars_total`` is how many bars the run was given (the
    path's when None): a run that played fewer was interrupted, and says so."""
    counts = Counter(event.event_type.value for event in events)
    fired = [GuardTriggered.from_event(event) for event in events if event.event_type is EventType.GUARD_TRIGGERED]
    triggers = [GuardTrigger(trigger.at, trigger.guard, trigger.reason) for trigger in fired]
    fills = fills_from_events(events)
    held = open_positions(fills)
    refusals = refusals_from_events(events)
    start_equity = path.start_equity
    final = path.closes[-1] if path.closes else start_equity
    played = len(path.times)
    total = played if bars_total is None else bars_total
    return RunSummary(
        interrupted=played < total,
        bars_played=played,
        bars_total=total,
        start_equity=start_equity,
        final_equity=final,
        max_drawdown=max(path.max_drawdown(), guard_drawdown),
        fills_by_why=Counter(fill.why for fill in fills),
        guard_triggers=triggers,
        state_spans=state_spans(events, path.times),
        restarts=counts[EventType.ACTOR_RESTARTED.value],
        events_by_type=dict(counts),
        orders_refused_by=Counter(refusal.cause for refusal in refusals),
        first_refusals=first_refusals(refusals),
        open_positions=held,
        # Cash is the start plus what every fill put into it; the rest of the equity is unrealised.
        unrealised_pnl=final - start_equity - math.fsum(fill.realised_pnl for fill in fills) if held else 0.0,
        price_digits=digits,
    )


def _write_report(
    out: Path, summary: RunSummary, events: Sequence[Event], path: EquityPath, settings: Settings, title: str,
) -> bool:
    def summary_json(target: Path) -> bool:
        target.write_text(json.dumps(summary.to_json_dict(), indent=2) + "\n", encoding="utf-8")
        return True

    def report_png(target: Path) -> bool:
        closes = [e.timestamp for e in events if e.event_type is EventType.POSITION_CLOSED]
        return plot_report(
            target,
            path.times,
            path.closes,
            settings.max_drawdown_percent / 100.0,
            guard_marks=list(summary.guard_triggers),
            close_marks=closes,
            title=title,
            levels=limit_levels(ReportLimits.from_settings(settings), path),
            refused_marks=refusals_from_events(events),
            notes=end_of_run_lines(summary, settings.account_currency),
            lows=path.lows,
            highs=path.highs,
            rises=path.rises,
            start_equity=path.start_equity,
            baselines=path.baselines,
            state_spans=summary.state_spans,
        )

    _replace_whole(out / EQUITY_CSV, lambda target: write_equity_csv(target, path.rows()) >= 0)
    fills = fills_from_events(events)
    _replace_whole(out / FILLS_CSV, lambda target: write_fills_csv(target, fills, summary.price_digits) >= 0)
    _replace_whole(out / SUMMARY_JSON, summary_json)
    plotted = bool(path.times) and _replace_whole(out / REPORT_PNG, report_png)
    if not plotted:
        (out / REPORT_PNG).unlink(missing_ok=True)  # an earlier run's chart would not match these files
    return plotted


def _bar_count_words(count: int) -> str:
    return f"{count} bar" if count == 1 else f"{count} bars"


def _closed_lines(events: Sequence[Event], digits: int) -> list[str]:
    lines = []
    for event in events:
        if event.event_type is EventType.POSITION_CLOSED:
            closed = PositionClosed.from_event(event)
            side = "long" if closed.side is Side.BUY else "short"
            lines.append(
                f"  {event.timestamp:%Y-%m-%d %H:%M} UTC  closed {side} {closed.volume:g} {closed.symbol} "
                f"at {format_price(closed.price, digits, closed.volume)}, realised {closed.realised_pnl:+,.2f}: {closed.reason}"
            )
    return lines


def _journal_incomplete(system: TradingSystem, name: str) -> bool:
    """Say so on stderr, as ``name``, with the count, when the stop could not journal every event:
    a summary and chart built from a journal that misses events would be wrong, so none is written."""
    if not system.unjournaled:
        return False
    print(
        f"{name}: {system.unjournaled} events were not journaled (the state store failed); "
        "the journal is incomplete, so no summary or chart was written",
        file=sys.stderr,
    )
    return True


def _instrument_digits(bars: Sequence[Bar], settings: Settings) -> int:
    # A fill's price is a bar's price plus the spread and the slippage: together they hold every
    # decimal a fill can carry, so rounding to them takes off float noise and nothing else.
    added = [settings.paper_spread, settings.paper_slippage]
    if settings.paper_point is not None:
        added.append(settings.paper_point)
    return price_digits([price for bar in bars for price in (bar.open, bar.high, bar.low, bar.close)] + added)


def _unused_point(args: argparse.Namespace, settings: Settings, bars: Sequence[Bar]) -> str | None:
    """None when the paper point prices some bar's ``<SPREAD>``. A point with none to price adds no
    spread without a word: ``--point`` (it has no other use) is refused with a `UsageError` naming
    the flag and the file; ``paper_point`` from the config or the environment gets the warning
    returned, for the header."""
    if settings.paper_point is None or any(bar.spread_points is not None for bar in bars):
        return None
    source = "the synthetic series" if args.prices is None else repr(args.prices)
    if args.point is not None:
        raise UsageError(
            f"--point {args.point:g} prices each bar's <SPREAD> column (an MT5 export's), but {source} has none, "
            "so it would add no spread: give the spread in price units with --spread instead"
        )
    return (
        f"warning: paper_point {settings.paper_point:g} (from --config or PAPER_POINT) adds no spread: {source} "
        f"has no <SPREAD> column, so every fill uses the fixed spread, {settings.paper_spread:g} (--spread)"
    )


def _describe_size(volume: float, bars: Sequence[Bar], settings: Settings, cash: float) -> str:
    """What a buy of ``volume`` holds against the starting cash: its notional and leverage at the
    first close, then its leverage at the series' lowest and highest close (every buy trades the
    same volume, whatever the price), and whether the paper broker's leverage limit refuses some."""
    digits = _instrument_digits(bars, settings)
    contract = f" x contract size {settings.contract_size:g}" if settings.contract_size != 1 else ""

    def notional(close: float) -> float:
        return volume * close * settings.contract_size

    def price(close: float) -> str:
        return format_price(close, digits, volume)

    def leverage(close: float) -> str:
        return f"{notional(close) / cash:,.1f}:1"

    closes = [bar.close for bar in bars]
    first, low, high = closes[0], min(closes), max(closes)
    limit = settings.paper_max_leverage
    refused = f"; buys over max leverage {limit:g}:1 are refused" if limit is not None and notional(high) > limit * cash else ""
    return (
        f"volume {volume:g}{contract} at the first close {price(first)} is notional {settings.account_currency} "
        f"{notional(first):,.2f}, leverage {leverage(first)} on the starting cash; every buy trades this volume, so "
        f"leverage runs from {leverage(low)} (lowest close {price(low)}) to {leverage(high)} (highest close "
        f"{price(high)}){refused}"
    )


def _describe_costs(settings: Settings, bar_spreads: bool) -> str:
    spread = f"{settings.paper_spread:g}"
    if settings.paper_point is not None and bar_spreads:
        spread += f" (or a bar's <SPREAD> x {settings.paper_point:g})"
    leverage = "any" if settings.paper_max_leverage is None else f"{settings.paper_max_leverage:g}:1"
    return (
        f"commission {settings.paper_commission_per_lot:g}/lot + {settings.paper_commission_percent:g}%, "
        f"spread {spread}, slippage {settings.paper_slippage:g}; max leverage {leverage}"
    )


# --- the run ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run the example as the program called ``prog`` (its usage line and error messages say that
    name); returns the exit code (0 done, 1 journal incomplete, 2 bad input, 130 interrupted)."""
    args = parse_args(argv, prog)
    name = prog.removesuffix(".py")
    out = Path(args.out)
    try:
        bars, symbol, synthetic = _bars(args)
        settings = _settings(args, out, bars)
        point_unused = _unused_point(args, settings, bars)
        configure_logging(settings.log_level, settings.log_json)
        strategy = MovingAverageCrossover(
            symbol, fast=args.fast, slow=args.slow,
            volume=args.volume or (
                SYNTHETIC_VOLUME if synthetic else round(args.cash / (bars[0].close * settings.contract_size), 6)
            ),
        )
        metrics = StatsdMetrics.from_settings(settings)
        alerts = TelegramAlerts.from_settings(settings)
    except (PriceDataError, SettingsError, ValueError, TypeError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2

    ctrl_c = _CtrlC()  # from here on files change: Ctrl-C must let the run finish them
    try:
        _usable_folder(out)
        claim, rotated = _claim_fresh_state(out)
    except (UsageError, StateFileInUse, StoreError, OSError) as exc:
        return _unusable_out(name, out, exc)
    # Held until the last file is written, and released after the store is closed (closing a
    # file the claim holds would drop SQLite's own locks on it).
    with contextlib.closing(claim):
        try:
            store = SqliteStore.from_settings(settings)
        except (StoreError, OSError) as exc:
            return _unusable_out(name, out, exc)

        source = SYNTHETIC_LABEL if synthetic else f"prices from {args.prices}"
        span = f"{bars[0].time:%Y-%m-%d %H:%M} .. {bars[-1].time:%Y-%m-%d %H:%M} UTC"
        print(f"tradewarden paper trading: {_bar_count_words(len(bars))} of {symbol} ({source})")
        print(f"  {span}, one bar every {_spacing(bars) / 60:g} min")
        print(
            f"  strategy: MA({strategy.fast}/{strategy.slow}) crossover, volume {strategy.volume:g}; "
            f"paper account {settings.account_currency} {args.cash:,.2f}"
        )
        print(f"  size: {_describe_size(strategy.volume, bars, settings, args.cash)}")
        print(f"  paper costs: {_describe_costs(settings, point_unused is None)}")
        if point_unused is not None:
            print(f"  {point_unused}")
        for line in active_settings_lines(settings):
            print(f"  {line}")
        speed = "as fast as possible" if args.speed is None else f"{args.speed:g}x data time"
        print(f"  replay: {speed}; heartbeat every {settings.heartbeat_interval_seconds:g} data seconds")
        if rotated:
            print(f"  fresh state: the previous run's {STATE_DB} was moved to {out / rotated}")
        ignored = _run_tables(args.config)
        if ignored:
            print(f"  not read from {args.config}: {', '.join(f'[{t}]' for t in ignored)} (for `tradewarden run`; "
                  "a replay takes the account, bars and strategy from its own flags)")
        sys.stdout.flush()

        broker = PaperBroker.from_settings(settings, args.cash)
        clock = ManualClock(bars[0].time)
        feed = PaperFeed(broker, strategy, symbol)
        sinks = [journal_sink(store)] + ([log_sink] if args.log_events else [])
        system = TradingSystem(
            settings,
            broker,
            strategy,
            alerts=alerts,
            metrics=metrics,
            store=store,
            clock=clock,
            sinks=sinks,
            loop_interval=None,  # data-driven: a cycle per bar
            market_feed=feed,
        )
        show_progress = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
        progress = _Progress() if show_progress else None
        replay = Replay(system, clock, speed=args.speed, equity=broker.account_equity, progress=progress)
        ctrl_c.stops(replay.stop)
        result: ReplayResult | None = None
        guard_drawdown: float | None = None
        try:
            system.start()
            result = replay.run(bars)
            guard_drawdown = _guard_drawdown(system)  # asked while the guard is up, after its last reading
        finally:
            if progress is not None and (result is None or not result.complete):
                progress.close()
            system.stop()
            for port in (alerts, metrics):
                close = getattr(port, "close", None)
                if close is not None:
                    close()

        if _journal_incomplete(system, name):
            store.close()
            return 1
        title = f"tradewarden paper run: {symbol}" + (" (SYNTHETIC DATA)" if synthetic else "")
        try:
            try:
                events = store.events(settings.loop_id)
                record = store.load_guard(settings.loop_id)
            finally:
                store.close()
            # A resume that rebaselines (a cooldown's) moves the peak and the day's start the
            # report measures from, never the money the run began with or the static floor.
            baselines = [(e.timestamp, e.metadata["new_peak"]) for e in events if e.event_type is EventType.REBASELINED]
            path = EquityPath.of(args.cash, result.equity, feed.inside_readings, baselines)
            summary = summarize(
                events, path, _worst_known(guard_drawdown, record), _instrument_digits(bars, settings),
                bars_total=len(bars),
            )
            if summary.interrupted:
                title += f": interrupted after {summary.bars_played} of {_bar_count_words(summary.bars_total)}"
            plotted = _write_report(out, summary, events, path, settings, title)
        except StoreError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"{name}: cannot write the report to {str(out)!r}: {exc.strerror or exc}", file=sys.stderr)
            return 2

        interrupted = ctrl_c.pressed or not result.complete
        print()
        if interrupted:
            print(f"Interrupted: stopped cleanly after {result.played} of {_bar_count_words(len(bars))}.")
        closed = _closed_lines(events, summary.price_digits)
        if closed:
            print("Positions closed by the guard:")
            print("\n".join(closed))
        files = [STATE_DB, EQUITY_CSV, FILLS_CSV, SUMMARY_JSON] + ([REPORT_PNG] if plotted else [])
        print(f"Wrote {', '.join(files)} to {out}{os.sep}")
        if not plotted and path.times:
            print(f"No chart: matplotlib is not installed. Install the plot extra with: {PLOT_INSTALL_HINT}")
        print("\n".join(describe_limits(ReportLimits.from_settings(settings), path, summary)))
        print()
        print(format_summary(summary, settings.account_currency))
        return 130 if interrupted else 0


def _guard_drawdown(system: TradingSystem) -> float | None:
    """The guard's own worst drawdown from its running peak, or None when it cannot say (gone,
    or busy past the wait)."""
    try:
        return float(system.guard_status().state.max_drawdown)
    except Exception:  # any failure to answer: the stored record stands in (_worst_known)
        return None


def _worst_known(asked: float | None, record: GuardRecord | None) -> float:
    # The guard's answer is its tracker as it is; its stored record may lag it by up to 0.1 point,
    # as the guard saves the worst drawdown only in such steps, so it stands in only when the
    # guard did not answer (and none of either when the guard never judged a reading).
    if asked is not None:
        return asked
    return record.drawdown.max_drawdown if record is not None else 0.0


if __name__ == "__main__":
    sys.exit(main())
