"""YAML and JSON documents read with exact numbers: a number written in a file reaches the field
readers as the Decimal of its text, never as a double."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from billing.simulate.fields import NOT_FINITE
from rating.errors import InvalidValue


class ExactLoader(yaml.SafeLoader):
    """Safe YAML whose numbers are never doubles: a float is the Decimal of its text (``.nan`` and
    ``.inf`` stay floats, for the pipeline to reject), an int longer than any bound stays text."""


_WIDEST_INT = 40
"""Digits of the longest int read as an int: more is beyond every bound (and past 4,300 digits
Python's int() refuses the text with a ValueError instead of a YAML or JSON error)."""


def _yaml_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    written = str(loader.construct_scalar(node))
    if NOT_FINITE.fullmatch(written.replace(".", "", 1)):
        return loader.construct_yaml_float(node)
    try:
        return Decimal(written.replace("_", ""))  # YAML 1.1 allows 1_000.5
    except InvalidOperation:  # sexagesimal (1:30.5): left as text, refused where a number is expected
        return written


def _yaml_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    written = str(loader.construct_scalar(node))
    return written if len(written) > _WIDEST_INT else loader.construct_yaml_int(node)


def _json_int(written: str) -> int | str:
    return written if len(written) > _WIDEST_INT else int(written)


ExactLoader.add_constructor("tag:yaml.org,2002:float", _yaml_float)
ExactLoader.add_constructor("tag:yaml.org,2002:int", _yaml_int)


def parse_json(content: str) -> Any:
    """JSON with exact numbers: a number with a point or exponent is the Decimal of its text."""
    return json.loads(content, parse_float=Decimal, parse_int=_json_int)


def parse_yaml(content: str) -> Any:
    """YAML (safe) with exact numbers (``ExactLoader``)."""
    return yaml.load(content, Loader=ExactLoader)  # a SafeLoader with two number constructors


def read_text(path: Path, field: str) -> str:
    """The UTF-8 text of ``path``; InvalidValue naming ``field`` when it cannot be read so."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidValue(field, f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise InvalidValue(field, f"{path} is not UTF-8 text (byte {error.start})") from None
