"""HJ 212-2017 frames: the CRC against the standard's own example, framing across reads and garbage, the checks in
their order (length, CRC, MN, PW, command), readings per data time, data flags, the data response."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.reports import RejectionReason
from services.intake.hj212.frame import Candidate, Frame, Framer, answer, crc_hex, segment_of, unwrap
from services.intake.hj212.readings import Accepted, check
from tests.helpers.hj212 import DUST_MN, DUST_PW, OLD_MN, OLD_PW, dust, frame, hj212_crc, modbus_crc

TZ = ZoneInfo("Asia/Shanghai")
# The standard's appendix example (a command to set the real-time data interval) with its published CRC.
STANDARD_EXAMPLE = (
    b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&1C80\r\n"
)


def checked(raw: bytes, city) -> Accepted | RejectionReason:
    (candidate,) = list(Framer().feed(raw))
    f = unwrap(candidate)
    assert isinstance(f, Frame), f
    return check(f, city.devices, TZ)


def test_the_crc_is_the_standards_own_on_its_published_example() -> None:
    data = STANDARD_EXAMPLE[6:-6]
    assert hj212_crc(data) == 0x1C80
    assert crc_hex(data) == "1C80"
    assert frame(data.decode()) == STANDARD_EXAMPLE
    assert crc_hex(data, "modbus_swapped") == f"{((modbus_crc(data) & 0xFF) << 8) | (modbus_crc(data) >> 8):04X}"
    assert crc_hex(data, "modbus_swapped") != "1C80"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_the_crc_matches_the_independent_routine_on_any_bytes(data: bytes) -> None:
    assert crc_hex(data) == f"{hj212_crc(data):04X}"


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(1, 400), max_size=8), garbage=st.sampled_from([b"", b"xx\r\n", b"#", b"\x00\xff#x"]))
def test_frames_split_anywhere_and_garbage_between_them_come_out_whole(cuts, garbage) -> None:
    frames = [
        frame(dust("DataTime=20261123100000;a34002-Rtd=60,a34002-Flag=N")),
        STANDARD_EXAMPLE,
        frame(dust("DataTime=20261123100100;a34002-Rtd=61,a34002-Flag=N")),
    ]
    stream = garbage + frames[0] + garbage + frames[1] + frames[2] + garbage
    framer, out, at = Framer(), [], 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out += list(framer.feed(stream[at:cut]))
        at = max(at, cut)
    assert [c.raw for c in out] == frames
    assert all(c.broken is None for c in out)


def test_a_frame_cut_short_by_the_next_one_is_a_bad_length_and_the_next_one_survives() -> None:
    whole = frame(dust("DataTime=20261123100000;a34002-Rtd=60"))
    out = list(Framer().feed(whole[:30] + whole))
    assert [c.raw for c in out] == [whole[:30], whole]
    assert isinstance(unwrap(out[0]), str) and isinstance(unwrap(out[1]), Frame)


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_declared_length_off_by_one_either_way_is_a_bad_length(delta: int) -> None:
    seg = dust("DataTime=20261123100000;a34002-Rtd=60")
    good = frame(seg)
    assert isinstance(unwrap(Candidate(good)), Frame)
    why = unwrap(Candidate(frame(seg, length=len(seg) + delta)))
    assert isinstance(why, str) and f"says {len(seg) + delta} bytes" in why
    assert isinstance(unwrap(Candidate(b"##01x1" + seg.encode() + b"1C80\r\n")), str)


def test_a_good_frame_becomes_one_reading_per_data_time(city) -> None:
    cp = (
        "DataTime=20261123100000;a34001-Rtd=210.5,a34001-Flag=N;a34002-Rtd=160.2,a34002-Flag=N;"
        "a34004-Rtd=80.1,a34004-Flag=N;a01001-Rtd=12.3,a01001-Flag=N;a01007-Rtd=2.1,a01007-Flag=N"
    )
    got = checked(frame(dust(cp)), city)
    assert isinstance(got, Accepted)
    ((msg_id, reading),) = got.readings
    assert msg_id == f"hj212:{DUST_MN}:2011:20261123100000"
    assert reading.device_id == "DUST-JQ-0203" and reading.device_type == "dust" and reading.model == "YC-3000"
    assert reading.measured_at == datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
    assert reading.values == {"tsp": 210.5, "pm10": 160.2, "pm25": 80.1, "temperature": 12.3, "wind_speed": 2.1}
    assert reading.site_id == "桥西建筑工地" and reading.location is not None and reading.location.lng == 120.11
    two = checked(
        frame(dust("DataTime=20261123100000;a34002-Avg=60;DataTime=20261123100100;a34002-Avg=70", cn="2051")), city
    )
    assert isinstance(two, Accepted)
    assert [(r.measured_at.minute, r.values) for _, r in two.readings] == [(0, {"pm10": 60.0}), (1, {"pm10": 70.0})]


@pytest.mark.parametrize("cn", ["2051", "2061", "2031"])
def test_minute_hourly_and_daily_data_read_the_average(city, cn: str) -> None:
    got = checked(
        frame(dust("DataTime=20261123100000;a34002-Min=10,a34002-Avg=55.5,a34002-Max=99,a34002-Flag=N", cn=cn)), city
    )
    assert isinstance(got, Accepted) and got.readings[0][1].values == {"pm10": 55.5}


def test_flags_give_the_device_state_and_unmeasured_values_stay_out(city) -> None:
    def values(cp: str) -> dict:
        got = checked(frame(dust("DataTime=20261123100000;" + cp)), city)
        assert isinstance(got, Accepted), got
        return dict(got.readings[0][1].values)

    assert values("a34002-Rtd=60,a34002-Flag=N") == {"pm10": 60.0}
    assert values("a34002-Rtd=60,a34002-Flag=C;a34004-Rtd=30,a34004-Flag=N") == {"pm25": 30.0, "status": "calibrating"}
    assert values("a34002-Rtd=60,a34002-Flag=M") == {"status": "maintenance"}
    # D (fault) outranks T (over range), either order
    assert values("a34002-Rtd=999,a34002-Flag=T;a34004-Rtd=1,a34004-Flag=D")["status"] == "fault"
    assert values("a34002-Rtd=1,a34002-Flag=D;a34004-Rtd=999,a34004-Flag=T")["status"] == "fault"
    assert values("a34002-Rtd=60,a34002-Flag=B") == {"pm10": 60.0, "status": "comm_error"}
    assert city.intake.sensors["dust"].fault_statuses == ["fault", "comm_error", "over_range"]


def test_the_checks_in_order_each_naming_its_reason(city) -> None:
    cp = "DataTime=20261123100000;a34002-Rtd=60"
    bad_crc = checked(frame(dust(cp), crc="0000"), city)
    assert isinstance(bad_crc, RejectionReason) and bad_crc.code == "bad_crc" and "matches no CRC" in bad_crc.message
    assert checked(frame(dust(cp, mn="99999999999999")), city).code == "unknown_device"
    wrong = checked(frame(dust(cp, pw="000000")), city)
    assert wrong.code == "bad_password" and wrong.field == "PW"
    assert checked(frame(dust(cp, cn="9021")), city).code == "unsupported_command"
    assert checked(frame(dust("DataTime=2026112310;a34002-Rtd=60")), city).code == "bad_frame"
    assert checked(frame(dust("DataTime=20261123100000;a34002-Rtd=NaN")), city).field == "a34002-Rtd"
    assert checked(frame("QN=1;ST=39;CN=2011;PW=123456;MN=33010020260001;Flag=4"), city).code == "bad_frame"


def test_the_swapped_modbus_crc_only_from_models_that_declare_it(city) -> None:
    def swapped(seg: str) -> str:
        reg = modbus_crc(seg.encode())
        return f"{((reg & 0xFF) << 8) | (reg >> 8):04X}"

    cp = "DataTime=20261123100000;a34002-Rtd=60"
    old = dust(cp, mn=OLD_MN, pw=OLD_PW)
    assert isinstance(checked(frame(old, crc=swapped(old)), city), Accepted)
    assert isinstance(checked(frame(old), city), Accepted)
    strict = dust(cp)
    refused = checked(frame(strict, crc=swapped(strict)), city)
    assert refused.code == "bad_crc"
    assert f"expected the HJ 212-2017 CRC {hj212_crc(strict.encode()):04X}" in refused.message
    assert "Modbus CRC-16 with its bytes swapped, not accepted" in refused.message
    assert isinstance(checked(frame(strict, crc=f"{hj212_crc(strict.encode()):04x}"), city), Accepted)  # lower case


def test_the_data_response_when_the_flag_asks(city) -> None:
    asks = segment_of(dust("DataTime=20261123100000;a34002-Rtd=60", flag="5"))
    quiet = segment_of(dust("DataTime=20261123100000;a34002-Rtd=60", flag="4"))
    assert asks.needs_answer and not quiet.needs_answer
    reply = answer(asks)
    seg = f"QN=20261123100000000;ST=91;CN=9014;PW={DUST_PW};MN={DUST_MN};Flag=4;CP=&&&&"
    assert reply == frame(seg)


@settings(max_examples=300, deadline=None)
@given(
    noise=st.binary(max_size=60),
    cut=st.integers(0, 200),
    flip=st.integers(0, 199),
    byte=st.integers(0, 255),
    extra=st.sampled_from(["", ";a34002-Rtd=1e999", ";a34002-Rtd=\x00", ";DataTime=x", ";a34002-Flag=Q", "\u00e9"]),
)
def test_any_bytes_give_readings_or_a_reason_naming_a_field_never_an_exception(noise, cut, flip, byte, extra) -> None:
    if "city" not in _CITY:
        from xiuhua.city import load_city
        from xiuhua.settings import DEMO_CITY

        _CITY["city"] = load_city(DEMO_CITY)
    city = _CITY["city"]
    good = bytearray(frame(dust("DataTime=20261123100000;a34002-Rtd=60,a34002-Flag=N" + extra)))
    if flip < len(good) - 2:
        good[flip] = byte  # one byte changed anywhere but the tail
    stream = noise + bytes(good[:cut]) + bytes(good[cut:]) + noise
    for candidate in Framer().feed(stream):
        f = unwrap(candidate)
        if isinstance(f, str):
            continue  # a bad_length, field "length"
        got = check(f, city.devices, TZ)
        assert isinstance(got, Accepted) or (isinstance(got, RejectionReason) and got.field), got


_CITY: dict = {}
