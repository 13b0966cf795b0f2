"""Reports as the inbound systems send them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def patrol_report(report_id: str = "R-1") -> dict[str, Any]:
    """A grid inspector's report (the app's JSON) of an overflowing litter bin in the demo city's CD street."""
    return {
        "report_id": report_id,
        "reported_at": datetime.now(UTC).isoformat(),
        "inspector_id": "G-017",
        "description": "解放路口垃圾箱满溢，垃圾散落",
        "category_code": "0201",
        "location": {"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
    }
