"""Two paper accounts as a fleet on a local Ray cluster: list them, halt one, kill its worker
with SIGKILL, and watch Ray bring it back HALTED with its peak, from its store.

    pip install -e '.[ray]'
    python examples/fleet.py [out_dir]          # state in out_dir/<account>.db (default ./fleet-run)

Prints one line per account after each step, then removes the accounts and stops the cluster.
With ``RAY_ADDRESS`` set it joins that cluster instead of starting one (and leaves it running).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path

from actors.fleet import AccountStatus, Fleet, Health
from runtime import ListSignalSource, PaperBroker, Settings

ACCOUNTS = ("acct-1", "acct-2")


def show(step: str, statuses: list[AccountStatus]) -> None:
    print(f"-- {step}")
    for s in statuses:
        state = s.trading_state.value if s.trading_state else "-"
        print(f"{s.account_id} {s.health.value} {state} equity={s.equity} peak={s.peak} pid={s.pid}")


def back_after(fleet: Fleet, account: str, old_pid: int | None, timeout: float = 120.0) -> AccountStatus:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        try:
            status = fleet.status(account, timeout=5.0)
            if status.pid != old_pid and status.health is Health.OK:
                return status
        except Exception:  # restarting: not answering yet
            pass
        pause.wait(0.05)
    raise SystemExit(f"{account} did not come back within {timeout:g}s")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    address = os.environ.get("RAY_ADDRESS")
    with Fleet.connect(address) if address else Fleet.local(num_cpus=2) as fleet:
        for account in ACCOUNTS:
            settings = Settings(state_db=str(out / f"{account}.db"), loop_interval_seconds=0.5)
            # The factories run inside each account's worker process; the workers start side by side.
            # The paper account is made from the account's own settings (contract size, costs, margin).
            broker = functools.partial(PaperBroker.from_settings, settings, 10_000)
            fleet.add(account, settings, broker, ListSignalSource, ready_timeout=None)
        late = fleet.wait_ready(ACCOUNTS, timeout=120.0)
        if late:
            raise SystemExit(f"{', '.join(late)} did not start within 120s")
        show("started", fleet.accounts(timeout=10.0))

        fleet.halt("acct-2", "example", "halted by hand")  # acct-1 trades on throughout
        show("acct-2 halted", fleet.accounts(timeout=10.0))

        killed = fleet.status("acct-2")
        started = time.monotonic()
        os.kill(killed.pid, signal.SIGKILL)
        back = back_after(fleet, "acct-2", killed.pid)
        print(f"acct-2 restarted by Ray in {time.monotonic() - started:.1f}s, still {back.trading_state.value}")
        show("after SIGKILL", fleet.accounts(timeout=10.0))

        for account in ACCOUNTS:
            fleet.remove(account)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "fleet-run"))
