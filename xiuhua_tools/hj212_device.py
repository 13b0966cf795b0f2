"""An HJ 212-2017 device, simulated: what a city uses to test its monitors' path, and what the demo feed speaks.

It writes frames as a construction-site dust monitor or a noise monitor does (ST=39 工地扬尘 / ST=23 噪声,
CN=2011 real-time data, each value with its data flag) and reads the data responses (CN=9014) they ask for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, tzinfo

from services.intake.hj212.codes import METRICS
from services.intake.hj212.frame import HEADER, TAIL, CrcName, crc_hex

CODES = {metric: code for code, metric in METRICS.items()}  # pm10 → a34002
SYSTEM_CODES = {"dust": "39", "noise": "23"}  # ST: 工地扬尘污染源, 区域环境噪声监测


def segment(
    mn: str,
    password: str,
    values: dict[str, float],
    at: datetime,
    tz: tzinfo,
    *,
    cn: str = "2011",
    st: str = "39",
    flag: int = 5,
    data_flag: str = "N",
) -> str:
    """A data segment: values by the city's metric names (pm10) or by HJ 212 code (a34002)."""
    local = at.astimezone(tz)
    field = "Rtd" if cn == "2011" else "Avg"
    parts = ";".join(f"{CODES.get(k, k)}-{field}={v:g},{CODES.get(k, k)}-Flag={data_flag}" for k, v in values.items())
    qn = local.strftime("%Y%m%d%H%M%S") + f"{local.microsecond // 1000:03d}"
    return (
        f"QN={qn};ST={st};CN={cn};PW={password};MN={mn};Flag={flag};"
        f"CP=&&DataTime={local.strftime('%Y%m%d%H%M%S')};{parts}&&"
    )


def frame(text: str, crc: CrcName | None = "standard") -> bytes:
    """A frame around a segment; `crc=None` writes a wrong CRC on purpose (to see the edge refuse it)."""
    data = text.encode("utf-8")
    check = crc_hex(data, crc) if crc is not None else f"{(int(crc_hex(data), 16) ^ 0xFFFF):04X}"
    return HEADER + f"{len(data):04d}".encode() + data + check.encode() + TAIL


@dataclass
class Sent:
    """One frame and the answer it got (None: none within the wait)."""

    frame: bytes
    answer: bytes | None


async def send(address: str, frames: list[bytes], *, wait_s: float = 5.0, every_s: float = 0.0) -> list[Sent]:
    """Send frames on one connection to `tcp://HOST:PORT`, reading the answer each asks for."""
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    out: list[Sent] = []
    try:
        for i, f in enumerate(frames):
            if i and every_s:
                await asyncio.sleep(every_s)
            writer.write(f)
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.readuntil(TAIL), wait_s) if b";Flag=5;" in f else None
            except (TimeoutError, asyncio.IncompleteReadError):
                answer = None
            out.append(Sent(f, answer))
    finally:
        writer.close()
        await writer.wait_closed()
    return out
