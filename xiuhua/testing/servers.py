"""What a test needs running, in one place for the `xiuhua.testing` plugin and Xiuhua's own suite: the store
(nx-27017, or MongoDB in Docker where asked and an engine answers), a nats-server with the security model's users,
settings pointing at both with the streams provisioned, and the services in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from xiuhua import embedded, security
from xiuhua.clock import Clock
from xiuhua.settings import Settings

MONGO_URL_ENV = "XIUHUA_TEST_MONGO_URL"  # a store of your own for every test (its databases per test)
DOCKER_ENV = "XIUHUA_TEST_DOCKER"  # "0": never MongoDB in Docker, even where an engine answers
MONGO_IMAGE = "mongo:7"


@contextlib.contextmanager
def nx27017(data_dir: Path) -> Iterator[str]:
    """An nx-27017 started under `data_dir`, its URL while the block runs."""
    srv = embedded.store_server(data_dir)
    srv.start()
    try:
        yield embedded.mongo_url(srv)
    finally:
        srv.stop()


def docker_unavailable() -> str | None:
    """Why MongoDB cannot run in Docker here (None: it can): switched off, the libraries missing, no engine."""
    if os.environ.get(DOCKER_ENV, "1") == "0":
        return f"{DOCKER_ENV}=0"
    missing = [name for name in ("docker", "testcontainers") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install testcontainers)"
    import docker

    try:
        docker.from_env(timeout=2).ping()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__})"
    return None


@contextlib.contextmanager
def docker_mongodb() -> Iterator[str]:
    """A MongoDB replica set of one in Docker (transactions need a replica set), its URL while the block runs."""
    from testcontainers.mongodb import MongoDbContainer

    with MongoDbContainer(MONGO_IMAGE).with_command("--replSet rs0 --bind_ip_all") as c:
        c.exec(["mongosh", "--quiet", "--eval", "rs.initiate()"])
        yield f"mongodb://{c.get_container_host_ip()}:{c.get_exposed_port(27017)}/?directConnection=true"


@contextlib.contextmanager
def store_url(data_dir: Path, *, docker: bool = False) -> Iterator[str]:
    """The tests' store: `XIUHUA_TEST_MONGO_URL` if set, else MongoDB in Docker if `docker` and an engine
    answers, else nx-27017 under `data_dir`."""
    if url := os.environ.get(MONGO_URL_ENV):
        yield url
    elif docker and docker_unavailable() is None:
        with docker_mongodb() as url:
            yield url
    else:
        with nx27017(data_dir) as url:
            yield url


def start_nats(
    var_dir: Path, data_dir: Path, bindings: security.Bindings | None = None
) -> tuple[embedded.ServerProcess, dict[str, str]]:
    """A started nats-server with JetStream on a free port (never 4222) under the security model's users and
    permissions, as `xiuhua up` starts it, and the users' passwords (also written under `var_dir/security`, where
    services find their own). `bindings`: the services' consumers and subjects, if the caller has them already."""
    conf, passwords = security.write_embedded_config(var_dir, bindings)
    srv = embedded.nats_server(data_dir, config=conf)
    srv.start()
    return srv, passwords


@contextlib.contextmanager
def secured_nats(
    var_dir: Path, data_dir: Path, bindings: security.Bindings | None = None
) -> Iterator[tuple[embedded.ServerProcess, dict[str, str]]]:
    """`start_nats` while the block runs."""
    srv, passwords = start_nats(var_dir, data_dir, bindings)
    try:
        yield srv, passwords
    finally:
        srv.stop()


def passwords_in(var_dir: Path) -> dict[str, str]:
    """The users' passwords `secured_nats` wrote under `var_dir` (none: an open server)."""
    return security.embedded_passwords(var_dir)


def operator_login(passwords: Mapping[str, str]) -> dict[str, Any]:
    """nats.connect's keyword arguments for the operator, its inbox prefix too (none for an open server)."""
    return security.login(security.OPERATOR, passwords[security.OPERATOR]) if passwords else {}


async def provisioned_settings(
    nats_url: str, mongo_url: str, var_dir: Path, *, db_prefix: str = "t", **overrides: Any
) -> Settings:
    """Settings for services on these servers, with databases of their own (`<db_prefix><random>_`) and the
    streams provisioned. They carry no user: each service connects as its own."""
    from xiuhua.bus import provision_streams

    await provision_streams(nats_url, connect_opts=operator_login(passwords_in(var_dir)))
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "mongo_url": mongo_url,
        "db_prefix": f"{db_prefix}{uuid.uuid4().hex[:10]}_",
        "var_dir": var_dir,
        "store_tx_lock_dir": var_dir / "locks",
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings, services: Iterable[str] | None = None, *, clock: Clock | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The services (default all four) running in this event loop, by name; stopped on exit."""
    from xiuhua.registry import SERVICES, spec
    from xiuhua.service import running

    async with contextlib.AsyncExitStack() as stack:
        runtimes = {}
        for name in services if services is not None else SERVICES:
            runtimes[name] = await stack.enter_async_context(running(spec(name), settings, clock=clock))
        await asyncio.sleep(0.2)  # let the services' pull consumers make their first requests
        yield runtimes
