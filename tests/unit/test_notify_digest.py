"""Digests of what a recipient's rate limit held: who goes alone, who waits, what the digest says. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.notify import digest, messages
from services.notify.channels import SmsChannel
from xiuhua.city.alerts import ChannelConfig
from xiuhua.clock import FrozenClock
from xiuhua_tools.chaos.tally import sent_alerts

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")


def alert(
    case_id: str,
    kind: str = "new_case",
    *,
    urgent: bool = False,
    due_h: float = 4,
    held: bool = False,
    level: int = 0,
    k: int = 0,
) -> dict[str, Any]:
    facts = {
        "case_id": case_id,
        "unit": "城东环卫所",
        "due_at": T0 + timedelta(hours=due_h),
        "category": "垃圾箱满溢（0201）",
    }
    return {
        "_id": f"{kind}:{case_id}:{level}:cd-duty:webhook",
        "kind": kind,
        "case_id": case_id,
        "level": level,
        "contact_id": "cd-duty",
        "channel": "webhook",
        "urgent": urgent,
        "created_at": T0 + timedelta(seconds=k),
        "message": messages.build(kind, facts, urgent=urgent, level=level, tz=TZ),
        **({digest.HELD: T0 + timedelta(minutes=5)} if held else {}),
    }


def test_urgent_alerts_have_a_lane_of_their_own():
    assert digest.lane(alert("C-1")) == "cd-duty:webhook"
    assert digest.lane(alert("C-1", "overdue", urgent=True)) == "cd-duty:webhook:urgent"


def test_a_lane_within_its_tokens_goes_one_by_one_exactly_at_the_limit():
    group = [alert(f"C-{i}") for i in range(3)]
    assert digest.split(group, 3) == digest.Split(singles=group)
    assert digest.split(group, 2) == digest.Split(singles=group[:2], held=group[2:])  # one past: held
    assert digest.split(group, 0) == digest.Split(held=group)


def test_at_the_refill_after_a_hold_everything_goes_as_one_digest():
    group = [alert("C-0", held=True), alert("C-1")]
    assert digest.bundles(group) and not digest.bundles([alert("C-1")])
    assert digest.split(group, 1) == digest.Split(digest=group)
    assert digest.split(group, 2) == digest.Split(singles=group)  # tokens for all: no need to bundle
    assert digest.split(group[:1], 1) == digest.Split(singles=group[:1])  # one held alone goes as itself


def test_the_most_urgent_first_whatever_the_order_they_came_in():
    near, far = alert("C-near", due_h=1), alert("C-far", due_h=8)
    warn = alert("C-warn", "deadline_warning", due_h=9)
    esc1, esc2 = alert("C-e1", "escalation", urgent=True, level=1), alert("C-e2", "escalation", urgent=True, level=2)
    for docs in ([near, far, warn], [warn, far, near]):
        assert [d["case_id"] for d in sorted(docs, key=digest.pressing)] == ["C-warn", "C-near", "C-far"]
    for docs in ([esc1, esc2], [esc2, esc1]):
        assert [d["case_id"] for d in sorted(docs, key=digest.pressing)] == ["C-e2", "C-e1"]
    assert sorted([near, esc1], key=digest.pressing)[0] is esc1  # urgent before routine


def test_the_digest_counts_by_kind_names_the_most_urgent_with_their_place_and_lists_the_ids():
    docs = [alert(f"C-{i:02d}", due_h=4 + i, held=True, k=300 + i) for i in range(10)] + [
        alert("C-warn", "deadline_warning", due_h=2, k=400)
    ]
    places = {"C-warn": "城东街道 / 金桥社区 / 金桥社区第1网格"}
    msg = digest.build(docs, places, tz=TZ)
    assert msg["title"] == "告警汇总：10:05以来11条" and not msg["urgent"]
    assert msg["counts"] == {"deadline_warning": 1, "new_case": 10}
    assert msg["lines"][0] == "汇总：案件临期预警 1 条，新案件待处置 10 条"
    assert msg["lines"][2] == (
        "1. 案件临期预警 · C-warn · 城东街道 / 金桥社区 / 金桥社区第1网格 · 城东环卫所 · 时限 2026-11-23 12:00"
    )
    assert msg["lines"][3].startswith("2. 新案件待处置 · C-00 · 城东环卫所")  # no place known: none made up
    assert len([ln for ln in msg["lines"] if ln[:2] in {f"{i}." for i in range(1, 10)}]) == digest.NAMED
    assert msg["case_ids"][:2] == ["C-warn", "C-00"] and len(msg["case_ids"]) == 11
    assert msg["lines"][-1] == "案件编号：" + "、".join(msg["case_ids"])
    assert msg["line_en"] == "11 alerts held by the rate limit since 10:05: deadline_warning 1, new_case 10"
    assert msg["notification_ids"][0] == docs[-1]["_id"]


def test_a_digest_lists_at_most_so_many_ids_in_its_text_and_all_in_its_fields():
    docs = [alert(f"C-{i:03d}", k=i) for i in range(digest.IDS_SHOWN + 1)]
    msg = digest.build(docs, {}, tz=TZ)
    assert msg["lines"][-1].endswith(f"C-{digest.IDS_SHOWN - 1:03d} 等{digest.IDS_SHOWN + 1}件")
    assert len(msg["case_ids"]) == digest.IDS_SHOWN + 1
    docs = docs[: digest.IDS_SHOWN]
    assert "等" not in digest.build(docs, {}, tz=TZ)["lines"][-1]


def test_an_urgent_digest_says_so_and_a_sensor_alert_keeps_its_address():
    sensor = alert("C-s", "sensor_emergency", urgent=True)
    sensor["message"]["lines"].append("位置：解放路12号")
    msg = digest.build([sensor, alert("C-o", "overdue", urgent=True)], {}, tz=TZ)
    assert msg["title"].startswith("【紧急】告警汇总") and msg["urgent"]
    assert msg["lines"][2] == "1. 【紧急】物联感知紧急告警 · C-s · 解放路12号 · 城东环卫所 · 时限 2026-11-23 14:00"


def test_the_place_an_alert_gives_is_the_one_named():
    said = alert("C-1")
    said["message"]["lines"].append("位置：城东街道 东园社区 东园社区第2网格")
    assert digest.place_said(said) == "城东街道 东园社区 东园社区第2网格" and digest.place_said(alert("C-2")) == ""
    msg = digest.build([said, alert("C-2", due_h=5)], {"C-1": "elsewhere", "C-2": "城东街道 新塘社区"}, tz=TZ)
    assert msg["lines"][2].startswith("1. 新案件待处置 · C-1 · 城东街道 东园社区 东园社区第2网格 · ")
    assert msg["lines"][3].startswith("2. 新案件待处置 · C-2 · 城东街道 新塘社区 · ")


def test_the_same_alerts_make_the_same_digest_id_in_any_order():
    a, b = alert("C-1"), alert("C-2")
    assert digest.notification_id([a, b]) == digest.notification_id([b, a]) != digest.notification_id([a])
    assert digest.notification_id([a]).startswith("digest:cd-duty:webhook:")


def test_an_sms_digest_has_a_text_of_its_own():
    msg = digest.build([alert("C-1", held=True), alert("C-2", "deadline_warning")], {}, tz=TZ)
    sms = SmsChannel("sms", ChannelConfig(type="sms"), FrozenClock(T0))
    assert sms.text(msg) == (
        "【绣花】告警汇总：10:00以来2条：案件临期预警 1 条，新案件待处置 1 条。"
        "最紧急：案件临期预警 · C-2 · 城东环卫所 · 时限 2026-11-23 14:00"
    )


def test_a_round_takes_whole_lanes_as_many_as_fit_at_least_one():
    def to(contact: str, n: int, urgent: bool = False) -> list[dict[str, Any]]:
        return [
            {**alert(f"C-{contact}{i}", urgent=urgent), "_id": f"{contact}:{i}:{urgent}", "contact_id": contact}
            for i in range(n)
        ]

    a, b, c, u = to("a", 3), to("b", 5), to("c", 2), to("a", 2, urgent=True)
    due = [a[0], b[0], a[1], *b[1:], a[2], *c, *u]
    ids = lambda docs: [d["_id"] for d in docs]  # noqa: E731
    assert ids(digest.pick(due, 10)) == ids([a[0], b[0], a[1], *b[1:], a[2], *c])  # a and b whole, then c: 10
    assert ids(digest.pick(due, 9)) == ids([a[0], b[0], a[1], *b[1:], a[2]])  # exactly a and b: c no longer fits
    assert ids(digest.pick(due, 6)) == ids([a[0], a[1], a[2], *c])  # b does not fit, the smaller c after it does
    assert ids(digest.pick(due, 1)) == ids(a)  # at least one lane, whole
    assert ids(digest.pick(due, 100, lane_max=2)) == ids([a[0], b[0], a[1], b[1], *c, *u])


def test_the_chaos_tally_counts_each_alert_of_a_digest_once():
    docs = [alert("C-1", held=True), alert("C-2")]
    digest_line = {"notification_id": digest.notification_id(docs), **digest.build(docs, {}, tz=TZ)}
    alone = {"notification_id": alert("C-0")["_id"]}
    assert sent_alerts([alone, digest_line]) == {alert(f"C-{i}")["_id"]: 1 for i in range(3)}
    assert sent_alerts([alone, alone])[alone["notification_id"]] == 2  # a re-send is still seen twice
