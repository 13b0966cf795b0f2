"""The Xiuhua client library for integrating systems (12345 platform, unit case systems, IoT platforms).

    async with XiuhuaClient("nats://127.0.0.1:4222") as xh:
        await xh.publish_report(HotlineOrder(...))
        await xh.send_command(Acknowledge(...))
        event = await xh.wait_for("case.v1.dispatched", case_id="C-...")
        figures = await xh.unit_figures("CD-SAN", "2026-11")  # UnitFiguresReply; QueryFailed on an error reply

Typed models come from `contracts/` (reports, commands, cases); every publish carries `Nats-Msg-Id`, so a
retry inside the stream's duplicate window is stored once. Scoring's queries (`unit_figures`, `merchant_figures`,
`ranking`, `query`) are core NATS request/reply with the models of contracts/queries.py.
"""

from xiuhua.client import login
from xiuhua.client.client import Published, UnitCaseSubscription, XiuhuaClient, concerns_unit, decode_message
from xiuhua.client.errors import (
    ConnectFailed,
    InvalidMessage,
    NoAnswer,
    NotConnected,
    PublishFailed,
    QueryFailed,
    SubscribeFailed,
    WaitTimeout,
    XiuhuaError,
)

__all__ = [
    "ConnectFailed",
    "InvalidMessage",
    "NoAnswer",
    "NotConnected",
    "PublishFailed",
    "Published",
    "QueryFailed",
    "SubscribeFailed",
    "UnitCaseSubscription",
    "WaitTimeout",
    "XiuhuaClient",
    "XiuhuaError",
    "concerns_unit",
    "decode_message",
    "login",
]
