"""The Kafka simulation's waits ask again after a retriable broker error (the group coordinator
moving under load answered ``committed()`` with NOT_COORDINATOR and failed a run) and raise any
other error."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from billing.simulate.kafka import _wait


def test_a_retriable_error_is_asked_again() -> None:
    answers: list[object] = [
        KafkaException(KafkaError(KafkaError.NOT_COORDINATOR, retriable=True)),
        False,
        True,
    ]

    def done() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    _wait("the usage worker", done)
    assert answers == []


def test_any_other_error_is_raised() -> None:
    fatal = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    def done() -> bool:
        raise fatal

    with pytest.raises(KafkaException) as raised:
        _wait("the usage worker", done)
    assert raised.value is fatal
