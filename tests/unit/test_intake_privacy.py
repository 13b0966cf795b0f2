"""Personal data of any shape is masked wherever free text travels: phone numbers (mainland mobile, landline with
area code, 400/800, international, North American), resident ID numbers, e-mail addresses. Ordinary numbers
(dates, amounts, order numbers, coordinates, identifiers) are left alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.cases import draft_case
from services.intake.open311.definitions import load_open311
from services.intake.open311.validation import parse_submission
from services.intake.parsing import parse_inbound
from services.intake.privacy import scrub
from xiuhua.city import load_city
from xiuhua.settings import DEMO_CITY

CITY = load_city(DEMO_CITY)
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
PII = settings(max_examples=300, deadline=None)
d = st.integers(0, 9).map(str)


def digits(n: int) -> st.SearchStrategy[str]:
    return st.lists(d, min_size=n, max_size=n).map("".join)


def _check_digit(body17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * w for c, w in zip(body17, weights, strict=True)) % 11]


mobiles = st.tuples(
    st.sampled_from("3456789"), digits(9), st.sampled_from(["", "-", " "]), st.sampled_from(["", "+86 ", "86-", "+86-"])
).map(lambda t: f"{t[3]}1{t[0]}{t[1][0]}{t[2]}{t[1][1:5]}{t[2]}{t[1][5:]}")
landlines = st.tuples(
    st.sampled_from(["010", "021", "0571", "0755", "0898"]),
    st.integers(2, 9).map(str),
    digits(6),
    st.sampled_from(["{a}-{n}", "({a}){n}", "{a} {n}", "{a}{n}"]),
).map(lambda t: t[3].format(a=t[0], n=t[1] + t[2] + ("" if len(t[0]) == 4 else "1")))
service_numbers = st.tuples(st.sampled_from(["400", "800"]), digits(7), st.sampled_from(["-", "", " "])).map(
    lambda t: f"{t[0]}{t[2]}{t[1][:3]}{t[2]}{t[1][3:]}"
)
north_american = st.tuples(
    st.integers(2, 9),
    digits(2),
    st.integers(2, 9),
    digits(6),
    st.sampled_from(
        ["{a}-{b}-{c}", "({a}) {b}-{c}", "{a}.{b}.{c}", "1-{a}-{b}-{c}", "+1 {a} {b} {c}", "+1 ({a}) {b}-{c}"]
    ),
).map(lambda t: t[4].format(a=f"{t[0]}{t[1]}", b=f"{t[2]}{t[3][:2]}", c=t[3][2:]))
international = st.tuples(st.sampled_from(["+44 20", "+49 30", "+81 3", "+852", "+33 1"]), digits(4), digits(4)).map(
    lambda t: f"{t[0]} {t[1]} {t[2]}"
)
resident_ids = (
    st.tuples(
        st.sampled_from(["110101", "330102", "440305", "510104"]),
        st.dates(min_value=datetime(1920, 1, 1).date(), max_value=datetime(2020, 12, 31).date()),
        digits(3),
    )
    .map(lambda t: t[0] + t[1].strftime("%Y%m%d") + t[2])
    .map(lambda body: body + _check_digit(body))
)
emails = st.tuples(
    st.from_regex(r"[a-z][a-z0-9._+]{0,12}", fullmatch=True),
    st.sampled_from(["qq.com", "163.com", "gmail.com", "city.gov.cn"]),
).map(lambda t: f"{t[0]}@{t[1]}")
personal = st.one_of(mobiles, landlines, service_numbers, north_american, international, resident_ids, emails)
around = st.text(alphabet="垃圾桶满了请联系我电话是谢谢 ，。:：", max_size=12)


@PII
@given(before=around, value=personal, after=around)
def test_personal_data_of_any_shape_in_free_text_is_masked(before: str, value: str, after: str) -> None:
    out = scrub(before + value + after)
    assert out.startswith(before) and out.endswith(after), (value, out)
    masked = out[len(before) : len(out) - len(after)]
    assert "*" in masked and value not in out, (value, out)
    if "@" in value:
        assert masked.endswith(value.split("@")[1]) and masked.count("*") == 3
    else:  # at most the first three and the last four digits remain
        assert sum(c.isdigit() for c in masked) <= 7, (value, out)


@PII
@given(
    st.one_of(
        st.dates().map(lambda x: x.isoformat()),  # 2026-11-23
        st.integers(0, 10**6).map(lambda n: f"{n / 100:.2f}元"),  # amounts
        st.tuples(digits(8), digits(4)).map(lambda t: f"12345-{t[0]}-{t[1]}"),  # work order numbers
        st.floats(100, 140).map(lambda x: f"{x:.6f}"),  # coordinates
        st.from_regex(r"C-[0-9a-f]{16}", fullmatch=True),  # case ids
        st.from_regex(r"R-2026\d{4}-\d{3}", fullmatch=True),  # report ids
        digits(14),  # HJ 212 MN / DataTime
    )
)
def test_ordinary_numbers_are_left_alone(value: str) -> None:
    assert scrub(f"见{value}号") == f"见{value}号"


def test_each_shape_masked_as_it_reads() -> None:
    assert scrub("请联系773-636-0432谢谢") == "请联系773***0432谢谢"
    assert scrub("电话13800135678") == "电话138****5678"
    assert scrub("身份证330102199001011234") == "身份证330***********1234"
    assert scrub("mail a.b+c@mail.example.cn") == "mail a***@mail.example.cn"


def test_a_hotline_orders_words_reach_the_case_masked() -> None:
    body = {
        "order_no": "H-P",
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "反映",
        "content": "解放路垃圾桶满溢，联系人身份证330102199001011234，回电0571-87654321或 773-636-0432",
        "address": "解放路18号 联系电话13912345678",
    }
    draft = draft_case(parse_inbound("hotline", json.dumps(body, ensure_ascii=False).encode(), NOW), CITY)
    words = draft.description
    for leaked in ("19900101", "8765", "636"):
        assert leaked not in words, words
    assert draft.place.address == "解放路18号 联系电话139****5678" and draft.place.street_code == "CD"


def test_an_open311_attribute_with_a_north_american_number_is_masked() -> None:
    config = load_open311(CITY)
    pairs = [
        ("api_key", "demo-open311-key-0001"),
        ("service_code", "0302"),
        ("lat", "30.255"),
        ("long", "120.16"),
        ("attribute[POLE_NO]", "JF-018 call 773-636-0432"),
        ("attribute[DETAILS]", "或 +44 20 7946 0958"),
        ("address_string", "解放路 (call 773-636-0432)"),
    ]
    from zoneinfo import ZoneInfo

    sub = parse_submission(pairs, config, ZoneInfo("Asia/Shanghai"))
    assert sub.attributes == {"POLE_NO": "JF-018 call 773***0432", "DETAILS": "或 442*****0958"}
    assert sub.address == "解放路 (call 773***0432)"
