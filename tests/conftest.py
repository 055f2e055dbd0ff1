"""Shared fixtures: one embedded chDB per test session (chDB allows one data path per process;
each test gets its own database in it) and one embedded PostgreSQL (each test its own database, and an
SQLAlchemy engine on it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

# Properties are checked for truth, not speed: a loaded machine (CI, two cores shared with a
# broker) must not fail an example for taking long. Tests that set a deadline keep it.
settings.register_profile("billing", deadline=None, print_blob=True)
settings.load_profile("billing")


@pytest.fixture(scope="session")
def chdb_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from streams.clickhouse.client import open_client

    client = open_client(os.environ.get("CLICKHOUSE_URL"), str(tmp_path_factory.mktemp("chdb") / "data"))
    yield client
    client.close()


@pytest.fixture
def clickhouse_db(chdb_client: Any) -> str:
    """A fresh database with the usage schema."""
    from streams.clickhouse.client import ensure_schema

    name = f"t_{uuid.uuid4().hex[:12]}"
    ensure_schema(chdb_client, name)
    return name


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DATABASE_URL, else a real PostgreSQL started from the pgserver wheel for this session (and
    stopped after it: the embedded server outlives its process unless stopped)."""
    from invoicing.ledger.embedded import embedded_database_url, stop_embedded_database

    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    data_dir = Path(tmp_path_factory.mktemp("pg")) / "data"
    yield embedded_database_url(data_dir)
    stop_embedded_database(data_dir)


# Not UTC, and not a whole-hour offset: the ledger must hand back UTC instants whatever the zone.
PG_TEST_TIMEZONE = "Asia/Kathmandu"


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, migrated database on the session's server (its session TimeZone +05:45), dropped after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from invoicing.ledger.postgres import migrate

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        connection.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO '{PG_TEST_TIMEZONE}'"))
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    """An SQLAlchemy engine on the test's database, disposed after the test."""
    from sqlalchemy import create_engine

    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n`` (``--dist load``, the default): tests/parallel.py's groups on one worker each."""
    from tests.parallel import scheduler

    return scheduler(config, log) if config.getoption("dist") == "load" else None


from tests.api_harness import api, api_usage  # noqa: E402,F401  (fixtures used by name)
from tests.kafka_fixtures import kafka_broker, secure_kafka  # noqa: E402,F401  (fixtures used by name)
from tests.payments_harness import dummy, pay_api  # noqa: E402,F401  (fixtures used by name)
