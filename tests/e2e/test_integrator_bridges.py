"""The 12345 export bridge against an embedded Xiuhua: each order becomes a case once, however often it runs."""

from __future__ import annotations

from pathlib import Path

from examples.hotline_bridge import bridge

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"


async def test_export_becomes_hotline_cases_and_a_rerun_changes_nothing(xiuhua) -> None:
    hotline = await xiuhua.client_for("hotline")  # the user the bridge connects as: it may publish 12345 orders
    result = await bridge(DATA / "12345_export_sample.csv", hotline)
    assert len(result.published) == 3 and result.invalid == []

    opened = await xiuhua.wait_for("case.v1.opened", source_ref="GD20261123000101")
    assert opened.source == "hotline" and opened.place.street_code == "CD"
    assert opened.reporter is not None and "13800135678" not in opened.reporter.display  # masked by intake
    urgent = await xiuhua.wait_for("case.v1.opened", source_ref="GD20261123000103")
    assert urgent.urgency == "urgent"

    again = await bridge(DATA / "12345_export_sample.csv", hotline)
    assert again.published == [] and len(again.duplicates) == 3
