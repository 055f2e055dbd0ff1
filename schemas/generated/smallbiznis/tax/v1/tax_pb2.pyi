import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schemas.generated.smallbiznis.common.v1 import money_pb2 as _money_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaxRule(_message.Message):
    __slots__ = ("id", "region_code", "name", "rate_percent", "is_default", "is_active", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    region_code: str
    name: str
    rate_percent: str
    is_default: bool
    is_active: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., region_code: _Optional[str] = ..., name: _Optional[str] = ..., rate_percent: _Optional[str] = ..., is_default: _Optional[bool] = ..., is_active: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TaxLine(_message.Message):
    __slots__ = ("tax_rule_id", "name", "rate_percent", "amount")
    TAX_RULE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    tax_rule_id: str
    name: str
    rate_percent: str
    amount: _money_pb2.Money
    def __init__(self, tax_rule_id: _Optional[str] = ..., name: _Optional[str] = ..., rate_percent: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class ListTaxRulesRequest(_message.Message):
    __slots__ = ("region_code",)
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    region_code: str
    def __init__(self, region_code: _Optional[str] = ...) -> None: ...

class ListTaxRulesResponse(_message.Message):
    __slots__ = ("tax_rules",)
    TAX_RULES_FIELD_NUMBER: _ClassVar[int]
    tax_rules: _containers.RepeatedCompositeFieldContainer[TaxRule]
    def __init__(self, tax_rules: _Optional[_Iterable[_Union[TaxRule, _Mapping]]] = ...) -> None: ...

class TaxCalculationRequest(_message.Message):
    __slots__ = ("subtotal", "country", "region", "tax_inclusive")
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    TAX_INCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    subtotal: _money_pb2.Money
    country: str
    region: str
    tax_inclusive: bool
    def __init__(self, subtotal: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., country: _Optional[str] = ..., region: _Optional[str] = ..., tax_inclusive: _Optional[bool] = ...) -> None: ...

class TaxCalculationResponse(_message.Message):
    __slots__ = ("tax", "lines")
    TAX_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    tax: _money_pb2.Money
    lines: _containers.RepeatedCompositeFieldContainer[TaxLine]
    def __init__(self, tax: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[TaxLine, _Mapping]]] = ...) -> None: ...
