"""HJ 212 frames as the demo city's dust monitors send them, with CRCs computed independently of the code under test."""

from __future__ import annotations

DUST_MN, DUST_PW = "33010020260001", "123456"  # DUST-JQ-0203, model YC-3000 (standard CRC only)
OLD_MN, OLD_PW = "33010020260002", "654321"  # DUST-CD-0302, model YC-3000-old (also the swapped Modbus CRC)


def _register(data: bytes, *, modbus: bool) -> int:
    """Written from the standard's appendix (and the Modbus routine), independently of the code under test."""
    reg = 0xFFFF
    for byte in data:
        reg = reg ^ byte if modbus else (reg >> 8) ^ byte
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


def hj212_crc(data: bytes) -> int:
    return _register(data, modbus=False)


def modbus_crc(data: bytes) -> int:
    return _register(data, modbus=True)


def frame(segment: str, crc: str | None = None, length: int | None = None) -> bytes:
    data = segment.encode()
    crc = crc if crc is not None else f"{hj212_crc(data):04X}"
    return b"##" + f"{len(data) if length is None else length:04d}".encode() + data + crc.encode() + b"\r\n"


def dust(cp: str, *, mn: str = DUST_MN, pw: str = DUST_PW, cn: str = "2011", flag: str = "5") -> str:
    return f"QN=20261123100000000;ST=39;CN={cn};PW={pw};MN={mn};Flag={flag};CP=&&{cp}&&"
