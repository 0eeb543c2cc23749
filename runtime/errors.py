"""The one base of every error tradewarden raises on purpose.

Each error also derives from the built-in its fault belongs to: a value that is wrong raises a
`ValueError` subclass, an operation that failed (a broker, a store, an alert service) a
`RuntimeError` subclass, so callers may catch either the project's base or the usual built-in.
A value of the wrong type raises plain `TypeError`.
"""

from __future__ import annotations

__all__ = ["TradewardenError"]


class TradewardenError(Exception):
    """Base class of every error tradewarden raises on purpose; its message names what failed."""
