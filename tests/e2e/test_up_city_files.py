"""`xiuhua up` checks every city file before it starts anything, services' own files included: one
`file:line: field: message` on its console and exit code 2, never a crash loop."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xiuhua.settings import DEMO_CITY

XIUHUA = str(Path(sys.executable).parent / "xiuhua")


def _line(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in ln)


@pytest.mark.parametrize(
    ("file", "old", "new", "field"),
    [
        # an attribute datatype GeoReport v2 does not have
        ("open311.yaml", "datatype: singlevaluelist", "datatype: choice", "services.0201.attributes.0.datatype"),
        # attributes for a service_code no catalogue item answers to
        ("open311.yaml", '"0301":  #', '"9999":  #', "services.9999"),
        # a landmark's point in another street than the area it names
        ("intake.yaml", "[东园农贸市场], lng: 120.16", "[东园农贸市场], lng: 120.11", "gazetteer.2.lng"),
        # a registered device outside the city
        ("devices.yaml", "lng: 120.11, lat: 30.285", "lng: 116.39, lat: 39.9", "devices.0.lng"),
    ],
)
def test_a_broken_city_file_stops_up_with_file_line_and_exit_2(
    tmp_path: Path, file: str, old: str, new: str, field: str
) -> None:
    city = tmp_path / "city"
    shutil.copytree(DEMO_CITY, city)
    path = city / file
    line = _line(path, old)
    path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIUHUA_")}
    env.update({"XIUHUA_VAR_DIR": str(tmp_path / "var"), "XIUHUA_CITY_DIR": str(city)})
    proc = subprocess.run([XIUHUA, "up"], env=env, capture_output=True, timeout=120)
    out = proc.stdout.decode()
    assert proc.returncode == 2, out
    assert f"{path}:{line}: {field}: " in out, out
    assert not (tmp_path / "var" / "nats").exists() and not (tmp_path / "var" / "logs").exists()
