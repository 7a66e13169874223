"""CTI load users: consumers (buy + request), publishers (publish + mint), the weighted mix.

A load entry point (imports Locust through users.py): import it lazily, like runner.py.
The calls, accounts and setup are in cti_calls.py (no Locust); see its docstring.
"""

from __future__ import annotations

from testbed.load.cti_calls import CONSUMER_POOL, PUBLISHER_POOL
from testbed.load.users import ChainUser, TransferUser


# ---- users ---------------------------------------------------------------------------------

class CtiConsumerUser(ChainUser):
    """Buys a token of another org's listing and requests it with its delivery public key."""

    kind = "cti_request"
    pool = CONSUMER_POOL

    def next_batch(self) -> list[tuple]:
        return self.account.take(self.ctx.batch_size)


class CtiPublisherUser(ChainUser):
    """Publishes a new listing, then mints on its org's listing."""

    kind = "cti_publish"
    pool = PUBLISHER_POOL

    def next_batch(self) -> list[tuple]:
        return self.account.take(self.ctx.batch_size)


class MixTransferUser(TransferUser):
    weight = 2


class MixConsumerUser(CtiConsumerUser):
    weight = 2


class MixPublisherUser(CtiPublisherUser):
    weight = 1


USER_KINDS: dict[str, list[type]] = {
    "transfers": [TransferUser],
    "cti": [CtiConsumerUser],
    "publishers": [CtiPublisherUser],
    "mix": [MixTransferUser, MixConsumerUser, MixPublisherUser],
}


def user_classes(name: str) -> list[type]:
    try:
        return USER_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown users {name!r}: one of {', '.join(USER_KINDS)}") from None


def needs_transfers(name: str) -> bool:
    return any(issubclass(c, TransferUser) for c in user_classes(name))
