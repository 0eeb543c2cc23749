"""A `tradewarden run` child process for tests: its URL, token, CLI and journal, and a fixture."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from actor_helpers import wait_until

__all__ = ["ROOT", "TOKEN", "TRADEWARDEN", "Bot", "bots", "free_port"]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"
TRADEWARDEN = [sys.executable, "-m", "actors.service"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Bot:
    """A `tradewarden run` child: its URL, its state file, and its stderr for a failure report."""

    def __init__(self, config: Path, db: Path, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        self.log = tmp / "child.log"
        self.env = {
            **os.environ, "STATE_DB": str(db), "CONTROL_PORT": str(self.port), "CONTROL_TOKEN": TOKEN,
            "PYTHONFAULTHANDLER": "1", **env,
        }
        with self.log.open("w") as log:
            self.process = subprocess.Popen([*TRADEWARDEN, "run", "--config", str(config)], env=self.env, cwd=tmp,
                                            stdout=log, stderr=subprocess.STDOUT)

    def fail(self, why: str) -> None:
        # SIGABRT makes the child's faulthandler dump every thread before it dies.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(10)
        pytest.fail(f"{why}\n--- child output ---\n{self.log.read_text()[-20_000:]}")

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        # The bot's HTTP state has no event to wait on: look again until it holds, under a deadline.
        found: list[Any] = []

        def ready() -> bool:
            if self.process.poll() is not None:
                self.fail(f"the child exited ({self.process.returncode}) while waiting for {what}")
            try:
                result = check()
            except httpx.HTTPError:
                return False
            found[:] = [result]
            return bool(result)

        if not wait_until(ready, timeout):
            self.fail(f"{what} did not happen within {timeout}s")
        return found[0]

    def get(self, path: str, token: str | None = TOKEN) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, timeout=10)

    def post(self, path: str, token: str | None = TOKEN, headers: dict[str, str] | None = None,
             **kwargs: Any) -> httpx.Response:
        sent = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.url + path, headers={**sent, **(headers or {})}, timeout=10, **kwargs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TRADEWARDEN, *args, "--url", self.url], env=self.env, capture_output=True,
                              text=True, timeout=60)

    def terminate(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"the child did not stop within {timeout}s of SIGTERM")
            raise

    def journal(self, *args: str) -> list[dict[str, Any]]:
        done = subprocess.run([*TRADEWARDEN, "journal", "--db", str(self.db), *args], capture_output=True,
                              text=True, timeout=60, check=True)
        return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def bots(tmp_path: Path) -> Iterator[Callable[..., Bot]]:
    started: list[Bot] = []

    def start(config: Path, **env: str) -> Bot:
        bot = Bot(config, tmp_path / "state.db", tmp_path, **env)
        started.append(bot)
        bot.wait_for("a healthy control API", lambda: bot.get("/health", token=None).status_code == 200)
        return bot

    yield start
    for bot in started:
        if bot.process.poll() is None:
            bot.process.kill()
            bot.process.wait(10)
