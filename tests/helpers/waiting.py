"""Waiting for what happens asynchronously, without fixed sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import inspect


async def eventually(check, timeout: float = 15.0, interval: float = 0.1):  # noqa: ASYNC109
    """Poll a check (plain or async) until it returns a truthy value; fail with the last value after the timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(AssertionError):
            last = check()
            if inspect.isawaitable(last):
                last = await last
            if last:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
