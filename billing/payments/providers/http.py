"""The one HTTP mechanism of the REST providers (Xendit, Midtrans): JSON over httpx with HTTP Basic
auth, a bounded timeout, and every way of not getting a readable answer (timeout, network, 5xx,
429, an unreadable body) turned into ProviderUnavailable, since then the outcome is unknown and the
call must be retried with the same idempotency key. Secrets travel only in the Authorization header,
which neither httpx nor this module logs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from invoicing.ports import ProviderUnavailable
from rating.errors import InvalidValue
from rating.money import Money, currency_exponent

DEFAULT_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's readable answer: its HTTP status and its JSON body."""

    status: int
    body: Any


class RestClient:
    """JSON requests to one provider's base URL, authenticated with ``secret`` as the Basic user and
    an empty password (how both Xendit and Midtrans take their server keys)."""

    def __init__(self, provider: str, base_url: str, secret: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if not secret:
            raise InvalidValue(f"{provider} secret", "is empty")
        self.provider = provider
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(secret, ""),
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:  # never the secret
        return f"RestClient({self.provider}, {self._client.base_url})"

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """One call; 2xx and 4xx come back as an Answer, everything with an unknown outcome raises."""
        try:
            response = self._client.request(
                method,
                path,
                content=None if body is None else json.dumps(body).encode(),
                headers={**({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})},
                params=params,
            )
        except httpx.TimeoutException:
            raise ProviderUnavailable(f"{self.provider} did not answer {method} {path} in time") from None
        except httpx.TransportError as error:
            raise ProviderUnavailable(
                f"{self.provider} unreachable on {method} {path}: {type(error).__name__}"
            ) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(f"{self.provider} answered {response.status_code} to {method} {path}")
        try:
            parsed = json.loads(response.content, parse_float=Decimal) if response.content else {}
        except ValueError:
            raise ProviderUnavailable(
                f"{self.provider} answered {response.status_code} to {method} {path} with a body that is not JSON"
            ) from None
        return Answer(response.status_code, parsed)

    def close(self) -> None:
        self._client.close()


def whole_units(amount: Money, provider: str, currencies: frozenset[str]) -> int:
    """The amount as the provider's JSON number: the major unit of a currency without decimals (IDR
    in whole rupiah). Other currencies are refused rather than sent as a float."""
    if amount.currency not in currencies or currency_exponent(amount.currency) != 0:
        raise InvalidValue(
            "amount.currency", f"{provider} charges {', '.join(sorted(currencies))}, not {amount.currency}"
        )
    if amount.amount <= 0:
        raise InvalidValue("amount", f"must be positive, got {amount.amount}")
    return amount.amount


def money_from_provider(value: Any, currency: str, field: str) -> Money:
    """A provider's amount (a JSON number read as int or Decimal, or a decimal string such as
    Midtrans' ``"10000.00"``) as exact minor units; a fraction of the minor unit is refused."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise InvalidValue(field, f"is not an amount: {value!r}")
    try:
        minor = Decimal(value).scaleb(currency_exponent(currency, f"{field}.currency"))
    except ArithmeticError:
        raise InvalidValue(field, f"is not an amount: {value!r}") from None
    if not minor.is_finite() or minor != minor.to_integral_value():
        raise InvalidValue(field, f"{value!r} is not a whole number of {currency} minor units")
    return Money(int(minor), currency)
