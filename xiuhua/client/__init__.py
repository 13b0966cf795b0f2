"""The Xiuhua client library for integrating systems (12345 platform, unit case systems, IoT platforms).

    async with XiuhuaClient("nats://127.0.0.1:4222") as xh:
        await xh.publish_report(HotlineOrder(...))
        await xh.send_command(Acknowledge(...))
        event = await xh.wait_for("case.v1.dispatched", case_id="C-...")

Typed models come from `contracts/` (reports, commands, cases); every publish carries `Nats-Msg-Id`, so a
retry inside the stream's duplicate window is stored once.
"""

from xiuhua.client.client import Published, UnitCaseSubscription, XiuhuaClient, concerns_unit, decode_message
from xiuhua.client.errors import (
    ConnectFailed,
    InvalidMessage,
    NotConnected,
    PublishFailed,
    SubscribeFailed,
    WaitTimeout,
    XiuhuaError,
)

__all__ = [
    "ConnectFailed",
    "InvalidMessage",
    "NotConnected",
    "PublishFailed",
    "Published",
    "SubscribeFailed",
    "UnitCaseSubscription",
    "WaitTimeout",
    "XiuhuaClient",
    "XiuhuaError",
    "concerns_unit",
    "decode_message",
]
