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

class BillingPeriodStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BILLING_PERIOD_STATUS_UNSPECIFIED: _ClassVar[BillingPeriodStatus]
    BILLING_PERIOD_STATUS_OPEN: _ClassVar[BillingPeriodStatus]
    BILLING_PERIOD_STATUS_CLOSED: _ClassVar[BillingPeriodStatus]
    BILLING_PERIOD_STATUS_INVOICED: _ClassVar[BillingPeriodStatus]
BILLING_PERIOD_STATUS_UNSPECIFIED: BillingPeriodStatus
BILLING_PERIOD_STATUS_OPEN: BillingPeriodStatus
BILLING_PERIOD_STATUS_CLOSED: BillingPeriodStatus
BILLING_PERIOD_STATUS_INVOICED: BillingPeriodStatus

class TrialStatus(_message.Message):
    __slots__ = ("subscription_id", "enabled", "expired", "trial_balance", "trial_start_at", "trial_end_at")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_BALANCE_FIELD_NUMBER: _ClassVar[int]
    TRIAL_START_AT_FIELD_NUMBER: _ClassVar[int]
    TRIAL_END_AT_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    enabled: bool
    expired: bool
    trial_balance: _money_pb2.Money
    trial_start_at: _timestamp_pb2.Timestamp
    trial_end_at: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., enabled: _Optional[bool] = ..., expired: _Optional[bool] = ..., trial_balance: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., trial_start_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trial_end_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("subscription_id", "trial_balance", "credit_balance", "updated_at")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_BALANCE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_BALANCE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    trial_balance: _money_pb2.Money
    credit_balance: _money_pb2.Money
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., trial_balance: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., credit_balance: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BillingPeriod(_message.Message):
    __slots__ = ("id", "subscription_id", "period_start", "period_end", "status", "invoice_id", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    status: BillingPeriodStatus
    invoice_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[BillingPeriodStatus, str]] = ..., invoice_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("id", "subscription_id", "metric_code", "period_id", "quantity", "cost", "trial_balance_left", "metadata", "created_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_CODE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    TRIAL_BALANCE_LEFT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    subscription_id: str
    metric_code: str
    period_id: str
    quantity: str
    cost: _money_pb2.Money
    trial_balance_left: _money_pb2.Money
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., metric_code: _Optional[str] = ..., period_id: _Optional[str] = ..., quantity: _Optional[str] = ..., cost: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., trial_balance_left: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OnSubscriptionCreatedRequest(_message.Message):
    __slots__ = ("subscription_id", "trial_days")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    trial_days: int
    def __init__(self, subscription_id: _Optional[str] = ..., trial_days: _Optional[int] = ...) -> None: ...

class OnSubscriptionCreatedResponse(_message.Message):
    __slots__ = ("trial_status", "billing_period")
    TRIAL_STATUS_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    trial_status: TrialStatus
    billing_period: BillingPeriod
    def __init__(self, trial_status: _Optional[_Union[TrialStatus, _Mapping]] = ..., billing_period: _Optional[_Union[BillingPeriod, _Mapping]] = ...) -> None: ...

class RecordUsageRequest(_message.Message):
    __slots__ = ("subscription_id", "metric_code", "quantity", "metadata", "idempotency_key", "recorded_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_CODE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    metric_code: str
    quantity: str
    metadata: _containers.ScalarMap[str, str]
    idempotency_key: str
    recorded_at: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., metric_code: _Optional[str] = ..., quantity: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordUsageResponse(_message.Message):
    __slots__ = ("cost", "trial_balance_left", "billable", "record")
    COST_FIELD_NUMBER: _ClassVar[int]
    TRIAL_BALANCE_LEFT_FIELD_NUMBER: _ClassVar[int]
    BILLABLE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    cost: _money_pb2.Money
    trial_balance_left: _money_pb2.Money
    billable: bool
    record: UsageRecord
    def __init__(self, cost: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., trial_balance_left: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., billable: _Optional[bool] = ..., record: _Optional[_Union[UsageRecord, _Mapping]] = ...) -> None: ...

class GetTrialStatusRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class GetTrialStatusResponse(_message.Message):
    __slots__ = ("trial_status",)
    TRIAL_STATUS_FIELD_NUMBER: _ClassVar[int]
    trial_status: TrialStatus
    def __init__(self, trial_status: _Optional[_Union[TrialStatus, _Mapping]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    def __init__(self, balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class GetCurrentBillingPeriodRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class GetCurrentBillingPeriodResponse(_message.Message):
    __slots__ = ("billing_period",)
    BILLING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    billing_period: BillingPeriod
    def __init__(self, billing_period: _Optional[_Union[BillingPeriod, _Mapping]] = ...) -> None: ...

class ListBillingPeriodsRequest(_message.Message):
    __slots__ = ("subscription_id", "page_size", "page_token")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    page_size: int
    page_token: str
    def __init__(self, subscription_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBillingPeriodsResponse(_message.Message):
    __slots__ = ("billing_periods", "next_page_token")
    BILLING_PERIODS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    billing_periods: _containers.RepeatedCompositeFieldContainer[BillingPeriod]
    next_page_token: str
    def __init__(self, billing_periods: _Optional[_Iterable[_Union[BillingPeriod, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
