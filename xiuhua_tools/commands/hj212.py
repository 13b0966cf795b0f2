"""`xiuhua hj212 send --device MN ...`: send HJ 212-2017 frames as a registered device would, and show the answers."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from zoneinfo import ZoneInfo

from xiuhua.settings import Settings, get_settings
from xiuhua_tools.commands import emit


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("hj212", help="test a device's path: send HJ 212-2017 frames to intake's TCP edge")
    verbs = p.add_subparsers(dest="verb", required=True)
    send = verbs.add_parser("send", help="send real-time data frames as a registered device (MN) would")
    send.add_argument("--device", required=True, metavar="MN", help="the device's MN, as devices.yaml registers it")
    send.add_argument(
        "--value",
        action="append",
        default=[],
        metavar="NAME=NUMBER",
        help="a value by metric name or HJ 212 code: pm10=180, a34004=60 (repeatable)",
    )
    send.add_argument("--to", help="tcp://HOST:PORT; default: services.intake.hj212 of var/endpoints.json")
    send.add_argument("--password", help="PW; default: the device's from devices.yaml")
    send.add_argument("--cn", default="2011", choices=["2011", "2051", "2061", "2031"], help="data kind (CN)")
    send.add_argument("--flag", default="N", choices=list("NFMSDCTB"), help="the data flag of every value")
    send.add_argument("--at", help="DataTime as ISO 8601 (default: now)")
    send.add_argument("--count", type=int, default=1, help="frames to send, one per --every seconds")
    send.add_argument("--every", type=float, default=60.0, help="seconds between frames (DataTime advances too)")
    send.add_argument("--crc", default="standard", choices=["standard", "modbus_swapped", "wrong"])
    send.add_argument("--json", action="store_true")
    send.set_defaults(func=_send)


def address(settings: Settings, given: str | None) -> str:
    """--to, else the HJ 212 edge a running `xiuhua up` wrote to var/endpoints.json."""
    if given:
        return given
    path = settings.var_dir / "endpoints.json"
    if path.exists():
        found = json.loads(path.read_text()).get("services", {}).get("intake", {}).get("hj212")
        if found:
            return str(found)
    raise SystemExit("no HJ 212 edge: give --to tcp://HOST:PORT or start `xiuhua up`")


def _send(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from xiuhua.city import load_city
    from xiuhua_tools.hj212_device import SYSTEM_CODES, frame, segment, send

    settings = get_settings()
    city = load_city(settings.city_dir)
    device = city.devices.by_mn.get(args.device)
    password = args.password or (device.password if device else None)
    if password is None:
        raise SystemExit(f"no device with MN {args.device} in {city.folder / 'devices.yaml'}: give --password")
    values: dict[str, float] = {}
    for item in args.value:
        name, _, number = item.partition("=")
        values[name.strip()] = float(number)
    if not values:
        raise SystemExit("give at least one --value, e.g. --value pm10=180")
    tz = ZoneInfo(city.info.timezone)
    start = datetime.fromisoformat(args.at) if args.at else datetime.now(tz)
    kind = city.devices.models[device.model].device_type if device else "dust"
    crc = None if args.crc == "wrong" else args.crc
    frames = [
        frame(
            segment(
                args.device,
                password,
                values,
                start + timedelta(seconds=i * args.every),
                tz,
                cn=args.cn,
                st=SYSTEM_CODES.get(kind, "39"),
                data_flag=args.flag,
            ),
            crc,
        )
        for i in range(args.count)
    ]
    to = address(settings, args.to)
    sent = asyncio.run(send(to, frames, every_s=args.every if args.count > 1 else 0.0))
    lines = [f"sent {len(sent)} frame(s) to {to}"]
    for s in sent:
        lines.append(f"> {s.frame.decode(errors='replace').rstrip()}")
        lines.append(
            f"< {s.answer.decode(errors='replace').rstrip()}"
            if s.answer
            else "< no answer: refused (see report.v1.rejected and intake's hj212_rejected) or not yet published"
        )
    answered = sum(1 for s in sent if s.answer)
    emit(
        args,
        "\n".join(lines),
        {
            "to": to,
            "sent": len(sent),
            "answered": answered,
            "frames": [
                {
                    "frame": s.frame.decode(errors="replace"),
                    "answer": s.answer.decode(errors="replace") if s.answer else None,
                }
                for s in sent
            ],
        },
    )
    return 0 if answered == len(sent) else 1
