"""City data: the demo loads; bad files are refused with file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from xiuhua.city import CityDataError, load_city
from xiuhua.settings import DEMO_CITY


def test_demo_city_loads_and_places_points(city) -> None:
    assert city.info.code == "demo"
    place = city.areas.place_of_point(120.16, 30.255)
    assert (place.street_code, place.community_code, place.grid_code) == ("CD", "CD01", "CD01-01")
    assert city.areas.place_of_point(121.0, 31.0) is None
    assert {u.role for u in city.units.values()} >= {"enforcement", "community", "command_centre", "hotline"}


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "city"
    shutil.copytree(DEMO_CITY, target)
    return target


def test_a_wrong_value_names_file_line_and_field(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    path = folder / "categories.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    idx = next(i for i, ln in enumerate(lines) if "lead_role: enforcement" in ln)
    lines[idx] = lines[idx].replace("enforcement", "dragon_slayers")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CityDataError) as err:
        load_city(folder)
    assert f"categories.yaml:{idx + 1}:" in str(err.value)
    assert "lead_role" in str(err.value)


def test_broken_yaml_and_unknown_references_are_refused(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "routing.yaml").write_text("rules:\n  - id: x\n    lead: {unit: NOPE}\n", encoding="utf-8")
    with pytest.raises(CityDataError, match=r"routing.yaml:2: rule x names unknown unit NOPE"):
        load_city(folder)
    (folder / "routing.yaml").write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(CityDataError, match=r"routing.yaml:\d+"):
        load_city(folder)
