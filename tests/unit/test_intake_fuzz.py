"""Random payloads at every parser: no crash, no loss — every input yields exactly a model or reasons, and a
model always yields a draft, a transfer or reasons (never an exception)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.reports import INBOUND_BY_SOURCE, Inbound, RejectionReason, SensorReading
from services.intake.cases import Draft, TransferDraft, draft_case
from services.intake.parsing import parse_inbound
from services.intake.sensors import DeviceState, step
from xiuhua.city import load_city
from xiuhua.settings import DEMO_CITY

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SOURCES = sorted(INBOUND_BY_SOURCE)
CITY = load_city(DEMO_CITY)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
times = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.text(max_size=30),
    st.just("2026-11-23T09:58:00+08:00"),
)
locations = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "lng": st.one_of(st.floats(allow_nan=True), st.floats(120.1, 120.2)),
            "lat": st.one_of(st.floats(allow_nan=True), st.floats(30.25, 30.31)),
        },
        optional={"coord_system": st.sampled_from(["wgs84", "gcj02", "bd09", "utm", ""])},
    ),
)
FIELDS = {
    "report_id",
    "reported_at",
    "inspector_id",
    "description",
    "category_code",
    "grid_code",
    "location",
    "address",
    "photo_urls",
    "merchant_id",
    "handled_on_site",
    "order_no",
    "received_at",
    "channel",
    "title",
    "content",
    "caller",
    "hotline_category",
    "urgent",
    "reply_deadline",
    "device_id",
    "device_type",
    "measured_at",
    "values",
    "site_id",
    "finding_id",
    "inspected_at",
    "team",
    "kind",
    "check_id",
    "checked_at",
    "items",
    "note",
    "request_id",
    "service_code",
    "attributes",
    "reporter",
}
field_values = st.one_of(
    json_values,
    times,
    locations,
    st.sampled_from(["0201", "0103", "9901", "M-CD-0001", "dust"]),
    st.dictionaries(st.sampled_from(["hygiene", "order", "x"]), st.sampled_from(["pass", "fail", "maybe"]), max_size=3),
    st.text(alphabet="垃圾桶满井盖路灯拖欠工资消防通道解放路望江", max_size=30),
)
payloads = st.dictionaries(st.sampled_from(sorted(FIELDS)), field_values, max_size=14)


def _check(source: str, data: bytes) -> None:
    out = parse_inbound(source, data, NOW)
    if isinstance(out, list):
        assert out and all(isinstance(r, RejectionReason) and r.code for r in out)
        return
    assert isinstance(out, Inbound)
    if isinstance(out, SensorReading):
        cfg = CITY.intake.sensors.get(out.device_type)
        if cfg is not None:
            step(
                DeviceState(out.device_id, out.device_type),
                cfg,
                dict(out.values),
                out.measured_at,
                alarm_open=False,
                fault_open=False,
            )
        return
    drafted = draft_case(out, CITY)
    assert isinstance(drafted, Draft | TransferDraft) or (
        isinstance(drafted, list) and drafted and all(isinstance(r, RejectionReason) for r in drafted)
    )


@FUZZ
@given(st.sampled_from(SOURCES), st.binary(max_size=300))
def test_random_bytes(source: str, data: bytes) -> None:
    _check(source, data)


@FUZZ
@given(st.sampled_from(SOURCES), json_values)
def test_random_json(source: str, body: object) -> None:
    _check(source, json.dumps(body, allow_nan=True).encode())


@FUZZ
@given(st.sampled_from(SOURCES), payloads)
def test_random_fields(source: str, body: dict) -> None:
    _check(source, json.dumps(body, ensure_ascii=False, allow_nan=True).encode())


@FUZZ
@given(
    st.sampled_from(["dust", "bin_fill", "manhole_tilt", "street_lamp", "noise", "water_level"]),
    st.dictionaries(
        st.sampled_from(["pm10", "pm25", "fill_pct", "tilt_deg", "status", "db", "laeq", "level_m"]),
        scalars,
        max_size=4,
    ),
)
def test_random_sensor_values(device_type: str, values: dict) -> None:
    body = {
        "device_id": "D-1",
        "device_type": device_type,
        "measured_at": "2026-11-23T09:58:00+08:00",
        "values": values,
        "location": {"lng": 120.16, "lat": 30.255},
    }
    _check("sensor", json.dumps(body, allow_nan=True).encode())
