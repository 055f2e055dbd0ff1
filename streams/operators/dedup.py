"""Dedup by (subscription_id, idempotency_key): first write wins.

The entry remembers the payload's fingerprint and where the identity was first seen (partition,
position in it), so a redelivery of that same message after a crash is told apart from a true duplicate.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REPLAY = "replay"
    """The very message that was first accepted, delivered again (at-least-once redelivery)."""


class DedupEntry(NamedTuple):
    """Kept per identity for as long as dedup must remember it (a NamedTuple: one per event)."""

    fingerprint: str
    partition: int = -1
    position: int = -1


def dedup_key(subscription_id: str, idempotency_key: str) -> str:
    return f"{subscription_id}\x1f{idempotency_key}"


def decide(existing: DedupEntry | None, fingerprint: str, partition: int = -1, position: int = -1) -> Verdict:
    """What to do with an event whose identity has ``existing`` entry (None: never seen)."""
    if existing is None:
        return Verdict.ACCEPTED
    if position >= 0 and existing.partition == partition and existing.position == position:
        return Verdict.REPLAY
    return Verdict.DUPLICATE if existing.fingerprint == fingerprint else Verdict.CONFLICT
