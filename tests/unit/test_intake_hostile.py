"""Hostile payloads at every parser: deep nesting, control characters, non-finite numbers, dates out of the city's
horizon, duplicated form fields. Each is refused with a reason that names the field; nothing raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.reports import INBOUND_BY_SOURCE, Inbound, RejectionReason
from services.intake import wellformed
from services.intake.open311.definitions import load_open311
from services.intake.open311.validation import Invalid, parse_submission
from services.intake.parsing import FUTURE_TOLERANCE, MAX_AGE, parse_inbound
from xiuhua.city import load_city
from xiuhua.settings import DEMO_CITY

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # after every example's timestamp, within the hour of the latest
SOURCES = sorted(INBOUND_BY_SOURCE)
TIMESTAMP = {
    "grid": "reported_at",
    "hotline": "received_at",
    "sensor": "measured_at",
    "inspection": "inspected_at",
    "merchant_check": "checked_at",
    "open311": "reported_at",
}
HOSTILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
C0_REFUSED = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"]


def example(source: str) -> dict[str, Any]:
    return json.loads(json.dumps(INBOUND_BY_SOURCE[source].example_fields, ensure_ascii=False))


def text_fields(body: dict[str, Any], path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a string value of a payload."""
    out: list[tuple[str | int, ...]] = []
    items = body.items() if isinstance(body, dict) else enumerate(body)
    for k, v in items:
        if isinstance(v, str):
            out.append((*path, k))
        elif isinstance(v, dict | list):
            out += text_fields(v, (*path, k))
    return out


def put(body: Any, path: tuple[str | int, ...], value: Any) -> None:
    for p in path[:-1]:
        body = body[p]
    body[path[-1]] = value


def dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(map(str, path))


def refused(source: str, data: bytes, **kw: Any) -> list[RejectionReason]:
    out = parse_inbound(source, data, NOW, **kw)
    assert isinstance(out, list), out
    assert out and all(r.field for r in out), out  # every refusal names a field
    return out


def test_every_example_is_accepted_as_it_stands() -> None:
    for source in SOURCES:
        assert isinstance(parse_inbound(source, json.dumps(example(source)).encode(), NOW), Inbound), source


@HOSTILE
@given(
    source=st.sampled_from(SOURCES),
    pick=st.integers(0, 50),
    char=st.sampled_from(C0_REFUSED),
    at=st.integers(0, 40),
    escaped=st.booleans(),
)
def test_a_control_character_in_any_text_is_refused_naming_its_field(source, pick, char, at, escaped) -> None:
    body = example(source)
    paths = text_fields(body)
    path = paths[pick % len(paths)]
    value = body
    for p in path:
        value = value[p]
    put(body, path, value[:at] + char + value[at:] + "x")  # never at the end: whitespace stripping keeps it inside
    text = json.dumps(body, ensure_ascii=False)  # escapes it: "\u0000"
    if not escaped:
        text = text.replace(json.dumps(char)[1:-1], char)  # the raw character inside the string instead
    out = refused(source, text.encode())
    assert out[0].code == "control_character" and out[0].field == dotted(path), (out, path)


@HOSTILE
@given(
    source=st.sampled_from(SOURCES),
    depth=st.one_of(st.integers(wellformed.MAX_DEPTH, 40), st.just(50_000)),
    field=st.sampled_from(["extra", "description", "values"]),
)
def test_nesting_deeper_than_the_limit_is_refused_naming_where(source, depth, field) -> None:
    body = example(source)
    text = json.dumps(body)[:-1] + f', "{field}": ' + "[" * depth + "]" * depth + "}"
    out = refused(source, text.encode())
    assert out[0].code == "too_deep" and out[0].field.split(".")[0] == field


def test_nesting_exactly_at_the_limit_passes_the_depth_check() -> None:
    limit = wellformed.MAX_DEPTH
    at_limit = '{"a": ' + "[" * (limit - 1) + "]" * (limit - 1) + "}"
    assert wellformed.too_deep(at_limit, limit) is None
    over = '{"a": ' + "[" * limit + "]" * limit + "}"
    assert wellformed.too_deep(over, limit) == "a" + ".0" * (limit - 1)
    # brackets inside strings (escaped quotes too) are text, not nesting
    assert wellformed.too_deep('{"a\\"[[": "' + "[" * 40 + '\\\\", "b": [1, [2]]}', limit) is None
    body = example("sensor")
    body["extra"] = [[[[[[[[[[[[[[]]]]]]]]]]]]]]  # 14 below "extra", 15 below the top
    assert isinstance(parse_inbound("sensor", json.dumps(body).encode(), NOW), Inbound)
    body["extra"] = [[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]
    assert refused("sensor", json.dumps(body).encode())[0].code == "too_deep"


@HOSTILE
@given(
    literal=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-2E+400"]),
    where=st.sampled_from([("values", "pm10"), ("location", "lng"), ("values", "pm25")]),
)
def test_numbers_that_are_not_finite_are_refused_naming_the_field(literal, where) -> None:
    body = example("sensor")
    put(body, where, 12345.5)
    text = json.dumps(body).replace("12345.5", literal)
    out = refused("sensor", text.encode())
    assert out[0].field == dotted(where), out
    assert out[0].code in ("not_finite", "out_of_range", "wrong_type", "invalid"), out


@pytest.mark.parametrize("source", SOURCES)
def test_timestamps_beyond_the_horizon_or_in_the_future_are_refused_at_the_boundary(source: str) -> None:
    name = TIMESTAMP[source]
    cases = [
        (NOW - MAX_AGE, None),
        (NOW - MAX_AGE - timedelta(microseconds=1), "too_old"),
        (NOW + FUTURE_TOLERANCE, None),
        (NOW + FUTURE_TOLERANCE + timedelta(microseconds=1), "in_future"),
        (datetime(1970, 1, 1, tzinfo=UTC), "too_old"),
    ]
    for when, code in cases:
        body = example(source)
        body[name] = when.isoformat()
        out = parse_inbound(source, json.dumps(body).encode(), NOW)
        if code is None:
            assert isinstance(out, Inbound), (when, out)
        else:
            assert isinstance(out, list) and out[0].code == code and out[0].field == name, (when, out)


def test_a_city_sets_its_own_horizon() -> None:
    body = example("grid")
    body["reported_at"] = (NOW - timedelta(days=3)).isoformat()
    data = json.dumps(body).encode()
    assert isinstance(parse_inbound("grid", data, NOW, max_age=timedelta(days=3)), Inbound)
    assert refused("grid", data, max_age=timedelta(days=3) - timedelta(seconds=1))[0].code == "too_old"


def test_tab_and_line_breaks_are_text() -> None:
    body = example("hotline")
    body["content"] = "第一行\r\n第二行\n\t第三行\x7f"
    assert isinstance(parse_inbound("hotline", json.dumps(body).encode(), NOW), Inbound)
    body["content"] = "一个回车\r不换行"
    assert refused("hotline", json.dumps(body).encode())[0].field == "content"


def test_a_control_character_in_a_key_is_refused() -> None:
    body = example("sensor")
    body["values"]["pm\x0010"] = 1.0
    out = refused("sensor", json.dumps(body).encode())
    assert out[0].code == "control_character" and out[0].field == "values"


# ---- Open311 forms ------------------------------------------------------------------------------------------

TZ = ZoneInfo("Asia/Shanghai")
KEY = "demo-open311-key-0001"
FORM = {
    "api_key": KEY,
    "service_code": "0201",
    "lat": "30.255",
    "long": "120.16",
    "attribute[BIN_TYPE]": "kitchen",
    "description": "桶满了",
}


CONFIG = load_open311(load_city(DEMO_CITY))


@HOSTILE
@given(name=st.sampled_from(sorted(FORM)), value=st.sampled_from(["kitchen", "x", "", "30.255"]))
def test_a_plain_form_field_given_twice_is_refused_naming_it(name, value) -> None:
    if name.startswith("attribute[") and not value:
        value = "x"  # an empty attribute answer is no answer
    config = CONFIG
    pairs = [*FORM.items(), (name, value)]
    with pytest.raises(Invalid) as info:
        parse_submission(pairs, config, TZ)
    if name.startswith("attribute["):
        assert info.value.description.startswith(f"{name}: takes one value")
    else:
        assert info.value.description == f"{name}: given more than once"
        assert info.value.reason().code == "duplicate_field" and info.value.reason().field == name


@HOSTILE
@given(
    name=st.sampled_from(["description", "address_string", "attribute[BIN_TYPE]", "first_name", "email"]),
    char=st.sampled_from(C0_REFUSED),
)
def test_a_control_character_in_a_form_field_is_refused_naming_it(name, char) -> None:
    config = CONFIG
    pairs = [*{**FORM, name: f"a{char}b"}.items()]
    if char == "\r":  # a lone carriage return is a line break in a form (browsers send CR LF)
        return
    with pytest.raises(Invalid) as info:
        parse_submission(pairs, config, TZ)
    assert info.value.status == 400
    assert info.value.reason().field == name and info.value.reason().code == "control_character", info.value


def test_form_text_keeps_tab_and_line_breaks() -> None:
    sub = parse_submission([*{**FORM, "description": "一\r\n二\t三"}.items()], CONFIG, TZ)
    assert sub.description == "一\n二\t三"


def test_integers_too_long_to_be_a_measurement_are_refused_not_raised() -> None:
    body = example("sensor")
    for digits in (wellformed.MAX_INT_DIGITS + 1, 5000):  # 5,000 digits: Python's int() itself refuses them
        text = json.dumps(body).replace("182.0", "1" * digits)
        out = refused("sensor", text.encode())
        assert (out[0].code, out[0].field) == ("not_finite", "values.pm10"), out
    text = json.dumps(body).replace("182.0", "1" * wellformed.MAX_INT_DIGITS)
    assert isinstance(parse_inbound("sensor", text.encode(), NOW), Inbound)  # at the limit: a number (a fault later)
