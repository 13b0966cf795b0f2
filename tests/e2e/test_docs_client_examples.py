"""The client examples of docs/integrating/client.md run as written, under the users they name, against a running
Xiuhua (the services under their own users, the server with the security model's permissions)."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.reports import GridReport

PAGE = Path(__file__).resolve().parents[2] / "docs" / "integrating" / "client.md"


def _examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if "XiuhuaClient(" in b]


def test_the_page_has_the_examples():
    users = [re.search(r'user="(\w+)"', b) for b in _examples()]
    assert [u.group(1) for u in users if u] == ["hotline", "units"]


async def test_the_client_examples_run_as_written(xiuhua, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    passwords = json.loads((tmp_path / "xiuhua-var" / "security" / "passwords.json").read_text())
    monkeypatch.setenv("XIUHUA_NATS_URL", xiuhua.nats_url)
    for user in ("hotline", "units"):
        monkeypatch.setenv(f"XIUHUA_NATS_PASSWORD_{user.upper()}", passwords[user])
    # Something for the unit to sign for: a grid report on its street, from the patrol app.
    await xiuhua.publish(
        GridReport(
            report_id="DOC-1",
            reported_at=datetime.now(UTC),
            inspector_id="G-017",
            description="解放路口垃圾箱满溢，垃圾散落",
            category_code="0201",
            location={"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
        )
    )
    hotline, units = _examples()
    for block in (hotline, units):
        namespace: dict[str, object] = {}
        code = compile(block, str(PAGE), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        await eval(code, namespace)
        if block is hotline:
            assert namespace["dispatched"].case_id == namespace["opened"].case_id  # type: ignore[attr-defined]
        else:
            assert namespace["signed"].unit_id == "CD-SAN"  # type: ignore[attr-defined]
    acknowledged = await xiuhua.wait_for("case.v1.acknowledged", unit_id="CD-SAN")
    assert acknowledged.in_time
    log = (tmp_path / "xiuhua-nats" / "nats-server.log").read_text(errors="replace")
    assert "Violation" not in log, [line for line in log.splitlines() if "Violation" in line][:5]
