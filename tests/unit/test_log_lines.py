"""Every log line of the roles is one valid JSON object, whatever the message holds."""

from __future__ import annotations

import io
import json
import logging

import pytest

from billing.streaming import JsonLines

pytestmark = pytest.mark.unit


def test_each_record_is_one_json_line_even_with_quotes_newlines_and_a_traceback() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines())
    log = logging.getLogger("billing.test-json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("dead-lettered %s: %s", "usage.events[0]@7", 'it\'s "odd"\nsecond line')
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("batch failed; restarting")
    finally:
        log.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == 'dead-lettered usage.events[0]@7: it\'s "odd"\nsecond line'
    assert (first["level"], first["logger"]) == ("WARNING", "billing.test-json")
    assert second["message"] == "batch failed; restarting" and "ValueError: boom" in second["exception"]
