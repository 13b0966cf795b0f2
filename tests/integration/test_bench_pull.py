"""The pull-path benchmark drains its stream through the consumers' own loop (figures are printed, not judged)."""

from __future__ import annotations

from xiuhua_tools.bench.pull import drain


async def test_the_pull_benchmark_drains_every_message_and_prints_figures() -> None:
    rate, cpu_us = await drain(300, 100, size=50)
    assert rate > 0 and cpu_us > 0
