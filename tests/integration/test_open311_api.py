"""The Open311 GeoReport v2 API driven by an HTTP client against intake (and dispatch) on a real bus and store."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from contracts.cases import CaseCancelled, CaseDispatched, CaseOpened
from contracts.values import Place, ReportSource, UnitRef, UnitRole
from services.intake.open311.routes import Open311Api, Open311Settings
from tests.helpers import BusRecorder, eventually, publish, publish_event, system
from tests.helpers.open311 import BASE, KEY
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.service import asgi_app

PII = ("13812345678", "5678", "张三", "Zhang", "alice@example.cn", "dev-9f8e7d", "acct-42")


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


def bin_form(**extra: str) -> dict[str, object]:
    form: dict[str, object] = {
        "api_key": KEY,
        "service_code": "0201",
        "lat": "30.255",
        "long": "120.16",
        "attribute[BIN_TYPE]": "kitchen",
        "attribute[SIGNS][]": ["smell", "leak"],
        "description": "解放路口垃圾桶满了\r\n垃圾散落一地",
        "email": "alice@example.cn",
        "phone": "138-1234-5678",
        "first_name": "三",
        "last_name": "张",
        "device_id": "dev-9f8e7d",
        "account_id": "acct-42",
        "media_url": "https://img.example/bin.jpg",
    }
    form.update(extra)
    return form


async def test_service_list_and_definitions_in_json_and_xml(settings):
    async with system(settings, only=("intake",)) as rts, client(asgi_app(spec("intake"), rts["intake"])) as http:
        r = await http.get("/services.json")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.headers["access-control-allow-origin"] == "*"
        services = {s["service_code"]: s for s in r.json()}
        catalogue = [i for i in rts["intake"].city.catalogue.items() if i.service_code]
        assert set(services) == {i.service_code for i in catalogue}
        bin_ = services["0201"]
        assert bin_["metadata"] is True and bin_["type"] == "realtime" and "垃圾箱满溢" in bin_["service_name"]
        assert "满溢" in bin_["keywords"] and bin_["group"].startswith("环境卫生")
        assert services["0101"]["metadata"] is False

        x = await http.get("/services.xml")
        root = ET.fromstring(x.content)
        assert root.tag == "services" and len(root.findall("service")) == len(services)
        first = root.find("service")
        assert [c.tag for c in first] == [
            "service_code",
            "service_name",
            "description",
            "metadata",
            "type",
            "keywords",
            "group",
        ]

        d = (await http.get("/services/0201.json")).json()
        assert d["service_code"] == "0201"
        bin_type, signs, count = d["attributes"]
        assert (bin_type["code"], bin_type["datatype"], bin_type["required"], bin_type["order"]) == (
            "BIN_TYPE",
            "singlevaluelist",
            True,
            1,
        )
        assert {"key": "kitchen", "name": "厨余垃圾 kitchen waste"} in bin_type["values"]
        assert signs["datatype"] == "multivaluelist" and count["datatype"] == "number"
        datatypes = set()
        for code in ("0201", "0301", "0302"):
            doc = ET.fromstring((await http.get(f"/services/{code}.xml")).content)
            assert doc.tag == "service_definition" and doc.findtext("service_code") == code
            for a in doc.iter("attribute"):
                datatypes.add(a.findtext("datatype"))
                assert a.findtext("variable") in ("true", "false") and a.findtext("order").isdigit()
        assert datatypes == {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}
        xml_def = ET.fromstring((await http.get("/services/0201.xml")).content)
        assert [v.findtext("key") for v in xml_def.find("attributes").find("attribute").iter("value")] == [
            "residual",
            "recyclable",
            "kitchen",
            "hazardous",
        ]


async def test_post_opens_a_case_whose_status_follows_dispatch_and_no_pii_travels(settings):
    async with (
        BusRecorder(settings.nats_url) as bus,
        system(settings, only=("intake", "dispatch")) as rts,
        client(asgi_app(spec("intake"), rts["intake"])) as http,
    ):
        r = await http.post("/requests.json", data=bin_form())
        assert r.status_code in (201, 202), r.text
        row = r.json()[0]
        case_id = row.get("service_request_id")
        if case_id is None:  # the case took longer than the wait: the token resolves to it
            token = row["token"]
            case_id = await eventually(lambda: _token(http, token))
        assert row["account_id"] == "acct-42"

        async def dispatched():
            got = (await http.get(f"/requests/{case_id}.json")).json()[0]
            return got if got["agency_responsible"] else None

        got = await eventually(dispatched)
        assert got["status"] == "open" and got["service_code"] == "0201"
        assert got["agency_responsible"] == "城东环卫所"
        assert got["expected_datetime"] and got["expected_datetime"].endswith("+08:00")
        assert got["description"] == "解放路口垃圾桶满了\n垃圾散落一地"
        assert (got["lat"], got["long"]) == (30.255, 120.16) and got["media_url"] == "https://img.example/bin.jpg"
        opened = datetime.fromisoformat(got["requested_datetime"])
        assert abs(opened - datetime.now(UTC)) < timedelta(minutes=1)

        x = ET.fromstring((await http.get(f"/requests/{case_id}.xml")).content)
        assert x.tag == "service_requests" and x.find("request").findtext("service_request_id") == case_id
        assert x.find("request").findtext("agency_responsible") == "城东环卫所"

        # The case carries the inbound message's masked reporter; the bus never sees the contact details.
        opened_ev = bus.on("case.v1.opened.")[0]
        assert opened_ev["source"] == "open311" and opened_ev["reporter"]["kind"] == "citizen"
        assert opened_ev["reporter"]["display"] == "张* 138****5678"
        inbound = bus.on("report.v1.in.open311")[0]
        assert inbound["attributes"] == {"BIN_TYPE": "kitchen", "SIGNS": ["smell", "leak"]}
        everything = json.dumps(
            [b if isinstance(b, dict) else b.decode("latin-1") for _, b in bus.messages], ensure_ascii=False
        )
        for secret in PII:
            assert secret not in everything.replace("138****5678", ""), secret
        kept = await rts["intake"].store["open311_submissions"].find_one({})
        assert kept["contact"]["phone"] == "138-1234-5678" and kept["contact"]["email"] == "alice@example.cn"
        token = await rts["intake"].store["open311_tokens"].find_one({"_id": kept["_id"]})
        # What the purge of raw reports ranges over (retention.yaml), the moment beside each date (which the store
        # keeps to the millisecond).
        assert all(abs(d["at_s"] - d["at"].timestamp()) < 0.001 for d in (kept, token))

        # Cancelled by the command centre: the request is closed with the reason as status_notes.
        from tests.helpers import publish

        await publish(
            settings.nats_url,
            "cmd.v1.case.cancel",
            {
                "command_id": "cmd-c1",
                "case_id": case_id,
                "at": datetime.now(UTC).isoformat(),
                "reason": "重复上报",
                "actor": {"unit_id": "CC", "role": "command_centre", "name": "值班长"},
            },
            msg_id="cmd-c1",
        )

        async def closed():
            got = (await http.get(f"/requests/{case_id}.json")).json()[0]
            return got if got["status"] == "closed" else None

        got = await eventually(closed)
        assert "重复上报" in got["status_notes"]


async def _token(http: httpx.AsyncClient, token: str) -> str | None:
    r = await http.get(f"/tokens/{token}.json")
    assert r.status_code == 200
    return r.json()[0]["service_request_id"]


async def test_token_when_the_case_is_not_open_yet(settings):
    async with system(settings, only=("intake",)) as rts:
        api = Open311Api(rts["intake"], Open311Settings(wait_s=0))
        async with client(Starlette(routes=api.routes())) as http:
            r = await http.post("/requests.xml", data=bin_form())
            assert r.status_code == 202
            req = ET.fromstring(r.content).find("request")
            token = req.findtext("token")
            assert token and req.findtext("service_request_id") is None
            # The app timed out and sends the same request again: the same token, one submission, one case.
            again = await http.post("/requests.json", data=bin_form())
            assert again.json()[0]["token"] == token
            assert await rts["intake"].store.count("open311_submissions", {}) == 1
            case_id = await eventually(lambda: _token(http, token))
            assert case_id.startswith("C-")
            x = ET.fromstring((await http.get(f"/tokens/{token}.xml")).content)
            assert x.find("request").findtext("service_request_id") == case_id
            assert (await http.get("/tokens/T-nope.json")).status_code == 404
            other = await http.post("/requests.json", data=bin_form(description="另一个桶也满了"))
            assert other.json()[0]["token"] != token


async def test_a_repeat_after_the_retry_window_is_a_request_of_its_own(settings):
    # Within RETRY_WINDOW (10 min) the same form is the app's retry and gets the first token; after it, the same
    # words are a new request (the bin is full again).
    clock = FrozenClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    async with system(settings, clock=clock, only=("intake",)) as rts:
        api = Open311Api(rts["intake"], Open311Settings(wait_s=0))
        async with client(Starlette(routes=api.routes())) as http:
            first = (await http.post("/requests.json", data=bin_form())).json()[0]["token"]
            clock.advance(timedelta(minutes=9))
            assert (await http.post("/requests.json", data=bin_form())).json()[0]["token"] == first
            clock.advance(timedelta(minutes=2))
            later = (await http.post("/requests.json", data=bin_form())).json()[0]["token"]
            assert later != first
            clock.advance(timedelta(minutes=5))  # a retry of the later one: its token, not the first's
            assert (await http.post("/requests.json", data=bin_form())).json()[0]["token"] == later
            assert await rts["intake"].store.count("open311_submissions", {}) == 2


def _case(case_id: str, source: ReportSource, code: str, at: datetime, text: str = "现场情况") -> CaseOpened:
    return CaseOpened(
        correlation_id=f"{source}:{case_id}",
        case_id=case_id,
        street_code="CD",
        source=source,
        source_ref=case_id,
        category_code=code,
        category_name="",
        description=text,
        reported_at=at,
        place=Place(lng=120.16, lat=30.255, street_code="CD", address="解放路 18 号"),
    )


async def test_requests_an_older_build_kept_are_listed(settings):
    # An older build kept the view without `requested_s`, the number `GET requests` selects and sorts on: intake
    # gives it to them when it starts, so the listing still shows them, in order.
    now = datetime.now(UTC)
    async with system(settings, only=("intake",)) as rts:
        await rts["intake"].publisher.publish(_case("C-new", ReportSource.grid, "0201", now - timedelta(days=1)))
        await eventually(lambda: _status_doc(rts["intake"], "C-new"))
        await (
            rts["intake"]
            .store["open311_requests"]
            .insert_one(
                {
                    "_id": "C-older",
                    "source": "grid",
                    "status": "open",
                    "service_code": "0201",
                    "service_name": "",
                    "requested_datetime": now - timedelta(days=2),
                    "updated_datetime": now - timedelta(days=2),
                    "version": 1,
                }
            )
        )
    async with system(settings, only=("intake",)) as rts, client(asgi_app(spec("intake"), rts["intake"])) as http:
        r = await http.get("/requests.json")
        assert [x["service_request_id"] for x in r.json()] == ["C-new", "C-older"]
        doc = await rts["intake"].store["open311_requests"].find_one({"_id": "C-older"})
        assert doc["requested_s"] == doc["requested_datetime"].timestamp()  # the stored date, to the millisecond


async def test_the_view_folds_a_case_event_once_without_a_ledger_entry(settings):
    # The request keeps the ids of the events folded into it, so the view's consumer needs no ledger entry: a case
    # event published again under another message id (a resend after the bus's duplicate window) changes nothing.
    now = datetime.now(UTC)
    opened = _case("C-once", ReportSource.grid, "0201", now - timedelta(hours=1))
    unit = UnitRef(unit_id="CD-SAN", name="城东环卫所", role=UnitRole.sanitation)
    dispatched = CaseDispatched(
        case_id="C-once",
        street_code="CD",
        category_code="0201",
        lead_unit=unit,
        rule_id="r",
        due_at=now + timedelta(hours=4),
        time_limit="4h",
    )
    async with system(settings, only=("intake",)) as rts:
        rt = rts["intake"]
        for e in (opened, dispatched):
            await publish_event(settings.nats_url, e)

        async def folded() -> dict | None:
            doc = await _status_doc(rt, "C-once")
            return doc if doc and doc.get("agency_responsible") else None

        doc = await eventually(folded)
        assert doc["applied"] == [opened.event_id, dispatched.event_id]
        await publish(settings.nats_url, dispatched.subject_for(), json.loads(dispatched.to_json()), msg_id="again-1")
        await asyncio.sleep(1.0)
        assert await _status_doc(rt, "C-once") == doc
        keys = [d["_id"] async for d in rt.store["ledger"].find({}, {"_id": 1})]
        assert not [k for k in keys if k.startswith("intake-open311:")]


async def _status_doc(rt, case_id: str):
    return await rt.store["open311_requests"].find_one({"_id": case_id})


async def test_get_requests_filters(settings):
    now = datetime.now(UTC)
    async with system(settings, only=("intake",)) as rts, client(asgi_app(spec("intake"), rts["intake"])) as http:
        cases = [
            _case("C-a", ReportSource.grid, "0201", now - timedelta(days=1)),
            _case("C-b", ReportSource.grid, "0301", now - timedelta(days=10)),
            _case("C-c", ReportSource.hotline, "0201", now - timedelta(days=40), text="我叫李四，电话 13900001111"),
            _case("C-old", ReportSource.grid, "0201", now - timedelta(days=120)),
        ]
        for c in cases:
            await publish_event(settings.nats_url, c)
        cancelled = CaseCancelled(case_id="C-b", street_code="CD", unit_id="CC", reason="虚假举报")
        await publish_event(settings.nats_url, cancelled)

        async def ids(query: str) -> list[str]:
            r = await http.get(f"/requests.json{query}")
            assert r.status_code == 200, r.text
            return [x["service_request_id"] for x in r.json()]

        await eventually(lambda: _status(http, "C-b", "closed"))
        assert await ids("") == ["C-a", "C-b", "C-c"]  # the last 90 days, newest first
        assert await ids("?status=open") == ["C-a", "C-c"]
        assert await ids("?status=closed") == ["C-b"]
        assert await ids("?service_code=0201") == ["C-a", "C-c"]
        assert await ids("?service_code=0201,0301&status=open,closed") == ["C-a", "C-b", "C-c"]
        start = (now - timedelta(days=200)).astimezone().isoformat()
        assert await ids(f"?start_date={_q(start)}") == ["C-a", "C-b", "C-c", "C-old"]
        end = (now - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
        assert await ids(f"?start_date={_q(start)}&end_date={_q(end)}") == ["C-b", "C-c", "C-old"]
        assert await ids("?service_request_id=C-old,C-a,C-none&status=closed") == ["C-a", "C-old"]
        assert await ids("?limit=2") == ["C-a", "C-b"]
        hotline = (await http.get("/requests/C-c.json")).json()[0]
        assert hotline["description"] is None  # a caller's own words are not published
        root = ET.fromstring((await http.get("/requests.xml")).content)
        assert [r.findtext("service_request_id") for r in root.findall("request")] == ["C-a", "C-b", "C-c"]
        for query in (
            "?start_date=yesterday",
            "?status=pending",
            "?limit=0",
            "?limit=5000",
            f"?start_date={_q(end)}&end_date={_q(start)}",
        ):
            r = await http.get(f"/requests.json{query}")
            assert r.status_code == 400 and r.json()[0]["code"] == 400, query


def _q(value: str) -> str:
    return value.replace("+", "%2B")


async def _status(http: httpx.AsyncClient, case_id: str, status: str) -> bool:
    r = await http.get(f"/requests/{case_id}.json")
    return r.status_code == 200 and r.json()[0]["status"] == status


ERRORS = [
    ({"api_key": "wrong-key-0000000000"}, 403, "api_key"),
    ({"api_key": ""}, 403, "api_key"),
    ({"service_code": ""}, 400, "service_code"),
    ({"service_code": "9999"}, 404, "service_code"),
    ({"lat": "thirty"}, 400, "lat"),
    ({"lat": "91"}, 400, "lat"),
    ({"long": "NaN"}, 400, "long"),
    ({"long": ""}, 400, "long"),
    ({"lat": "10.0", "long": "10.0"}, 400, "outside the city"),
    ({"attribute[BIN_TYPE]": ""}, 400, "attribute[BIN_TYPE]"),
    ({"attribute[BIN_TYPE]": "gold"}, 400, "attribute[BIN_TYPE]"),
    ({"attribute[SIGNS][]": ["smell", "fire"]}, 400, "attribute[SIGNS]"),
    ({"attribute[BIN_COUNT]": "lots"}, 400, "attribute[BIN_COUNT]"),
    ({"description": "长" * 4001}, 400, "description"),
    ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
    ({"email": "not-an-address"}, 400, "email"),
    ({"jurisdiction_id": "somewhere-else"}, 404, "jurisdiction_id"),
]


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_every_error_is_in_the_spec_format_and_names_the_field(settings, fmt):
    async with (
        BusRecorder(settings.nats_url) as bus,
        system(settings, only=("intake",)) as rts,
        client(asgi_app(spec("intake"), rts["intake"])) as http,
    ):
        for change, status, field in ERRORS:
            r = await http.post(f"/requests.{fmt}", data=bin_form(**change))
            assert r.status_code == status, (change, r.text)
            assert _error(r, fmt) == (status, _error(r, fmt)[1]) and field in _error(r, fmt)[1], (change, r.text)
        big = {"api_key": KEY, "service_code": "0201", "description": "x" * (70 * 1024)}
        r = await http.post(f"/requests.{fmt}", data=big)
        assert r.status_code == 413 and _error(r, fmt)[0] == 413
        r = await http.post(
            f"/requests.{fmt}",
            content=b"api_key=" + KEY.encode() + b"&description=%FF%FE",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 400 and "UTF-8" in _error(r, fmt)[1]
        r = await http.post(f"/requests.{fmt}", json={"service_code": "0201"})
        assert r.status_code == 415
        for path, status in (
            (f"/services/9999.{fmt}", 404),
            (f"/requests/C-nope.{fmt}", 404),
            (f"/tokens/T-nope.{fmt}", 404),
            (f"/nothing.{fmt}", 404),
        ):
            r = await http.get(path)
            assert r.status_code == status and _error(r, fmt)[0] == status, path
        r = await http.delete(f"/services.{fmt}")
        assert r.status_code == 405 and _error(r, fmt)[0] == 405
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        r = await http.options(f"/requests.{fmt}", headers=preflight)
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
        assert "POST" in r.headers["access-control-allow-methods"]
        r = await http.get("/services.csv")
        assert r.status_code == 404 and r.json()[0]["code"] == 404
        assert not await rts["intake"].store["open311_submissions"].find_one({})

        # Refused requests with a valid api_key are kept raw and announced like every source's rejections
        # (403s, oversized bodies and bodies with no key are not: they would let anyone fill the store).
        kept = len([e for e in ERRORS if e[1] != 403]) + 1  # + the one that is not UTF-8
        rejected = await eventually(lambda: len(bus.on("report.v1.rejected")) >= kept and bus.on("report.v1.rejected"))
        assert len(rejected) == kept and all(r["source"] == "open311" for r in rejected)
        reasons = {(x["code"], x["field"]) for r in rejected for x in r["reasons"]}
        assert {
            ("unknown_service", "service_code"),
            ("out_of_range", "lat"),
            ("wrong_type", "lat"),
            ("missing_field", "attribute[BIN_TYPE]"),
            ("not_allowed", "attribute[SIGNS]"),
            ("too_long", "description"),
            ("out_of_city", "lat/long"),
            ("invalid_utf8", None),
        } <= reasons
        raws = [d async for d in rts["intake"].store["open311_refused"].find({})]
        assert len(raws) == kept and {r["_id"] for r in raws} == {r["raw_id"] for r in rejected}
        assert any(b"%FF%FE" in bytes(r["body"]) for r in raws)


def _error(r: httpx.Response, fmt: str) -> tuple[int, str]:
    assert "Traceback" not in r.text and "Error(" not in r.text
    if fmt == "xml":
        root = ET.fromstring(r.content)
        assert root.tag == "errors"
        err = root.find("error")
        return int(err.findtext("code")), err.findtext("description")
    body = r.json()
    assert isinstance(body, list) and set(body[0]) == {"code", "description"}
    return body[0]["code"], body[0]["description"]


async def test_real_client_payloads(settings):
    async with (
        BusRecorder(settings.nats_url) as bus,
        system(settings, only=("intake",)) as rts,
        client(asgi_app(spec("intake"), rts["intake"])) as http,
    ):
        tried = [
            # No coordinates at all ("null" and empty strings), an address in Chinese, CRLF in the text.
            {
                "api_key": KEY,
                "service_code": "0301",
                "lat": "null",
                "long": "",
                "address_string": "城东街道解放路 18 号",
                "attribute[COVER_STATE]": "missing",
                "attribute[SEEN_AT]": "2026-11-23T08:30:00+08:00",
                "description": "井盖不见了\r\n很危险",
                "email": "",
                "phone": "",
                "jurisdiction_id": "xiuhua-demo",
            },
            # `lng` instead of `long`, numbers as strings with spaces, an attribute the service does not define.
            {
                "api_key": KEY,
                "service_code": "0302",
                "lat": " 30.255 ",
                "lng": "120.16",
                "attribute[POLE_NO]": "CD-0042",
                "attribute[DETAILS]": "两盏灯\r\n不亮",
                "attribute[UNKNOWN]": "ignored",
                "first_name": "Wei",
            },
            # 0,0 from a phone without a fix, with an address: placed by the address.
            {
                "api_key": KEY,
                "service_code": "0201",
                "lat": "0",
                "long": "0",
                "address_id": "ADDR-7",
                "address_string": "金桥街道",
                "attribute[BIN_TYPE]": "residual",
            },
        ]
        for form in tried:
            r = await http.post("/requests.json", data=form)
            assert r.status_code in (201, 202), (form, r.text)
        # multipart/form-data, as browsers and many mobile SDKs send it
        body = (
            b'--xyz\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n'
            + KEY.encode()
            + b'\r\n--xyz\r\nContent-Disposition: form-data; name="service_code"\r\n\r\n0201'
            b'\r\n--xyz\r\nContent-Disposition: form-data; name="address_string"\r\n\r\n'
            + "城东街道".encode()
            + b'\r\n--xyz\r\nContent-Disposition: form-data; name="attribute[BIN_TYPE]"\r\n\r\nrecyclable'
            b"\r\n--xyz--\r\n"
        )
        r = await http.post(
            "/requests.json", content=body, headers={"content-type": "multipart/form-data; boundary=xyz"}
        )
        assert r.status_code in (201, 202), r.text

        inbound = await eventually(lambda: len(bus.on("report.v1.in.open311")) == 4 and bus.on("report.v1.in.open311"))
        first, second, third, fourth = inbound
        assert "location" not in first and first["address"] == "城东街道解放路 18 号"
        assert first["description"] == "井盖不见了\n很危险"
        assert first["attributes"] == {"COVER_STATE": "missing", "SEEN_AT": "2026-11-23T08:30:00+08:00"}
        assert "reporter" not in first
        assert second["location"] == {"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"}
        assert second["attributes"] == {"POLE_NO": "CD-0042", "DETAILS": "两盏灯\n不亮"}
        assert "location" not in third and third["address_id"] == "ADDR-7"
        assert fourth["attributes"] == {"BIN_TYPE": "recyclable"}
        opened = await eventually(lambda: len(bus.on("case.v1.opened.")) == 4 and bus.on("case.v1.opened."))
        streets = {o["source_ref"]: o["street_code"] for o in opened}
        assert streets[first["request_id"]] == "CD" and streets[third["request_id"]] == "JQ"


async def test_a_request_intake_refuses_answers_with_the_reason(settings):
    async with system(settings, only=("intake",)) as rts:
        # GCJ-02 coordinates are converted by intake, so only intake can tell this point is outside the city.
        beijing = bin_form(lat="39.9087", long="116.3975", coord_system="gcj02")
        async with client(asgi_app(spec("intake"), rts["intake"])) as http:
            r = await http.post("/requests.json", data=beijing)
            assert r.status_code == 400, r.text
            assert "refused" in r.json()[0]["description"] and "Traceback" not in r.text
        api = Open311Api(rts["intake"], Open311Settings(wait_s=0))
        async with client(Starlette(routes=api.routes())) as http:
            again = await http.post("/requests.json", data=beijing)  # a retry is answered with the same refusal
            assert again.status_code == 400 and "refused" in again.json()[0]["description"]
            r = await http.post("/requests.json", data={**beijing, "description": "天安门广场垃圾桶满了"})
            assert r.status_code == 202
            token = r.json()[0]["token"]

            async def refused():
                row = (await http.get(f"/tokens/{token}.json")).json()[0]
                return row if row.get("status") == "rejected" else None

            row = await eventually(refused)
            assert row["service_request_id"] is None and "refused" in row["status_notes"]


async def test_a_second_report_of_the_same_problem_points_at_the_first_case(settings):
    async with system(settings, only=("intake",)) as rts, client(asgi_app(spec("intake"), rts["intake"])) as http:
        first = await http.post("/requests.json", data=bin_form())
        case_id = first.json()[0].get("service_request_id") or await eventually(
            lambda: _token(http, first.json()[0]["token"])
        )
        second = await http.post("/requests.json", data=bin_form(phone="13900002222", email="bob@example.cn"))
        row = second.json()[0]
        again = row.get("service_request_id") or await eventually(lambda: _token(http, row["token"]))
        assert again == case_id  # merged (case.v1.merged): the request is the open case's

        async def merged():
            got = (await http.get(f"/requests/{case_id}.json")).json()[0]
            return got if got["service_notice"] else None

        assert "2" in (await eventually(merged))["service_notice"]


async def test_random_bodies_never_break_the_api(settings):
    """Seeded fuzz: random bytes and mangled forms get a spec answer, never a 500 or a trace."""
    import random
    from urllib.parse import urlencode

    rnd = random.Random(311)
    fields = [
        "api_key",
        "service_code",
        "lat",
        "long",
        "lng",
        "address_string",
        "attribute[BIN_TYPE]",
        "attribute[SIGNS][]",
        "attribute[",
        "description",
        "email",
        "phone",
        "media_url",
        "jurisdiction_id",
    ]
    values = [
        KEY,
        "0201",
        "0301",
        "30.255",
        "120.16",
        "-999",
        "1e308",
        "nan",
        "",
        "null",
        "城东街道",
        "\r\n",
        "kitchen",
        "smell",
        "http://x",
        "\x00",
        "😀" * 3,
        "%FF",
        "a" * 600,
    ]
    async with (
        system(settings, only=("intake",)) as rts,
        client(Starlette(routes=Open311Api(rts["intake"], Open311Settings(wait_s=0)).routes())) as http,
    ):
        seen: dict[int, int] = {}
        for i in range(150):
            if i % 3 == 0:
                body = rnd.randbytes(rnd.randint(0, 300))
            else:
                pairs = [(rnd.choice(fields), rnd.choice(values)) for _ in range(rnd.randint(0, 10))]
                if i % 3 == 1:  # a valid form first (first occurrence wins), then noise
                    pairs = [
                        ("api_key", KEY),
                        ("service_code", "0201"),
                        ("lat", "30.255"),
                        ("long", "120.16"),
                        ("attribute[BIN_TYPE]", "kitchen"),
                        *pairs,
                    ]
                body = urlencode(pairs).encode()
            fmt = rnd.choice(["json", "xml"])
            r = await http.post(
                f"/requests.{fmt}", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
            )
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code in (201, 202, 400, 403, 404), (body, r.status_code, r.text)
            assert "Traceback" not in r.text
            if r.status_code >= 400:
                _error(r, fmt)
        assert {202, 400, 403} <= set(seen), seen  # 201: a repeated valid form is a retry of a known request
