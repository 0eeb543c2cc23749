"""One running bot per state file: a second `tradewarden run` on the same file, or on a new file at
the path of one deleted or replaced under a running bot, is refused."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable

from loguru import logger

from runtime.errors import TradewardenError

__all__ = ["StateFileClaim", "StateFileHeld", "StateFileInUse"]


class StateFileInUse(TradewardenError, RuntimeError):
    """The state file cannot be claimed: another running process holds the claim, or the file
    cannot be opened or locked (the message names the file and why)."""


class StateFileHeld(StateFileInUse):
    """The state file is claimed by another running process (not merely unusable), so a caller
    can say who holds it in its own words."""


# The files this process holds a claim on, by device and inode.
_HELD: set[tuple[int, int]] = set()
_HELD_LOCK = threading.Lock()
_NO_FILE_TOLD = (-1, -1)  # the key of no file: nothing told yet
_WATCH_JOIN = 5.0  # seconds a close waits for the watcher's last check (and its on_lost) to end


class StateFileClaim:
    """An exclusive claim on a SQLite state file for as long as it is open: two bots on one file
    would each trade the account and each keep their own peak and latch, so a halt of one would
    leave the other trading. The claim is an advisory lock (``flock``) on the file itself, which
    SQLite does not use (its own locks are ``fcntl`` record locks, so readers such as
    ``tradewarden journal`` and the control API's journal are not held up). It is released when
    closed, or when the process ends however it ends. Take it before the store opens the file and
    close it after the store: closing any descriptor of the file drops this process's ``fcntl``
    locks on it, SQLite's included.

    A lock holds a file, not its path: a file deleted or replaced under a running bot would leave
    the path free for a second bot. `check` (and `watch`, which runs it on a thread) claims
    whatever file is at the path then, created when missing, so the path stays claimed until this
    claim is closed."""

    def __init__(self, path: str, fd: int, key: tuple[int, int]) -> None:
        self.path = path
        self._fd: int | None = fd
        self._key = key
        # Files at the path claimed by `check` since, each with its own lock, held until close.
        self._since: list[tuple[int, tuple[int, int]]] = []
        # The file last found at the path in place of the claimed ones (None: none), once told.
        self._told: tuple[int, int] | None = _NO_FILE_TOLD
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None

    @classmethod
    def of(cls, path: str | None) -> StateFileClaim | None:
        """The claim on the state file at ``path`` (None for a memory store: nothing to claim);
        `StateFileHeld` naming the file when another process holds it, `StateFileInUse` when it
        cannot be opened or locked."""
        if path is None:
            return None
        with _HELD_LOCK:
            fd, key = _claim(path)
        return cls(path, fd, key)

    def check(self) -> str | None:
        """None while the path names the file this claim holds (or the claim is closed). When the
        file was deleted or replaced, this claims the file at the path now (creating an empty one
        when there is none, as `of` does), so a second bot is refused the path as long as this
        claim is open; and says what happened, for the owner to act on: the store still has the
        old file open, and nothing written to it is kept. A file another process (or another
        system in this process) claimed first cannot be claimed: the text then says so. Each
        change is told once; a loss after the path named a held file again is told anew."""
        with _HELD_LOCK:
            if self._fd is None:
                return None
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                now = None
            except OSError:
                return None  # (a path that cannot be looked at now is not known to be gone; the store says the rest)
            found = None if now is None else (now.st_dev, now.st_ino)
            if found in {self._key, *(key for _, key in self._since)}:
                self._told = _NO_FILE_TOLD  # back on a file it holds: a later loss is a new one, told again
                return None
            told, self._told = found == self._told, found
            lost = (f"state_db {self.path!r} was {'deleted' if now is None else 'replaced'} while this bot had it open, "
                    "so nothing it saves now is kept")
            try:
                self._since.append(_claim(self.path))
            except StateFileInUse as exc:
                # Tried again at each look (the other may let it go), told once.
                return None if told else f"{lost}; the file now at that path could not be claimed: {exc}"
        return None if told else f"{lost}; this bot now holds the path, so no second bot starts on it until this one stops"

    def watch(self, on_lost: Callable[[str], None], interval: float = 0.5) -> None:
        """Run `check` every ``interval`` seconds on a thread of its own until the claim is
        closed, and call ``on_lost`` with each text it returns (on that thread; an error it raises
        is logged at critical)."""
        if self._watcher is not None:
            raise RuntimeError(f"{self!r} is watched already")

        def run() -> None:
            while not self._closed.wait(interval):
                lost = self.check()
                if lost is None:
                    continue
                try:
                    on_lost(lost)
                except Exception as exc:
                    logger.critical("{}; acting on it failed: {!r}", lost, exc)

        self._watcher = threading.Thread(target=run, name=f"state-claim-watch:{self.path}", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        """Release the claim (again: nothing), and stop watching it."""
        self._closed.set()
        with _HELD_LOCK:
            if self._fd is not None:
                for fd, key in [(self._fd, self._key), *self._since]:
                    _HELD.discard(key)
                    os.close(fd)
                self._since.clear()
                self._fd = None
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(_WATCH_JOIN)

    def __repr__(self) -> str:
        return f"StateFileClaim({self.path!r}, {'held' if self._fd is not None else 'released'})"


def _claim(path: str) -> tuple[int, tuple[int, int]]:
    # A descriptor of the file at ``path`` locked for this process, and the file's key; under
    # _HELD_LOCK.
    # A file this process claimed already is refused before any descriptor is opened: closing one
    # would drop this process's fcntl locks on it, its running store's too.
    try:
        known = os.stat(path)
    except FileNotFoundError:
        known = None
    except OSError as exc:
        raise StateFileInUse(f"state_db {path!r} cannot be opened to claim it: {exc}") from None
    if known is not None and (known.st_dev, known.st_ino) in _HELD:
        raise StateFileHeld(
            f"state_db {path!r} is in use by another trading system in this process: two systems on one state "
            "file would both trade the account; stop the other, or give this one its own STATE_DB"
        )
    try:
        # Read-write (an NFS lock needs it) and created when missing: the claim comes before the
        # store opens the file, so a second bot never reads or upgrades a claimed one.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateFileInUse(f"state_db {path!r} cannot be opened to claim it: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateFileHeld(
            f"state_db {path!r} is in use by another running bot: two bots on one state file would both "
            "trade the account; stop the other, or give this one its own STATE_DB"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise StateFileInUse(f"state_db {path!r} cannot be claimed: {exc}") from None
    opened = os.fstat(fd)
    key = (opened.st_dev, opened.st_ino)
    _HELD.add(key)
    return fd, key
