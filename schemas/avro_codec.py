"""Avro on Kafka: schemaless binary behind a 5-byte header, so a consumer knows the writer schema.

Wire format of every message value (the Confluent wire format, with ids of our own):

    byte 0      magic, always 0
    bytes 1-4   schema id, unsigned 32-bit big-endian (``SCHEMA_IDS``)
    bytes 5-    the record, Avro schemaless binary, written with that schema

The ids are a fixed registry of the files in ``schemas/avro/`` (family x 100 + version); they are
not assigned by a schema registry. A new schema version gets a new file and a new id here, and an
id is never reused. ``decode`` reads with the schema it is asked for and resolves the writer's
schema into it (Avro schema resolution), so old and new producers and consumers interoperate.
Timestamps decode as timezone-aware UTC datetimes; ``encode`` takes those or epoch milliseconds.
With ``epoch_ms=True`` both sides use integers alone (the same bytes, read and written through the
schema without its timestamp logical types): the pipeline's hot paths keep milliseconds
throughout, and a datetime round trip costs more than the rest of a window row's fields.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any, Final

import fastavro

MAGIC: Final = 0
_HEADER: Final = struct.Struct(">BI")
HEADER_SIZE: Final = _HEADER.size

SCHEMA_IDS: Final[Mapping[str, int]] = {
    "usage_event.v1": 101,
    "usage_event.v2": 102,
    "usage_event_batch.v1": 201,
    "dead_letter.v1": 301,
    "dead_letter.v2": 302,
    "window_total.v1": 401,
    "window_total.v2": 402,
    "window_total.v3": 403,
    "window_batch.v1": 701,
    "usage_record_batch.v1": 801,
    "usage_record.v1": 501,
    "rating_result.v1": 601,
}
SCHEMA_NAMES: Final[Mapping[int, str]] = {schema_id: name for name, schema_id in SCHEMA_IDS.items()}

# Files whose named types a schema refers to by name; parsed first, into that schema's own namespace
# of names (v1 and v2 both define smallbiznis.usage.UsageEvent, so names are never shared globally).
_REFERENCES: Final[Mapping[str, tuple[str, ...]]] = {
    "usage_event_batch.v1": ("usage_event.v1",),
}


class WireFormatError(ValueError):
    """Bytes that are not a message of ours: bad header, unknown schema id, or an undecodable body."""


class RecordError(ValueError):
    """A record that does not fit the schema it is encoded with."""


def _source(name: str) -> Any:
    return json.loads(files("schemas").joinpath("avro", f"{name}.avsc").read_text(encoding="utf-8"))


@cache
def schema(name: str, epoch_ms: bool = False) -> Any:
    """The parsed schema of ``schemas/avro/<name>.avsc`` (e.g. ``"usage_event.v1"``), parsed once;
    with ``epoch_ms``, without its timestamp logical types (timestamps stay integers)."""
    if name not in SCHEMA_IDS:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_IDS)}")
    source = _without_timestamp_types if epoch_ms else _identity
    named: dict[str, Any] = {}
    for reference in _REFERENCES.get(name, ()):
        fastavro.parse_schema(source(_source(reference)), named)
    return fastavro.parse_schema(source(_source(name)), named)


def _identity(node: Any) -> Any:
    return node


def _without_timestamp_types(node: Any) -> Any:
    """``node`` with every ``timestamp-*`` logical type dropped: the binary encoding is the same long."""
    if isinstance(node, list):
        return [_without_timestamp_types(item) for item in node]
    if isinstance(node, dict):
        kept = {k: v for k, v in node.items() if not (k == "logicalType" and str(v).startswith("timestamp"))}
        return {k: _without_timestamp_types(v) for k, v in kept.items()}
    return node


def encode(schema_name: str, record: Mapping[str, Any], *, epoch_ms: bool = False) -> bytes:
    """Header + schemaless body of ``record``; fields with a default may be left out. With
    ``epoch_ms`` every timestamp must be an integer of milliseconds (a datetime is a RecordError)."""
    parsed = schema(schema_name, epoch_ms)
    if not epoch_ms:
        for path in _timestamp_paths(schema_name):
            _reject_naive_datetimes(record, path)
    out = io.BytesIO()
    out.write(_HEADER.pack(MAGIC, SCHEMA_IDS[schema_name]))
    try:
        fastavro.schemaless_writer(
            out, parsed, record if isinstance(record, dict) else dict(record), strict_allow_default=True
        )
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error) as exc:
        raise RecordError(f"record does not fit {schema_name}: {exc}") from exc
    return out.getvalue()


def writer_schema_of(data: bytes) -> str:
    """The name of the schema ``data`` was written with, read from its header."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError(f"message of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError(f"magic byte is {magic}, expected {MAGIC}")
    try:
        return SCHEMA_NAMES[schema_id]
    except KeyError:
        raise WireFormatError(f"unknown schema id {schema_id}") from None


def decode(
    schema_name: str, data: bytes, writer_schema_name: str | None = None, *, epoch_ms: bool = False
) -> dict[str, Any]:
    """The record in ``data``, read as ``schema_name`` (the reader schema); with ``epoch_ms``,
    timestamps as integers of milliseconds instead of datetimes.

    The writer schema is the one the header names; ``writer_schema_name``, when given, must agree.
    """
    reader = schema(schema_name, epoch_ms)
    writer_name = writer_schema_of(data)
    if writer_schema_name is not None and writer_schema_name != writer_name:
        raise WireFormatError(f"message was written with {writer_name}, expected {writer_schema_name}")
    body = io.BytesIO(data)
    body.seek(HEADER_SIZE)
    try:
        writer = schema(writer_name, epoch_ms)
        record = fastavro.schemaless_reader(body, writer, None if writer_name == schema_name else reader)
    # Garbage can fail inside fastavro in many ways (EOF, bad union index, invalid UTF-8, huge
    # lengths, unresolvable schemas); every one of them means the same thing to a consumer.
    except Exception as exc:
        reason = str(exc)[:200] or "truncated or malformed body"
        raise WireFormatError(f"cannot decode {writer_name} as {schema_name}: {type(exc).__name__}: {reason}") from exc
    if body.tell() != len(data):
        raise WireFormatError(f"{len(data) - body.tell()} trailing bytes after a {writer_name} record")
    if not isinstance(record, dict):
        raise WireFormatError(f"{writer_name} body is not a record")
    return record


@cache
def _timestamp_paths(name: str) -> tuple[tuple[str, ...], ...]:
    """Where ``name``'s records hold timestamps: field names, "*" for each item of an array, so
    that encoding checks those values alone (a walk over every field cost more than the write)."""
    found: list[tuple[str, ...]] = []

    def visit(node: Any, path: tuple[str, ...], named: dict[str, Any], found: list[tuple[str, ...]] = found) -> None:
        if isinstance(node, list):  # a union
            for branch in node:
                visit(branch, path, named, found)
        elif isinstance(node, str):
            if node in named:
                visit(named[node], path, named, found)
        elif isinstance(node, dict):
            kind = node.get("type")
            if node.get("logicalType", "").startswith("timestamp"):
                found.append(path)
            elif kind == "record":
                named[node.get("name", "")] = node
                if node.get("namespace"):
                    named[f"{node['namespace']}.{node.get('name', '')}"] = node
                for field in node["fields"]:
                    visit(field["type"], (*path, field["name"]), named, found)
            elif kind == "array":
                visit(node["items"], (*path, "*"), named, found)
            elif kind == "map":
                visit(node["values"], (*path, "*"), named, found)
            elif isinstance(kind, dict | list):
                visit(kind, path, named, found)

    named: dict[str, Any] = {}
    for reference in _REFERENCES.get(name, ()):
        visit(_source(reference), (), named, [])  # only to learn its named types
    visit(_source(name), (), named)
    return tuple(dict.fromkeys(found))


def _reject_naive_datetimes(value: object, path: tuple[str, ...]) -> None:
    # fastavro would read a naive datetime as local time and shift it silently.
    for depth, step in enumerate(path):
        if step == "*":
            items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list | tuple) else ()
            for item in items:
                _reject_naive_datetimes(item, path[depth + 1 :])
            return
        if not isinstance(value, dict | Mapping):  # dict first: it answers before the slower ABC check
            return
        value = value.get(step)
    if isinstance(value, datetime) and value.tzinfo is None:
        raise RecordError(f"naive datetime {value.isoformat()}; timestamps must be timezone-aware")
