"""The `tradewarden` command: run, replay, status, halt, resume and journal.

``tradewarden demo`` runs a paper bot on a random walk and prints the dashboard's address and token;
``tradewarden fleet`` serves the control API and dashboard of a fleet on Ray.

status, halt and resume print the answer on stdout, and an error or a refusal on stderr. A halt
whose bot does not answer, and holds no claim on its state file (it is not running), is saved
there for the bot's next start to take before any order (exit 0). Exit
codes: 0 done; 1 refused (a resume past a hard limit) or the system ended on its own;
2 bad usage or config; 3 the control API did not answer or refused the request. Ctrl-C is how
run, demo and fleet are stopped: 0 whenever it comes, also before they have started; any other
command it interrupts exits 130, unfinished. Either way without a traceback. A reader that closes
the output early (``tradewarden journal ... | head``) ends the command quietly too, with 0 (run and
fleet write nothing on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import secrets
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from actors.service.client import Answer, ControlClient, ControlUnreachable
from actors.service.config import ConfigError, RunConfig
from actors.service.journal import JournalError, JournalReader, parse_since
from actors.service.status import status_text
from runtime.adapters.logs import configure_logging
from runtime.adapters.state_claim import StateFileClaim, StateFileHeld, StateFileInUse
from runtime.events import EventType
from runtime.settings import Settings, SettingsError

__all__ = ["main", "parser"]

_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "paper_trading.py"
_FOLLOW_SECONDS = 0.5


def parser() -> argparse.ArgumentParser:
    """The command line; ``--help`` on each subcommand explains its options."""
    top = argparse.ArgumentParser(prog="tradewarden", description="Run a guarded trading bot and operate it.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a live trading system until SIGTERM or SIGINT")
    run.add_argument("--config", required=True, metavar="FILE", help="the run config (TOML; see examples/live.toml)")

    demo = commands.add_parser("demo", help="a paper bot on a random walk with the dashboard; prints its address and token")
    demo.add_argument("--port", type=int, default=8787, help="the dashboard's port on 127.0.0.1 (default 8787)")
    demo.add_argument("--dir", default="demo-run", metavar="DIR", help="where its state file goes (default ./demo-run)")

    fleet = commands.add_parser(
        "fleet", help="serve a fleet's control API and dashboard (every account on a Ray cluster) until SIGTERM or SIGINT")
    fleet.add_argument("--address", default="auto", help="the Ray cluster to join (default: auto, RAY_ADDRESS or this machine's)")
    fleet.add_argument("--namespace", default="tradewarden", help="the fleet's Ray namespace (default: tradewarden)")
    fleet.add_argument("--config", metavar="FILE", help="read control_host, control_port, control_token from it")

    commands.add_parser(
        "replay", help="replay prices through a paper system and write a report (examples/paper_trading.py)",
        add_help=False,
    )

    def remote(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", metavar="FILE", help="read control_host, control_port, control_token from it")
        command.add_argument("--url", help="the control API, e.g. http://127.0.0.1:8787 (default: from the settings)")
        command.add_argument("--json", action="store_true", help="print the answer as JSON")
        return command

    remote("status", "show the trading state, equity, limits and actors of a running process")
    halt = remote("halt", "the kill switch: halt trading and close every position")
    halt.add_argument("--reason", required=True, help="why (journaled and alerted)")
    halt.add_argument("--by", default="tradewarden halt", help="who (journaled and alerted; default: tradewarden halt)")
    resume = remote("resume", "lift a HALTED state; refused while past a hard limit unless --rebaseline")
    resume.add_argument("--rebaseline", action="store_true", help="set the peak and the day's start to today's equity first")
    resume.add_argument("--by", default="tradewarden resume", help="who (journaled; default: tradewarden resume)")

    journal = commands.add_parser("journal", help="print a state file's events as JSON lines (read-only)")
    journal.add_argument("--db", required=True, metavar="FILE", help="the state file (STATE_DB)")
    journal.add_argument("--type", choices=[t.value for t in EventType], help="only events of this type")
    journal.add_argument("--since", metavar="TIME", help="only events after this ISO 8601 time (UTC without a zone)")
    journal.add_argument("--loop-id", help="only events of this trading loop")
    journal.add_argument("--follow", action="store_true", help="keep printing new events until Ctrl-C")
    return top


_RUN_UNTIL_STOPPED = ("run", "demo", "fleet")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _command(args_list)
        sys.stdout.flush()  # a reader gone early is met here, not in the interpreter's flush at exit
        return code
    except BrokenPipeError:
        if args_list[:1] in (["run"], ["fleet"]):
            # They write nothing on stdout: a broken pipe is their failure (exit 1, so that systemd
            # restarts them), never a reader gone.
            raise
        # The reader of stdout closed it early (`| head`): it has all it wanted. No traceback, and
        # stdout goes to /dev/null, so that what is still buffered is not flushed into the pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except KeyboardInterrupt:
        # Ctrl-C before a service has its own signal handling (while it imports, or loads its
        # config and strategy) or during a one-shot command: nothing to clean up, nothing to say.
        return 0 if args_list[:1] and args_list[0] in _RUN_UNTIL_STOPPED else 130


def _command(args_list: list[str]) -> int:
    if args_list[:1] == ["replay"]:
        return _replay(args_list[1:])
    args = parser().parse_args(args_list)
    if args.command == "run":
        return _run(args.config)
    if args.command == "demo":
        return _demo(args.port, Path(args.dir))
    if args.command == "fleet":
        return _fleet(args)
    if args.command == "journal":
        return _journal(args)
    return _remote(args)


def _run(path: str) -> int:
    from actors.service.live import run  # the server stack is loaded only to run one

    try:
        config = RunConfig.load(path)
    except ConfigError as exc:
        print(f"tradewarden run: {exc}", file=sys.stderr)
        return 2
    if not _logging("run", config.settings):
        return 2
    return run(config)


def _logging(command: str, settings: Settings) -> bool:
    # A log level loguru does not know is a bad setting like any other: named, exit 2.
    try:
        configure_logging(settings.log_level, settings.log_json)
    except (TypeError, ValueError) as exc:
        print(f"tradewarden {command}: LOG_LEVEL: {exc}", file=sys.stderr)
        return False
    return True


_DEMO_KEEPS = frozenset({"CONTROL_TOKEN", "LOG_LEVEL", "LOG_JSON"})
"""The environment variables a demo takes from its shell (it ignores every other setting's)."""

_DEMO = """# written by `tradewarden demo`: a lively paper bot, so the dashboard has something to show
[tradewarden]
loop_id = "demo"
state_db = "{db}"
control_host = "127.0.0.1"
control_port = {port}
max_drawdown_percent = 3.0
guard_warn_fraction = 0.5
daily_loss_percent = 5.0
min_equity = 500.0
loop_interval_seconds = 0.5
heartbeat_interval_seconds = 2.0

[broker]
kind = "paper"
cash = 10000.0

[feed]
kind = "synthetic"
seed = 11
interval_seconds = 0.5
volatility = 0.003

[strategy]
class = "runtime.replay.strategies:MovingAverageCrossover"

[strategy.options]
fast = 3
slow = 8
volume = 60.0
"""


def _demo(port: int, folder: Path) -> int:
    if not 0 < port < 65536:
        print(f"tradewarden demo: --port must be a port number in 1..65535, got {port}", file=sys.stderr)
        return 2
    if folder.exists() and not folder.is_dir():
        print(f"tradewarden demo: --dir must be a folder, got {str(folder)!r}, which is a file", file=sys.stderr)
        return 2
    # The demo runs on the settings it writes: a live bot's STATE_DB, CONTROL_PORT, limits or
    # Telegram chat exported in this shell must not reach it (its paper account would trade on
    # that bot's state file, and alert its chat). Its token and how it logs are the user's.
    ignored = [var for var in Settings.variables() if var in os.environ and var not in _DEMO_KEEPS]
    for var in ignored:
        del os.environ[var]
    if ignored:
        print(f"tradewarden demo: ignoring {', '.join(ignored)} from the environment: the demo runs on its own "
              "settings", file=sys.stderr)
    from actors.service.server import ServerError, bind  # (as in _run: the server stack only to run)

    # The port is tried before anything is printed or written: on a busy one the address shown
    # would be another server's, and the run would fail leaving a config and a state file behind.
    # (One taken between this try and the run's own bind is still refused there, by the run.)
    try:
        bind("127.0.0.1", port, token=None).close()
    except ServerError as exc:
        print(f"tradewarden demo: {exc}", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    db = (folder / "state.db").resolve()
    # A demo starts from a fresh account, as the paper replay does: an old HALTED latch is not its
    # own. Emptied under the state file's claim, so a demo still running there keeps its journal
    # (the claim is let go just before the run takes it again).
    claim = _claimed("demo", str(db), f"--dir {str(folder)!r} is in use: its state.db is claimed by another running "
                     "demo or bot; stop it, or give this demo another --dir")
    if claim is None:
        return 2
    try:
        os.truncate(db, 0)  # (the same file, so the claim on it holds throughout)
        for stale in (db.with_name("state.db-wal"), db.with_name("state.db-shm")):
            stale.unlink(missing_ok=True)
    finally:
        claim.close()
    config = folder / "demo.toml"
    config.write_text(_DEMO.format(db=db.as_posix(), port=port))
    token = os.environ.setdefault("CONTROL_TOKEN", secrets.token_hex(16))
    print(f"dashboard: http://127.0.0.1:{port}/  token: {token}  (Ctrl-C stops the demo)", flush=True)
    return _run(str(config))


def _fleet(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.config)
    except SettingsError as exc:
        print(f"tradewarden fleet: {exc}", file=sys.stderr)
        return 2
    if not _logging("fleet", settings):
        return 2
    from actors.service.fleet_api import serve_fleet  # Ray and the server stack only to serve a fleet

    return serve_fleet(settings, args.address, args.namespace)


def _replay(argv: list[str]) -> int:
    # The replay is the example's, so README's first command and this one stay the same program.
    if not _EXAMPLE.is_file():
        print(f"tradewarden replay: needs a source checkout; {_EXAMPLE} not found", file=sys.stderr)
        return 2
    example = runpy.run_path(str(_EXAMPLE), run_name="tradewarden_replay")
    code: int = example["main"](argv, prog="tradewarden replay")
    return code


def _client(args: argparse.Namespace, settings: Settings) -> ControlClient:
    if args.url is not None:
        wanted = f"--url must be an http:// or https:// URL of the control API, got {args.url!r}"
        try:
            parts = urlsplit(args.url)
            _ = parts.hostname, parts.port
        except ValueError as exc:  # (an unclosed [IPv6] host, a port out of range)
            raise SettingsError(f"{wanted} ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(wanted)
    url = args.url or f"http://{settings.control_host}:{settings.control_port}"
    return ControlClient(url, settings.control_token)


def _remote(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.config)
        client = _client(args, settings)
    except SettingsError as exc:
        print(f"tradewarden {args.command}: {exc}", file=sys.stderr)
        return 2
    for flag in ("reason", "by"):
        value = getattr(args, flag, None)
        if value is not None and not _utf8(value):  # (bytes of another encoding in argv)
            print(f"tradewarden {args.command}: --{flag} must be text that UTF-8 can carry, got {value!r}", file=sys.stderr)
            return 2
    try:
        if args.command == "status":
            answer = client.call("GET", "/api/status")
        elif args.command == "halt":
            answer = client.call("POST", "/api/halt", {"reason": args.reason, "by": args.by})
        else:
            answer = client.call("POST", "/api/resume", {"rebaseline": args.rebaseline, "by": args.by})
    except ControlUnreachable as exc:
        print(f"tradewarden {args.command}: {exc}", file=sys.stderr)
        if args.command == "halt" and args.url is None:
            return _halt_offline(args, settings)
        return 3
    print(json.dumps(answer.body, indent=2) if args.json else _readable(args.command, answer),
          file=sys.stdout if answer.ok else sys.stderr)
    if answer.ok:
        return 0
    return {409: 1, 400: 2, 413: 2}.get(answer.status, 3)  # refused; a bad request; no usable answer


def _halt_offline(args: argparse.Namespace, settings: Settings) -> int:
    # The API did not answer: when no process holds the bot's state file, the bot is not running,
    # and the halt is saved there as a pending one, which its next start takes before any order
    # (as the fleet does for an account still starting). A bot that holds it but does not answer
    # cannot be halted from here: say so, and how.
    if settings.state_db is None or settings.state_dsn is not None:
        return 3
    path = str(Path(settings.state_db).resolve())  # (relative to this shell's folder: said whole)
    if not Path(path).is_file():
        print(f"tradewarden halt: and no state file at {path!r} (STATE_DB) to save the halt in", file=sys.stderr)
        return 3
    from runtime.adapters.sqlite import SqliteStore, StoreError  # (only for a halt saved here)
    from runtime.store import PendingHalt

    try:
        halt = PendingHalt(args.by, args.reason)
    except (TypeError, ValueError) as exc:
        print(f"tradewarden halt: {exc}", file=sys.stderr)
        return 2
    claim = _claimed("halt", path, f"the process holding {path!r} does not answer: stop it (SIGTERM, else kill it), "
                     "then halt again to save the halt for its next start")
    if claim is None:
        return 3
    try:
        with SqliteStore(path) as store:
            loops = store.loop_ids()
            if loops and settings.loop_id not in loops:
                # Saved for a loop the file does not hold, it would never be taken.
                print(f"tradewarden halt: {path!r} holds no loop {settings.loop_id!r} (it holds "
                      f"{', '.join(map(repr, loops))}): set LOOP_ID (or loop_id in --config) to the bot's", file=sys.stderr)
                return 3
            store.save_pending_halt(settings.loop_id, halt)
    except StoreError as exc:
        print(f"tradewarden halt: the halt was not saved: {exc}", file=sys.stderr)
        return 3
    finally:
        claim.close()
    print(f"halt pending for loop {settings.loop_id!r}: no bot runs on {path!r}; its next start takes the halt "
          f"before any order (HALTED, every position closed): {args.reason}")
    return 0


def _claimed(command: str, path: str, held: str) -> StateFileClaim | None:
    # This process's claim on the state file at ``path``, or None once why not is said: ``held``
    # when another process has it.
    try:
        claim = StateFileClaim.of(path)
    except StateFileHeld:
        print(f"tradewarden {command}: {held}", file=sys.stderr)
        return None
    except StateFileInUse as exc:
        print(f"tradewarden {command}: {exc}", file=sys.stderr)
        return None
    assert claim is not None  # (None only for no path)
    return claim


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _readable(command: str, answer: Answer) -> str:
    body = answer.body
    if not answer.ok:
        done, error = body.get("done", "failed"), body.get("error")
        if isinstance(error, str) and error.startswith(f"{command} {done}"):
            return error  # a refusal the API words itself ("resume refused: ..."), not framed again
        return f"{command} {done} ({answer.status}): {error}"
    if command == "halt":
        return f"halted (was {body['previous_state']}): {body['reason']}"
    if command == "resume":
        return str(body["message"])
    return status_text(body)


def _journal(args: argparse.Namespace) -> int:
    try:
        reader = JournalReader(args.db)
        since = parse_since("--since", args.since) if args.since else None
    except JournalError as exc:
        print(f"tradewarden journal: {exc}", file=sys.stderr)
        return 2
    seq = 0
    idle = threading.Event()
    try:
        while True:
            rows = reader.events(loop_id=args.loop_id, event_type=args.type, since=since, after_seq=seq)
            for _, event in rows:
                print(event.to_json(), flush=True)
            seq = rows[-1][0] if rows else seq
            if not args.follow:
                return 0
            idle.wait(_FOLLOW_SECONDS)
    except JournalError as exc:
        print(f"tradewarden journal: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
