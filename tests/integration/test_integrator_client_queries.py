"""The client's typed queries against a running scoring service: replies parsed into the models of
contracts/queries.py, an error reply raised as `QueryFailed` with its code and reference, a bad request refused
before it is sent, and no scoring instance reported as `NoAnswer`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.cases import CaseDispatched
from contracts.queries import MerchantFiguresReply, RankingQuery, RankingReply, UnitFiguresReply
from contracts.reports import MerchantCheck
from contracts.values import UnitRef, UnitRole
from tests.helpers import eventually, login
from xiuhua.client import InvalidMessage, NoAnswer, QueryFailed, XiuhuaClient
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.service import running

AT = datetime(2026, 12, 10, 2, tzinfo=UTC)  # 10:00 in Shanghai, week 2026-W50


def _dispatched(case_id: str) -> CaseDispatched:
    return CaseDispatched(
        occurred_at=AT,
        correlation_id=f"grid:{case_id}",
        case_id=case_id,
        street_code="CD",
        category_code="0201",
        rule_id="r",
        lead_unit=UnitRef(unit_id="CD-SAN", name="城东环卫所", role=UnitRole.sanitation),
        due_at=AT,
        time_limit="4h",
    )


def _check() -> MerchantCheck:
    return MerchantCheck(
        check_id="KQ-1",
        merchant_id="M-CD-0001",
        checked_at=AT,
        inspector_id="G-1",
        items={"hygiene": "fail", "order": "pass", "greenery": "pass"},
    )


async def test_typed_queries_against_a_running_scoring_service(settings, city) -> None:
    async with (
        running(spec("scoring"), settings, clock=FrozenClock(AT), city=city),
        XiuhuaClient(settings.nats_url, **login(settings.nats_url, "command_centre")) as xh,
        XiuhuaClient(settings.nats_url, **login(settings.nats_url, "dispatch")) as dispatch,
        XiuhuaClient(settings.nats_url, **login(settings.nats_url, "patrol_app")) as patrol,
    ):
        await dispatch.publish_event(_dispatched("C-Q1"))
        await dispatch.publish_event(_dispatched("C-Q2"))
        await patrol.publish_report(_check())

        async def counted() -> UnitFiguresReply | None:
            reply = await xh.unit_figures("CD-SAN", "2026-12")
            month = reply.periods["2026-12"]
            return reply if month is not None and month.dispatched == 2 else None

        unit = await eventually(counted, timeout=30, interval=0.3)
        assert isinstance(unit, UnitFiguresReply) and unit.name == city.units["CD-SAN"].name
        month = unit.periods["2026-12"]
        assert month is not None and month.role == "sanitation" and month.kind == "month"
        assert month.acknowledged == 0 and month.rates["response_rate"] == 0.0

        # Without a period: the current week, month, quarter and year of the service's clock.
        current = await xh.unit_figures("CD-SAN")
        assert list(current.periods) == ["2026-W50", "2026-12", "2026-Q4", "2026"]
        assert current.periods["2026-W50"] is not None and current.periods["2026-W50"].dispatched == 2

        async def checked() -> MerchantFiguresReply | None:
            reply = await xh.merchant_figures("M-CD-0001", "2026-12")
            return reply if reply.month is not None else None

        merchant = await eventually(checked, timeout=30, interval=0.3)
        assert isinstance(merchant, MerchantFiguresReply) and merchant.known
        assert merchant.month is not None and merchant.month.failures == 1 and merchant.month.warned
        assert merchant.month.failed_items == ["hygiene"] and merchant.grade in {"A", "B", "C"}

        ranking = await xh.ranking("unit", "2026-12")
        assert isinstance(ranking, RankingReply) and ranking.kind == "unit" and ranking.period == "2026-12"
        assert [row.id for row in ranking.tables["sanitation"]] == ["CD-SAN"]
        by_street = await xh.query(RankingQuery(kind="merchant"))
        assert isinstance(by_street, RankingReply) and by_street.period == "2026-12" and by_street.tables["CD"]

        # An error reply: its code, fixed message and the reference of the service's log line.
        with pytest.raises(QueryFailed) as failed:
            await xh.unit_figures("NO-SUCH-UNIT")
        assert failed.value.code == "unknown_unit" and failed.value.message == "unknown unit"
        assert failed.value.correlation_id.startswith("q-") and failed.value.correlation_id in str(failed.value)
        with pytest.raises(QueryFailed) as failed:
            await xh.merchant_figures("M-NOPE")
        assert failed.value.code == "unknown_merchant"

        # A request its contract refuses never leaves the client.
        with pytest.raises(InvalidMessage, match="period"):
            await xh.unit_figures("CD-SAN", "2026-13")
        with pytest.raises(InvalidMessage, match="merchants are ranked by month"):
            await xh.ranking("merchant", "2026-W50")

    # The service has stopped: nothing answers.
    async with XiuhuaClient(settings.nats_url, **login(settings.nats_url, "command_centre")) as xh:
        with pytest.raises(NoAnswer, match="scoring service running"):
            await xh.unit_figures("CD-SAN", timeout=2)
