"""The Kafka security settings every client reads (streams/kafka/security.py): the environment mapped
to confluent-kafka's keys and Faust's credentials, errors naming the variable, no password shown,
and each role of ``billing worker --role all`` given its own principal."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from streams.kafka.acls import ROLES, role_acls
from streams.kafka.security import (
    KafkaSecurity,
    KafkaSecurityError,
    client_config,
    from_env,
    redact_config,
    role_environment,
)

SASL = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "usage", "KAFKA_SASL_PASSWORD": "s3cret-pw"}


def test_nothing_set_is_plaintext_and_adds_no_key() -> None:
    assert from_env({}) == KafkaSecurity()
    assert from_env({}).confluent() == {"security.protocol": "PLAINTEXT"}
    assert from_env({}).faust() == {}


def test_sasl_maps_to_confluent_kafka_keys(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    security = from_env({**SASL, "KAFKA_SSL_CA_LOCATION": str(ca)})
    assert security.confluent() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "usage",
        "sasl.password": "s3cret-pw",
        "ssl.ca.location": str(ca),
    }
    assert "s3cret-pw" not in repr(security) and "s3cret-pw" not in security.describe()


def test_sasl_maps_to_faust_credentials() -> None:
    credentials = from_env({**SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}).faust()["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == (
        "usage",
        "s3cret-pw",
        "SCRAM-SHA-512",
    )
    assert credentials.ssl_context is None and credentials.protocol.value == "SASL_PLAINTEXT"
    over_tls = from_env(SASL).faust()["broker_credentials"]
    assert isinstance(over_tls.ssl_context, ssl.SSLContext) and over_tls.protocol.value == "SASL_SSL"
    assert "s3cret-pw" not in repr(over_tls)


def test_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    env = {**SASL, "KAFKA_SASL_PASSWORD_FILE": str(secret)}
    del env["KAFKA_SASL_PASSWORD"]
    assert from_env(env).password == "from-a-file"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL"}, "KAFKA_SECURITY_PROTOCOL"),
        ({**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({**SASL, "KAFKA_SASL_USERNAME": ""}, "KAFKA_SASL_USERNAME"),
        ({**SASL, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
        ({**SASL, "KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "not both"),
        ({"KAFKA_SASL_USERNAME": "usage"}, "KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        ({**SASL, "KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "KAFKA_SSL_CA_LOCATION"),
    ],
)
def test_incomplete_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(KafkaSecurityError, match=named) as raised:
        from_env(env)
    assert "s3cret-pw" not in str(raised.value)


def test_an_unreadable_password_file_is_named(tmp_path: Path) -> None:
    env = {**SASL, "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")}
    del env["KAFKA_SASL_PASSWORD"]
    with pytest.raises(KafkaSecurityError, match="KAFKA_SASL_PASSWORD_FILE: cannot read"):
        from_env(env)


def test_client_config_reads_the_environment_and_redacts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SASL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KAFKA_SSL_CA_LOCATION", raising=False)
    config = client_config("broker:9092", {"group.id": "g"}, acks="all")
    assert config["bootstrap.servers"] == "broker:9092" and config["sasl.username"] == "usage"
    assert config["group.id"] == "g" and config["acks"] == "all"
    shown = redact_config(config)
    assert shown["sasl.password"] == "***" and "s3cret-pw" not in str(shown)


def test_each_role_of_the_loop_gets_its_own_principal() -> None:
    environ = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "admin",
        "KAFKA_SASL_PASSWORD": "admin-pw",
        "KAFKA_USAGE_SASL_USERNAME": "usage",
        "KAFKA_USAGE_SASL_PASSWORD_FILE": "/run/secrets/usage",
        "KAFKA_RATER_SASL_USERNAME": "rater",
        "KAFKA_RATER_SASL_PASSWORD": "rater-pw",
    }
    usage = role_environment("usage-1", environ)
    assert usage["KAFKA_SASL_USERNAME"] == "usage"
    assert usage["KAFKA_SASL_PASSWORD_FILE"] == "/run/secrets/usage" and "KAFKA_SASL_PASSWORD" not in usage
    rater = role_environment("rater", environ)
    assert (rater["KAFKA_SASL_USERNAME"], rater["KAFKA_SASL_PASSWORD"]) == ("rater", "rater-pw")
    assert role_environment("invoicer", environ)["KAFKA_SASL_USERNAME"] == "admin"  # none of its own: the shared one


def test_the_acl_table_gives_no_role_rating_results_but_the_rater() -> None:
    """Whoever can write rating.results can mint invoices; whoever can write usage.events can bill usage."""
    grants = role_acls()
    writers = {g.principal for g in grants if g.resource == "TOPIC" and "WRITE" in g.operations}
    assert writers == set(ROLES) - {"sink"}
    by_topic = {
        name: {g.principal for g in grants if g.name == name and "WRITE" in g.operations}
        for name in ("rating.results", "usage.events", "catalog.subscriptions", "invoice.finalized")
    }
    assert by_topic == {
        "rating.results": {"rater"},
        "usage.events": {"producer"},
        "catalog.subscriptions": {"relay"},
        "invoice.finalized": {"relay"},
    }
    prefixed = [g for g in role_acls("sim.") if g.resource == "TOPIC" and g.pattern == "LITERAL"]
    assert prefixed and all(g.name.startswith("sim.") for g in prefixed)
