"""The services running in the test's event loop against its servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from xiuhua import security
from xiuhua.clock import Clock
from xiuhua.registry import SERVICES, spec
from xiuhua.service import Runtime, running
from xiuhua.settings import Settings


@contextlib.asynccontextmanager
async def system(
    settings: Settings, *, clock: Clock | None = None, only: tuple[str, ...] = SERVICES
) -> AsyncIterator[dict[str, Runtime]]:
    """The services running in this event loop against the test's servers."""
    async with contextlib.AsyncExitStack() as stack:
        rts = {}
        for name in only:
            rts[name] = await stack.enter_async_context(running(spec(name), settings, clock=clock))
        await asyncio.sleep(0.2)
        yield rts


def as_operator(settings: Settings) -> Settings:
    """The test's settings as the operator: for a test-only service, which has no user of its own."""
    return security.operator_settings(settings)
