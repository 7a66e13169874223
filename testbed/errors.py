"""Typed errors. Every error a user can cause is a TestbedError carrying a one-line message.

The CLI turns these into one clear line and a non-zero exit; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class TestbedError(Exception):
    """Root of every error with a message meant for the user."""

    exit_code = 2
    __test__ = False  # not a pytest test class

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return one_line(f"{self.message} ({self.hint})" if self.hint else self.message)


def one_line(text: str) -> str:
    """Control characters (line breaks above all) shown escaped: an error is always one line, whatever
    a file or a node put in it."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SpecError(TestbedError):
    """A network or scenario file is invalid (names file, line, field and the fix)."""


class ToolchainError(TestbedError):
    """A node client or compiler is missing or failed to build."""


class StateError(TestbedError):
    """The state directory disagrees with the request (already running, not running, ...)."""


class BackendError(TestbedError):
    """A backend could not start, stop or fault a node."""


class NotSupportedError(BackendError):
    """The backend cannot do this (e.g. a partition on the local backend)."""


class ReadinessError(TestbedError):
    """The network did not become ready in time."""

    exit_code = 3


class ChainError(TestbedError):
    """A JSON-RPC call or transaction failed."""
