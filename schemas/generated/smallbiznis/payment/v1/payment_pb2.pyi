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

class PaymentProvider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_PROVIDER_UNSPECIFIED: _ClassVar[PaymentProvider]
    PAYMENT_PROVIDER_STRIPE: _ClassVar[PaymentProvider]
    PAYMENT_PROVIDER_XENDIT: _ClassVar[PaymentProvider]
    PAYMENT_PROVIDER_MIDTRANS: _ClassVar[PaymentProvider]
    PAYMENT_PROVIDER_DUMMY: _ClassVar[PaymentProvider]

class PaymentMethodType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_METHOD_TYPE_UNSPECIFIED: _ClassVar[PaymentMethodType]
    PAYMENT_METHOD_TYPE_CARD: _ClassVar[PaymentMethodType]
    PAYMENT_METHOD_TYPE_VA: _ClassVar[PaymentMethodType]
    PAYMENT_METHOD_TYPE_EWALLET: _ClassVar[PaymentMethodType]

class PaymentAttemptStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_ATTEMPT_STATUS_UNSPECIFIED: _ClassVar[PaymentAttemptStatus]
    PAYMENT_ATTEMPT_STATUS_PENDING: _ClassVar[PaymentAttemptStatus]
    PAYMENT_ATTEMPT_STATUS_PROCESSING: _ClassVar[PaymentAttemptStatus]
    PAYMENT_ATTEMPT_STATUS_SUCCEEDED: _ClassVar[PaymentAttemptStatus]
    PAYMENT_ATTEMPT_STATUS_FAILED: _ClassVar[PaymentAttemptStatus]
    PAYMENT_ATTEMPT_STATUS_REFUNDED: _ClassVar[PaymentAttemptStatus]
PAYMENT_PROVIDER_UNSPECIFIED: PaymentProvider
PAYMENT_PROVIDER_STRIPE: PaymentProvider
PAYMENT_PROVIDER_XENDIT: PaymentProvider
PAYMENT_PROVIDER_MIDTRANS: PaymentProvider
PAYMENT_PROVIDER_DUMMY: PaymentProvider
PAYMENT_METHOD_TYPE_UNSPECIFIED: PaymentMethodType
PAYMENT_METHOD_TYPE_CARD: PaymentMethodType
PAYMENT_METHOD_TYPE_VA: PaymentMethodType
PAYMENT_METHOD_TYPE_EWALLET: PaymentMethodType
PAYMENT_ATTEMPT_STATUS_UNSPECIFIED: PaymentAttemptStatus
PAYMENT_ATTEMPT_STATUS_PENDING: PaymentAttemptStatus
PAYMENT_ATTEMPT_STATUS_PROCESSING: PaymentAttemptStatus
PAYMENT_ATTEMPT_STATUS_SUCCEEDED: PaymentAttemptStatus
PAYMENT_ATTEMPT_STATUS_FAILED: PaymentAttemptStatus
PAYMENT_ATTEMPT_STATUS_REFUNDED: PaymentAttemptStatus

class PaymentMethod(_message.Message):
    __slots__ = ("id", "tenant_id", "provider", "type", "display_name", "last4", "exp_month", "exp_year", "is_default", "provider_data", "created_at", "updated_at", "subscription_id")
    class ProviderDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST4_FIELD_NUMBER: _ClassVar[int]
    EXP_MONTH_FIELD_NUMBER: _ClassVar[int]
    EXP_YEAR_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_DATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    provider: PaymentProvider
    type: PaymentMethodType
    display_name: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    provider_data: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    subscription_id: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., provider: _Optional[_Union[PaymentProvider, str]] = ..., type: _Optional[_Union[PaymentMethodType, str]] = ..., display_name: _Optional[str] = ..., last4: _Optional[str] = ..., exp_month: _Optional[int] = ..., exp_year: _Optional[int] = ..., is_default: _Optional[bool] = ..., provider_data: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class PaymentAttempt(_message.Message):
    __slots__ = ("id", "tenant_id", "invoice_id", "payment_method_id", "status", "provider_transaction_id", "amount", "attempt_number", "failure_code", "failure_message", "attempted_at", "next_retry_at", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    FAILURE_CODE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    invoice_id: str
    payment_method_id: str
    status: PaymentAttemptStatus
    provider_transaction_id: str
    amount: _money_pb2.Money
    attempt_number: int
    failure_code: str
    failure_message: str
    attempted_at: _timestamp_pb2.Timestamp
    next_retry_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., invoice_id: _Optional[str] = ..., payment_method_id: _Optional[str] = ..., status: _Optional[_Union[PaymentAttemptStatus, str]] = ..., provider_transaction_id: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., attempt_number: _Optional[int] = ..., failure_code: _Optional[str] = ..., failure_message: _Optional[str] = ..., attempted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_retry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListPaymentMethodsRequest(_message.Message):
    __slots__ = ("tenant_id", "subscription_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subscription_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class ListPaymentMethodsResponse(_message.Message):
    __slots__ = ("payment_methods",)
    PAYMENT_METHODS_FIELD_NUMBER: _ClassVar[int]
    payment_methods: _containers.RepeatedCompositeFieldContainer[PaymentMethod]
    def __init__(self, payment_methods: _Optional[_Iterable[_Union[PaymentMethod, _Mapping]]] = ...) -> None: ...

class AttachPaymentMethodRequest(_message.Message):
    __slots__ = ("tenant_id", "provider", "type", "provider_payload", "set_as_default", "display_name", "subscription_id")
    class ProviderPayloadEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SET_AS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    provider: PaymentProvider
    type: PaymentMethodType
    provider_payload: _containers.ScalarMap[str, str]
    set_as_default: bool
    display_name: str
    subscription_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., provider: _Optional[_Union[PaymentProvider, str]] = ..., type: _Optional[_Union[PaymentMethodType, str]] = ..., provider_payload: _Optional[_Mapping[str, str]] = ..., set_as_default: _Optional[bool] = ..., display_name: _Optional[str] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class AttachPaymentMethodResponse(_message.Message):
    __slots__ = ("payment_method",)
    PAYMENT_METHOD_FIELD_NUMBER: _ClassVar[int]
    payment_method: PaymentMethod
    def __init__(self, payment_method: _Optional[_Union[PaymentMethod, _Mapping]] = ...) -> None: ...

class ChargeInvoiceRequest(_message.Message):
    __slots__ = ("invoice_id", "payment_method_id", "idempotency_key")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_METHOD_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    payment_method_id: str
    idempotency_key: str
    def __init__(self, invoice_id: _Optional[str] = ..., payment_method_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ChargeInvoiceResponse(_message.Message):
    __slots__ = ("payment_attempt",)
    PAYMENT_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    payment_attempt: PaymentAttempt
    def __init__(self, payment_attempt: _Optional[_Union[PaymentAttempt, _Mapping]] = ...) -> None: ...

class GetPaymentAttemptsRequest(_message.Message):
    __slots__ = ("invoice_id",)
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    def __init__(self, invoice_id: _Optional[str] = ...) -> None: ...

class GetPaymentAttemptsResponse(_message.Message):
    __slots__ = ("payment_attempts",)
    PAYMENT_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    payment_attempts: _containers.RepeatedCompositeFieldContainer[PaymentAttempt]
    def __init__(self, payment_attempts: _Optional[_Iterable[_Union[PaymentAttempt, _Mapping]]] = ...) -> None: ...

class RefundInvoiceRequest(_message.Message):
    __slots__ = ("invoice_id", "reason")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    reason: str
    def __init__(self, invoice_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RefundInvoiceResponse(_message.Message):
    __slots__ = ("payment_attempt",)
    PAYMENT_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    payment_attempt: PaymentAttempt
    def __init__(self, payment_attempt: _Optional[_Union[PaymentAttempt, _Mapping]] = ...) -> None: ...

class VoidInvoiceRequest(_message.Message):
    __slots__ = ("invoice_id", "reason")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    reason: str
    def __init__(self, invoice_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class VoidInvoiceResponse(_message.Message):
    __slots__ = ("invoice_id", "status", "credit_restored")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREDIT_RESTORED_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    status: str
    credit_restored: _money_pb2.Money
    def __init__(self, invoice_id: _Optional[str] = ..., status: _Optional[str] = ..., credit_restored: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...
