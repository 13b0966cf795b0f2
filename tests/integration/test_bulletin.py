"""The weekly bulletin on a real bus and store: the projection from published events, a bulletin with known
figures, one `bulletin.v1.published` with two notify instances, and the `xiuhua bulletin` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import cases as c
from contracts.envelope import Event
from contracts.values import Place, ReportSource, UnitRef, UnitRole
from services.notify.app import of
from services.notify.bulletin import service as bulletin
from services.notify.bulletin.builder import build_bulletin, build_steps
from services.notify.bulletin.projection import WEEKS
from services.notify.bulletin.weeks import week_of
from tests.helpers import BusRecorder, eventually, publish
from tests.helpers.bulletin import BULLETIN_ONLY
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.service import Runtime, running
from xiuhua.settings import Settings

W46 = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)  # Tuesday 10:00 city time, week 2026-W46
W47 = datetime(2026, 11, 17, 2, 0, tzinfo=UTC)  # Tuesday 10:00 city time, week 2026-W47
PUBLISH_TIME = datetime(2026, 11, 23, 7, 0, 5, tzinfo=UTC)  # Monday 23 November 15:00:05 in Shanghai

SAN = UnitRef(unit_id="CD-SAN", name="城东环卫所", role=UnitRole.sanitation)
ENF = UnitRef(unit_id="CD-ENF", name="城东综合执法中队", role=UnitRole.enforcement)
COMMUNITIES = {"CD01": "东园社区", "CD02": "西园社区"}
CATEGORIES = {"0201": "垃圾箱满溢", "0101": "占道经营"}


def opened(case_id: str, at: datetime, source: str, category: str, grid: str) -> c.CaseOpened:
    community = grid[:4]
    place = Place(
        street_code="CD",
        street_name="城东街道",
        community_code=community,
        community_name=COMMUNITIES[community],
        grid_code=grid,
    )
    return c.CaseOpened(
        case_id=case_id,
        street_code="CD",
        source=ReportSource(source),
        source_ref=case_id,
        category_code=category,
        category_name=CATEGORIES[category],
        description="…",
        place=place,
        reported_at=at,
        occurred_at=at,
        correlation_id=case_id,
    )


def dispatched(case_id: str, at: datetime, unit: UnitRef, category: str) -> c.CaseDispatched:
    return c.CaseDispatched(
        case_id=case_id,
        street_code="CD",
        category_code=category,
        lead_unit=unit,
        rule_id="r",
        due_at=at + timedelta(hours=4),
        time_limit="4h",
        occurred_at=at,
    )


def by(unit: UnitRef, case_id: str, at: datetime) -> dict[str, Any]:
    return {"case_id": case_id, "street_code": "CD", "unit_id": unit.unit_id, "occurred_at": at}


def history() -> list[Event]:
    """Two weeks with figures worked out by hand (see test_bulletin_for_a_week_with_known_figures)."""
    h = timedelta(hours=1)
    evs: list[Event] = [
        opened("P-1", W46, "grid", "0201", "CD01-03"),
        dispatched("P-1", W46, SAN, "0201"),
        opened("P-2", W46, "grid", "0201", "CD01-03"),
        dispatched("P-2", W46, SAN, "0201"),
        c.CaseResolved(**by(SAN, "P-1", W46 + h), on_time=True),
        c.CaseResolved(**by(SAN, "P-2", W46 + h), on_time=True),
    ]
    plan = [
        ("C-1", "hotline", "0201", "CD01-03", SAN),
        ("C-2", "hotline", "0201", "CD01-03", SAN),
        ("C-3", "grid", "0201", "CD01-03", SAN),
        ("C-4", "hotline", "0101", "CD02-01", ENF),
        ("C-5", "grid", "0101", "CD02-01", ENF),
    ]
    for case_id, source, category, grid, unit in plan:
        evs += [opened(case_id, W47, source, category, grid), dispatched(case_id, W47, unit, category)]
    for case_id, on_time in (("C-1", True), ("C-2", True), ("C-3", True), ("C-4", False)):
        unit = ENF if case_id == "C-4" else SAN
        evs.append(c.CaseResolved(**by(unit, case_id, W47 + 2 * h), on_time=on_time))
    evs += [
        c.CaseVerified(**by(SAN, "C-1", W47 + 3 * h), passed=True),
        c.CaseVerified(**by(SAN, "C-2", W47 + 3 * h), passed=True),
        c.CaseVerified(**by(SAN, "C-3", W47 + 3 * h), passed=True),
        c.CaseVerified(**by(ENF, "C-4", W47 + 3 * h), passed=False, rework_count=1),
        c.CaseClosed(**by(SAN, "C-1", W47 + 4 * h), on_time=True, closed_by="verification"),
        c.CaseClosed(**by(SAN, "C-2", W47 + 4 * h), on_time=True, closed_by="verification"),
        c.CaseClosed(**by(SAN, "C-3", W47 + 4 * h), on_time=True, closed_by="verification"),
        c.CaseCancelled(**by(ENF, "C-5", W47 + 4 * h), reason="虚假举报"),
        c.CaseOverdue(**by(ENF, "C-4", W47 + 5 * h), due_at=W47 + 4 * h),
        c.CaseEscalated(**by(ENF, "C-4", W47 + 6 * h), level=1, due_at=W47 + 4 * h),
        c.CaseRated(**by(SAN, "C-1", W47 + 7 * h), satisfaction="satisfied"),
        c.CaseRated(**by(SAN, "C-2", W47 + 7 * h), satisfaction="satisfied"),
        c.CaseRated(**by(SAN, "C-3", W47 + 7 * h), satisfaction="basic"),
        c.CaseRated(**by(ENF, "C-4", W47 + 7 * h), satisfaction="unsatisfied"),
    ]
    return evs


def score_events() -> list[tuple[str, dict[str, Any]]]:
    """Scoring's unit ranking of the week and a merchant grade change, as scoring publishes them."""
    env = {"schema_version": 1, "correlation_id": "score", "occurred_at": (W47 + timedelta(days=5)).isoformat()}
    ranking = {
        **env,
        "event_id": "01935d1e-7a4b-7c3d-8e9f-00000000aa01",
        "kind": "unit",
        "period": "2026-W47",
        "period_kind": "week",
        "tables": {
            "sanitation": [
                {
                    "rank": 1,
                    "id": "CD-SAN",
                    "name": "城东环卫所",
                    "score": 97.5,
                    "board": "red",
                    "bottom": False,
                    "figures": {"on_time_rate": 1.0},
                },
                {
                    "rank": 2,
                    "id": "JQ-SAN",
                    "name": "金桥环卫所",
                    "score": 61.25,
                    "board": "black",
                    "bottom": True,
                    "figures": {"on_time_rate": 0.5},
                },
            ]
        },
    }
    merchant = {
        **env,
        "event_id": "01935d1e-7a4b-7c3d-8e9f-00000000aa02",
        "merchant_id": "M-CD-0007",
        "merchant_name": "东园小吃店",
        "street_code": "CD",
        "period": "2026-11",
        "previous": "A",
        "grade": "B",
        "points": 82.0,
    }
    return [("score.v1.ranking_published", ranking), ("score.v1.merchant_grade_changed", merchant)]


def exists(path: str) -> bool:
    return Path(path).is_file() and Path(path).stat().st_size > 0


async def feed(settings: Settings) -> list[Event]:
    """Publish the history (cases in order on one stream) and the scoring events; returns the case events."""
    events = history()
    for ev in events:
        await publish(settings.nats_url, ev.subject_for(), json.loads(ev.to_json()), msg_id=ev.event_id)
    for subject, body in score_events():
        await publish(settings.nats_url, subject, body, msg_id=body["event_id"])
    return events


async def projected(rt: Runtime) -> None:
    """Until the projection has folded everything `feed` published."""

    async def check() -> bool:
        doc = await rt.store[WEEKS].find_one({"_id": "2026-W47"}) or {}
        merchants = await rt.store["bulletin_merchants"].find_one({"_id": "2026-W47:M-CD-0007"})
        ranking = await rt.store["bulletin_rankings"].find_one({"_id": "2026-W47"})
        return doc.get("rated") == 4 and merchants is not None and ranking is not None

    await eventually(check, timeout=30)


@contextlib.asynccontextmanager
async def bulletin_service(settings: Settings, *, alone: bool = True) -> AsyncIterator[Runtime]:
    """The bulletin alone, folding case events with a consumer of its own; or within notify, whose case consumer
    folds them as it plans alerts (the same durable consumer, the same figures)."""
    async with running(BULLETIN_ONLY if alone else spec("notify"), settings, clock=FrozenClock(PUBLISH_TIME)) as rt:
        yield rt


@pytest.mark.parametrize("alone", [True, False], ids=["bulletin-alone", "within-notify"])
async def test_projection_folds_published_events_into_week_documents(settings: Settings, alone: bool) -> None:
    async with bulletin_service(settings, alone=alone) as rt:
        events = await feed(settings)
        await projected(rt)
        w47 = await rt.store[WEEKS].find_one({"_id": "2026-W47"})
        assert {
            k: w47.get(k)
            for k in (
                "opened",
                "dispatched",
                "resolved",
                "resolved_on_time",
                "verified",
                "verify_failed",
                "closed",
                "cancelled",
                "cohort_closed",
                "cohort_cancelled",
                "overdue",
                "escalated",
                "rated",
                "satisfied",
                "basic",
                "unsatisfied",
            )
        } == {
            "opened": 5,
            "dispatched": 5,
            "resolved": 4,
            "resolved_on_time": 3,
            "verified": 4,
            "verify_failed": 1,
            "closed": 3,
            "cancelled": 1,
            "cohort_closed": 3,
            "cohort_cancelled": 1,
            "overdue": 1,
            "escalated": 1,
            "rated": 4,
            "satisfied": 2,
            "basic": 1,
            "unsatisfied": 1,
        }
        facets = {d["_id"]: d async for d in rt.store["bulletin_facets"].find({"week": "2026-W47"})}
        assert facets["2026-W47:source:hotline"]["count"] == 3 and facets["2026-W47:source:grid"]["count"] == 2
        assert facets["2026-W47:category:0201"]["count"] == 3 and facets["2026-W47:grid:CD02-01"]["count"] == 2
        assert facets["2026-W47:community:CD01"]["label"] == "东园社区"
        assert facets["2026-W47:unit:CD-ENF"]["overdue"] == 1 and facets["2026-W47:unit:CD-SAN"]["resolved"] == 3
        listed = await rt.store["bulletin_listed"].find_one({"_id": "2026-W47:C-4"})
        assert listed["overdue"] is True and listed["level"] == 1 and listed["category_name"] == "占道经营"

        # An event that changes the case's record (an opening, a dispatch, ...) is named in it, in the same
        # transaction: it leaves no ledger entry (`Batch.guarded`); one that moves only counters keeps its entry.
        keys = {d["_id"] async for d in rt.store["ledger"].find({}, {"_id": 1})}
        guarded = [e for e in events if isinstance(e, c.CaseOpened | c.CaseDispatched)]
        recorded = [e for e in events if isinstance(e, c.CaseResolved | c.CaseVerified | c.CaseRated)]
        assert guarded and not {f"notify-bulletin-cases:{e.event_id}" for e in guarded} & keys
        assert recorded and {f"notify-bulletin-cases:{e.event_id}" for e in recorded} <= keys
        record = await rt.store["bulletin_cases"].find_one({"_id": guarded[0].case_id})
        assert guarded[0].event_id in record["applied"]
        # A case opening published again under another message id is known by its case record: no change; nor
        # a dispatch published again (its id is in the record).
        first = history()[10]
        await publish(settings.nats_url, first.subject_for(), json.loads(first.to_json()), msg_id="resend-1")
        again = next(e for e in events if isinstance(e, c.CaseDispatched))
        week = week_of(again.occurred_at)
        before = await rt.store[WEEKS].find_one({"_id": week})
        await publish(settings.nats_url, again.subject_for(), json.loads(again.to_json()), msg_id="resend-2")
        # A later event on the same stream: once it is folded, the resend before it has been too.
        await publish(settings.nats_url, *rated_later(again.case_id, again.occurred_at))
        await eventually(lambda: _rated(rt, week, before.get("rated", 0) + 1))
        w47 = await rt.store[WEEKS].find_one({"_id": "2026-W47"})
        assert (
            w47["opened"] == 5 and (await rt.store[WEEKS].find_one({"_id": week}))["dispatched"] == before["dispatched"]
        )

        # A second grade change the same week, in a later batch: the week shows A → C.
        _, change = score_events()[1]
        later = {
            **change,
            "event_id": "01935d1e-7a4b-7c3d-8e9f-00000000aa03",
            "previous": "B",
            "grade": "C",
            "points": 70.0,
        }
        await publish(settings.nats_url, "score.v1.merchant_grade_changed", later, msg_id=later["event_id"])

        async def merchant() -> dict | None:
            doc = await rt.store["bulletin_merchants"].find_one({"_id": "2026-W47:M-CD-0007"})
            return doc if doc and doc["grade"] == "C" else None

        doc = await eventually(merchant)
        assert doc["previous_grade"] == "A" and doc["points"] == 70.0


async def test_score_events_the_bulletin_does_not_show_leave_no_ledger_entry(settings: Settings) -> None:
    """A unit's figures (published on every case event scoring counts), a merchant's grade that did not change and
    a scoring event this build has no contract for change nothing in the bulletin: no entry is kept for them. A
    ranking and a grade change are folded and keep theirs (their effects are not guarded)."""
    env = {"schema_version": 1, "correlation_id": "score", "occurred_at": (W47 + timedelta(days=1)).isoformat()}
    unit = {
        **env,
        "event_id": "01935d1e-7a4b-7c3d-8e9f-00000000ab01",
        "unit_id": "CD-SAN",
        "period": "2026-W47",
        "counters": {"dispatched": 1},
        "role": "sanitation",
    }
    graded = {
        **env,
        "event_id": "01935d1e-7a4b-7c3d-8e9f-00000000ab02",
        "merchant_id": "M-CD-0007",
        "street_code": "CD",
        "period": "2026-11",
        "grade": "A",
        "points": 95.0,
        "checks": 1,
        "failures": 0,
    }
    newer = {**env, "event_id": "01935d1e-7a4b-7c3d-8e9f-00000000ab03", "what": "a later build's figure"}
    async with bulletin_service(settings) as rt:
        await publish(settings.nats_url, "score.v1.unit_updated", unit, msg_id=unit["event_id"])
        await publish(settings.nats_url, "score.v1.merchant_graded", graded, msg_id=graded["event_id"])
        await publish(settings.nats_url, "score.v1.street_figures", newer, msg_id=newer["event_id"])
        for subject, body in score_events():  # after them on the stream: once these are folded, they were passed
            await publish(settings.nats_url, subject, body, msg_id=body["event_id"])

        async def folded() -> bool:
            return await rt.store["bulletin_merchants"].find_one({"_id": "2026-W47:M-CD-0007"}) is not None and (
                await rt.store["bulletin_rankings"].find_one({"_id": "2026-W47"}) is not None
            )

        await eventually(folded, timeout=30)
        keys = {d["_id"] async for d in rt.store["ledger"].find({}, {"_id": 1})}
        assert {f"notify-bulletin-scores:{b['event_id']}" for _, b in score_events()} <= keys
        assert not {f"notify-bulletin-scores:{b['event_id']}" for b in (unit, graded, newer)} & keys


def rated_later(case_id: str, at: datetime) -> tuple[str, dict, str]:
    """(subject, body, message id) of a rating of the case a minute after `at`, in that week."""
    ev = c.CaseRated(
        case_id=case_id,
        street_code="CD",
        unit_id="CD-SAN",
        satisfaction="satisfied",
        occurred_at=at + timedelta(minutes=1),
    )
    return ev.subject_for(), json.loads(ev.to_json()), ev.event_id


async def _rated(rt: Runtime, week: str, n: int) -> bool:
    return ((await rt.store[WEEKS].find_one({"_id": week})) or {}).get("rated", 0) >= n


@pytest.mark.parametrize("alone", [True, False], ids=["bulletin-alone", "within-notify"])
async def test_bulletin_for_a_week_with_known_figures(settings: Settings, tmp_path: Path, alone: bool) -> None:
    async with bulletin_service(settings, alone=alone) as rt:
        await feed(settings)
        await projected(rt)
        heard: list[str] = []
        built = await build_bulletin(
            rt.store, rt.city, "2026-W47", tmp_path / "bulletins", PUBLISH_TIME, pdf=False, progress=heard.append
        )
    ev = built.event
    assert len(heard) == build_steps(pdf=False) == 3 and heard[0] == "reading 2026-W47 and the week before"
    assert build_steps(pdf=True) == 3 + len(ev.languages)  # one more step per PDF edition
    assert ev.headline == {
        "opened": 5,
        "closed": 3,
        "overdue": 1,
        "escalated": 1,
        "on_time_rate": 0.75,
        "closure_rate": 0.75,
        "rework_rate": 0.25,
        "satisfaction_rate": 0.75,
    }
    assert not ev.pdf and ev.pdf_skipped_reason == "PDF not requested"
    week_dir = tmp_path / "bulletins" / "2026-W47"
    zh = (week_dir / "bulletin.zh.md").read_text(encoding="utf-8")
    for line in [
        "| 立案数 | 5 | 2 | +3 |",
        "| 结案数 | 3 | 0 | +3 |",
        "| 超期案件 | 1 | 0 | +1 |",
        "| 限时整改率 | 75.0% | 100.0% | ≥ 95.0% | 未达标 |",  # 3 of 4 resolved on time; last week 2 of 2
        "| 结案率 | 75.0% | 0.0% | — |  |",  # 3 closed of 5 opened − 1 cancelled
        "| 返工率 | 25.0% | — | — |  |",  # 1 failed verification of 4
        "| 群众满意率 | 75.0% | — | ≥ 85.0% | 未达标 |",  # (2 satisfied + 1 basic) / 4 call-backs
        "| 12345 热线 | 3 | 0 | +3 |",
        "| 网格巡查 | 2 | 2 | ±0 |",
        "| 1 | 垃圾箱满溢 (0201) | 3 | 2 | +1 |",
        "| 2 | 占道经营 (0101) | 2 | 0 | +2 |",
        "| 东园社区第3网格（CD01-03） | 3 | 2 |",  # grid cells by name, with the code inspectors use
        "| 西园社区 | 2 | 0 |",
        "| 1 | 城东环卫所 | 97.5 | 100.0% | 红榜 |",
        "| 2 | 金桥环卫所 | 61.2 | 50.0% | 黑榜 末位 |",
        "**红榜**: 城东环卫所 (97.5)",
        "**黑榜**: 金桥环卫所 (61.2)",
        "| C-4 | 占道经营 | 城东街道 / 西园社区 / CD02-01 | 城东综合执法中队 | 2026-11-17 14:00 |",
        "| C-4 | 占道经营 | 城东街道 / 西园社区 / CD02-01 | 城东综合执法中队 | 1 |",
        "| 东园小吃店 | A | B |  |  |",
    ]:
        assert line in zh, f"missing from the Markdown: {line}"
    en = (week_dir / "bulletin.en.md").read_text(encoding="utf-8")
    assert "| On-time rate | 75.0% | 100.0% | ≥ 95.0% | missed |" in en
    assert "| 1 | Overflowing bin (0201) | 3 | 2 | +1 |" in en and "| Grid patrol | 2 | 2 | ±0 |" in en
    html = (week_dir / "bulletin.zh.html").read_text(encoding="utf-8")
    assert (
        '<tr data-key="opened"><td>立案数</td><td class="num">5</td><td class="num">2</td><td class="num">+3</td></tr>'
    ) in html
    assert '<td class="num">75.0%</td>' in html and '<span class="missed">未达标</span>' in html
    assert html.count('src="data:image/png;base64,') == 4 and "charts/" not in html  # self-contained
    for name in ("zh-categories.png", "zh-rates.png", "en-sources.png", "en-grids.png"):
        assert (week_dir / "charts" / name).read_bytes().startswith(b"\x89PNG")
    assert "(charts/zh-rates.png)" in zh
    index = (tmp_path / "bulletins" / "index.md").read_text(encoding="utf-8")
    assert "| 2026-W47 | 2026-11-16 – 2026-11-22 | 5 | 3 | 1 |" in index
    assert json.loads((tmp_path / "bulletins" / "index.json").read_text())[0]["week"] == "2026-W47"


async def test_two_instances_publish_the_bulletin_once(settings: Settings) -> None:
    clock = FrozenClock(PUBLISH_TIME)
    async with (
        BusRecorder(settings.nats_url) as bus,
        running(spec("notify"), settings, clock=clock) as a,
        running(spec("notify"), settings, clock=clock) as b,
    ):
        results = await asyncio.gather(of(a).bulletin.tick(pdf=False), of(b).bulletin.tick(pdf=False))
        assert sorted(len(r) for r in results) == [0, 1]
        await eventually(lambda: len(bus.on("bulletin.v1.published")) >= 1)
        again = await asyncio.gather(of(a).bulletin.tick(pdf=False), of(b).bulletin.tick(pdf=False))
        assert again == [[], []]
        await asyncio.sleep(1.0)
        published = bus.on("bulletin.v1.published")
        assert len(published) == 1
        assert published[0]["week"] == "2026-W47" and published[0]["directory"].endswith("bulletins/2026-W47")
        assert {(f["language"], f["format"]) for f in published[0]["files"]} == {
            ("zh", "html"),
            ("zh", "md"),
            ("en", "html"),
            ("en", "md"),
        }
        assert exists(published[0]["files"][0]["path"])
        # Before 15:00 on the next Monday nothing more is due.
        clock.set(datetime(2026, 11, 30, 6, 59, tzinfo=UTC))
        assert await of(a).bulletin.tick(pdf=False) == []


async def test_notify_serves_the_archive_at_the_url_the_event_names(settings: Settings) -> None:
    """On the embedded default (a fixed HTTP port) every file in `bulletin.v1.published` has a URL that works."""
    import httpx
    import uvicorn

    from xiuhua.embedded import free_port
    from xiuhua.service import asgi_app, build_runtime

    served = settings.model_copy(update={"http_port": free_port()})
    rt = build_runtime(spec("notify"), served, clock=FrozenClock(PUBLISH_TIME))
    config = uvicorn.Config(
        asgi_app(spec("notify"), rt), host="127.0.0.1", port=served.http_port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        async with BusRecorder(settings.nats_url) as bus:
            (event,) = await of(rt).bulletin.tick(pdf=False)
            (published,) = await eventually(lambda: bus.on("bulletin.v1.published"))
        assert published["files"] == [f.model_dump(mode="json") for f in event.files]
        async with httpx.AsyncClient(timeout=10) as client:
            for f in published["files"]:
                assert f["url"] == f"http://127.0.0.1:{served.http_port}/bulletins/2026-W47/{Path(f['path']).name}"
                resp = await client.get(f["url"])
                assert resp.status_code == 200 and resp.content == await asyncio.to_thread(Path(f["path"]).read_bytes)
            html = next(f for f in published["files"] if f["format"] == "html" and f["language"] == "zh")
            assert (await client.get(html["url"])).headers["content-type"].startswith("text/html")
            index = await client.get(f"http://127.0.0.1:{served.http_port}/bulletins/index.json")
            assert index.json()[0]["week"] == "2026-W47"
            outside = await client.get(f"http://127.0.0.1:{served.http_port}/bulletins/..%2f..%2fpyproject.toml")
            assert outside.status_code == 404
    finally:
        server.should_exit = True
        await task


def test_a_public_base_url_names_the_files_where_the_city_serves_them(settings: Settings, tmp_path: Path) -> None:
    from services.notify.bulletin.builder import file_url

    public = settings.model_copy(update={"bulletin_base_url": "https://cg.example.gov.cn/周报/", "http_port": 8080})
    assert bulletin.base_url(public) == "https://cg.example.gov.cn/周报"
    assert bulletin.base_url(settings) is None  # in-process: no HTTP address to name
    assert bulletin.base_url(settings.model_copy(update={"http_port": 8080, "http_host": "0.0.0.0"})) is None
    root = tmp_path / "bulletins"
    assert file_url("https://x.example/b", root, root / "2026-W47" / "bulletin.zh.html") == (
        "https://x.example/b/2026-W47/bulletin.zh.html"
    )


async def test_the_bulletin_command_builds_a_week_from_the_store(settings: Settings, tmp_path: Path) -> None:
    async with bulletin_service(settings) as rt:
        await feed(settings)
        await projected(rt)
    env = {
        **os.environ,
        "XIUHUA_MONGO_URL": settings.mongo_url,
        "XIUHUA_DB_PREFIX": settings.db_prefix,
        "XIUHUA_CITY_DIR": str(settings.city_dir),
        "XIUHUA_VAR_DIR": str(settings.var_dir),
    }
    out = tmp_path / "out"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xiuhua",
        "bulletin",
        "--week",
        "2026-W47",
        "--out",
        str(out),
        "--no-pdf",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["week"] == "2026-W47" and result["headline"]["opened"] == 5
    assert result["directory"] == str(out / "2026-W47")
    assert all(exists(f["path"]) for f in result["files"]) and len(result["files"]) == 4
    assert "| 立案数 | 5 | 2 | +3 |" in (out / "2026-W47" / "bulletin.zh.md").read_text(encoding="utf-8")
    assert all(f["url"] is None for f in result["files"])  # --out: a folder nothing serves

    # Into the archive of a running `xiuhua up`: the files are named where its notify service serves them.
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    (settings.var_dir / "endpoints.json").write_text(
        json.dumps({"services": {"notify": {"http": "http://127.0.0.1:8099"}}})
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xiuhua",
        "bulletin",
        "--week",
        "2026-W47",
        "--no-pdf",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    urls = {f["url"] for f in json.loads(stdout)["files"]}
    assert "http://127.0.0.1:8099/bulletins/2026-W47/bulletin.zh.html" in urls and len(urls) == 4

    bad = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xiuhua",
        "bulletin",
        "--week",
        "2026-47",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode != 0 and b"not like 2026-W47" in err


async def test_the_schedule_can_be_left_to_the_command(settings: Settings) -> None:
    # XIUHUA_BULLETIN_SCHEDULE=false: notify keeps its projection but publishes nothing by itself (a city running
    # `xiuhua bulletin` from cron, or the benchmark, which times the bulletin as a job of its own).
    def scheduled(rt: Runtime) -> bool:
        return any(t.get_name().endswith(":weekly-bulletin") for t in rt.tasks)

    async with running(spec("notify"), settings) as rt:
        assert scheduled(rt)
    async with running(spec("notify"), settings.model_copy(update={"bulletin_schedule": False})) as rt:
        assert not scheduled(rt) and rt.settings.bulletin_schedule is False
