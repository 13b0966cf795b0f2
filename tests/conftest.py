"""Real servers for the tests: nx-27017 (or MongoDB through testcontainers when a Docker engine answers)
and a fresh nats-server with JetStream per test, each on its own free port, under the users and permissions that
ship (the security model's configuration, as `xiuhua up` and deploy/ run it). They are started by the same code
as the `xiuhua.testing` plugin's fixtures (`xiuhua.testing.servers`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import monitoring

from tests.helpers import CREDENTIALS, Started
from xiuhua import embedded, security
from xiuhua.city import City, load_city
from xiuhua.settings import DEMO_CITY, Settings
from xiuhua.testing import servers


def _aggregation(event: monitoring.CommandStartedEvent) -> str | None:
    """An aggregation sent to the store (`count_documents` is one), named with its pipeline."""
    if event.command_name != "aggregate":
        return None
    return f"{event.database_name}.{event.command.get('aggregate')} {event.command.get('pipeline')}"


_AGGREGATIONS = Started(_aggregation)  # every one sent from this process
monitoring.register(_AGGREGATIONS)


@pytest.fixture(autouse=True)
def no_aggregations() -> Iterator[None]:
    """No test or service aggregates against the store: nx-27017 runs an aggregation in a savepoint on the connection
    every session of its database shares, and a transaction begun meanwhile fails to commit (`Store.count`)."""
    _AGGREGATIONS.seen.clear()
    yield
    assert not _AGGREGATIONS.seen, f"aggregations sent to the store (count with Store.count): {_AGGREGATIONS.seen}"


@pytest.fixture(scope="session")
def nx27017_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An nx-27017 for the session, whatever store the other tests use (the store contract suite runs on it)."""
    with servers.nx27017(tmp_path_factory.mktemp("nx27017")) as url:
        yield url


@pytest.fixture(scope="session")
def docker_mongo_url() -> Iterator[str]:
    """MongoDB in Docker for the session; the test is skipped, saying why, where none can run."""
    if why := servers.docker_unavailable():
        pytest.skip(f"MongoDB under testcontainers: {why}")
    with servers.docker_mongodb() as url:
        yield url


@pytest.fixture(scope="session")
def xiuhua_store_url(request: pytest.FixtureRequest) -> str:
    """The store of the whole suite and of the `xiuhua` plugin's fixture alike: `XIUHUA_TEST_MONGO_URL`, else
    MongoDB in Docker where an engine answers (`XIUHUA_TEST_DOCKER=0`: never), else nx-27017."""
    if url := os.environ.get(servers.MONGO_URL_ENV):
        return url
    if servers.docker_unavailable() is None:
        return str(request.getfixturevalue("docker_mongo_url"))
    return str(request.getfixturevalue("nx27017_url"))


@pytest.fixture(scope="session")
def mongo_url(xiuhua_store_url: str) -> str:
    """One store for the session; each test gets its own database prefix."""
    return xiuhua_store_url


@pytest.fixture(scope="session")
def service_bindings() -> security.Bindings:
    """Each service's consumers and served subjects (the same for every test: built once)."""
    return security.service_bindings()


@pytest.fixture
def nats_server(tmp_path: Path, service_bindings: security.Bindings) -> Iterator[embedded.ServerProcess]:
    """A fresh nats-server with JetStream for one test, with the embedded default's users and permissions; the
    passwords are in `tmp_path/var/security` (where the `settings` fixture's services find their own)."""
    with servers.secured_nats(tmp_path / "var", tmp_path / "nats", service_bindings) as (srv, passwords):
        CREDENTIALS[embedded.nats_url(srv)] = passwords
        try:
            yield srv
        finally:
            CREDENTIALS.pop(embedded.nats_url(srv), None)
    log = srv.log_path.read_text(errors="replace") if srv.log_path.exists() else ""
    # What ships must not trip the permissions: a refusal a test provokes on purpose says so (`refusals_expected`).
    if "Violation" in log and not getattr(srv, "refusals_expected", False):
        pytest.fail(
            "permission violations in the nats-server log:\n"
            + "\n".join(line for line in log.splitlines() if "Violation" in line)[-3000:]
        )


@pytest.fixture
async def settings(nats_server: embedded.ServerProcess, mongo_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's servers, streams provisioned, databases of its own. They carry no user:
    each service started with them connects as its own (`security.embedded_credentials`)."""
    return await servers.provisioned_settings(
        embedded.nats_url(nats_server), mongo_url, tmp_path / "var", city_dir=DEMO_CITY, max_deliver=3
    )


@pytest.fixture(scope="session")
def city() -> City:
    """The demo city."""
    return load_city(DEMO_CITY)
