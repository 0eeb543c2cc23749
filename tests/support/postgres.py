"""A private PostgreSQL cluster on 127.0.0.1 for the test session, from the Debian packages.

`postgres_server` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` (or PATH) in a
fresh temporary directory, as the ``postgres`` user when the tests run as root (the server refuses
to run as root), and stops it at the end of the session. When the binaries are missing the
Postgres tests are skipped on a developer machine, but FAIL under CI (``CI`` set): CI must run them
(``.ci/run`` installs the ``postgresql`` package first).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "pg_bin_dir", "pg_schema", "postgres_dsn", "postgres_server"]

INSTALL_HINT = "apt-get install -y postgresql"


def pg_bin_dir() -> Path | None:
    """The directory of the newest installed ``initdb`` and ``pg_ctl``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    # Released before the server binds it; a clash is rare and makes pg_ctl fail with its log.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One throwaway cluster: trust authentication, TCP on 127.0.0.1 only, no Unix socket."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tradewarden-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        self.running = False

    @property
    def dsn(self) -> str:
        """The libpq connection string of the cluster's ``postgres`` database."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, *args: str, timeout: float) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else "(no server log)"
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}\n{log}")

    def start(self) -> PostgresServer:
        """initdb and start the server; returns once it accepts connections (``pg_ctl -w``)."""
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", timeout=120)
        self.up()
        return self

    def up(self) -> None:
        """Start the initialised server (again, after `down`); returns once it accepts connections."""
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories=''"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start", timeout=90)
        self.running = True

    def down(self) -> None:
        """An outage: stop the server at once, keeping its data for `up`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        self.running = False

    def stop(self) -> None:
        """Stop the server at once (unless it is down already) and delete its directory."""
        try:
            if self.running:
                self.down()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private cluster (skipped without the binaries, unless under CI)."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL binaries (initdb, pg_ctl) not found; CI must install them: {INSTALL_HINT}")
        pytest.skip(f"PostgreSQL binaries (initdb, pg_ctl) not found; install them with: {INSTALL_HINT}")
    server = PostgresServer(bin_dir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The cluster's DSN; each test keeps its tables apart with its own `pg_schema`."""
    return postgres_server.dsn


@pytest.fixture
def pg_schema() -> str:
    """A schema name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"
