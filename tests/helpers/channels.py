"""Receivers on loopback for alerts: an HTTP robot API that can be made to fail, and an SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] | None = None  # the sender's address and port: one port, one connection

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP receiver on loopback that answers like a robot API and can be made to fail N times."""

    port: int = 0
    fail_next: int = 0
    fail_status: int = 503
    answer: dict[str, Any] = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})
    got: list[Received] = field(default_factory=list)
    attempts: int = 0
    hold: asyncio.Event | None = None  # when set up, each request waits for it before it is answered
    on_receive: Callable[[], None] | None = None  # run when a request is received (e.g. to break the store)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: Request) -> JSONResponse:
        self.attempts += 1
        body = await request.body()
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"error": "try later"}, status_code=self.fail_status)
        peer = (request.client.host, request.client.port) if request.client else None
        self.got.append(Received(request.url.path, dict(request.query_params), dict(request.headers), body, peer))
        if self.on_receive:
            self.on_receive()
        if self.hold:
            await self.hold.wait()
        return JSONResponse(self.answer)


@contextlib.asynccontextmanager
async def receiver(**kw: Any) -> AsyncIterator[Receiver]:
    """Run a Receiver with uvicorn in this event loop."""
    r = Receiver(port=free_port(), **kw)
    app = Starlette(routes=[Route("/{path:path}", r._handle, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=r.port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # bounded: 5 s at most
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield r
    finally:
        server.should_exit = True
        await task


class MailSink:
    """aiosmtpd handler keeping what it received."""

    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@contextlib.contextmanager
def smtp_server() -> Any:
    """An SMTP server on loopback (aiosmtpd, its own thread)."""
    sink = MailSink()
    ctl = Controller(sink, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        yield ctl, sink
    finally:
        ctl.stop()
