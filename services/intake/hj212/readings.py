"""From a checked HJ 212 frame to `report.v1.in.sensor` readings, or the reason it is refused. Pure.

Order of the checks: the data segment's layout, then the CRC (the variants the device's model declares; an
unknown device gets the standard's only), then the MN (a registered device), then its password, then the command
(real-time, minute, hourly or daily data).
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from contracts.reports import RejectionReason, SensorReading
from contracts.values import Location
from services.intake import wellformed
from services.intake.hj212.codes import DATA_COMMANDS, FLAGS, METRICS, NOT_MEASURED, SEVERITY
from services.intake.hj212.frame import Frame, Segment, crc_hex, matching_crc, segment_of
from xiuhua.city.devices import Device, Registry

_CRC_WORDS = {"standard": "the HJ 212-2017 CRC", "modbus_swapped": "the Modbus CRC-16 with its bytes swapped"}


@dataclass(frozen=True)
class Accepted:
    """A frame from a registered device, with its readings and the message id of each."""

    segment: Segment
    device: Device
    readings: list[tuple[str, SensorReading]]


def _reason(code: str, field: str | None, message: str) -> RejectionReason:
    return RejectionReason(code=code, field=field, message=message)


def check(frame: Frame, registry: Registry, tz: tzinfo) -> Accepted | RejectionReason:
    """A frame whose length holds: its readings, or why it is refused."""
    try:
        text = frame.segment.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _reason("bad_frame", "data", f"the data segment is not UTF-8 at byte {exc.start}")
    if (at := wellformed.control_at(text)) is not None:
        return _reason("bad_frame", "data", wellformed.describe_control(text, at))
    segment = segment_of(text)
    if isinstance(segment, str):
        return _reason("bad_frame", "CP", segment)
    mn = segment.fields.get("MN", "")
    device = registry.by_mn.get(mn)
    model = registry.models[device.model] if device is not None else None
    accepted = model.hj212_crc if model is not None else ["standard"]
    matched = matching_crc(frame.segment, frame.crc)
    if matched not in accepted:
        expected = " or ".join(f"{_CRC_WORDS[n]} {crc_hex(frame.segment, n)}" for n in accepted)  # type: ignore[arg-type]
        got = (
            f"which is {_CRC_WORDS[matched]}, not accepted from this device's model"
            if matched
            else "which matches no CRC"
        )
        return _reason("bad_crc", "CRC", f"expected {expected}; the frame has {frame.crc[:4]!r}, {got}")
    if device is None:
        return _reason("unknown_device", "MN", f"no registered device has MN {mn[:24]!r} (devices.yaml)")
    if not hmac.compare_digest(segment.fields.get("PW", "").encode(), (device.password or "").encode()):
        return _reason("bad_password", "PW", f"wrong access password for MN {mn}")
    cn = segment.fields.get("CN", "")
    if cn not in DATA_COMMANDS:
        known = ", ".join(f"{c} {w}" for c, (_, w) in DATA_COMMANDS.items())
        return _reason("unsupported_command", "CN", f"CN={cn[:8]} is not data this edge takes ({known})")
    assert model is not None
    readings = readings_of(segment, device, model.device_type, tz)
    if isinstance(readings, RejectionReason):
        return readings
    return Accepted(segment, device, readings)


def _groups(cp: str) -> list[dict[str, str]]:
    """The CP's `name=value` pairs, one group per `DataTime`."""
    groups: list[dict[str, str]] = []
    for part in cp.replace(",", ";").split(";"):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            continue
        if name == "DataTime" or not groups:
            groups.append({})
        groups[-1][name] = value.strip()
    return groups


def _time(text: str, tz: tzinfo) -> datetime | None:
    digits = text[:14]  # some devices append milliseconds
    if len(digits) != 14 or not digits.isdigit():
        return None
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=tz)
    except ValueError:
        return None


def readings_of(
    segment: Segment, device: Device, device_type: str, tz: tzinfo
) -> list[tuple[str, SensorReading]] | RejectionReason:
    """One reading per data time: values by metric name, flagged values left out, the worst flag as `status`."""
    cn = segment.fields["CN"]
    kind = DATA_COMMANDS[cn][0]
    location = Location(lng=device.lng, lat=device.lat) if device.lng is not None and device.lat is not None else None
    out: list[tuple[str, SensorReading]] = []
    for group in _groups(segment.cp):
        stamp = group.get("DataTime")
        when = _time(stamp or "", tz)
        if when is None:
            return _reason("bad_frame", "DataTime", f"DataTime {str(stamp)[:20]!r} is not YYYYMMDDhhmmss")
        values: dict[str, Any] = {}
        flags: set[str] = set()
        for name, raw in group.items():
            code, dash, what = name.rpartition("-")
            if not dash:
                continue
            if what == "Flag":
                flags.add(raw)
                continue
            if what != kind and not (what == "Rtd" and f"{code}-{kind}" not in group):
                continue  # Max, Min, Cou and the like stay with the raw frame
            try:
                number = float(raw)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                return _reason("bad_frame", name, f"{name}={raw[:20]!r} is not a finite number")
            flag = group.get(f"{code}-Flag", "N")
            if flag in NOT_MEASURED:
                continue
            values[METRICS.get(code, code)] = number
        worst = next((f for f in SEVERITY if f in flags), None)
        if worst is not None:
            values["status"] = FLAGS[worst]
        unknown_flags = sorted(flags - set(FLAGS) - {"N"})
        if unknown_flags:
            return _reason("bad_frame", "Flag", f"data flag(s) {', '.join(unknown_flags)[:40]} are not the standard's")
        reading = SensorReading(
            device_id=device.id,
            device_type=device_type,  # type: ignore[arg-type]
            measured_at=when,
            values=values,
            location=location,
            site_id=device.site_id,
            model=device.model,
        )
        out.append((f"hj212:{device.mn}:{cn}:{stamp}", reading))
    if not out:
        return _reason("bad_frame", "DataTime", "the CP has no DataTime and no values")
    return out
