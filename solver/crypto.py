"""Delivery cryptography: ECIES on secp256k1 (eciespy), delivery keys and request signatures.

The consumer does not put its account key to a second use: its delivery key is derived
from the account key (keccak of a domain tag and the key), so it needs no storage and a
different account derives a different key. The public half goes on-chain with the request.

A fetch is authorized by an EIP-191 signature of the consumer's account over the task id, the
time and a random nonce (with chain id and Tasks address for domain separation): the server
accepts it within FETCH_WINDOW_S of its clock and only once, so a captured request cannot be
replayed.
"""

from __future__ import annotations

import coincurve
import ecies
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.constants import SECPK1_N
from eth_utils import keccak

from solver.errors import DeliveryError

DELIVERY_KEY_TAG = b"cti-testbed delivery key v1"


def _key_bytes(private_key: str | bytes) -> bytes:
    if isinstance(private_key, bytes):
        return private_key
    return bytes.fromhex(private_key[2:] if private_key.startswith("0x") else private_key)


def delivery_secret(account_private_key: str | bytes) -> bytes:
    """The 32-byte delivery private key derived from an account key."""
    seed = keccak(DELIVERY_KEY_TAG + _key_bytes(account_private_key))
    scalar = int.from_bytes(seed, "big") % (SECPK1_N - 1) + 1
    return scalar.to_bytes(32, "big")


def delivery_public_key(account_private_key: str | bytes) -> bytes:
    """Uncompressed (65-byte, 0x04-prefixed) public delivery key: what a request carries."""
    return coincurve.PrivateKey(delivery_secret(account_private_key)).public_key.format(compressed=False)


def normalize_public_key(key: bytes) -> bytes:
    """Accept 33 (compressed), 64 (raw x||y) or 65-byte keys; raise ValueError otherwise."""
    if len(key) == 64:
        key = b"\x04" + key
    if len(key) not in (33, 65):
        raise ValueError(f"a secp256k1 public key has 33, 64 or 65 bytes, not {len(key)}")
    return coincurve.PublicKey(key).format(compressed=False)  # raises ValueError if not on the curve


def encrypt(public_key: bytes, plaintext: bytes) -> bytes:
    return ecies.encrypt(normalize_public_key(public_key), plaintext)


def decrypt(account_private_key: str | bytes, ciphertext: bytes) -> bytes:
    try:
        return ecies.decrypt(delivery_secret(account_private_key), ciphertext)
    except Exception as exc:  # wrong key: the AES-GCM tag does not verify
        raise DeliveryError(f"cannot decrypt the delivery with this account's key ({exc.__class__.__name__})",
                            hint="only the consumer that requested the task can decrypt it") from None


def result_hash(ciphertext: bytes) -> bytes:
    """What `finish` records on-chain: keccak256 of the ciphertext."""
    return keccak(ciphertext)


FETCH_WINDOW_S = 60  # a signed fetch is good this long either side of the server's clock, and once


def fetch_message(chain_id: int, tasks_address: str, task_id: int, timestamp: int, nonce: str) -> str:
    return (f"CTI delivery request\nchain {chain_id}\ntasks {tasks_address.lower()}\ntask {task_id}\n"
            f"time {timestamp}\nnonce {nonce}")


def sign_fetch(account_private_key: str | bytes, chain_id: int, tasks_address: str, task_id: int,
               timestamp: int, nonce: str) -> str:
    signed = Account.sign_message(encode_defunct(text=fetch_message(chain_id, tasks_address, task_id, timestamp, nonce)),
                                  _key_bytes(account_private_key))
    return "0x" + bytes(signed.signature).hex()


def fetch_signer(signature: str, chain_id: int, tasks_address: str, task_id: int, timestamp: int,
                 nonce: str) -> str | None:
    """The address that signed a fetch request for this task, time and nonce; None if malformed."""
    try:
        return Account.recover_message(
            encode_defunct(text=fetch_message(chain_id, tasks_address, task_id, timestamp, nonce)), signature=signature)
    except Exception:  # eth-account raises several types for a malformed signature
        return None
