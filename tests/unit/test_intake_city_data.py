"""intake.yaml and the catalogue are validated at start-up; errors name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.city_files import copy_city, replace_line
from xiuhua.city import CityDataError, load_city
from xiuhua.city.intake import parse_duration


def test_an_unknown_area_in_the_gazetteer_names_its_line(tmp_path: Path) -> None:
    folder = copy_city(tmp_path)
    line = replace_line(folder / "intake.yaml", "area: CD01-03, aliases: [东园农贸市场]", "area: NOWHERE")
    with pytest.raises(CityDataError, match=rf"intake.yaml:{line}: gazetteer\.\d+\.area: unknown area NOWHERE"):
        load_city(folder)


def test_a_bad_sustain_and_an_unknown_sensor_category_are_refused(tmp_path: Path) -> None:
    folder = copy_city(tmp_path)
    line = replace_line(folder / "intake.yaml", "sustain: 2h", "sustain: two hours")
    with pytest.raises(CityDataError, match=rf"intake.yaml:{line}: sensors.bin_fill.rules.0.sustain"):
        load_city(folder)
    folder = copy_city(tmp_path / "b")
    line = replace_line(folder / "intake.yaml", 'fault_category: "1306"', 'fault_category: "7777"')
    with pytest.raises(CityDataError, match=rf"intake.yaml:{line}: sensors.water_level.fault_category"):
        load_city(folder)


def test_duplicate_service_codes_are_refused(tmp_path: Path) -> None:
    folder = copy_city(tmp_path)
    replace_line(folder / "categories.yaml", 'service_code: "0102"', 'service_code: "0101"')
    with pytest.raises(CityDataError, match=r"categories.yaml:\d+: .*duplicate service_code 0101"):
        load_city(folder)


def test_a_city_without_intake_yaml_uses_the_defaults(tmp_path: Path) -> None:
    folder = copy_city(tmp_path)
    (folder / "intake.yaml").unlink()
    city = load_city(folder)
    assert city.intake.classifier.triage_below == 0.5 and city.intake.sensors == {}


def test_durations() -> None:
    assert parse_duration("30m").total_seconds() == 1800 and parse_duration("0s").total_seconds() == 0
    with pytest.raises(ValueError):
        parse_duration("soon")
