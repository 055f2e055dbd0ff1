import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schemas.generated.smallbiznis.billing.v1 import billing_pb2 as _billing_pb2
from schemas.generated.smallbiznis.common.v1 import money_pb2 as _money_pb2
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as _invoice_pb2
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as _pricing_pb2
from schemas.generated.smallbiznis.rating.v1 import rating_pb2 as _rating_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanSnapshot(_message.Message):
    __slots__ = ("plan_id", "plan_code", "plan_name", "plan_version", "currency_code", "base_price", "billing_interval", "tax_inclusive", "meters")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_CODE_FIELD_NUMBER: _ClassVar[int]
    PLAN_NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BASE_PRICE_FIELD_NUMBER: _ClassVar[int]
    BILLING_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TAX_INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    plan_code: str
    plan_name: str
    plan_version: int
    currency_code: str
    base_price: str
    billing_interval: _pricing_pb2.BillingInterval
    tax_inclusive: bool
    meters: _containers.RepeatedCompositeFieldContainer[MeterPriceSnapshot]
    def __init__(self, plan_id: _Optional[str] = ..., plan_code: _Optional[str] = ..., plan_name: _Optional[str] = ..., plan_version: _Optional[int] = ..., currency_code: _Optional[str] = ..., base_price: _Optional[str] = ..., billing_interval: _Optional[_Union[_pricing_pb2.BillingInterval, str]] = ..., tax_inclusive: _Optional[bool] = ..., meters: _Optional[_Iterable[_Union[MeterPriceSnapshot, _Mapping]]] = ...) -> None: ...

class MeterPriceSnapshot(_message.Message):
    __slots__ = ("metric_code", "pricing_model", "tier_mode", "unit_price", "included_units", "overage_unit_price", "package_size", "tiers", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METRIC_CODE_FIELD_NUMBER: _ClassVar[int]
    PRICING_MODEL_FIELD_NUMBER: _ClassVar[int]
    TIER_MODE_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_UNITS_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metric_code: str
    pricing_model: _pricing_pb2.PricingModel
    tier_mode: _pricing_pb2.TierMode
    unit_price: str
    included_units: str
    overage_unit_price: str
    package_size: str
    tiers: _containers.RepeatedCompositeFieldContainer[TierPriceSnapshot]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, metric_code: _Optional[str] = ..., pricing_model: _Optional[_Union[_pricing_pb2.PricingModel, str]] = ..., tier_mode: _Optional[_Union[_pricing_pb2.TierMode, str]] = ..., unit_price: _Optional[str] = ..., included_units: _Optional[str] = ..., overage_unit_price: _Optional[str] = ..., package_size: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[TierPriceSnapshot, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TierPriceSnapshot(_message.Message):
    __slots__ = ("up_to", "unit_price", "flat_fee")
    UP_TO_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    FLAT_FEE_FIELD_NUMBER: _ClassVar[int]
    up_to: str
    unit_price: str
    flat_fee: str
    def __init__(self, up_to: _Optional[str] = ..., unit_price: _Optional[str] = ..., flat_fee: _Optional[str] = ...) -> None: ...

class ChargeComponent(_message.Message):
    __slots__ = ("id", "description", "quantity", "unit_price", "amount", "type", "metric_code", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_CODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    description: str
    quantity: str
    unit_price: str
    amount: _money_pb2.Money
    type: _invoice_pb2.InvoiceLineItemType
    metric_code: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., description: _Optional[str] = ..., quantity: _Optional[str] = ..., unit_price: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., type: _Optional[_Union[_invoice_pb2.InvoiceLineItemType, str]] = ..., metric_code: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TaxResult(_message.Message):
    __slots__ = ("tax_lines", "taxes", "tax_total", "inclusive")
    TAX_LINES_FIELD_NUMBER: _ClassVar[int]
    TAXES_FIELD_NUMBER: _ClassVar[int]
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    tax_lines: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    taxes: _containers.RepeatedCompositeFieldContainer[_invoice_pb2.TaxBreakdown]
    tax_total: _money_pb2.Money
    inclusive: bool
    def __init__(self, tax_lines: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., taxes: _Optional[_Iterable[_Union[_invoice_pb2.TaxBreakdown, _Mapping]]] = ..., tax_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., inclusive: _Optional[bool] = ...) -> None: ...

class DiscountResult(_message.Message):
    __slots__ = ("discount_lines", "discount_total")
    DISCOUNT_LINES_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    discount_lines: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    discount_total: _money_pb2.Money
    def __init__(self, discount_lines: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., discount_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class CreditResult(_message.Message):
    __slots__ = ("credits_applied", "amount_due", "remaining_balance", "credit_note_ids")
    CREDITS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    REMAINING_BALANCE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_NOTE_IDS_FIELD_NUMBER: _ClassVar[int]
    credits_applied: _money_pb2.Money
    amount_due: _money_pb2.Money
    remaining_balance: _money_pb2.Money
    credit_note_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, credits_applied: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., amount_due: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., remaining_balance: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., credit_note_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BuildChargesFromRatingRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id", "rating_result", "plan_snapshot")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_RESULT_FIELD_NUMBER: _ClassVar[int]
    PLAN_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    rating_result: _rating_pb2.RatingResult
    plan_snapshot: PlanSnapshot
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., rating_result: _Optional[_Union[_rating_pb2.RatingResult, _Mapping]] = ..., plan_snapshot: _Optional[_Union[PlanSnapshot, _Mapping]] = ...) -> None: ...

class BuildChargesFromRatingResponse(_message.Message):
    __slots__ = ("line_items", "subtotal")
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    line_items: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    subtotal: _money_pb2.Money
    def __init__(self, line_items: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class BuildInvoiceRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id", "billing_period_start", "billing_period_end")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    billing_period_start: _timestamp_pb2.Timestamp
    billing_period_end: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., billing_period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., billing_period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BuildInvoiceResponse(_message.Message):
    __slots__ = ("line_items", "subtotal", "discount_total", "tax_total", "total", "billing_period_start", "billing_period_end")
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    line_items: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    subtotal: _money_pb2.Money
    discount_total: _money_pb2.Money
    tax_total: _money_pb2.Money
    total: _money_pb2.Money
    billing_period_start: _timestamp_pb2.Timestamp
    billing_period_end: _timestamp_pb2.Timestamp
    def __init__(self, line_items: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discount_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., billing_period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., billing_period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunProrationRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id", "period_start", "period_end", "cut_at", "plan_snapshot")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    CUT_AT_FIELD_NUMBER: _ClassVar[int]
    PLAN_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    cut_at: _timestamp_pb2.Timestamp
    plan_snapshot: PlanSnapshot
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cut_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_snapshot: _Optional[_Union[PlanSnapshot, _Mapping]] = ...) -> None: ...

class RunProrationResponse(_message.Message):
    __slots__ = ("used_seconds", "period_seconds", "line_items", "prorated_included_units")
    class ProratedIncludedUnitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    PRORATED_INCLUDED_UNITS_FIELD_NUMBER: _ClassVar[int]
    used_seconds: int
    period_seconds: int
    line_items: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    prorated_included_units: _containers.ScalarMap[str, str]
    def __init__(self, used_seconds: _Optional[int] = ..., period_seconds: _Optional[int] = ..., line_items: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., prorated_included_units: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ApplyTaxRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id", "line_items", "subtotal", "discount_total", "region_code", "tax_inclusive")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    TAX_INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    line_items: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    subtotal: _money_pb2.Money
    discount_total: _money_pb2.Money
    region_code: str
    tax_inclusive: bool
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., line_items: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discount_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., region_code: _Optional[str] = ..., tax_inclusive: _Optional[bool] = ...) -> None: ...

class ApplyTaxResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: TaxResult
    def __init__(self, result: _Optional[_Union[TaxResult, _Mapping]] = ...) -> None: ...

class ApplyDiscountRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id", "line_items", "subtotal", "coupon_code")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    COUPON_CODE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    line_items: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    subtotal: _money_pb2.Money
    coupon_code: str
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., line_items: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., coupon_code: _Optional[str] = ...) -> None: ...

class ApplyDiscountResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: DiscountResult
    def __init__(self, result: _Optional[_Union[DiscountResult, _Mapping]] = ...) -> None: ...

class ApplyCreditRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id", "total", "amount_paid")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_PAID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    total: _money_pb2.Money
    amount_paid: _money_pb2.Money
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., amount_paid: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class ApplyCreditResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: CreditResult
    def __init__(self, result: _Optional[_Union[CreditResult, _Mapping]] = ...) -> None: ...

class FinalizeInvoiceRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id", "line_items", "discounts", "tax_lines", "taxes", "subtotal", "discount_total", "tax_total", "total", "credits_applied", "billing_period_start", "billing_period_end", "currency_code")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    TAX_LINES_FIELD_NUMBER: _ClassVar[int]
    TAXES_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREDITS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    line_items: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    discounts: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    tax_lines: _containers.RepeatedCompositeFieldContainer[ChargeComponent]
    taxes: _containers.RepeatedCompositeFieldContainer[_invoice_pb2.TaxBreakdown]
    subtotal: _money_pb2.Money
    discount_total: _money_pb2.Money
    tax_total: _money_pb2.Money
    total: _money_pb2.Money
    credits_applied: _money_pb2.Money
    billing_period_start: _timestamp_pb2.Timestamp
    billing_period_end: _timestamp_pb2.Timestamp
    currency_code: str
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., line_items: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., discounts: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., tax_lines: _Optional[_Iterable[_Union[ChargeComponent, _Mapping]]] = ..., taxes: _Optional[_Iterable[_Union[_invoice_pb2.TaxBreakdown, _Mapping]]] = ..., subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discount_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., credits_applied: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., billing_period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., billing_period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., currency_code: _Optional[str] = ...) -> None: ...

class FinalizeInvoiceResponse(_message.Message):
    __slots__ = ("invoice_id", "invoice_number", "total", "amount_due", "issued_at", "status")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    invoice_number: str
    total: _money_pb2.Money
    amount_due: _money_pb2.Money
    issued_at: _timestamp_pb2.Timestamp
    status: _invoice_pb2.InvoiceStatus
    def __init__(self, invoice_id: _Optional[str] = ..., invoice_number: _Optional[str] = ..., total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., amount_due: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[_invoice_pb2.InvoiceStatus, str]] = ...) -> None: ...

class GenerateInvoiceNumberRequest(_message.Message):
    __slots__ = ("tenant_id", "at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GenerateInvoiceNumberResponse(_message.Message):
    __slots__ = ("invoice_number",)
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    invoice_number: str
    def __init__(self, invoice_number: _Optional[str] = ...) -> None: ...

class OpenBillingPeriodRequest(_message.Message):
    __slots__ = ("subscription_id", "period_start", "period_end")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OpenBillingPeriodResponse(_message.Message):
    __slots__ = ("billing_period",)
    BILLING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    billing_period: _billing_pb2.BillingPeriod
    def __init__(self, billing_period: _Optional[_Union[_billing_pb2.BillingPeriod, _Mapping]] = ...) -> None: ...

class CloseBillingPeriodRequest(_message.Message):
    __slots__ = ("subscription_id", "billing_period_id", "closed_at")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_ID_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    billing_period_id: str
    closed_at: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., billing_period_id: _Optional[str] = ..., closed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CloseBillingPeriodResponse(_message.Message):
    __slots__ = ("billing_period",)
    BILLING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    billing_period: _billing_pb2.BillingPeriod
    def __init__(self, billing_period: _Optional[_Union[_billing_pb2.BillingPeriod, _Mapping]] = ...) -> None: ...
