"""12345 platform export → Xiuhua: read a work-order export (CSV or JSON, Chinese column names as the
platform writes them) and publish each order on `report.v1.in.hotline`.

    python examples/hotline_bridge.py examples/data/12345_export_sample.csv   # to the `xiuhua up` of this folder
    python examples/hotline_bridge.py export.json --nats nats://bus:4222   # password: XIUHUA_NATS_PASSWORD_HOTLINE
    python examples/hotline_bridge.py export.json --dry-run          # check the file, publish nothing

It publishes as the NATS user `hotline`, the one Xiuhua's permissions let publish 12345 orders
(`xiuhua.client.login` says where the URL and password come from).

Each order's `Nats-Msg-Id` is `hotline:<工单编号>`, so running the bridge again on the same export (or an
overlapping one) inside the stream's duplicate window stores nothing twice, and intake ignores an order number
it has seen before in any case. Times without a zone are Beijing time (Asia/Shanghai).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from contracts.reports import HotlineOrder

BEIJING = ZoneInfo("Asia/Shanghai")

# Column names seen in 12345 platform exports → the contract's fields (several spellings per field).
COLUMNS: dict[str, tuple[str, ...]] = {
    "order_no": ("工单编号", "工单号", "受理编号"),
    "received_at": ("受理时间", "来电时间", "登记时间"),
    "channel": ("受理渠道", "来源渠道", "来源"),
    "title": ("工单标题", "标题", "诉求标题"),
    "content": ("诉求内容", "来电内容", "反映内容"),
    "caller_name": ("来电人", "来电人姓名", "诉求人"),
    "caller_phone": ("联系电话", "来电号码", "联系方式"),
    "address": ("地址", "事发地址", "问题地址"),
    "hotline_category": ("诉求分类", "问题分类", "工单分类"),
    "urgency": ("紧急程度", "缓急程度"),
    "reply_deadline": ("答复期限", "办结时限", "处理时限"),
    "lng": ("经度",),
    "lat": ("纬度",),
    "coord_system": ("坐标系",),
}
URGENT = {"紧急", "特急", "加急", "urgent"}
ANONYMOUS = {"匿名", "", "无"}


class RowError(ValueError):
    """A row that cannot become a work order; names the row and the column."""


def _get(row: Mapping[str, Any], field_name: str) -> str:
    for column in COLUMNS[field_name]:
        value = row.get(column)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def _time(value: str, column: str) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=BEIJING)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RowError(f"{column}: {value!r} is not a time like 2026-11-23 09:15:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=BEIJING)


def row_to_order(row: Mapping[str, Any]) -> HotlineOrder:
    """One export row as a `HotlineOrder` (raises RowError naming the column)."""
    order_no = _get(row, "order_no")
    if not order_no:
        raise RowError("工单编号: missing")
    received = _time(_get(row, "received_at"), "受理时间")
    if received is None:
        raise RowError("受理时间: missing")
    content = _get(row, "content")
    if not content:
        raise RowError("诉求内容: missing")
    name, phone = _get(row, "caller_name"), _get(row, "caller_phone")
    body: dict[str, Any] = {
        "order_no": order_no,
        "received_at": received,
        "channel": _get(row, "channel") or "12345",
        "title": _get(row, "title") or content[:30],
        "content": content,
        "address": _get(row, "address") or None,
        "hotline_category": _get(row, "hotline_category") or None,
        "urgent": _get(row, "urgency") in URGENT,
        "reply_deadline": _time(_get(row, "reply_deadline"), "答复期限"),
    }
    if name not in ANONYMOUS or phone:
        body["caller"] = {"name": None if name in ANONYMOUS else name, "phone": phone or None}
    lng, lat = _get(row, "lng"), _get(row, "lat")
    if lng and lat:
        try:
            body["location"] = {
                "lng": float(lng),
                "lat": float(lat),
                "coord_system": (_get(row, "coord_system") or "gcj02").lower(),
            }
        except ValueError:
            raise RowError(f"经度/纬度: {lng!r}, {lat!r} are not numbers") from None
    try:
        return HotlineOrder.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RowError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a CSV (UTF-8 with or without BOM, or GB18030 as older platforms write) or JSON export."""
    raw = path.read_bytes()
    if path.suffix.lower() == ".json":
        data = json.loads(raw.decode("utf-8-sig"))
        rows = data if isinstance(data, list) else data.get("data") or data.get("rows") or data.get("records") or []
        yield from rows
        return
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")
    yield from csv.DictReader(io.StringIO(text))


@dataclass
class BridgeResult:
    """What a run did."""

    published: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # "row N: column: problem"

    def summary(self) -> str:
        """One line for the console."""
        return (
            f"published {len(self.published)}, already on the bus {len(self.duplicates)}, "
            f"invalid {len(self.invalid)}" + "".join(f"\n  {line}" for line in self.invalid)
        )


def convert(path: Path) -> tuple[list[HotlineOrder], list[str]]:
    """All orders of an export and the rows that failed (row numbers count the header as row 1 in a CSV)."""
    orders, invalid = [], []
    first = 2 if path.suffix.lower() == ".csv" else 1
    for n, row in enumerate(read_rows(path), start=first):
        try:
            orders.append(row_to_order(row))
        except RowError as exc:
            invalid.append(f"row {n}: {exc}")
    return orders, invalid


async def bridge(path: Path, client: Any) -> BridgeResult:
    """Publish every valid order of the export through a connected `XiuhuaClient`."""
    orders, invalid = convert(path)
    result = BridgeResult(invalid=invalid)
    for order in orders:
        published = await client.publish_report(order)
        (result.duplicates if published.duplicate else result.published).append(order.order_no)
    return result


async def _main(args: argparse.Namespace) -> int:
    from xiuhua.client import XiuhuaClient, XiuhuaError, login

    if args.dry_run:
        orders, invalid = convert(args.export)
        print(f"{len(orders)} valid orders, {len(invalid)} invalid" + "".join(f"\n  {i}" for i in invalid))
        return 1 if invalid else 0
    try:
        conn = login.from_args(args)
    except XiuhuaError as exc:
        raise SystemExit(str(exc)) from None
    async with XiuhuaClient(conn.url, **conn.options) as client:
        result = await bridge(args.export, client)
    print(result.summary())
    return 1 if result.invalid else 0


def main() -> int:
    """Command line entry."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", type=Path, help="a 12345 export, .csv or .json")
    from xiuhua.client import login

    login.add_arguments(p, user="hotline")
    p.add_argument("--dry-run", action="store_true", help="check the file, publish nothing")
    return asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
