"""The rebuild's reader waits out pauses in the delivery (the messages are known to be there) and gives up only
after a long stall, with an error rather than a short replay."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from services.scoring.rebuild import history


class FakeSub:
    """A pull consumer whose fetches answer batches, or time out where the script says None."""

    def __init__(self, script: list[list[int] | None], last: int) -> None:
        self.script, self.last = script, last

    async def fetch(self, batch: int, timeout: float) -> list[SimpleNamespace]:  # noqa: ASYNC109 - nats-py's
        step = self.script.pop(0) if self.script else None
        if step is None:
            raise NatsTimeoutError
        return [
            SimpleNamespace(
                subject="case.v1.opened.CD",
                data=b"%d" % seq,
                metadata=SimpleNamespace(sequence=SimpleNamespace(stream=seq), num_pending=self.last - seq),
            )
            for seq in step
        ]

    async def unsubscribe(self) -> None:
        pass


class FakeJs:
    def __init__(self, script: list[list[int] | None], last: int) -> None:
        self.sub, self.last, self.deleted = FakeSub(script, last), last, []

    async def stream_info(self, stream: str) -> SimpleNamespace:
        return SimpleNamespace(state=SimpleNamespace(last_seq=self.last))

    async def pull_subscribe(self, subject: str, stream: str, config: object) -> FakeSub:
        config.name = "ephemeral-1"  # as nats-py names it
        return self.sub

    async def delete_consumer(self, stream: str, name: str) -> None:
        self.deleted.append(name)


async def test_pauses_are_waited_out_and_every_message_is_read() -> None:
    js = FakeJs([[1, 2], None, None, [3], None, [4]], last=4)
    got = [data async for _, data in history(js, "XH_CASES", "case.v1.>", idle=0.01, stall_limit=1.0)]
    assert got == [b"1", b"2", b"3", b"4"]
    assert js.deleted == ["ephemeral-1"]  # the replay's consumer does not outlive it


async def test_a_long_stall_is_an_error_not_a_short_replay() -> None:
    js = FakeJs([[1, 2]], last=4)
    got: list[bytes] = []
    with pytest.raises(NatsTimeoutError):
        async for _, data in history(js, "XH_CASES", "case.v1.>", idle=0.01, stall_limit=0.05):
            got.append(data)
    assert got == [b"1", b"2"]
