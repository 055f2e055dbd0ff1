import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schemas.generated.smallbiznis.common.v1 import money_pb2 as _money_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RatingResultItem(_message.Message):
    __slots__ = ("metric_code", "quantity", "amount", "currency_code", "metadata", "unit_price")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METRIC_CODE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    metric_code: str
    quantity: str
    amount: _money_pb2.Money
    currency_code: str
    metadata: _containers.ScalarMap[str, str]
    unit_price: str
    def __init__(self, metric_code: _Optional[str] = ..., quantity: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., currency_code: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., unit_price: _Optional[str] = ...) -> None: ...

class RatingResult(_message.Message):
    __slots__ = ("subscription_id", "items", "rated_at", "period_start", "period_end", "tenant_id", "plan_code", "plan_version", "proration")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RATED_AT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_CODE_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRORATION_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    items: _containers.RepeatedCompositeFieldContainer[RatingResultItem]
    rated_at: _timestamp_pb2.Timestamp
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    tenant_id: str
    plan_code: str
    plan_version: int
    proration: str
    def __init__(self, subscription_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[RatingResultItem, _Mapping]]] = ..., rated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant_id: _Optional[str] = ..., plan_code: _Optional[str] = ..., plan_version: _Optional[int] = ..., proration: _Optional[str] = ...) -> None: ...

class RateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "period_start", "period_end")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RateSubscriptionResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: RatingResult
    def __init__(self, result: _Optional[_Union[RatingResult, _Mapping]] = ...) -> None: ...

class GetCurrentRatingRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class GetCurrentRatingResponse(_message.Message):
    __slots__ = ("result", "as_of")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    result: RatingResult
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, result: _Optional[_Union[RatingResult, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
