"""A strategy whose build fails with a broken pipe, as one loading its model from a server that
hangs up does."""

from __future__ import annotations

__all__ = ["HungUp"]


class HungUp:
    """Raises `BrokenPipeError` as it is built."""

    def __init__(self) -> None:
        raise BrokenPipeError(32, "the model server hung up")
