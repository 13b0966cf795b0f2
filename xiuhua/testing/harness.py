"""An embedded Xiuhua for integrators' tests: a nats-server, the store, the streams and the four services
running in the test's event loop, with a connected client to publish and to wait for events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.commands import CaseCommand
from contracts.reports import Inbound
from xiuhua.client import Published, XiuhuaClient
from xiuhua.clock import Clock
from xiuhua.settings import Settings


@dataclass
class XiuhuaHarness:
    """What the `xiuhua` fixture gives a test: URLs, a client, and shortcuts to publish and wait."""

    settings: Settings
    client: XiuhuaClient
    clock: Clock | None = None
    runtimes: dict[str, Any] = field(default_factory=dict)

    @property
    def nats_url(self) -> str:
        """The bus to point the system under test at."""
        return str(self.settings.nats_url)

    @property
    def mongo_url(self) -> str:
        """The store the services use (their databases are `<db_prefix><service>`)."""
        return str(self.settings.mongo_url)

    async def publish(self, report: Inbound | Mapping[str, Any], source: str | None = None, **kw: Any) -> Published:
        """Publish an inbound report (model from contracts.reports, or a dict with `source=`)."""
        return await self.client.publish_report(report, source, **kw)

    async def publish_raw(self, subject: str, body: bytes | Mapping[str, Any], msg_id: str | None = None) -> Published:
        """Publish bytes (or a dict as JSON) as they are, e.g. to see a malformed report rejected."""
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return await self.client._publish(subject, data, msg_id or f"raw-{uuid.uuid4().hex}")

    async def send_command(self, command: CaseCommand | Mapping[str, Any], action: str | None = None) -> Published:
        """Send a unit or command-centre command."""
        return await self.client.send_command(command, action)

    async def wait_for(self, subject_pattern: str, timeout: float = 15.0, **field_filters: Any) -> Any:  # noqa: ASYNC109
        """The first event on the subject with these field values, as its typed model (see XiuhuaClient.wait_for)."""
        return await self.client.wait_for(subject_pattern, timeout, **field_filters)

    def store(self, service: str, collection: str) -> Any:
        """A service's collection, for assertions on its state (read only, please)."""
        return self.runtimes[service].store[collection]


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
    """Provision the streams on `nats_url`, run the services in this event loop, yield a harness; stop on exit."""
    from xiuhua.bus import provision_streams
    from xiuhua.registry import SERVICES, spec
    from xiuhua.service import running

    await provision_streams(nats_url)
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "mongo_url": mongo_url,
        "db_prefix": f"it{uuid.uuid4().hex[:10]}_",
        "var_dir": var_dir,
        "store_tx_lock_dir": var_dir / "locks",
        **({"city_dir": city_dir} if city_dir else {}),
        **settings_overrides,
    }
    settings = Settings(**values)
    async with contextlib.AsyncExitStack() as stack:
        runtimes = {}
        for name in services if services is not None else SERVICES:
            runtimes[name] = await stack.enter_async_context(running(spec(name), settings, clock=clock))
        client = await stack.enter_async_context(XiuhuaClient(nats_url))
        await asyncio.sleep(0.2)  # let the services' pull consumers make their first requests
        yield XiuhuaHarness(settings=settings, client=client, clock=clock, runtimes=runtimes)
