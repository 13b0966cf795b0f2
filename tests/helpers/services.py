"""The services running in the test's event loop against its servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from xiuhua import security
from xiuhua.clock import Clock
from xiuhua.registry import SERVICES
from xiuhua.service import Runtime
from xiuhua.settings import Settings
from xiuhua.testing.servers import running_services


@contextlib.asynccontextmanager
async def system(
    settings: Settings, *, clock: Clock | None = None, only: tuple[str, ...] = SERVICES
) -> AsyncIterator[dict[str, Runtime]]:
    """The services running in this event loop against the test's servers (as the `xiuhua` fixture runs them)."""
    async with running_services(settings, only, clock=clock) as runtimes:
        yield runtimes


def as_operator(settings: Settings) -> Settings:
    """The test's settings as the operator: for a test-only service, which has no user of its own."""
    return security.operator_settings(settings)
