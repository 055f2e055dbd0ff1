"""The DUMMY provider: outcomes chosen by the method token, one charge per idempotency key (a
repeated key answers the first charge), and a journal that keeps charges across instances, as a
real provider keeps them across our restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing.payments.providers.dummy import DummyProvider
from invoicing.engine.payments import AttemptStatus, ChargeRequest, RefundRequest
from invoicing.ports import ProviderUnavailable
from rating.money import Money

pytestmark = pytest.mark.unit


def request(token: str, attempt: int = 1) -> ChargeRequest:
    return ChargeRequest(f"t1:INV-1:attempt-{attempt}", Money(1110, "USD"), token, "sub_1", "INV-1", "Invoice INV-1")


@pytest.mark.parametrize(
    ("token", "attempt", "status"),
    [
        ("tok_succeeds", 1, AttemptStatus.SUCCEEDED),
        ("anything", 1, AttemptStatus.SUCCEEDED),
        ("tok_declines", 1, AttemptStatus.FAILED),
        ("tok_slow_declines", 1, AttemptStatus.FAILED),
        ("tok_processing", 1, AttemptStatus.PROCESSING),
        ("tok_declines_then_succeeds", 1, AttemptStatus.FAILED),
        ("tok_declines_then_succeeds", 2, AttemptStatus.SUCCEEDED),
        ("tok_succeeds_then_declines", 2, AttemptStatus.FAILED),
    ],
)
def test_the_token_chooses_the_outcome(token: str, attempt: int, status: AttemptStatus) -> None:
    assert DummyProvider(delay=0.01).charge(request(token, attempt)).status is status


def test_timeouts_are_unavailable_and_once_means_once_per_key() -> None:
    dummy = DummyProvider()
    with pytest.raises(ProviderUnavailable):
        dummy.charge(request("tok_times_out_once"))
    assert dummy.charge(request("tok_times_out_once")).status is AttemptStatus.SUCCEEDED
    with pytest.raises(ProviderUnavailable):
        dummy.charge(request("tok_times_out", 2))
    assert len(dummy.charges()) == 1


def test_a_repeated_key_answers_the_first_charge_even_from_another_instance(tmp_path: Path) -> None:
    first = DummyProvider(tmp_path).charge(request("tok_succeeds"))
    again = DummyProvider(tmp_path).charge(request("tok_declines"))  # same key: the recorded charge
    assert again == first
    assert len(DummyProvider(tmp_path).charges()) == 1
    with pytest.raises(ValueError, match="reused with another amount"):
        DummyProvider(tmp_path).charge(
            ChargeRequest("t1:INV-1:attempt-1", Money(1, "USD"), "tok_succeeds", "sub_1", "INV-1", "")
        )


def test_only_a_successful_charge_is_refunded(tmp_path: Path) -> None:
    dummy = DummyProvider(tmp_path)
    charged = dummy.charge(request("tok_succeeds"))
    refund = RefundRequest("r1", charged.reference, Money(1110, "USD"), "asked")
    assert dummy.refund(refund).status is AttemptStatus.REFUNDED
    assert dummy.refund(refund) == dummy.refund(refund)
    declined = dummy.charge(request("tok_declines", 2))
    assert dummy.refund(RefundRequest("r2", declined.reference, Money(1110, "USD"), "")).status is AttemptStatus.FAILED
