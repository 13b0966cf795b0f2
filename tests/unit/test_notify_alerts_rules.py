"""Alert rules, messages and policies: pure functions over the demo city."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.notify import messages
from services.notify.channels import (
    dingtalk_sign,
    feishu_sign,
    safe_error,
    sign_webhook,
    verify_webhook,
)
from services.notify.delivery_log import mask_address
from services.notify.policy import backoff_seconds, quiet_until, refill, wait_for_token
from services.notify.recipients import deliveries_for
from xiuhua.city.alerts import AlertsFile, RateLimit, RetryPolicy
from xiuhua.consumer import decode_tolerant

TZ = ZoneInfo("Asia/Shanghai")


def test_new_case_alert_reaches_the_lead_units_duty_contact(city) -> None:
    lead = city.units["CD-SAN"].ref()
    out = deliveries_for(city, "new_case", case_id="C-1", level=0, lead=lead, cooperating=[])
    assert [(d.contact_id, d.channel) for d in out] == [("CD-SAN-duty", "file")]
    assert out[0].notification_id == "new_case:C-1:0:CD-SAN-duty:file"


def test_a_rerouted_case_also_reaches_the_street_office(city) -> None:
    out = deliveries_for(city, "new_case", case_id="C-1", level=1, lead="CD-SAN", street_code="CD")
    assert {d.contact_id for d in out} == {"CD-SAN-duty", "CD-SO-duty"}


def test_overdue_reaches_lead_and_command_centre_duty_and_head_urgently(city) -> None:
    out = deliveries_for(city, "overdue", case_id="C-1", lead="CD-SAN")
    assert {d.contact_id for d in out} == {"CD-SAN-duty", "CD-SAN-head", "XH-CC-duty", "XH-CC-head"}
    assert all(d.urgent for d in out)


def test_escalation_levels_reach_different_people(city) -> None:
    one = {
        d.contact_id
        for d in deliveries_for(city, "escalation", case_id="C-1", level=1, lead="CD-SAN", street_code="CD")
    }
    two = {
        d.contact_id
        for d in deliveries_for(city, "escalation", case_id="C-1", level=2, lead="CD-SAN", street_code="CD")
    }
    assert one == {"CD-SAN-head", "CD-SAN-duty", "XH-CC-head", "XH-CC-duty"}
    assert two == {"CD-SAN-head", "XH-CC-head", "CD-SO-head"}
    # Each level is its own alert: the ids differ, so a level-2 escalation is not swallowed by level 1's.
    ids1 = {d.notification_id for d in deliveries_for(city, "escalation", case_id="C-1", level=1, lead="CD-SAN")}
    assert all(":1:" in i for i in ids1)
    assert deliveries_for(city, "escalation", case_id="C-1", level=0, lead="CD-SAN") == []


def test_sensor_emergency_goes_to_command_centre_and_the_street(city) -> None:
    out = deliveries_for(city, "sensor_emergency", case_id="C-9", street_code="JQ", urgent=True)
    assert {d.contact_id for d in out} == {"XH-CC-duty", "JQ-SO-duty"}
    assert all(d.urgent for d in out)


def test_cooperating_units_hear_deadline_warnings(city) -> None:
    out = deliveries_for(city, "deadline_warning", case_id="C-1", lead="CD-SAN", cooperating=["CD-SO"])
    assert {d.contact_id for d in out} == {"CD-SAN-duty", "CD-SO-duty"}


def test_rules_name_only_configured_channels() -> None:
    with pytest.raises(ValueError, match="not configured"):
        AlertsFile.model_validate({"rules": [{"kind": "overdue", "channels": ["pager"]}]})
    with pytest.raises(ValueError, match="22:00-07:30"):
        AlertsFile.model_validate({"quiet_hours": "late", "rules": [{"kind": "overdue"}]})


def test_messages_are_chinese_first_with_an_english_line_and_no_reporter() -> None:
    msg = messages.build(
        "escalation",
        {"case_id": "C-1", "unit": "城东环卫所", "due_at": datetime(2026, 11, 23, 6, tzinfo=UTC)},
        urgent=True,
        level=2,
        tz=TZ,
    )
    assert msg["title"] == "【紧急】案件升级督办（第2级）"
    assert "处置时限：2026-11-23 14:00" in msg["lines"]  # city time
    assert msg["line_en"] == "Case escalated (level 2): C-1"
    assert "### 【紧急】案件升级督办（第2级）" in messages.as_markdown(msg)


def test_backoff_grows_exponentially_within_its_jitter() -> None:
    policy = RetryPolicy(base_s=2, max_s=60, jitter=0.5)
    rnd = random.Random(7)
    for n, full in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (9, 60)]:
        d = backoff_seconds(n, policy, rnd)
        assert full / 2 <= d <= full
    assert backoff_seconds(3, RetryPolicy(base_s=2, jitter=0)) == 8


def test_quiet_hours_in_city_time_across_midnight() -> None:
    # 23:00 Shanghai = 15:00 UTC: quiet until 07:30 next morning Shanghai = 23:30 UTC.
    at = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert quiet_until(at, "22:00-07:30", TZ) == datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    # 06:00 Shanghai: quiet until 07:30 the same morning.
    assert quiet_until(datetime(2026, 11, 23, 22, 0, tzinfo=UTC), "22:00-07:30", TZ) == datetime(
        2026, 11, 23, 23, 30, tzinfo=UTC
    )
    assert quiet_until(datetime(2026, 11, 23, 2, 0, tzinfo=UTC), "22:00-07:30", TZ) is None  # 10:00 local
    assert quiet_until(datetime(2026, 11, 23, 4, 30, tzinfo=UTC), "12:00-14:00", TZ) == datetime(
        2026, 11, 23, 6, 0, tzinfo=UTC
    )
    assert quiet_until(at, None, TZ) is None


def test_token_bucket_arithmetic() -> None:
    limit = RateLimit(capacity=3, per_minute=6)
    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    assert refill(0, t0, t0 + timedelta(seconds=10), limit) == 1.0
    assert refill(2, t0, t0 + timedelta(hours=1), limit) == 3.0
    assert wait_for_token(0.5, limit) == 5.0


def test_signatures_match_the_documented_algorithms() -> None:
    body = b'{"a":1}'
    sig = sign_webhook("s3cret", "1700000000", body)
    assert verify_webhook("s3cret", "1700000000", body, sig, now_s=1700000100)
    assert not verify_webhook("s3cret", "1700000000", body, sig, now_s=1700001000)  # replayed later
    assert not verify_webhook("other", "1700000000", body, sig, now_s=1700000000)
    assert not verify_webhook("s3cret", "1700000000", b'{"a":2}', sig, now_s=1700000000)
    # DingTalk: HMAC-SHA256(key=secret, msg="ts\nsecret"); Feishu: HMAC-SHA256(key="ts\nsecret", msg="").
    assert dingtalk_sign("SECabc", "1700000000000") == "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM="
    assert feishu_sign("abc", "1700000000") == "VIS10b0EBvzzSdFnuk4tznEmK5wHaruvf/WnViv2yR4="


def test_errors_carry_no_urls_tokens_or_secrets() -> None:
    exc = RuntimeError("boom at https://oapi.dingtalk.com/robot/send?access_token=TOKEN123&sign=x with s3cret")
    text = safe_error(exc, ["s3cret"])
    assert "TOKEN123" not in text and "s3cret" not in text and "oapi.dingtalk.com" in text


def test_the_log_masks_addresses() -> None:
    assert mask_address("https://oapi.dingtalk.com/robot/send?access_token=T") == "https://oapi.dingtalk.com/…"
    assert mask_address("https://open.feishu.cn/open-apis/bot/v2/hook/SECRET-ID") == "https://open.feishu.cn/…"
    assert mask_address("duty@cd-san.example") == "***@cd-san.example"
    assert mask_address("13800001111") == "*******1111"
    assert mask_address("cd-san") == "cd-san"


def test_scoring_events_without_a_contract_arrive_as_objects() -> None:
    body = decode_tolerant("score.v1.some_future_event", b'{"period": "2026-W47", "tables": {}}')
    assert body == {"period": "2026-W47", "tables": {}}
    with pytest.raises(Exception, match="not JSON"):
        decode_tolerant("score.v1.some_future_event", b"\xff")


def test_quiet_hours_apply_to_people_not_to_the_file_outbox(city) -> None:
    alerts = city.alerts
    assert alerts.respects_quiet_hours("wecom") and alerts.respects_quiet_hours("sms")
    assert not alerts.respects_quiet_hours("file")
    assert alerts.respects_quiet_hours("a-channel-since-removed")


def test_free_text_in_a_message_is_kept_short() -> None:
    msg = messages.build("sensor_emergency", {"case_id": "C-1", "detail": "水" * 500}, urgent=True, tz=TZ)
    assert len(msg["lines"][-1]) == messages.DETAIL_MAX and msg["lines"][-1].endswith("…")


def test_the_alert_consumer_ignores_exactly_the_case_events_that_never_alert() -> None:
    from contracts import cases as c
    from services.notify import planning

    def example(model):
        return model.model_validate(model.example())

    opened = example(c.CaseOpened)
    urgent_sensor = opened.model_copy(update={"source": "sensor", "urgency": "urgent"})
    alerting = [
        urgent_sensor,
        *(example(m) for m in (c.CaseDispatched, c.CaseDeadlineWarning, c.CaseOverdue, c.CaseEscalated)),
    ]
    quiet = [
        opened.model_copy(update={"source": "sensor"}),
        opened,
        *(example(m) for m in (c.CaseAcknowledged, c.CaseResolved, c.CaseMerged)),
    ]
    # Not alerts, but they mark notify's view of the case for the purge (closed cases' horizon).
    endings = [example(m) for m in (c.CaseClosed, c.CaseCancelled, c.CaseReopened)]
    assert [planning.ignores(e) for e in [*alerting, *endings]] == [False] * (len(alerting) + len(endings))
    assert [planning.ignores(e) for e in quiet] == [True] * len(quiet)


def test_a_case_ended_marks_its_alert_view_with_when_and_a_reopening_unmarks_it(city) -> None:
    from contracts import cases as c
    from services.notify.planning import Plan, Planner
    from xiuhua.clock import FrozenClock

    planner = Planner(city, TZ, FrozenClock(datetime(2026, 11, 23, tzinfo=UTC)))
    closed = c.CaseClosed.model_validate(c.CaseClosed.example())
    cancelled = c.CaseCancelled.model_validate(c.CaseCancelled.example()).model_copy(update={"case_id": "C-X"})
    reopened = c.CaseReopened.model_validate(c.CaseReopened.example())
    plan = Plan()
    for ev in (closed, cancelled):
        planner.case_event(plan, ev, {})
    assert plan.ended == {closed.case_id: closed.occurred_at.timestamp(), "C-X": cancelled.occurred_at.timestamp()}
    assert not plan.deliveries and not plan.cases  # nobody is alerted of an ending
    planner.case_event(plan, reopened, {})  # the same case, reopened later in the batch: the last event wins
    assert plan.ended[reopened.case_id] is None and reopened.case_id == closed.case_id


def test_types_skipped_by_subject_are_exactly_those_ignored_whatever_their_content() -> None:
    from contracts import cases as c
    from contracts import registry
    from services.notify import planning

    for kind in [m for m in registry.patterns().values() if issubclass(m, c.CaseEvent)]:
        event = kind.model_validate(kind.example())
        if planning.skips_type(kind):
            assert planning.ignores(event), kind  # skipping undecoded never drops an alert
        elif kind is not c.CaseOpened:  # an opening alerts or not by its content: decoded, then judged
            assert not planning.ignores(event), kind  # nothing that alerts is skipped
    assert not planning.skips_type(c.CaseOpened)


def test_a_claim_expires_when_its_lease_runs_out_or_made_before_leases_when_old() -> None:
    from services.notify.policy import LEGACY_STALE, claim_expired

    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    t = now.timestamp()
    assert claim_expired({"status": "sending", "lease_s": t - 1}, now)
    assert not claim_expired({"status": "sending", "lease_s": t + 1}, now)  # the owner renews it: alive
    assert not claim_expired({"status": "sending", "lease_s": t + 1, "claimed_at": now - 2 * LEGACY_STALE}, now)
    assert claim_expired({"status": "sending", "claimed_at": now - LEGACY_STALE - timedelta(seconds=1)}, now)
    assert not claim_expired({"status": "sending", "claimed_at": now - LEGACY_STALE + timedelta(seconds=1)}, now)
    assert not claim_expired({"status": "sending"}, now)  # nothing to judge it by
