import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schemas.generated.smallbiznis.common.v1 import money_pb2 as _money_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvoiceLineItemType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_LINE_ITEM_TYPE_UNSPECIFIED: _ClassVar[InvoiceLineItemType]
    INVOICE_LINE_ITEM_TYPE_RECURRING: _ClassVar[InvoiceLineItemType]
    INVOICE_LINE_ITEM_TYPE_USAGE: _ClassVar[InvoiceLineItemType]
    INVOICE_LINE_ITEM_TYPE_OVERAGE: _ClassVar[InvoiceLineItemType]
    INVOICE_LINE_ITEM_TYPE_DISCOUNT: _ClassVar[InvoiceLineItemType]
    INVOICE_LINE_ITEM_TYPE_TAX: _ClassVar[InvoiceLineItemType]
    INVOICE_LINE_ITEM_TYPE_ADJUSTMENT: _ClassVar[InvoiceLineItemType]

class InvoiceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_STATUS_UNSPECIFIED: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_DRAFT: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_PENDING: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_PAID: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_OVERDUE: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_VOID: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_REFUNDED: _ClassVar[InvoiceStatus]
INVOICE_LINE_ITEM_TYPE_UNSPECIFIED: InvoiceLineItemType
INVOICE_LINE_ITEM_TYPE_RECURRING: InvoiceLineItemType
INVOICE_LINE_ITEM_TYPE_USAGE: InvoiceLineItemType
INVOICE_LINE_ITEM_TYPE_OVERAGE: InvoiceLineItemType
INVOICE_LINE_ITEM_TYPE_DISCOUNT: InvoiceLineItemType
INVOICE_LINE_ITEM_TYPE_TAX: InvoiceLineItemType
INVOICE_LINE_ITEM_TYPE_ADJUSTMENT: InvoiceLineItemType
INVOICE_STATUS_UNSPECIFIED: InvoiceStatus
INVOICE_STATUS_DRAFT: InvoiceStatus
INVOICE_STATUS_PENDING: InvoiceStatus
INVOICE_STATUS_PAID: InvoiceStatus
INVOICE_STATUS_OVERDUE: InvoiceStatus
INVOICE_STATUS_VOID: InvoiceStatus
INVOICE_STATUS_REFUNDED: InvoiceStatus

class InvoiceLineItem(_message.Message):
    __slots__ = ("id", "invoice_id", "type", "description", "quantity", "unit_price", "amount", "metric_code", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    METRIC_CODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    invoice_id: str
    type: InvoiceLineItemType
    description: str
    quantity: str
    unit_price: str
    amount: _money_pb2.Money
    metric_code: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., invoice_id: _Optional[str] = ..., type: _Optional[_Union[InvoiceLineItemType, str]] = ..., description: _Optional[str] = ..., quantity: _Optional[str] = ..., unit_price: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., metric_code: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TaxBreakdown(_message.Message):
    __slots__ = ("id", "invoice_id", "name", "rate_percent", "amount", "region_code", "inclusive")
    ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    id: str
    invoice_id: str
    name: str
    rate_percent: str
    amount: _money_pb2.Money
    region_code: str
    inclusive: bool
    def __init__(self, id: _Optional[str] = ..., invoice_id: _Optional[str] = ..., name: _Optional[str] = ..., rate_percent: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., region_code: _Optional[str] = ..., inclusive: _Optional[bool] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("id", "tenant_id", "subscription_id", "invoice_number", "status", "billing_period_start", "billing_period_end", "issued_at", "due_at", "paid_at", "void_at", "line_items", "subtotal", "discount_total", "tax_total", "total", "credits_applied", "amount_paid", "amount_due", "taxes", "currency_code", "customer_reference", "plan_code", "plan_version", "metadata", "created_at", "updated_at", "amount_credited", "amount_refunded")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    PAID_AT_FIELD_NUMBER: _ClassVar[int]
    VOID_AT_FIELD_NUMBER: _ClassVar[int]
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAX_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREDITS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_PAID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    TAXES_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PLAN_CODE_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CREDITED_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    subscription_id: str
    invoice_number: str
    status: InvoiceStatus
    billing_period_start: _timestamp_pb2.Timestamp
    billing_period_end: _timestamp_pb2.Timestamp
    issued_at: _timestamp_pb2.Timestamp
    due_at: _timestamp_pb2.Timestamp
    paid_at: _timestamp_pb2.Timestamp
    void_at: _timestamp_pb2.Timestamp
    line_items: _containers.RepeatedCompositeFieldContainer[InvoiceLineItem]
    subtotal: _money_pb2.Money
    discount_total: _money_pb2.Money
    tax_total: _money_pb2.Money
    total: _money_pb2.Money
    credits_applied: _money_pb2.Money
    amount_paid: _money_pb2.Money
    amount_due: _money_pb2.Money
    taxes: _containers.RepeatedCompositeFieldContainer[TaxBreakdown]
    currency_code: str
    customer_reference: str
    plan_code: str
    plan_version: int
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    amount_credited: _money_pb2.Money
    amount_refunded: _money_pb2.Money
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., invoice_number: _Optional[str] = ..., status: _Optional[_Union[InvoiceStatus, str]] = ..., billing_period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., billing_period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., void_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., line_items: _Optional[_Iterable[_Union[InvoiceLineItem, _Mapping]]] = ..., subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discount_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., total: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., credits_applied: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., amount_paid: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., amount_due: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., taxes: _Optional[_Iterable[_Union[TaxBreakdown, _Mapping]]] = ..., currency_code: _Optional[str] = ..., customer_reference: _Optional[str] = ..., plan_code: _Optional[str] = ..., plan_version: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., amount_credited: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., amount_refunded: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetInvoiceResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class ListInvoicesRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id", "status", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    status: InvoiceStatus
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., status: _Optional[_Union[InvoiceStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInvoicesResponse(_message.Message):
    __slots__ = ("invoices", "next_page_token")
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    next_page_token: str
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GenerateInvoiceForSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "period_start", "period_end", "dry_run")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    dry_run: bool
    def __init__(self, subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GenerateInvoiceForSubscriptionResponse(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ...) -> None: ...

class GetInvoicePdfRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetInvoicePdfResponse(_message.Message):
    __slots__ = ("pdf_url", "expires_at")
    PDF_URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    pdf_url: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, pdf_url: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
