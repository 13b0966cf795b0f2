"""Delivery channels (推送渠道). Each takes a rendered message and an address; raising means 'not delivered'.

- file: one JSON line per message in var/outbox/<address>.jsonl (demo and audit); drops a notification id it holds
- webhook: JSON body, `X-Xiuhua-Signature: sha256=HEX(HMAC-SHA256(secret, "<timestamp>." + body))` and
  `X-Xiuhua-Timestamp` (Unix seconds) so a receiver can refuse replays; `verify_webhook` is the receiver's check
- wecom (企业微信群机器人): POST the robot URL (…/webhook/send?key=…), `msgtype` markdown or text
- dingtalk (钉钉自定义机器人): `timestamp` (ms) and `sign` = urlencode(base64(HMAC-SHA256(secret,
  "<timestamp>\\n<secret>"))) added to the robot URL's query; `msgtype` markdown or text
- feishu (飞书自定义机器人): `timestamp` (s) and `sign` = base64(HMAC-SHA256(key="<timestamp>\\n<secret>", ""))
  in the body; `msg_type` post (rich text) or text
- email: SMTP through aiosmtplib
- sms: an HTTP gateway (POST JSON: phone, sign name, text from a template)

Secrets come from the environment (`secret_env`, `*_env` in alerts.yaml); errors never carry them (`safe_error`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import urllib.parse
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import httpx

from services.notify.messages import as_markdown, as_text
from xiuhua.city.alerts import AlertsFile, ChannelConfig
from xiuhua.clock import Clock

SIGNATURE_HEADER = "X-Xiuhua-Signature"
TIMESTAMP_HEADER = "X-Xiuhua-Timestamp"
ID_HEADER = "X-Xiuhua-Notification-Id"


class DeliveryError(Exception):
    """Not delivered this time; worth retrying."""


class PermanentDeliveryError(DeliveryError):
    """Not delivered and retrying will not help (no secret configured, request refused as malformed)."""


class Channel(Protocol):
    """Something that delivers a message to an address."""

    name: str

    async def send(self, address: str, message: dict[str, Any]) -> None: ...


def _secret(cfg: ChannelConfig) -> str | None:
    if cfg.secret:
        return cfg.secret
    return os.environ.get(cfg.secret_env) if cfg.secret_env else None


def _env(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


def secrets_of(cfg: ChannelConfig) -> list[str]:
    """Every secret a channel may use, so errors can be scrubbed of them."""
    names = (cfg.secret_env, cfg.smtp_password_env, cfg.smtp_user_env, cfg.gateway_token_env)
    values = [cfg.secret, *(_env(n) for n in names)]
    return [v for v in values if v]


_URL = re.compile(r"(https?://[^/\s?#]+)[^\s'\"]*")


def safe_error(exc: BaseException, secrets: list[str] = ()) -> str:  # type: ignore[assignment]
    """An error as logged and published: URLs cut to their host (robot tokens sit in paths and queries),
    secrets removed, at most 300 characters."""
    text = f"{type(exc).__name__}: {exc}"
    text = _URL.sub(r"\1/…", text)
    for s in secrets:
        text = text.replace(s, "***")
    return text[:300]


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature header value: `sha256=` + hex HMAC-SHA256 over `<timestamp>.` + body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify_webhook(
    secret: str, timestamp: str, body: bytes, signature: str, now_s: float, tolerance_s: float = 300
) -> bool:
    """The receiver's check: the signature matches and the timestamp is recent (refuses replays)."""
    try:
        ts = float(timestamp)
    except ValueError:
        return False
    if abs(now_s - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign_webhook(secret, timestamp, body), signature)


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's robot signature (before URL encoding)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """Feishu's robot signature: the key is '<timestamp>\\n<secret>', the message empty."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or "?"


class HttpChannel:
    """A channel that talks HTTP: one client for all its sends, so connections (and their TLS sessions) to a robot
    API or gateway are kept and reused instead of a handshake per alert; closed when notify stops."""

    def __init__(self, name: str, cfg: ChannelConfig, clock: Clock) -> None:
        self.name, self.cfg, self.clock = name, cfg, clock
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The channel's client, made on first use (inside the running event loop)."""
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self.cfg.timeout_s)
        return self._client

    async def aclose(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            await self._client.aclose()

    async def _post(self, url: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST and turn transport failures and refusals into delivery errors that name only the host."""
        try:
            resp = await self.client.post(url, content=content, headers={"Content-Type": "application/json", **headers})
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__} talking to {_host(url)}") from None
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            raise DeliveryError(f"HTTP {resp.status_code} from {_host(url)}")
        if resp.status_code >= 400:
            raise PermanentDeliveryError(f"HTTP {resp.status_code} from {_host(url)}")
        return resp


def _robot_ok(resp: httpx.Response, code_field: str, host: str) -> None:
    """Robots answer 200 with an error code in the body."""
    try:
        body = resp.json()
    except ValueError:
        raise DeliveryError(f"unreadable answer from {host}") from None
    code = body.get(code_field, body.get("StatusCode", 0))
    if code not in (0, "0", None):
        why = str(body.get("errmsg") or body.get("msg") or "")[:80]
        raise DeliveryError(f"{host} refused: {code_field}={code} {why}")


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class FileChannel:
    """Appends one JSON line per message to var/outbox/<address>.jsonl (demo and audit).

    The file is a receiver that de-duplicates: a message whose notification id is already in the file (the re-send
    after a crash between sending and recording) is dropped. The check and the append hold an exclusive lock on
    the file, so two notify processes writing the same outbox agree; each process remembers the ids up to the
    offset it has read, so a send reads only what was appended since.
    """

    name = "file"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._read: dict[Path, tuple[int, set[str]]] = {}  # file → (bytes read, notification ids in them)
        self.dropped = 0  # re-sends recognised and dropped

    async def send(self, address: str, message: dict[str, Any]) -> None:
        safe = "".join(c for c in address if c.isalnum() or c in "-_") or "default"
        line = json.dumps(message, ensure_ascii=False, default=str) + "\n"
        nid = str(message.get("notification_id") or "")
        await asyncio.to_thread(self._append, self.folder / f"{safe}.jsonl", line, nid)

    def _append(self, path: Path, line: str, nid: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file closes
            if nid:
                offset, ids = self._read.get(path, (0, set()))
                fh.seek(offset)
                tail = fh.read()
                complete = tail[: tail.rfind(b"\n") + 1]  # a line still being written counts once it ends
                for raw in complete.splitlines():
                    with contextlib.suppress(ValueError, AttributeError):
                        ids.add(str(json.loads(raw).get("notification_id") or ""))
                self._read[path] = (offset + len(complete), ids)
                if nid in ids:
                    self.dropped += 1
                    return
            fh.write(line.encode())  # read back (and its id learnt) by the next send, like any other writer's line
            fh.flush()


class WebhookChannel(HttpChannel):
    """A generic JSON webhook, HMAC-signed with a per-channel secret."""

    async def send(self, address: str, message: dict[str, Any]) -> None:
        secret = _secret(self.cfg)
        if not secret:
            raise PermanentDeliveryError(f"channel {self.name}: no signing secret ({self.cfg.secret_env or 'secret'})")
        body = _dumps({"type": f"xiuhua.alert.{message['kind']}", "text": as_text(message), **message})
        ts = str(int(self.clock.now().timestamp()))
        headers = {
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign_webhook(secret, ts, body),
            ID_HEADER: str(message.get("notification_id", "")),
        }
        await self._post(address, content=body, headers=headers)


class WeComChannel(HttpChannel):
    """企业微信群机器人: markdown (content) or text."""

    def payload(self, message: dict[str, Any]) -> dict[str, Any]:
        """The robot's JSON body."""
        if self.cfg.msg_format == "text":
            return {"msgtype": "text", "text": {"content": as_text(message)}}
        return {"msgtype": "markdown", "markdown": {"content": as_markdown(message)}}

    async def send(self, address: str, message: dict[str, Any]) -> None:
        resp = await self._post(address, content=_dumps(self.payload(message)), headers={})
        _robot_ok(resp, "errcode", _host(address))


class DingTalkChannel(HttpChannel):
    """钉钉自定义机器人: markdown (title + text) or text; signed in the query when a secret is set."""

    def payload(self, message: dict[str, Any]) -> dict[str, Any]:
        """The robot's JSON body; urgent alerts @ everyone in the group."""
        at = {"isAtAll": bool(message.get("urgent"))}
        if self.cfg.msg_format == "text":
            return {"msgtype": "text", "text": {"content": as_text(message)}, "at": at}
        return {"msgtype": "markdown", "markdown": {"title": message["title"], "text": as_markdown(message)}, "at": at}

    def url(self, address: str) -> str:
        """The robot URL with timestamp and sign added when the robot uses 加签."""
        secret = _secret(self.cfg)
        if not secret:
            return address
        ts = str(int(self.clock.now().timestamp() * 1000))
        sep = "&" if "?" in address else "?"
        return f"{address}{sep}timestamp={ts}&sign={urllib.parse.quote_plus(dingtalk_sign(secret, ts))}"

    async def send(self, address: str, message: dict[str, Any]) -> None:
        resp = await self._post(self.url(address), content=_dumps(self.payload(message)), headers={})
        _robot_ok(resp, "errcode", _host(address))


class FeishuChannel(HttpChannel):
    """飞书自定义机器人: post (rich text, zh_cn) or text; timestamp and sign in the body when a secret is set."""

    def payload(self, message: dict[str, Any]) -> dict[str, Any]:
        """The robot's JSON body."""
        if self.cfg.msg_format == "text":
            body: dict[str, Any] = {"msg_type": "text", "content": {"text": as_text(message)}}
        else:
            lines = [*message.get("lines", []), message.get("line_en", "")]
            rows = [[{"tag": "text", "text": ln}] for ln in lines if ln]
            body = {"msg_type": "post", "content": {"post": {"zh_cn": {"title": message["title"], "content": rows}}}}
        if secret := _secret(self.cfg):
            ts = str(int(self.clock.now().timestamp()))
            body = {"timestamp": ts, "sign": feishu_sign(secret, ts), **body}
        return body

    async def send(self, address: str, message: dict[str, Any]) -> None:
        resp = await self._post(address, content=_dumps(self.payload(message)), headers={})
        _robot_ok(resp, "code", _host(address))


class EmailChannel:
    """E-mail over SMTP (aiosmtplib); the Message-ID derives from the notification id so receivers can de-duplicate."""

    def __init__(self, name: str, cfg: ChannelConfig, clock: Clock) -> None:
        self.name, self.cfg, self.clock = name, cfg, clock

    def compose(self, address: str, message: dict[str, Any]) -> EmailMessage:
        """The e-mail: subject in Chinese and English, plain-text body."""
        msg = EmailMessage()
        msg["From"] = self.cfg.mail_from
        msg["To"] = address
        msg["Subject"] = f"{message['title']} / {message.get('title_en', '')}"
        nid = str(message.get("notification_id", ""))
        msg["Message-ID"] = "<" + re.sub(r"[^A-Za-z0-9._-]", ".", nid) + "@xiuhua>"
        msg[ID_HEADER] = nid
        msg.set_content(as_text(message) + "\n\n— 绣花城市精细化管理平台 Xiuhua\n")
        return msg

    async def send(self, address: str, message: dict[str, Any]) -> None:
        import aiosmtplib

        try:
            await aiosmtplib.send(
                self.compose(address, message),
                hostname=self.cfg.smtp_host,
                port=self.cfg.smtp_port,
                username=_env(self.cfg.smtp_user_env),
                password=_env(self.cfg.smtp_password_env),
                start_tls=self.cfg.smtp_starttls,
                use_tls=self.cfg.smtp_tls,
                timeout=self.cfg.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            err = PermanentDeliveryError if 500 <= exc.code < 600 else DeliveryError
            raise err(f"SMTP {exc.code} from {self.cfg.smtp_host}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__} talking to {self.cfg.smtp_host}:{self.cfg.smtp_port}") from None


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


class SmsChannel(HttpChannel):
    """SMS through an HTTP gateway: POST JSON {phone, sign_name, text, ref}; Bearer token from the environment."""

    def text(self, message: dict[str, Any]) -> str:
        """The SMS text from the template, a digest's from its own (unknown fields render empty)."""
        template = self.cfg.sms_digest_template if message.get("kind") == "digest" else self.cfg.sms_template
        return template.format_map(_Blank(message))

    async def send(self, address: str, message: dict[str, Any]) -> None:
        if not self.cfg.gateway_url:
            raise PermanentDeliveryError(f"channel {self.name}: no gateway_url")
        body = _dumps(
            {
                "phone": address,
                "sign_name": self.cfg.sign_name,
                "text": self.text(message),
                "ref": message.get("notification_id", ""),
            }
        )
        token = _env(self.cfg.gateway_token_env)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        await self._post(self.cfg.gateway_url, content=body, headers=headers)


_TYPES: dict[str, type] = {
    "webhook": WebhookChannel,
    "wecom": WeComChannel,
    "dingtalk": DingTalkChannel,
    "feishu": FeishuChannel,
    "email": EmailChannel,
    "sms": SmsChannel,
}


async def close_channels(channels: dict[str, Channel]) -> None:
    """Close every channel that holds connections (notify's shutdown)."""
    for channel in channels.values():
        if isinstance(channel, HttpChannel):
            await channel.aclose()


def build_channels(alerts: AlertsFile, outbox: Path, clock: Clock) -> dict[str, Channel]:
    """Every channel the rules name (and every configured one), by name."""
    names = set(alerts.channels) | {c for r in alerts.rules for c in r.channels} | {"file"}
    out: dict[str, Channel] = {}
    for name in sorted(names):
        cfg = alerts.channel(name)
        out[name] = FileChannel(outbox) if cfg.type == "file" else _TYPES[cfg.type](name, cfg, clock)
    return out
