"""API keys: how a key looks, how it is checked, and the store it is checked against.

A key is ``sbk_<key id>_<secret>``: the key id (16 hex digits) names the stored row, the secret
(64 hex digits, 256 random bits) is shown once and stored only as its SHA-256. A slow hash
(scrypt) protects low-entropy passwords; a 256-bit random secret cannot be guessed from its
SHA-256, and a fast check keeps authentication off the latency of every RPC.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from invoicing.ledger.api_keys import ApiKey

PREFIX = "sbk"
_KEY = re.compile(r"sbk_([0-9a-f]{16})_([0-9a-f]{64})")
_BEARER = re.compile(r"bearer[ \t]+(\S+)[ \t]*", re.IGNORECASE)


class ApiKeyStore(Protocol):
    """Where keys are kept (invoicing.ledger.api_keys.PostgresApiKeys)."""

    def add(self, key_id: str, tenant_id: str, name: str, secret_hash: bytes) -> ApiKey: ...
    def get(self, key_id: str) -> ApiKey | None: ...
    def list(self, tenant_id: str | None = None) -> list[ApiKey]: ...
    def revoke(self, key_id: str) -> ApiKey | None: ...


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """A key as a caller presented it, split into its parts (not yet checked)."""

    key_id: str
    secret: str


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_key(text: str) -> PresentedKey | None:
    """The parts of a well-formed key, None for anything else."""
    match = _KEY.fullmatch(text)
    return None if match is None else PresentedKey(match.group(1), match.group(2))


def bearer_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The key of the call's ``authorization: Bearer KEY`` metadata, None when there is none."""
    for name, value in metadata or ():
        if name.lower() == "authorization" and isinstance(value, str):
            match = _BEARER.fullmatch(value)
            return None if match is None else match.group(1)
    return None


def create_key(store: ApiKeyStore, tenant_id: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key of ``tenant_id``: the stored row, and the key itself (shown once, never stored)."""
    key_id, secret = secrets.token_hex(8), secrets.token_hex(32)
    stored = store.add(key_id, tenant_id, name, secret_hash(secret))
    return stored, f"{PREFIX}_{key_id}_{secret}"


def authenticate(store: ApiKeyStore, key: str | None) -> str | None:
    """The tenant a presented key speaks for; None when it is malformed, unknown or revoked."""
    presented = None if key is None else parse_key(key)
    if presented is None:
        return None
    stored = store.get(presented.key_id)
    if stored is None or stored.revoked_at is not None:
        return None
    return stored.tenant_id if hmac.compare_digest(stored.secret_hash, secret_hash(presented.secret)) else None
