"""One running bot per state file: a second `tradewarden run` on the same file is refused."""

from __future__ import annotations

import fcntl
import os
import threading

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


class StateFileClaim:
    """An exclusive claim on a SQLite state file for as long as it is open: two bots on one file
    would each trade the account and each keep their own peak and latch, so a halt of one would
    leave the other trading. The claim is an advisory lock (``flock``) on the file itself, which
    SQLite does not use (its own locks are ``fcntl`` record locks, so readers such as
    ``tradewarden journal`` and the control API's journal are not held up). It is released when
    closed, or when the process ends however it ends. Take it before the store opens the file and
    close it after the store: closing any descriptor of the file drops this process's ``fcntl``
    locks on it, SQLite's included."""

    def __init__(self, path: str, fd: int, key: tuple[int, int]) -> None:
        self.path = path
        self._fd: int | None = fd
        self._key = key

    @classmethod
    def of(cls, path: str | None) -> StateFileClaim | None:
        """The claim on the state file at ``path`` (None for a memory store: nothing to claim);
        `StateFileHeld` naming the file when another process holds it, `StateFileInUse` when it
        cannot be opened or locked."""
        if path is None:
            return None
        with _HELD_LOCK:
            # A file this process claimed already is refused before any descriptor is opened:
            # closing one would drop this process's fcntl locks on it, its running store's too.
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
                # Read-write (an NFS lock needs it) and created when missing: the claim comes before
                # the store opens the file, so a second bot never reads or upgrades a claimed one.
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
        return cls(path, fd, key)

    def close(self) -> None:
        """Release the claim (again: nothing)."""
        with _HELD_LOCK:
            if self._fd is not None:
                _HELD.discard(self._key)
                os.close(self._fd)
                self._fd = None

    def __repr__(self) -> str:
        return f"StateFileClaim({self.path!r}, {'held' if self._fd is not None else 'released'})"
