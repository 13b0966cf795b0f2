"""Notify's former alert consumer, once retired, is deleted at the next start; a NATS configuration that does not
let notify delete it leaves it there with a warning instead of stopping notify."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeout

from services.notify.handover import CONSUMER, Handover


class _JetStream:
    def __init__(self, refuse_delete: bool) -> None:
        self.refuse_delete = refuse_delete
        self.deleted: list[tuple[str, str]] = []

    async def consumer_info(self, stream: str, name: str) -> Any:
        return SimpleNamespace(name=name, ack_floor=SimpleNamespace(stream_seq=2))  # it acknowledged up to 2

    async def stream_info(self, stream: str) -> Any:
        return SimpleNamespace(state=SimpleNamespace(last_seq=7))

    async def delete_consumer(self, stream: str, name: str) -> bool:
        if self.refuse_delete:
            raise NatsTimeout  # what a permissions violation on a request looks like to nats-py
        self.deleted.append((stream, name))
        return True


def _retired() -> Handover:
    handover = Handover(SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]
    handover.retired = True
    return handover


async def test_a_retired_consumer_is_deleted_and_not_wanted() -> None:
    js = _JetStream(refuse_delete=False)
    assert await _retired().wanted(js) is False  # type: ignore[arg-type]
    assert js.deleted == [("XH_CASES", CONSUMER)]


async def test_a_retired_consumer_notify_may_not_delete_stays_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    js = _JetStream(refuse_delete=True)
    with caplog.at_level(logging.WARNING, logger="xiuhua.notify"):
        assert await _retired().wanted(js) is False  # type: ignore[arg-type]
    assert js.deleted == []
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "nats consumer rm XH_CASES notify-cases" in record.getMessage()


async def test_a_consumer_not_retired_yet_is_wanted_and_kept() -> None:
    js = _JetStream(refuse_delete=False)
    handover = _retired()
    handover.retired = False
    assert await handover.wanted(js) is True  # type: ignore[arg-type]
    assert js.deleted == []
    assert handover.until == 7  # it plans the former way what the stream held when notify started
