"""The rebuild's reader waits out pauses in the delivery (the messages are known to be there) and gives up only
after a long stall, with an error rather than a short replay."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from services.scoring.rebuild import history


class FakeSub:
    """An ordered consumer that pauses (times out) where the script says None."""

    def __init__(self, script: list[int | None]) -> None:
        self.script = script

    async def next_msg(self, timeout: float) -> SimpleNamespace:  # noqa: ASYNC109 - nats-py's signature
        step = self.script.pop(0) if self.script else None
        if step is None:
            raise NatsTimeoutError
        return SimpleNamespace(subject="case.v1.opened.CD", data=b"%d" % step,
                               metadata=SimpleNamespace(sequence=SimpleNamespace(stream=step)))

    async def unsubscribe(self) -> None:
        pass


class FakeJs:
    def __init__(self, script: list[int | None], last: int) -> None:
        self.sub, self.last = FakeSub(script), last

    async def stream_info(self, stream: str) -> SimpleNamespace:
        return SimpleNamespace(state=SimpleNamespace(last_seq=self.last))

    async def subscribe(self, *args: object, **kwargs: object) -> FakeSub:
        return self.sub


async def test_pauses_are_waited_out_and_every_message_is_read() -> None:
    js = FakeJs([1, 2, None, None, 3, None, 4], last=4)
    got = [data async for _, data in history(js, "XH_CASES", "case.v1.>", idle=0.01, stall_limit=1.0)]
    assert got == [b"1", b"2", b"3", b"4"]


async def test_a_long_stall_is_an_error_not_a_short_replay() -> None:
    js = FakeJs([1, 2], last=4)
    got: list[bytes] = []
    with pytest.raises(NatsTimeoutError):
        async for _, data in history(js, "XH_CASES", "case.v1.>", idle=0.01, stall_limit=0.05):
            got.append(data)
    assert got == [b"1", b"2"]
