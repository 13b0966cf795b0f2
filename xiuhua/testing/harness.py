"""An embedded Xiuhua for integrators' tests: a nats-server, the store, the streams and the four services
running in the test's event loop, with connected clients to publish and to wait for events.

Where the server runs the security model's users (the plugin's server does, as `xiuhua up` does), each report
goes out as the inbound system that sends it, each command as the unit or command centre that may send it, and
the services run under their own users: what an integrator's test sees is what production allows."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import subjects
from contracts.commands import CaseCommand
from contracts.reports import INBOUND_BY_SOURCE, Inbound
from xiuhua import security
from xiuhua.client import Published, XiuhuaClient
from xiuhua.clock import Clock
from xiuhua.settings import Settings
from xiuhua.testing import servers


@dataclass
class XiuhuaHarness:
    """What the `xiuhua` fixture gives a test: URLs, a client, and shortcuts to publish and wait."""

    settings: Settings
    client: XiuhuaClient  # the operator's where the server has users (it sees every stream), else the only one
    clock: Clock | None = None
    runtimes: dict[str, Any] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)  # the server's users (none: an open server)
    _clients: dict[str, XiuhuaClient] = field(default_factory=dict)
    _stack: contextlib.AsyncExitStack | None = None

    async def client_for(self, user: str) -> XiuhuaClient:
        """A connected client as `user` of the security model (`units`, `hotline`, `command_centre` ...); the
        harness's own client where the server has no users."""
        if not self.passwords:
            return self.client
        if user not in self._clients:
            password = self.login(user)["password"]  # a KeyError naming the users there are
            assert self._stack is not None
            self._clients[user] = await self._stack.enter_async_context(
                XiuhuaClient(self.nats_url, user=user, password=password)  # its inbox prefix: the user's own
            )
        return self._clients[user]

    def login(self, user: str) -> dict[str, str]:
        """nats-py `connect` keyword arguments for `user` of the security model (its password and its own inbox
        prefix `_INBOX_<user>`), for a system under test with a NATS client of its own; none on an open server."""
        if not self.passwords:
            return {}
        if user not in self.passwords:
            raise KeyError(f"no user {user!r} on this server (users: {', '.join(sorted(self.passwords))})")
        return security.login(user, self.passwords[user])

    @property
    def nats_url(self) -> str:
        """The bus to point the system under test at."""
        return str(self.settings.nats_url)

    @property
    def mongo_url(self) -> str:
        """The store the services use (their databases are `<db_prefix><service>`)."""
        return str(self.settings.mongo_url)

    async def publish(self, report: Inbound | Mapping[str, Any], source: str | None = None, **kw: Any) -> Published:
        """Publish an inbound report (model from contracts.reports, or a dict with `source=`) as its source's user."""
        if source is None:
            source = next((s for s, m in INBOUND_BY_SOURCE.items() if isinstance(report, m)), None)
        user = security.publisher_of(subjects.report_subject(source)) if source else security.OPERATOR
        return await (await self.client_for(user)).publish_report(report, source, **kw)

    async def publish_raw(self, subject: str, body: bytes | Mapping[str, Any], msg_id: str | None = None) -> Published:
        """Publish bytes (or a dict as JSON) as they are, e.g. to see a malformed report rejected."""
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        client = await self.client_for(_publisher(subject))
        return await client._publish(subject, data, msg_id or f"raw-{uuid.uuid4().hex}")

    async def send_command(self, command: CaseCommand | Mapping[str, Any], action: str | None = None) -> Published:
        """Send a unit or command-centre command, as the user who may send that action."""
        act = action or (command.get("action") if isinstance(command, Mapping) else getattr(command, "action", None))
        user = _publisher(subjects.COMMAND.format(action=act)) if act else security.OPERATOR
        return await (await self.client_for(user)).send_command(command, action)

    async def wait_for(self, subject_pattern: str, timeout: float = 15.0, **field_filters: Any) -> Any:  # noqa: ASYNC109
        """The first event on the subject with these field values, as its typed model (see XiuhuaClient.wait_for);
        read as the operator, the test's eye on every stream."""
        return await self.client.wait_for(subject_pattern, timeout, **field_filters)

    def store(self, service: str, collection: str) -> Any:
        """A service's collection, for assertions on its state (read only, please)."""
        return self.runtimes[service].store[collection]


def _publisher(subject: str) -> str:
    try:
        return security.publisher_of(subject)
    except LookupError:  # a subject no inbound system publishes (a test injecting an event): the operator's
        return security.OPERATOR


def start_secured_nats(var_dir: Path, data_dir: Path) -> Any:
    """A started nats-server (JetStream) with the security model's users, as `xiuhua up` starts it; the passwords
    are written under `var_dir/security`, where `embedded_xiuhua` finds them."""
    return servers.start_nats(var_dir, data_dir)[0]


@contextlib.asynccontextmanager
async def embedded_xiuhua(
    nats_url: str,
    mongo_url: str,
    var_dir: Path,
    *,
    city_dir: Path | None = None,
    clock: Clock | None = None,
    services: Iterable[str] | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[XiuhuaHarness]:
    """Provision the streams on `nats_url`, run the services in this event loop, yield a harness; stop on exit.
    Where `var_dir/security/passwords.json` holds the server's users (`start_secured_nats`), everything connects
    as the user it would in production."""
    passwords = servers.passwords_in(var_dir)
    settings = await servers.provisioned_settings(
        nats_url,
        mongo_url,
        var_dir,
        db_prefix="it",
        **({"city_dir": city_dir} if city_dir else {}),
        **settings_overrides,
    )
    async with contextlib.AsyncExitStack() as stack:
        runtimes = await stack.enter_async_context(servers.running_services(settings, services, clock=clock))
        client = await stack.enter_async_context(XiuhuaClient(nats_url, **servers.operator_login(passwords)))
        yield XiuhuaHarness(
            settings=settings, client=client, clock=clock, runtimes=runtimes, passwords=passwords, _stack=stack
        )
