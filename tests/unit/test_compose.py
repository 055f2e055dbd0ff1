"""docker-compose.yml keeps its doors locked (issue #15.3): secrets come from an env file, only the
APIs are published on the host, and Prometheus scrapes every role's metrics port. Compose cannot
run here (no Docker engine), so the file is checked as data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "ops" / "compose" / "prometheus.yml").read_text())
API_PORTS = {"api": ["50052:50052"], "rater": ["50051:50051"]}


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def test_only_the_apis_are_published() -> None:
    published = {name: s["ports"] for name, s in COMPOSE["services"].items() if "ports" in s}
    assert published == API_PORTS


def test_every_secret_comes_from_the_env_file() -> None:
    texts = _strings(COMPOSE)
    for service in COMPOSE["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (key, value)
    urls = [t for t in texts if "://" in t and "@" in t and "\n" not in t]  # URLs, not the broker's start script
    assert urls, "the billing roles' URLs carry credentials"
    for url in urls:
        credentials = url.split("://", 1)[1].split("@", 1)[0]
        assert re.fullmatch(r"[a-z]+:\$\{[A-Z_]+:\?[^}]+\}", credentials), url
    example = (ROOT / "ops" / "compose" / "env.example").read_text()
    for name in set(re.findall(r"\$\{([A-Z_]+):\?", "\n".join(texts))):
        assert f"\n{name}=\n" in example, name
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_prometheus_scrapes_every_role_on_its_metrics_port() -> None:
    ports = {}
    for name, service in COMPOSE["services"].items():
        command = service.get("command") or []
        if "--metrics-port" in command:
            assert command[command.index("--metrics-host") + 1] == "0.0.0.0", name  # inside the network only
            ports[name] = command[command.index("--metrics-port") + 1]
    assert set(ports) == {"worker", "rater", "invoicer", "relay", "payments"}
    targets = {t for job in PROMETHEUS["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:{port}" for name, port in ports.items()}


def _mounts(service: str) -> dict[str, str]:
    """Container path → host path of a service's bind mounts."""
    volumes = [v.split(":") for v in COMPOSE["services"][service]["volumes"] if v.startswith("./")]
    return {container: host for host, container, *_ in volumes}


def test_prometheus_evaluates_the_alert_rules_with_the_release_promtool_tests_them_with() -> None:
    mounts = _mounts("prometheus")
    assert [mounts[path] for path in PROMETHEUS["rule_files"]] == ["./ops/prometheus/alerts.yml"]
    assert mounts["/etc/prometheus/prometheus.yml"] == "./ops/compose/prometheus.yml"
    major, minor, patch = COMPOSE["services"]["prometheus"]["image"].split(":v")[1].split(".")
    promtool = (ROOT / "ops" / "promtool.py").read_text()
    assert f'"v0.{int(major) * 100 + int(minor)}.{patch}",' in promtool  # Prometheus 3.5.0 is v0.305.0 (its TOOL)


def test_grafana_is_provisioned_with_prometheus_and_the_generated_dashboards() -> None:
    grafana = COMPOSE["services"]["grafana"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"]), "a pinned release"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == (
        "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD in .env}"
    )
    mounts = _mounts("grafana")
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in COMPOSE["services"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "smallbiznis.yml").read_text())["providers"]
    dashboards = ROOT / mounts[provider["options"]["path"]]
    assert {p.name for p in dashboards.glob("*.json")} == {"pipeline.json", "billing.json", "payments.json"}


KAFKA_PRINCIPAL = {"worker": "usage", "rater": "rater", "invoicer": "invoicer", "relay": "relay", "api": "producer"}
"""The Kafka principal each billing service connects as (streams/kafka/acls.py); ``catalog`` produces
usage for users (``docker compose run --rm catalog produce``) as the producers do."""


def test_kafka_authenticates_every_client_and_each_role_has_its_principal() -> None:
    from streams.kafka.acls import ADMIN, ROLES

    kafka = COMPOSE["services"]["kafka"]
    script = kafka["command"][0]
    protocols = re.search(r"listener.security.protocol.map=(\S+)", script)
    assert protocols is not None
    assert {entry.split(":")[1] for entry in protocols.group(1).split(",")} == {"SASL_PLAINTEXT"}
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in script
    assert "allow.everyone.if.no.acl.found=false" in script and f"super.users=User:{ADMIN}" in script
    users = re.search(r"for user in ([a-z ]+); do", script)
    assert users is not None
    scram_users = set(users.group(1).split())
    for name, principal in {**KAFKA_PRINCIPAL, "catalog": "producer", "topics": ADMIN}.items():
        env = COMPOSE["services"][name]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["KAFKA_SASL_USERNAME"] == principal, name
        assert env["KAFKA_SASL_PASSWORD"].startswith(f"${{KAFKA_{principal.upper()}_PASSWORD:?"), name
        assert principal in scram_users and (principal in ROLES or principal == ADMIN)
        assert f"KAFKA_{principal.upper()}_PASSWORD" in kafka["environment"]
    assert COMPOSE["services"]["topics"]["entrypoint"] == ["python", "-m", "streams.kafka.acls"]
