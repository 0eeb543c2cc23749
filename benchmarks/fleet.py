"""``python -m benchmarks.fleet [--accounts N] [--kills K]``: the fleet on a local one-node Ray
cluster beside the same accounts in one process without Ray.

Figures: accounts started per second, memory per account (RSS and PSS of each account's worker,
beside an idle Ray worker and beside the growth of one process per account started in it),
Ray's own memory, the restart time after SIGKILL of an account's worker (beside stopping and
starting the same account's system again in one process), and the other accounts' status
latency while one restarts (beside at rest, and beside asking the guard in one process). Ends
with how many accounts fit this node by memory. Needs ``pip install -e '.[ray]'``.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import attrs
from loguru import logger

from actors.fleet import Fleet, Health, RestartWindow
from actors.system import TradingSystem, start_trading_system
from benchmarks.baselines import Latency
from benchmarks.stats import Row, format_table, rss_bytes
from runtime.adapters.paper import PaperBroker
from runtime.backoff import Backoff
from runtime.settings import Settings
from runtime.signals import ListSignalSource

__all__ = ["main"]

_MIB = 1024 * 1024
_PAPER = functools.partial(PaperBroker, 10_000)


def _status_kib(pid: int, field: str, path: str = "status") -> int:
    with open(f"/proc/{pid}/{path}", encoding="ascii") as lines:
        for line in lines:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/{path}")


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid``."""
    return _status_kib(pid, "VmRSS") / 1024


def pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` (shared pages split between their users)."""
    return _status_kib(pid, "Pss", "smaps_rollup") / 1024


def ray_processes_mib(exclude: set[int]) -> float:
    """RSS of every Ray process on this machine (raylet, GCS, its Python helpers, idle workers),
    but for ``exclude`` and this process."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"/ray/" in cmdline or b"ray::" in cmdline or b"raylet" in cmdline or b"gcs_server" in cmdline:
                total += rss_mib(int(entry))
        except (OSError, RuntimeError):
            continue  # gone meanwhile
    return total


def mem_total_mib() -> float:
    """This machine's memory."""
    with open("/proc/meminfo", encoding="ascii") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith("MemTotal:")) / 1024


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _back(fleet: Fleet, account: str, old_pid: int | None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        try:
            status = fleet.status(account, timeout=2.0)
            if status.pid != old_pid and status.health is Health.OK:
                return
        except Exception:  # restarting
            pass
        pause.wait(0.01)
    raise RuntimeError(f"{account} did not come back within {timeout}s")


def _poll(call: Callable[[], object], stop: threading.Event, samples: list[float], errors: list[BaseException]) -> None:
    while not stop.is_set():
        try:
            samples.append(_timed(call))
        except Exception as exc:
            errors.append(exc)
        stop.wait(0.005)


@attrs.frozen
class InProcess:
    """The accounts as systems in one process."""

    rate: float  # accounts/s
    mib: float  # RSS growth per account
    restart: Latency
    asks: Latency


@attrs.frozen
class OnRay:
    """The accounts on Ray."""

    rate: float
    rss: float
    pss: float
    idle: float  # RSS of an idle Ray worker
    ray: float  # RSS of Ray's own processes
    restart: Latency
    rest: Latency
    during: Latency
    errors: list[BaseException]


def in_process(accounts: int, kills: int, root: Path) -> InProcess:
    """The same accounts as systems in this one process: start rate, RSS growth per account,
    restart of one account's whole system from its store, and status asks."""
    def settings(index: int) -> Settings:
        return Settings(loop_id=f"local-{index}", state_db=str(root / f"local-{index}.db"), loop_interval_seconds=0.5)

    before = rss_bytes()
    systems: list[TradingSystem] = []
    elapsed = _timed(lambda: systems.extend(start_trading_system(settings(i), _PAPER(), ListSignalSource())
                                             for i in range(accounts)))
    for system in systems:
        system.guard_status()
    grown = (rss_bytes() - before) / _MIB / accounts
    restarts = []
    for k in range(kills):
        index = k % accounts
        started = time.perf_counter()
        systems[index].stop()
        systems[index] = start_trading_system(settings(index), _PAPER(), ListSignalSource())
        systems[index].guard_status()
        restarts.append(time.perf_counter() - started)
    asks = [_timed(s.guard_status) for _ in range(50) for s in systems]
    for system in systems:
        system.stop()
    return InProcess(accounts / elapsed, grown, Latency(tuple(restarts)), Latency(tuple(asks)))


def on_ray(accounts: int, kills: int, root: Path) -> OnRay:
    """The accounts on a local Ray cluster."""
    with Fleet.local(num_cpus=2, window=RestartWindow(kills + 1, 3600.0, Backoff(0.0, 0.0))) as fleet:
        ray = sys.modules["ray"]

        @ray.remote(num_cpus=0)
        class Idle:
            def pid(self) -> int:
                return os.getpid()

        idle = Idle.remote()  # type: ignore[attr-defined]  # (made by Ray's decorator)
        idle_pid = ray.get(idle.pid.remote())
        idle_rss = rss_mib(idle_pid)
        ray_mib = ray_processes_mib(exclude=set())  # before any account: Ray and one idle worker
        ids = [f"bench-{i}" for i in range(accounts)]

        def add_all() -> None:
            for account in ids:
                settings = Settings(state_db=str(root / f"{account}.db"), loop_interval_seconds=0.5)
                fleet.add(account, settings, _PAPER, ListSignalSource)

        elapsed = _timed(add_all)
        statuses = fleet.accounts()
        pids = [s.pid for s in statuses if s.pid is not None]
        rss = sum(rss_mib(pid) for pid in pids) / len(pids)
        pss = sum(pss_mib(pid) for pid in pids) / len(pids)
        others = ids[1:]
        at_rest = [_timed(functools.partial(fleet.status, a)) for _ in range(20) for a in others]
        restarts: list[float] = []
        during: list[float] = []
        errors: list[BaseException] = []
        for _ in range(kills):
            victim = fleet.status(ids[0])
            stop = threading.Event()
            pollers = [threading.Thread(target=_poll, args=(functools.partial(fleet.status, a), stop, during, errors))
                       for a in others[:4]]
            for poller in pollers:
                poller.start()
            started = time.perf_counter()
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
            _back(fleet, ids[0], victim.pid)
            restarts.append(time.perf_counter() - started)
            stop.set()
            for poller in pollers:
                poller.join()
        for account in ids:
            fleet.remove(account)
        ray.kill(idle)
    return OnRay(accounts / elapsed, rss, pss, idle_rss, ray_mib, Latency(tuple(restarts)), Latency(tuple(at_rest)),
                 Latency(tuple(during)), errors)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table (exit 0: figures are reported, not asserted)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--accounts", type=int, default=8, help="accounts started (default 8)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of one account's worker (default 3)")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    started = time.perf_counter()
    with TemporaryDirectory(prefix="tradewarden-fleet-bench-") as tmp:
        local = in_process(args.accounts, args.kills, Path(tmp))
        fleet = on_ray(args.accounts, args.kills, Path(tmp))
    n = args.accounts
    rows = [
        Row(f"accounts started per second ({n}, one after another, each until it trades)", fleet.rate,
            "accounts/s", "the same accounts in one process", local.rate),
        Row("memory per account, RSS of its worker", fleet.rss, "MiB", "RSS of an idle Ray worker", fleet.idle),
        Row("memory per account, PSS of its worker", fleet.pss, "MiB", "RSS growth per account in one process",
            local.mib),
        Row("Ray itself (raylet, GCS, helpers, one idle worker), RSS", fleet.ray, "MiB", "-", None),
        Row("restart after SIGKILL p50 (kill -> status answered by the new worker)", fleet.restart.p50_ms, "ms",
            "stop + start the account's system in one process p50", local.restart.p50_ms),
        Row("restart after SIGKILL max", max(fleet.restart.samples) * 1000, "ms",
            "stop + start in one process max", max(local.restart.samples) * 1000),
        Row("other accounts' status p50 during a restart", fleet.during.p50_ms, "ms", "the same at rest p50",
            fleet.rest.p50_ms),
        Row("other accounts' status p99 during a restart", fleet.during.p99_ms, "ms", "the same at rest p99",
            fleet.rest.p99_ms),
        Row("status p99 at rest, through Ray", fleet.rest.p99_ms, "ms", "guard status ask p99 in one process",
            local.asks.p99_ms),
    ]
    print(f"# fleet benchmark: {n} accounts, {args.kills} SIGKILLs, nproc {os.cpu_count()}")
    print()
    print(format_table(rows))
    print()
    total = mem_total_mib()
    print(f"- status calls to the other accounts during the restarts: {len(fleet.during.samples)}, "
          f"errors: {len(fleet.errors)}")
    print(f"- accounts that fit this node by memory: ({total:,.0f} MiB - Ray {fleet.ray:,.0f} MiB) / "
          f"{fleet.pss:.0f} MiB PSS per account = {int((total - fleet.ray) // fleet.pss):,}")
    print(f"- total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
