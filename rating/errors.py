"""Domain errors that carry the offending field, mapped once at each edge."""

from __future__ import annotations


class BillingError(ValueError):
    """A value broke a billing rule; ``field`` names where it came from (e.g. ``plans[0].base_price``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    def at(self, prefix: str) -> BillingError:
        """The same error, its field placed under ``prefix`` (``meters[1]`` + ``unit_price``)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return type(self)(field, self.message)


class InvalidValue(BillingError):
    """A price, quantity, time or code that cannot be used."""


class UnknownReference(BillingError):
    """A code that names nothing known (plan, metric, subscription, coupon)."""
