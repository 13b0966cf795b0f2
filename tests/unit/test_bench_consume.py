"""The in-process consumer benchmark applies and acknowledges every reading it makes (figures are printed, not
judged)."""

from __future__ import annotations

import pytest

from xiuhua_tools.bench import consume


async def test_the_consumer_benchmark_acknowledges_each_of_its_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    acknowledged: list[str] = []

    async def publish(self: object, subject: str, *_: object, **__: object) -> None:
        acknowledged.append(subject)  # an acknowledgement is a publish to the message's reply subject

    monkeypatch.setattr(consume._Nowhere, "publish", publish)
    cpu_us = await consume.readings(300, 100)
    batches = consume.WARM_UP_BATCHES + 3
    assert len(acknowledged) == len(set(acknowledged)) == 100 * batches
    assert all(a.startswith("$JS.ACK.XH_REPORTS.intake-reports.") for a in acknowledged)
    assert cpu_us > 0
