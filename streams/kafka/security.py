"""How every Kafka client of the project authenticates: one reading of the environment, mapped to
confluent-kafka's configuration keys and to Faust's (aiokafka's) credentials, so that no client
can be forgotten when a cluster turns on SASL or TLS (docs/operations.md § Kafka security).

    KAFKA_SECURITY_PROTOCOL    PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    KAFKA_SASL_MECHANISM       SCRAM-SHA-512 (default with SASL), SCRAM-SHA-256 or PLAIN
    KAFKA_SASL_USERNAME        the role's principal
    KAFKA_SASL_PASSWORD        its password, or KAFKA_SASL_PASSWORD_FILE: a file holding it
    KAFKA_SSL_CA_LOCATION      a PEM file of the CA to trust (default: the system's)

The password is never part of a ``repr``, a log line or an error message: ``redact_config`` is what
to print instead of a client configuration.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: Final = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_MECHANISM: Final = "SCRAM-SHA-512"
SECRET_KEYS: Final = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl_plain_password"})
"""Configuration keys whose values ``redact_config`` hides."""

ENVIRONMENT: Final = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CA_LOCATION",
)
"""The variables read; ``billing worker --role all`` gives each role its own (role_environment)."""


class KafkaSecurityError(ValueError):
    """The environment's Kafka security settings are incomplete or contradict each other; the
    message names the variable."""


class KafkaAuthenticationFailed(RuntimeError):
    """The broker refused the credentials of the environment (the message says whose, never the
    password): a wrong password, an unknown user, another SASL mechanism."""


_refusals: list[str] = []
"""librdkafka's reports of refused authentications, from the clients of ``client_config``."""


def _note_refusal(error: Any) -> None:
    from confluent_kafka import KafkaError

    if error.code() == KafkaError._AUTHENTICATION:
        _refusals.append(str(error.str()))


def check_authentication(client: Any) -> None:
    """After a request of ``client`` (of ``client_config``) failed: raise KafkaAuthenticationFailed
    if the broker refused its credentials, so that the user is told to check them rather than to
    start a broker. Returns when that was not the cause."""
    with contextlib.suppress(Exception):
        client.poll(0)  # librdkafka hands its error reports over on poll
    if not _refusals:
        return
    reason = _refusals[-1]
    _refusals.clear()
    security = from_env()
    raise KafkaAuthenticationFailed(
        f"Kafka refused the credentials of {security.describe()} ({reason.split(': ', 1)[-1]}); "
        "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE"
    )


@dataclass(frozen=True)
class KafkaSecurity:
    """A client's security settings; the default is a plaintext, unauthenticated connection."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_location: str | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def confluent(self) -> dict[str, str]:
        """The confluent-kafka (librdkafka) configuration keys of these settings."""
        config = {"security.protocol": self.protocol}
        if self.sasl:
            assert self.mechanism and self.username is not None and self.password is not None
            config |= {"sasl.mechanism": self.mechanism, "sasl.username": self.username, "sasl.password": self.password}
        if self.tls and self.ca_location:
            config["ssl.ca.location"] = self.ca_location
        return config

    def ssl_context(self) -> Any:
        """The TLS context aiokafka connects with (the CA of ``ca_location``, else the system's)."""
        import ssl

        return ssl.create_default_context(cafile=self.ca_location)

    def faust(self) -> dict[str, Any]:
        """The ``faust.App`` settings of these settings (``broker_credentials``), empty for plaintext."""
        if self.protocol == "PLAINTEXT":
            return {}
        import faust

        if not self.sasl:
            return {"broker_credentials": faust.SSLCredentials(self.ssl_context())}
        credentials = faust.SASLCredentials(
            username=self.username,
            password=self.password,
            mechanism=self.mechanism,
            ssl_context=self.ssl_context() if self.tls else None,
        )
        return {"broker_credentials": credentials}

    def describe(self) -> str:
        """What a log line may say about them: protocol, mechanism and principal, never the password."""
        if not self.sasl:
            return self.protocol
        return f"{self.protocol} {self.mechanism} as {self.username}"


def from_env(environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The settings of the ``KAFKA_*`` variables (module docstring). Raises KafkaSecurityError."""
    env = os.environ if environ is None else environ
    protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    ca = env.get("KAFKA_SSL_CA_LOCATION") or None
    if ca is not None and not Path(ca).is_file():
        raise KafkaSecurityError(f"KAFKA_SSL_CA_LOCATION: no file {ca}")
    if not protocol.startswith("SASL_"):
        stray = [name for name in ENVIRONMENT[1:5] if env.get(name)]
        if stray:
            raise KafkaSecurityError(
                f"{stray[0]} is set but KAFKA_SECURITY_PROTOCOL is {protocol}: "
                "set it to SASL_SSL or SASL_PLAINTEXT, or unset the SASL variables"
            )
        return KafkaSecurity(protocol, ca_location=ca)
    mechanism = (env.get("KAFKA_SASL_MECHANISM") or DEFAULT_MECHANISM).strip().upper()
    if mechanism not in MECHANISMS:
        raise KafkaSecurityError(f"KAFKA_SASL_MECHANISM: {mechanism!r} is not one of {', '.join(MECHANISMS)}")
    username = env.get("KAFKA_SASL_USERNAME")
    if not username:
        raise KafkaSecurityError(f"KAFKA_SASL_USERNAME is required with KAFKA_SECURITY_PROTOCOL={protocol}")
    return KafkaSecurity(protocol, mechanism, username, _password(env, protocol), ca)


def _password(env: Mapping[str, str], protocol: str) -> str:
    given, path = env.get("KAFKA_SASL_PASSWORD"), env.get("KAFKA_SASL_PASSWORD_FILE")
    if given and path:
        raise KafkaSecurityError("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
    if path:
        try:
            password = Path(path).read_text().rstrip("\r\n")
        except OSError as error:
            raise KafkaSecurityError(f"KAFKA_SASL_PASSWORD_FILE: cannot read {path} ({error.strerror})") from None
        if not password:
            raise KafkaSecurityError(f"KAFKA_SASL_PASSWORD_FILE: {path} is empty")
        return password
    if not given:
        raise KafkaSecurityError(
            f"KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE is required with KAFKA_SECURITY_PROTOCOL={protocol}"
        )
    return given


def client_config(bootstrap_servers: str, *extra: Mapping[str, Any], **keys: Any) -> dict[str, Any]:
    """A confluent-kafka configuration: the servers, the environment's security settings, then
    ``extra`` mappings and ``keys`` (which may replace them: a test connecting as someone else)."""
    security = from_env()
    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, **security.confluent()}
    if security.sasl:
        config["error_cb"] = _note_refusal  # check_authentication tells a refusal from no broker
    for more in extra:
        config.update(more)
    config.update(keys)
    return config


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with its secrets replaced by ``***``, for printing."""
    return {key: "***" if key in SECRET_KEYS and value else value for key, value in config.items()}


def role_environment(role: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of one role of ``billing worker --role all``: ``KAFKA_<ROLE>_SASL_USERNAME``
    (and ``_PASSWORD``, ``_PASSWORD_FILE``) replace ``KAFKA_SASL_USERNAME`` … when set, so that each
    role of one loop connects as its own principal (role ``usage-2`` reads ``KAFKA_USAGE_…``)."""
    env = dict(environ)
    scope = role.split("-")[0].upper()
    own = {name: env.get(f"KAFKA_{scope}_{name.removeprefix('KAFKA_')}") for name in ENVIRONMENT[2:5]}
    if any(own.values()):
        for name, value in own.items():
            env.pop(name, None)
            if value:
                env[name] = value
    return env
