"""The schema comparison that guards published contracts: each kind of change, breaking or not."""

from __future__ import annotations

import copy

from contracts.cases import CaseDispatched
from contracts.compat import breaking_changes

BASE = {
    "type": "object",
    "properties": {
        "case_id": {"type": "string"},
        "hours": {"type": "number"},
        "urgency": {"$ref": "#/$defs/Urgency", "default": "normal"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "lead_unit": {"$ref": "#/$defs/UnitRef"},
        "photo_urls": {"type": "array", "items": {"type": "string"}},
        "due_at": {"type": "string", "format": "date-time"},
    },
    "required": ["case_id", "lead_unit"],
    "$defs": {
        "Urgency": {"enum": ["normal", "urgent"], "type": "string"},
        "UnitRef": {
            "type": "object",
            "properties": {"unit_id": {"type": "string"}, "role": {"$ref": "#/$defs/Role"}},
            "required": ["unit_id", "role"],
        },
        "Role": {"enum": ["sanitation", "community"], "type": "string"},
    },
}


def changed(fn) -> dict:
    new = copy.deepcopy(BASE)
    fn(new)
    return new


def test_identical_schemas_are_compatible() -> None:
    assert breaking_changes(BASE, copy.deepcopy(BASE)) == []


def test_removed_field_breaks() -> None:
    assert breaking_changes(BASE, changed(lambda s: s["properties"].pop("hours"))) == ["hours: removed"]


def test_retyped_field_breaks() -> None:
    new = changed(lambda s: s["properties"].__setitem__("hours", {"type": "string"}))
    assert breaking_changes(BASE, new) == ["hours: retyped from number to string"]


def test_changed_format_is_a_retype() -> None:
    new = changed(lambda s: s["properties"]["due_at"].pop("format"))
    assert breaking_changes(BASE, new) == ["due_at: retyped from string:date-time to string"]


def test_narrowed_enum_breaks() -> None:
    new = changed(lambda s: s["$defs"]["Urgency"].__setitem__("enum", ["normal"]))
    assert breaking_changes(BASE, new) == ["urgency: enum narrowed, no longer allows ['urgent']"]


def test_narrowed_enum_in_a_nested_object_names_its_path() -> None:
    new = changed(lambda s: s["$defs"]["Role"].__setitem__("enum", ["sanitation"]))
    assert breaking_changes(BASE, new) == ["lead_unit.role: enum narrowed, no longer allows ['community']"]


def test_new_required_field_breaks() -> None:
    def add(s: dict) -> None:
        s["properties"]["rule_id"] = {"type": "string"}
        s["required"].append("rule_id")

    assert breaking_changes(BASE, changed(add)) == ["rule_id: new required field"]


def test_optional_field_made_required_breaks() -> None:
    assert breaking_changes(BASE, changed(lambda s: s["required"].append("hours"))) == [
        "hours: was optional, now required"
    ]


def test_added_optional_field_is_compatible() -> None:
    new = changed(lambda s: s["properties"].__setitem__("rule_id", {"type": "string", "default": ""}))
    assert breaking_changes(BASE, new) == []


def test_widened_enum_is_compatible() -> None:
    new = changed(lambda s: s["$defs"]["Urgency"].__setitem__("enum", ["normal", "urgent", "critical"]))
    assert breaking_changes(BASE, new) == []


def test_description_changes_and_nested_optional_additions_are_compatible() -> None:
    def edit(s: dict) -> None:
        s["properties"]["case_id"]["description"] = "the case"
        s["$defs"]["UnitRef"]["properties"]["name"] = {"type": "string", "default": ""}

    assert breaking_changes(BASE, changed(edit)) == []


def test_retyped_array_items_and_removed_nested_field_break() -> None:
    def edit(s: dict) -> None:
        s["properties"]["photo_urls"]["items"] = {"type": "integer"}
        s["$defs"]["UnitRef"]["properties"].pop("role")

    assert breaking_changes(BASE, changed(edit)) == [
        "lead_unit.role: removed",
        "photo_urls[]: retyped from string to integer",
    ]


def test_on_a_real_model_schema() -> None:
    old = CaseDispatched.model_json_schema()
    assert breaking_changes(old, CaseDispatched.model_json_schema()) == []
    new = copy.deepcopy(old)
    del new["properties"]["rule_id"]
    new["$defs"]["UnitRole"]["enum"].remove("sanitation")
    problems = breaking_changes(old, new)
    assert "rule_id: removed" in problems
    assert any(p.startswith("lead_unit.role: enum narrowed") for p in problems)
    assert any(p.startswith("cooperating_units[].role: enum narrowed") for p in problems)
