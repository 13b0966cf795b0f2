"""Each channel's wire format and signature, against real receivers on loopback (HTTP and SMTP)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.notify import messages
from services.notify.channels import (
    DeliveryError,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    PermanentDeliveryError,
    SmsChannel,
    WebhookChannel,
    WeComChannel,
    verify_webhook,
)
from tests.helpers.channels import free_port, receiver, smtp_server
from xiuhua.city.alerts import ChannelConfig
from xiuhua.clock import FrozenClock

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Monday


def sample(urgent: bool = False) -> dict[str, Any]:
    """A rendered overdue alert as the worker hands it to a channel."""
    msg = messages.build(
        "overdue",
        {"case_id": "C-1", "unit": "城东环卫所", "due_at": T0, "category": "垃圾满溢（0201）"},
        urgent=urgent,
        tz=ZoneInfo("Asia/Shanghai"),
    )
    return {"notification_id": "overdue:C-1:0:CD-SAN-duty:x", **msg}


async def test_webhook_posts_signed_json_the_receiver_can_verify() -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        ch = WebhookChannel("webhook", ChannelConfig(type="webhook", secret="hook-secret"), clock)
        await ch.send(r.url("/alerts"), sample())
    (req,) = r.got
    body = req.json()
    assert body["type"] == "xiuhua.alert.overdue" and body["case_id"] == "C-1" and body["title"] == "案件已超期"
    assert body["notification_id"] == "overdue:C-1:0:CD-SAN-duty:x"
    assert req.headers["content-type"] == "application/json"
    ts = req.headers["x-xiuhua-timestamp"]
    assert ts == str(int(T0.timestamp()))
    # The receiver's own check: HMAC-SHA256 over "<ts>." + the exact body bytes.
    expected = "sha256=" + hmac.new(b"hook-secret", ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-xiuhua-signature"] == expected
    assert verify_webhook("hook-secret", ts, req.body, expected, now_s=T0.timestamp() + 30)
    assert not verify_webhook("hook-secret", ts, req.body, expected, now_s=T0.timestamp() + 3600)  # replay


async def test_webhook_without_a_secret_is_refused_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XH_TEST_HOOK_SECRET", raising=False)
    ch = WebhookChannel("webhook", ChannelConfig(type="webhook", secret_env="XH_TEST_HOOK_SECRET"), FrozenClock(T0))
    with pytest.raises(PermanentDeliveryError, match="XH_TEST_HOOK_SECRET"):
        await ch.send("http://127.0.0.1:9/never", sample())
    monkeypatch.setenv("XH_TEST_HOOK_SECRET", "from-env")
    async with receiver() as r:
        await ch.send(r.url(), sample())
    req = r.got[0]
    ts = req.headers["x-xiuhua-timestamp"]
    assert verify_webhook("from-env", ts, req.body, req.headers["x-xiuhua-signature"], now_s=T0.timestamp())


async def test_wecom_robot_gets_markdown_content() -> None:
    async with receiver() as r:
        ch = WeComChannel("wecom", ChannelConfig(type="wecom"), FrozenClock(T0))
        await ch.send(r.url("/cgi-bin/webhook/send") + "?key=KEY-1", sample(urgent=True))
        await WeComChannel("wecom", ChannelConfig(type="wecom", msg_format="text"), FrozenClock(T0)).send(
            r.url("/cgi-bin/webhook/send") + "?key=KEY-1", sample()
        )
    md, text = (g.json() for g in r.got)
    assert r.got[0].query == {"key": "KEY-1"}
    assert md["msgtype"] == "markdown" and set(md) == {"msgtype", "markdown"}
    assert md["markdown"]["content"].startswith("### 【紧急】案件已超期\n- 案件编号：C-1")
    assert "> Case overdue: C-1" in md["markdown"]["content"]
    assert text == {"msgtype": "text", "text": {"content": messages.as_text(sample())}}


async def test_wecom_error_code_is_a_retryable_failure() -> None:
    async with receiver(answer={"errcode": 45009, "errmsg": "api freq out of limit"}) as r:
        ch = WeComChannel("wecom", ChannelConfig(type="wecom"), FrozenClock(T0))
        with pytest.raises(DeliveryError, match="errcode=45009") as info:
            await ch.send(r.url("/cgi-bin/webhook/send") + "?key=SECRETKEY", sample())
    assert "SECRETKEY" not in str(info.value)


async def test_dingtalk_robot_is_signed_in_the_query_and_gets_markdown() -> None:
    clock = FrozenClock(T0)
    secret = "SEC0123456789abcdef"
    async with receiver() as r:
        ch = DingTalkChannel("dingtalk", ChannelConfig(type="dingtalk", secret=secret), clock)
        await ch.send(r.url("/robot/send") + "?access_token=TOKEN", sample(urgent=True))
    (req,) = r.got
    ts = req.query["timestamp"]
    assert ts == str(int(T0.timestamp() * 1000)) and req.query["access_token"] == "TOKEN"
    # Documented: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\n{secret}")), URL-encoded in the query.
    want = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()).decode()
    assert req.query["sign"] == want  # query_params already URL-decoded it
    raw_query = urllib.parse.parse_qs(urllib.parse.urlsplit(ch.url(r.url("/robot/send") + "?access_token=T")).query)
    assert raw_query["sign"] == [want]
    body = req.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "【紧急】案件已超期"
    assert body["markdown"]["text"].startswith("### 【紧急】案件已超期")
    assert body["at"] == {"isAtAll": True}


async def test_feishu_robot_is_signed_in_the_body_and_gets_a_post() -> None:
    clock = FrozenClock(T0)
    async with receiver(answer={"code": 0, "msg": "success", "data": {}}) as r:
        ch = FeishuChannel("feishu", ChannelConfig(type="feishu", secret="fs-secret"), clock)
        await ch.send(r.url("/open-apis/bot/v2/hook/HOOKID"), sample())
    body = r.got[0].json()
    ts = body["timestamp"]
    assert ts == str(int(T0.timestamp()))
    # Documented: base64(HMAC-SHA256(key=f"{timestamp}\n{secret}", msg="")).
    want = base64.b64encode(hmac.new(f"{ts}\nfs-secret".encode(), b"", hashlib.sha256).digest()).decode()
    assert body["sign"] == want
    assert body["msg_type"] == "post"
    post = body["content"]["post"]["zh_cn"]
    assert post["title"] == "案件已超期"
    assert post["content"][0] == [{"tag": "text", "text": "案件编号：C-1"}]
    assert post["content"][-1] == [{"tag": "text", "text": "Case overdue: C-1"}]


async def test_feishu_refusal_in_the_body_is_a_failure() -> None:
    async with receiver(answer={"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}) as r:
        ch = FeishuChannel("feishu", ChannelConfig(type="feishu", secret="bad"), FrozenClock(T0))
        with pytest.raises(DeliveryError, match="code=19021"):
            await ch.send(r.url("/open-apis/bot/v2/hook/HOOKID"), sample())


async def test_sms_gateway_gets_the_template_text_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XH_TEST_SMS_TOKEN", "tok-1")
    async with receiver(answer={"code": 0}) as r:
        cfg = ChannelConfig(
            type="sms",
            gateway_url=r.url("/sms/send"),
            gateway_token_env="XH_TEST_SMS_TOKEN",
            sms_template="【绣花】{title}：案件{case_id}，{unit}，请及时处置。{missing}",
        )
        await SmsChannel("sms", cfg, FrozenClock(T0)).send("13800001111", sample())
    req = r.got[0]
    assert req.path == "/sms/send" and req.headers["authorization"] == "Bearer tok-1"
    assert req.json() == {
        "phone": "13800001111",
        "sign_name": "绣花城管",
        "text": "【绣花】案件已超期：案件C-1，城东环卫所，请及时处置。",
        "ref": "overdue:C-1:0:CD-SAN-duty:x",
    }


async def test_http_failures_are_retryable_and_4xx_permanent() -> None:
    async with receiver(fail_next=1, fail_status=503) as r:
        ch = WebhookChannel("webhook", ChannelConfig(type="webhook", secret="s"), FrozenClock(T0))
        with pytest.raises(DeliveryError) as info:
            await ch.send(r.url("/h"), sample())
        assert not isinstance(info.value, PermanentDeliveryError) and "HTTP 503" in str(info.value)
        r.fail_next, r.fail_status = 1, 400
        with pytest.raises(PermanentDeliveryError, match="HTTP 400"):
            await ch.send(r.url("/h"), sample())
    with pytest.raises(DeliveryError, match=r"talking to 127\.0\.0\.1"):
        await ch.send(f"http://127.0.0.1:{free_port()}/down", sample())


async def test_email_goes_over_smtp_with_chinese_subject_and_body() -> None:
    with smtp_server() as (ctl, sink):
        cfg = ChannelConfig(type="email", smtp_host="127.0.0.1", smtp_port=ctl.port, mail_from="alerts@xh.example")
        await EmailChannel("email", cfg, FrozenClock(T0)).send("duty@cd-san.example", sample())
    ((mail_from, rcpts, raw),) = sink.mails
    assert mail_from == "alerts@xh.example" and rcpts == ["duty@cd-san.example"]
    msg = message_from_bytes(raw)
    assert str(make_header(decode_header(msg["Subject"]))) == "案件已超期 / Case overdue"
    assert msg["Message-ID"] == "<overdue.C-1.0.CD-SAN-duty.x@xiuhua>"
    text = msg.get_payload(decode=True).decode(msg.get_content_charset())
    assert "案件编号：C-1" in text and "Case overdue: C-1" in text


async def test_email_to_a_closed_port_is_a_retryable_failure() -> None:
    cfg = ChannelConfig(type="email", smtp_host="127.0.0.1", smtp_port=free_port(), timeout_s=2)
    with pytest.raises(DeliveryError) as info:
        await EmailChannel("email", cfg, FrozenClock(T0)).send("duty@cd-san.example", sample())
    assert not isinstance(info.value, PermanentDeliveryError)
