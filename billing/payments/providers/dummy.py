"""DUMMY: a provider whose outcome is chosen by the payment method's token, for tests, demos and
``billing simulate``. It behaves like a real provider where it matters: a charge is made once per
idempotency key (a repeated key answers the first charge), and with a journal directory its
charges outlive the process, so a worker killed between the answer and our commit and restarted
finds the same charge instead of making a second.

Tokens (the method's ``provider_payload["token"]``):

=====================  ==========================================================================
``tok_succeeds``       charged (SUCCEEDED); any token not listed below does the same
``tok_declines``       declined (FAILED, ``card_declined``)
``tok_processing``     accepted (PROCESSING); the outcome arrives later as a webhook
``tok_slow_declines``  declined after ``delay`` seconds (a slow issuer)
``tok_times_out_once`` the first call of each key times out (ProviderUnavailable), the next succeeds
``tok_times_out``      every call times out
``tok_succeeds_then_declines``  succeeds on attempt 1 of an invoice, declines later (and its inverse
                       ``tok_declines_then_succeeds``: declines attempt 1, succeeds from attempt 2)
=====================  ==========================================================================
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from invoicing.engine.payments import (
    AttemptStatus,
    ChargeRequest,
    ProviderCharge,
    ProviderName,
    ProviderRefund,
    RefundRequest,
)
from invoicing.ports import ProviderUnavailable

SUCCEEDS = "tok_succeeds"
DECLINES = "tok_declines"
PROCESSING = "tok_processing"
SLOW_DECLINES = "tok_slow_declines"
TIMES_OUT_ONCE = "tok_times_out_once"
TIMES_OUT = "tok_times_out"
DECLINES_THEN_SUCCEEDS = "tok_declines_then_succeeds"
SUCCEEDS_THEN_DECLINES = "tok_succeeds_then_declines"


def _attempt_number(key: str) -> int:
    """The attempt number at the end of an attempt_idempotency_key (1 for any other key)."""
    tail = key.rsplit("attempt-", 1)[-1]
    return int(tail) if tail.isdigit() else 1


def outcome(token: str, key: str) -> AttemptStatus:
    """What a charge with ``token`` ends in (timeouts aside)."""
    if token in (DECLINES, SLOW_DECLINES):
        return AttemptStatus.FAILED
    if token == PROCESSING:
        return AttemptStatus.PROCESSING
    if token == DECLINES_THEN_SUCCEEDS:
        return AttemptStatus.FAILED if _attempt_number(key) == 1 else AttemptStatus.SUCCEEDED
    if token == SUCCEEDS_THEN_DECLINES:
        return AttemptStatus.SUCCEEDED if _attempt_number(key) == 1 else AttemptStatus.FAILED
    return AttemptStatus.SUCCEEDED


class DummyProvider:
    """The DUMMY provider; ``journal`` (a directory) keeps its charges across processes."""

    name = ProviderName.DUMMY

    def __init__(self, journal: Path | None = None, delay: float = 0.2) -> None:
        self.journal = None if journal is None else journal / "dummy-charges.jsonl"
        self.delay = delay
        self._lock = threading.Lock()
        self._memory: dict[str, dict[str, str]] = {}
        self._timed_out: set[str] = set()

    @contextlib.contextmanager
    def _records(self) -> Iterator[dict[str, dict[str, str]]]:
        """Every record by key, held exclusively (a file lock when journaled) while the block runs."""
        with self._lock:
            if self.journal is None:
                yield self._memory
                return
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with open(self.journal, "a+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.seek(0)
                records = {r["key"]: r for r in (json.loads(line) for line in handle if line.strip())}
                before = set(records)
                yield records
                for key in records.keys() - before:
                    handle.write(json.dumps(records[key], sort_keys=True) + "\n")
                handle.flush()

    def charge(self, request: ChargeRequest) -> ProviderCharge:
        with self._records() as records:
            found = records.get(request.idempotency_key)
            if found is not None:
                if found["amount"] != f"{request.amount.amount} {request.amount.currency}":
                    raise ValueError(f"idempotency key {request.idempotency_key} reused with another amount")
                return ProviderCharge(found["reference"], AttemptStatus(found["status"]), found.get("failure") or None)
            token = request.method_token
            if token == TIMES_OUT or (token == TIMES_OUT_ONCE and request.idempotency_key not in self._timed_out):
                self._timed_out.add(request.idempotency_key)
                raise ProviderUnavailable(f"DUMMY: timed out charging {request.invoice_number}")
            if token == SLOW_DECLINES:
                time.sleep(self.delay)
            status = outcome(token, request.idempotency_key)
            reference = "dummy_ch_" + hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:20]
            failure = "card_declined" if status is AttemptStatus.FAILED else ""
            records[request.idempotency_key] = {
                "key": request.idempotency_key,
                "kind": "charge",
                "reference": reference,
                "status": str(status),
                "amount": f"{request.amount.amount} {request.amount.currency}",
                "failure": failure,
            }
            return ProviderCharge(reference, status, failure or None)

    def refund(self, request: RefundRequest) -> ProviderRefund:
        with self._records() as records:
            found = records.get(request.idempotency_key)
            if found is None:
                charged = [r for r in records.values() if r["reference"] == request.charge_reference]
                if not charged or charged[0]["status"] != str(AttemptStatus.SUCCEEDED):
                    return ProviderRefund("", AttemptStatus.FAILED, f"no charge {request.charge_reference} to refund")
                found = records[request.idempotency_key] = {
                    "key": request.idempotency_key,
                    "kind": "refund",
                    "reference": "dummy_re_" + hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:20],
                    "status": str(AttemptStatus.REFUNDED),
                    "amount": f"{request.amount.amount} {request.amount.currency}",
                    "failure": "",
                }
            return ProviderRefund(found["reference"], AttemptStatus(found["status"]))

    def charges(self) -> list[dict[str, str]]:
        """Every charge the provider made (what a test counts to see none was made twice)."""
        with self._records() as records:
            return [r for r in records.values() if r["kind"] == "charge"]
