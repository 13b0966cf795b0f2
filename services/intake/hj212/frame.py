"""HJ 212-2017 framing (污染物在线监控（监测）系统数据传输标准): the byte stream into frames, CRCs, segments. Pure.

A frame is `##` + four decimal digits (the data segment's length in bytes) + the data segment + four hex digits
(CRC-16 of the data segment) + CR LF. Frames arrive back to back on one TCP connection, split anywhere by the
network, sometimes with line noise between them: `Framer` buffers, skips to the next `##` and cuts at CR LF.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

HEADER = b"##"
TAIL = b"\r\n"
MAX_SEGMENT = 9999  # four digits of length
MAX_FRAME = len(HEADER) + 4 + MAX_SEGMENT + 4 + len(TAIL)
CrcName = Literal["standard", "modbus_swapped"]


def _crc16(data: bytes, *, modbus: bool) -> int:
    reg = 0xFFFF
    for byte in data:
        # The standard's appendix brings each byte in as `reg = (reg >> 8) ^ byte`; Modbus as `reg ^= byte`.
        reg = reg ^ byte if modbus else (reg >> 8) ^ byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
    return reg


def crc_standard(data: bytes) -> int:
    """The standard's own CRC-16 (HJ 212-2017 appendix): each byte enters as `reg = (reg >> 8) ^ byte`."""
    return _crc16(data, modbus=False)


def crc_modbus_swapped(data: bytes) -> int:
    """The Modbus CRC-16 (`reg ^= byte`) with its two bytes swapped, as some device firmware writes it."""
    reg = _crc16(data, modbus=True)
    return ((reg & 0xFF) << 8) | (reg >> 8)


def crc_hex(data: bytes, name: CrcName = "standard") -> str:
    """A CRC as the frame writes it: four upper-case hex digits."""
    fn = crc_standard if name == "standard" else crc_modbus_swapped
    return f"{fn(data):04X}"


def matching_crc(data: bytes, written: str) -> CrcName | None:
    """Which CRC the frame's four hex digits are, if any (case-insensitive: some devices write lower case)."""
    for name in ("standard", "modbus_swapped"):
        if crc_hex(data, name) == written.upper():
            return name
    return None


def build(segment: str) -> bytes:
    """A whole frame around a data segment, with the standard CRC."""
    data = segment.encode("utf-8")
    return HEADER + f"{len(data):04d}".encode() + data + crc_hex(data).encode() + TAIL


@dataclass(frozen=True)
class Candidate:
    """What lies between `##` and CR LF: a frame to check, or a piece that cannot be one (`broken`)."""

    raw: bytes
    broken: str | None = None  # why it cannot be a frame (cut short, too long): a bad_length


@dataclass
class Framer:
    """Cuts a TCP byte stream into frame candidates across reads; garbage before `##` is skipped."""

    buffer: bytearray = field(default_factory=bytearray)
    skipped: int = 0  # bytes of garbage skipped so far

    def feed(self, data: bytes) -> Iterator[Candidate]:
        """The candidates completed by `data`."""
        self.buffer += data
        while True:
            start = self.buffer.find(HEADER)
            if start < 0:
                keep = 1 if self.buffer.endswith(b"#") else 0  # half a header may start at the end
                self.skipped += len(self.buffer) - keep
                del self.buffer[: len(self.buffer) - keep]
                return
            while self.buffer[start + 2 : start + 3] == b"#":
                start += 1  # "###0101...": the header is the last two of a run of #
            if start:
                self.skipped += start
                del self.buffer[:start]
            end = self.buffer.find(TAIL)
            restart = self.buffer.find(HEADER, len(HEADER))
            if restart >= 0 and (end < 0 or restart < end):
                # A new frame begins before this one ended: this one was cut short.
                yield Candidate(bytes(self.buffer[:restart]), "the frame ends before its CR LF (cut short)")
                del self.buffer[:restart]
                continue
            if end < 0:
                if len(self.buffer) > MAX_FRAME:
                    yield Candidate(bytes(self.buffer[:MAX_FRAME]), f"no CR LF within {MAX_FRAME} bytes")
                    del self.buffer[:MAX_FRAME]
                    continue
                return
            yield Candidate(bytes(self.buffer[: end + len(TAIL)]))
            del self.buffer[: end + len(TAIL)]


@dataclass(frozen=True)
class Frame:
    """A frame whose length and layout hold; the CRC is checked against the device's model afterwards."""

    raw: bytes
    segment: bytes
    crc: str

    @property
    def text(self) -> str:
        """The data segment as text."""
        return self.segment.decode("utf-8", errors="replace")


_LENGTH = re.compile(rb"^##(\d{4})")


def unwrap(candidate: Candidate) -> Frame | str:
    """The frame in a candidate, or why its length or layout is wrong (a bad_length)."""
    if candidate.broken:
        return candidate.broken
    raw = candidate.raw
    m = _LENGTH.match(raw)
    if m is None:
        return f"{raw[2:6]!r} is not a four-digit data length"
    declared = int(m.group(1))
    body = raw[6 : -len(TAIL)]
    if len(body) != declared + 4:
        return f"the data length says {declared} bytes, the frame holds {max(0, len(body) - 4)} before its CRC"
    return Frame(raw, body[:-4], body[-4:].decode("latin-1"))


@dataclass(frozen=True)
class Segment:
    """The data segment's fields: `QN`, `ST`, `CN`, `PW`, `MN`, `Flag` and the `CP=&&…&&` command parameters."""

    fields: dict[str, str]
    cp: str

    @property
    def needs_answer(self) -> bool:
        """Flag bit A (bit 0): the sender waits for a data response."""
        flag = self.fields.get("Flag", "")
        return flag.isdigit() and int(flag) & 1 == 1


def segment_of(text: str) -> Segment | str:
    """The fields of a data segment, or why it has none (missing `CP=&&…&&`)."""
    head, sep, rest = text.partition("CP=&&")
    if not sep or not rest.endswith("&&"):
        return "the data segment has no CP=&&...&& part"
    fields: dict[str, str] = {}
    for part in head.split(";"):
        name, eq, value = part.partition("=")
        if eq and name.strip():
            fields[name.strip()] = value.strip()
    return Segment(fields, rest[:-2])


def answer(segment: Segment) -> bytes:
    """The standard's data response (数据应答, CN=9014) to a frame whose Flag asks for one."""
    f = segment.fields
    return build(f"QN={f.get('QN', '')};ST=91;CN=9014;PW={f.get('PW', '')};MN={f.get('MN', '')};Flag=4;CP=&&&&")
