"""The 12345 export bridge's mapping: Chinese columns to the hotline contract, errors naming row and column."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from examples.hotline_bridge import RowError, convert, row_to_order

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_csv_export_maps_every_column() -> None:
    orders, invalid = convert(DATA / "12345_export_sample.csv")
    assert invalid == [] and [o.order_no for o in orders] == [
        "GD20261123000101",
        "GD20261123000102",
        "GD20261123000103",
    ]
    first, second, third = orders
    assert first.received_at == datetime(2026, 11, 23, 0, 41, 12, tzinfo=UTC)  # 08:41:12 Beijing time
    assert (first.channel, first.title) == ("12345电话", "解放路垃圾箱满溢")
    assert first.hotline_category == "城乡建设/市容环境"
    assert first.caller is not None and (first.caller.name, first.caller.phone) == ("张先生", "13800135678")
    assert first.location is not None and (first.location.lng, first.location.coord_system) == (120.16, "wgs84")
    assert first.reply_deadline == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert second.location is None and second.address == "城东街道东园社区东园小区北门" and not second.urgent
    assert third.urgent


def test_json_export_with_anonymous_caller_and_empty_title() -> None:
    orders, invalid = convert(DATA / "12345_export_sample.json")
    assert invalid == []
    anonymous = orders[1]
    assert anonymous.caller is None
    assert anonymous.title == anonymous.content[:30] and anonymous.urgent  # 特急
    assert anonymous.location is not None and anonymous.location.coord_system == "gcj02"


def test_bad_rows_name_the_column(tmp_path: Path) -> None:
    with pytest.raises(RowError, match="受理时间"):
        row_to_order({"工单编号": "X", "受理时间": "昨天下午", "诉求内容": "路灯不亮"})
    with pytest.raises(RowError, match="诉求内容: missing"):
        row_to_order({"工单编号": "X", "受理时间": "2026-11-23 08:00"})
    export = tmp_path / "bad.csv"
    export.write_text(
        "工单编号,受理时间,诉求内容\nA1,2026-11-23 08:00,路灯不亮\n,2026-11-23 08:00,井盖缺失\n", encoding="gb18030"
    )
    orders, invalid = convert(export)
    assert [o.order_no for o in orders] == ["A1"] and invalid == ["row 3: 工单编号: missing"]
