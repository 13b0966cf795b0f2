"""Real servers for the tests: nx-27017 (or MongoDB through testcontainers when a Docker engine answers)
and a fresh nats-server with JetStream per test, each on its own free port, under the users and permissions that
ship (the security model's configuration, as `xiuhua up` and deploy/ run it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import monitoring

from tests.helpers import CREDENTIALS, Started, login
from xiuhua import embedded, security
from xiuhua.bus import provision_streams
from xiuhua.city import City, load_city
from xiuhua.settings import DEMO_CITY, Settings


def _docker_mongo() -> Iterator[str] | None:
    """A MongoDB replica set of one in Docker (transactions need a replica set), if an engine answers."""
    if os.environ.get("XIUHUA_TEST_DOCKER", "1") == "0":
        return None
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return None
    from testcontainers.mongodb import MongoDbContainer

    def gen() -> Iterator[str]:
        with MongoDbContainer("mongo:7").with_command("--replSet rs0 --bind_ip_all") as c:
            c.exec(["mongosh", "--quiet", "--eval", "rs.initiate()"])
            yield f"mongodb://{c.get_container_host_ip()}:{c.get_exposed_port(27017)}/?directConnection=true"

    return gen()


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
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One store for the session; each test gets its own database prefix."""
    if url := os.environ.get("XIUHUA_TEST_MONGO_URL"):
        yield url
        return
    docker_gen = _docker_mongo()
    if docker_gen is not None:
        yield from docker_gen
        return
    srv = embedded.store_server(tmp_path_factory.mktemp("store"))
    srv.start()
    try:
        yield embedded.mongo_url(srv)
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def service_bindings() -> security.Bindings:
    """Each service's consumers and served subjects (the same for every test: built once)."""
    return security.service_bindings()


@pytest.fixture
def nats_server(tmp_path: Path, service_bindings: security.Bindings) -> Iterator[embedded.ServerProcess]:
    """A fresh nats-server with JetStream for one test, with the embedded default's users and permissions; the
    passwords are in `tmp_path/var/security` (where the `settings` fixture's services find their own)."""
    conf, passwords = security.write_embedded_config(tmp_path / "var", service_bindings)
    srv = embedded.nats_server(tmp_path / "nats", config=conf)
    srv.start()
    CREDENTIALS[embedded.nats_url(srv)] = passwords
    try:
        yield srv
    finally:
        srv.stop()
        CREDENTIALS.pop(embedded.nats_url(srv), None)
        log = srv.log_path.read_text(errors="replace") if srv.log_path.exists() else ""
        # What ships must not trip the permissions: a refusal a test provokes on purpose says so (`refusals_expected`).
        if "Violation" in log and not getattr(srv, "refusals_expected", False):
            pytest.fail("permission violations in the nats-server log:\n"
                        + "\n".join(line for line in log.splitlines() if "Violation" in line)[-3000:])


@pytest.fixture
async def settings(nats_server: embedded.ServerProcess, mongo_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's servers, streams provisioned, databases of its own. They carry no user:
    each service started with them connects as its own (`security.embedded_credentials`)."""
    url = embedded.nats_url(nats_server)
    await provision_streams(url, connect_opts=login(url, security.OPERATOR))
    return Settings(
        nats_url=url,
        mongo_url=mongo_url,
        db_prefix=f"t{uuid.uuid4().hex[:10]}_",
        var_dir=tmp_path / "var",
        city_dir=DEMO_CITY,
        max_deliver=3,
        store_tx_lock_dir=tmp_path / "locks",
    )


@pytest.fixture(scope="session")
def city() -> City:
    """The demo city."""
    return load_city(DEMO_CITY)
