"""Solver errors: every one a TestbedError with a user message (the CLI prints one line)."""

from __future__ import annotations

from testbed.errors import TestbedError


class SolverError(TestbedError):
    """The Solver or the consumer side could not do what was asked."""


class IntelError(SolverError):
    """The organization's intelligence store has no valid MISP event for a CTI."""


class DeliveryError(SolverError):
    """Fetching, verifying or decrypting a delivery failed."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class ContentMismatch(DeliveryError):
    """The delivery decrypts, but its keccak256 is not the listing's contentHash: the publisher
    committed on-chain (resultHash) to data other than what it listed. Final: never retried."""

    def __init__(self, message: str, *, received_hash: bytes) -> None:
        super().__init__(message, status=200)
        self.received_hash = received_hash
