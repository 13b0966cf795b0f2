"""The Open311 GeoReport v2 HTTP API under `/open311/v2/`: thin handlers over the pure modules.

Every answer is JSON or XML by the path's extension; every failure is the spec's error list, never a trace.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote_plus
from zoneinfo import ZoneInfo

from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts import subjects
from contracts.envelope import new_event_id
from contracts.reports import Open311Request, ReportRejected
from contracts.values import Location, Reporter
from services.intake import privacy
from services.intake.open311 import render
from services.intake.open311.definitions import Open311Config, Service, load_open311
from services.intake.open311.projection import REQUESTED_S, REQUESTS, TOKENS
from services.intake.open311.throttle import Throttle, client_address
from services.intake.open311.validation import (
    MAX_BODY,
    MAX_FIELDS,
    Invalid,
    Submission,
    check_api_key,
    fingerprint,
    parse_submission,
    parse_w3c,
)
from xiuhua.bus import Outgoing
from xiuhua.observability import Metrics
from xiuhua.retention import dated
from xiuhua.service import Runtime

log = logging.getLogger("xiuhua.intake.open311")

SUBMISSIONS = "open311_submissions"
REFUSED = "open311_refused"
_FORM_KEY = re.compile(rb"(?:^|&)api_key=([^&]{1,200})")
_MULTIPART_KEY = re.compile(rb'name="api_key"\r\n\r\n([^\r]{1,200})\r\n')
PREFIX = "/open311/v2"
FORMATS = ("json", "xml")
DEFAULT_DAYS = 90
MAX_LIMIT = 1000
MAX_IDS = 100
RETRY_WINDOW = timedelta(minutes=10)
CORS_PREFLIGHT = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}


@dataclass(frozen=True)
class _Counters:
    calls: Counter
    throttled: Counter


_COUNTERS: weakref.WeakKeyDictionary[Metrics, _Counters] = weakref.WeakKeyDictionary()


def _counters(metrics: Metrics) -> _Counters:
    """The API's counters: one pair per service's registry, however many apps serve it."""
    if metrics not in _COUNTERS:
        _COUNTERS[metrics] = _Counters(
            metrics.counter("xiuhua_open311_calls", "Open311 API calls", ("endpoint", "status")),
            metrics.counter(
                "xiuhua_open311_throttled",
                "Open311 requests refused over a rate limit (429)",
                ("scope", "method", "client"),
            ),
        )
    return _COUNTERS[metrics]


class Open311Settings(BaseSettings):
    """Settings of the Open311 edge (prefix XIUHUA_OPEN311_)."""

    model_config = SettingsConfigDict(env_prefix="XIUHUA_OPEN311_", extra="ignore")

    api_keys: str = Field(default="", description="Comma-separated keys accepted besides open311.yaml's")
    wait_s: float = Field(default=2.0, ge=0, le=30, description="How long a POST waits for the case id")
    max_body: int = Field(default=MAX_BODY, ge=1024, le=1024 * 1024)


def masked(sub: Submission) -> str:
    """The requester as the bus may show it: 张* 138****5678 (Chinese names family name first)."""
    c = sub.contact
    parts = (c.last_name, c.first_name) if c.last_name and _is_cjk(c.last_name) else (c.first_name, c.last_name)
    name = "".join(p for p in parts if p)
    shown = (privacy.mask_name(name) if name else "", privacy.mask_phone(c.phone) if c.phone else "")
    return " ".join(p for p in shown if p)


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def inbound_of(sub: Submission, token: str, at: datetime, secret: str) -> Open311Request:
    """The bus message for a submission: no contact details, only a masked form and a pseudonymous key."""
    ident = sub.contact.identity()
    reporter = Reporter(kind="citizen", key=privacy.pseudonym(secret, ident), display=masked(sub)) if ident else None
    location = Location(lng=sub.lng, lat=sub.lat, coord_system=sub.coord_system) if sub.lat is not None else None
    return Open311Request(
        request_id=token,
        reported_at=at,
        service_code=sub.service.service_code,
        category_code=sub.service.category.code,
        description=sub.description,
        location=location,
        address=sub.address,
        address_id=sub.address_id,
        attributes=sub.attributes,
        photo_urls=[sub.media_url] if sub.media_url else [],
        reporter=reporter,
        jurisdiction_id=sub.jurisdiction_id,
    )


class Open311Api:
    """The endpoints, bound to one runtime."""

    def __init__(self, rt: Runtime, settings: Open311Settings | None = None) -> None:
        self.rt = rt
        self.settings = settings or Open311Settings()
        keys = tuple(k.strip() for k in self.settings.api_keys.split(",") if k.strip())
        self.config: Open311Config = load_open311(rt.city, keys)
        self.tz = ZoneInfo(rt.city.info.timezone)
        counters = _counters(rt.metrics)
        self.calls = counters.calls
        self.throttle = Throttle(self.config, rt.clock, counters.throttled)

    # -- plumbing -------------------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The Starlette routes under /open311/v2/."""
        # Every method reaches the handler so that a wrong one is answered in the spec's error format.
        m = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
        return [
            Route(f"{PREFIX}/services.{{fmt}}", self._wrap("services", self.services), methods=m),
            Route(f"{PREFIX}/services/{{code}}.{{fmt}}", self._wrap("service", self.definition), methods=m),
            Route(f"{PREFIX}/requests.{{fmt}}", self._wrap("requests", self.requests), methods=m),
            Route(f"{PREFIX}/requests/{{id}}.{{fmt}}", self._wrap("request", self.one_request), methods=m),
            Route(f"{PREFIX}/tokens/{{token}}.{{fmt}}", self._wrap("token", self.token), methods=m),
            Route(PREFIX + "/{rest:path}", self._wrap("unknown", self.unknown), methods=m),
        ]

    def _wrap(self, name: str, fn: Callable[[Request, str], Awaitable[Response]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            fmt = request.path_params.get("fmt") or ("xml" if request.url.path.endswith(".xml") else "json")
            if request.method == "OPTIONS":  # a browser app's CORS preflight
                return Response(status_code=204, headers=CORS_PREFLIGHT)
            try:
                if fmt not in FORMATS:
                    raise Invalid(404, f"unknown format .{fmt[:10]}; use .json or .xml")
                if name != "unknown" and request.method != "GET" and (request.method, name) != ("POST", "requests"):
                    raise Invalid(405, f"{request.method} is not allowed here")
                self._jurisdiction(request.query_params.get("jurisdiction_id"))
                if request.method == "GET":  # a POST's key is in its body: `post` admits it once read
                    self.throttle.admit("GET", client_address(request), request.query_params.get("api_key"))
                response = await fn(request, fmt)
            except Invalid as exc:
                response = render.errors(fmt, exc.status, exc.description)
                response.headers.update(getattr(exc, "headers", {}))  # 429's Retry-After
            except Exception:
                # Never a trace to the client: the log has it, the client gets a plain 500.
                log.exception("open311 %s failed", name)
                response = render.errors(fmt, 500, "internal error; please try again later")
            self.calls.labels(name, str(response.status_code)).inc()
            response.headers["Access-Control-Allow-Origin"] = "*"  # citizens' web apps call from their own origin
            return response

        return endpoint

    def _jurisdiction(self, value: str | None) -> None:
        value = (value or "").strip()
        if value and self.config.jurisdiction_id and value != self.config.jurisdiction_id:
            raise Invalid(404, f"jurisdiction_id: unknown jurisdiction {value[:64]}")

    # -- services -------------------------------------------------------------------------------------------

    def _service_row(self, s: Service) -> dict[str, Any]:
        return {
            "service_code": s.service_code,
            "service_name": s.name,
            "description": f"{s.category.name_zh}（{s.category.name_en}），处置时限 {s.category.time_limit}",
            "metadata": bool(s.attributes),
            "type": "realtime",
            "keywords": ", ".join(s.category.keywords),
            "group": s.group,
        }

    async def services(self, request: Request, fmt: str) -> Response:
        """GET services: every catalogue item with a service_code."""
        return render.body(fmt, "services", [self._service_row(s) for s in self.config.services.values()])

    async def definition(self, request: Request, fmt: str) -> Response:
        """GET services/{code}: the service definition with its attributes."""
        code = request.path_params["code"]
        service = self.config.services.get(code)
        if service is None:
            raise Invalid(404, f"service_code: no service {code[:64]}")
        attributes = [
            {
                "variable": a.variable,
                "code": a.code,
                "datatype": a.datatype.value,
                "required": a.required,
                "datatype_description": a.datatype_description,
                "order": a.order,
                "description": a.description,
                **({"values": [{"key": v.key, "name": v.name} for v in a.values]} if a.values else {}),
            }
            for a in service.attributes
        ]
        return render.document(fmt, "service_definition", {"service_code": code, "attributes": attributes})

    # -- requests -------------------------------------------------------------------------------------------

    async def requests(self, request: Request, fmt: str) -> Response:
        """GET or POST requests."""
        if request.method == "POST":
            return await self.post(request, fmt)
        return await self.search(request, fmt)

    async def _read(self, request: Request) -> bytes:
        limit = self.settings.max_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise Invalid(413, f"request body over {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Invalid(413, f"request body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _form(self, request: Request, data: bytes) -> list[tuple[str, str]]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("", "application/x-www-form-urlencoded"):
            try:
                return parse_qsl(
                    data.decode("utf-8"),
                    keep_blank_values=True,
                    encoding="utf-8",
                    errors="strict",
                    max_num_fields=MAX_FIELDS,
                )
            except UnicodeDecodeError:
                raise Invalid(400, "the form is not UTF-8") from None
            except ValueError:
                raise Invalid(400, f"too many form fields (at most {MAX_FIELDS})") from None
        if ctype == "multipart/form-data":

            async def replay() -> dict[str, Any]:
                return {"type": "http.request", "body": data, "more_body": False}

            try:
                form = await Request(request.scope, replay).form(max_files=0, max_fields=MAX_FIELDS)
            except Exception:
                raise Invalid(
                    400, "the multipart form cannot be read (file uploads are not accepted; send media_url)"
                ) from None
            pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
            await form.close()
            return pairs
        raise Invalid(415, "send the request as application/x-www-form-urlencoded (or multipart/form-data)")

    async def post(self, request: Request, fmt: str) -> Response:
        """POST requests: validate, keep the contact details here, publish the report, answer with id or token."""
        data = await self._read(request)
        self.throttle.admit("POST", client_address(request), self._key_of(data))
        try:
            sub = parse_submission(await self._form(request, data), self.config, self.tz)
            if (
                sub.lat is not None
                and sub.lng is not None
                and sub.coord_system == "wgs84"
                and self.rt.city.areas.place_of_point(sub.lng, sub.lat) is None
            ):
                raise Invalid(400, "lat/long: the point is outside the city's area")
        except Invalid as exc:
            if exc.status != 403 and self._key_in(data):
                await self._refused(request, data, exc)
            raise
        now = self.rt.clock.now()
        c, fp = sub.contact, fingerprint(sub)
        # A retry of the same request (the app timed out) gets the same token; publishing it again is harmless:
        # JetStream drops the same message id, and intake treats the same source reference as one report.
        earlier = await self._retried(fp, now)
        if earlier is not None:
            token, now = earlier["_id"], earlier["at"]
        else:
            token = "T-" + new_event_id().replace("-", "")
            # Outside any transaction, but not inside another's on the embedded store (docs/operating/store.md):
            # lost with it, the app's retry would get a second token and a second report.
            async with self.rt.store.outside_transactions():
                await self.rt.store[SUBMISSIONS].insert_one(
                    {
                        "_id": token,
                        **dated(now),
                        "service_code": sub.service.service_code,
                        "fingerprint": fp,
                        "contact": {
                            "email": c.email,
                            "first_name": c.first_name,
                            "last_name": c.last_name,
                            "phone": c.phone,
                            "device_id": c.device_id,
                            "account_id": c.account_id,
                        },
                    }
                )
        report = inbound_of(sub, token, now, self.rt.settings.pseudonym_key)
        out = Outgoing(
            subjects.report_subject("open311"), report.model_dump_json(exclude_none=True).encode(), f"open311:{token}"
        )
        try:
            await self.rt.publisher.send([out])
        except Exception:
            log.exception("open311: publishing %s failed", token)
            raise Invalid(503, "the request could not be accepted now; please try again") from None
        resolved = await self._wait_for_case(token)
        if resolved is not None and resolved.get("rejected"):
            raise Invalid(400, f"the request was refused: {resolved['rejected']}")
        case_id = resolved["case_id"] if resolved is not None else None
        notice = "已受理 received; we will handle it within the published time limit"
        row: dict[str, Any] = {"service_request_id": case_id} if case_id else {"token": token}
        row.update(service_notice=notice, account_id=c.account_id)
        return render.body(fmt, "service_requests", [row], status=201 if case_id else 202)

    async def _retried(self, fp: str, now: datetime) -> dict[str, Any] | None:
        """The latest submission of the same request within the retry window, if any.

        Selected by the fingerprint alone and dated here: nx-27017 reads every submission ever kept for a query
        that adds a range on a date to the equality, on every POST (49 ms at 50,000), and one request's
        fingerprint has few submissions."""
        same = [d async for d in self.rt.store[SUBMISSIONS].find({"fingerprint": fp}, {"at": 1})]
        recent = [d for d in same if d["at"] >= now - RETRY_WINDOW]
        return max(recent, key=lambda d: d["at"], default=None)

    @staticmethod
    def _key_of(data: bytes) -> str | None:
        """The api_key a form body carries, read without parsing the form (None: none)."""
        found = _FORM_KEY.search(data) or _MULTIPART_KEY.search(data)
        return unquote_plus(found.group(1).decode("latin-1")).strip() if found else None

    def _key_in(self, data: bytes) -> bool:
        """Whether a body that failed validation still carries a valid api_key (only then is it kept)."""
        key = self._key_of(data)
        if key is None:
            return False
        try:
            check_api_key({"api_key": key}, self.config)
        except Invalid:
            return False
        return True

    async def _refused(self, request: Request, data: bytes, exc: Invalid) -> None:
        """Keep the raw bytes of a refused request and say so on the bus, as every source's rejections are."""
        raw_id = "o311-" + new_event_id().replace("-", "")
        reason = exc.reason()
        try:
            async with self.rt.store.outside_transactions():  # the raw bytes are kept, not lost with another's
                await self.rt.store[REFUSED].insert_one(
                    {
                        "_id": raw_id,
                        **dated(self.rt.clock.now()),
                        "status": exc.status,
                        "body": data,
                        "content_type": request.headers.get("content-type", "")[:200],
                        "reasons": [reason.model_dump()],
                    }
                )
            await self.rt.publisher.publish(
                ReportRejected(correlation_id=f"open311:{raw_id}", source="open311", raw_id=raw_id, reasons=[reason])
            )
        except Exception:
            log.exception("open311: keeping refused request %s failed", raw_id)  # the client still gets its 400

    async def _wait_for_case(self, token: str) -> dict[str, Any] | None:
        """The token's resolution (a case id, or why intake refused it) once the projection has it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.wait_s
        while True:
            doc = await self.rt.store[TOKENS].find_one({"_id": token})
            if doc is not None:
                return doc
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.1)

    def _request_row(self, d: dict[str, Any]) -> dict[str, Any]:
        return {
            "service_request_id": d["_id"],
            "status": d["status"],
            "status_notes": d.get("status_notes") or None,
            "service_name": d.get("service_name") or None,
            "service_code": d.get("service_code"),
            "description": d.get("description") or None,
            "agency_responsible": d.get("agency_responsible"),
            "service_notice": d.get("service_notice"),
            "requested_datetime": render.w3c(d.get("requested_datetime"), self.tz),
            "updated_datetime": render.w3c(d.get("updated_datetime"), self.tz),
            "expected_datetime": render.w3c(d.get("expected_datetime"), self.tz),
            "address": d.get("address"),
            "address_id": None,
            "zipcode": None,
            "lat": d.get("lat"),
            "long": d.get("long"),
            "media_url": d.get("media_url"),
        }

    async def search(self, request: Request, fmt: str) -> Response:
        """GET requests with the spec's filters; the last 90 days by default, at most 1000."""
        q = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
        limit = MAX_LIMIT
        if "limit" in q:
            if not q["limit"].isdigit() or not 1 <= int(q["limit"]) <= MAX_LIMIT:
                raise Invalid(400, f"limit: a whole number from 1 to {MAX_LIMIT}")
            limit = int(q["limit"])
        query: dict[str, Any] = {}
        if "service_request_id" in q:  # the spec: this overrides all other arguments
            ids = [i.strip() for i in q["service_request_id"].split(",") if i.strip()]
            if len(ids) > MAX_IDS:
                raise Invalid(400, f"service_request_id: at most {MAX_IDS} ids")
            query["_id"] = {"$in": ids}
        else:
            now = self.rt.clock.now()
            start = parse_w3c(q["start_date"], self.tz, "start_date") if "start_date" in q else None
            end = parse_w3c(q["end_date"], self.tz, "end_date") if "end_date" in q else None
            if start is None and end is None:
                start = now - timedelta(days=DEFAULT_DAYS)
            if start is not None and end is not None and end < start:
                raise Invalid(400, "end_date: before start_date")
            span: dict[str, float] = {}
            if start is not None:
                span["$gte"] = start.timestamp()
            if end is not None:
                span["$lte"] = end.timestamp()
            query[REQUESTED_S] = span
            if "status" in q:
                wanted = {s.strip().lower() for s in q["status"].split(",") if s.strip()}
                if not wanted <= {"open", "closed"}:
                    raise Invalid(400, "status: open, closed or both (comma-separated)")
                if len(wanted) == 1:
                    query["status"] = wanted.pop()
            if "service_code" in q:
                codes = [c.strip() for c in q["service_code"].split(",") if c.strip()]
                query["service_code"] = codes[0] if len(codes) == 1 else {"$in": codes}
        cursor = self.rt.store[REQUESTS].find(query).sort(REQUESTED_S, -1).limit(limit)
        rows = [self._request_row(d) async for d in cursor]
        return render.body(fmt, "service_requests", rows)

    async def one_request(self, request: Request, fmt: str) -> Response:
        """GET requests/{id}: one request with its current status."""
        rid = request.path_params["id"]
        doc = await self.rt.store[REQUESTS].find_one({"_id": rid})
        if doc is None:
            raise Invalid(404, f"service_request_id: no request {rid[:64]}")
        return render.body(fmt, "service_requests", [self._request_row(doc)])

    async def token(self, request: Request, fmt: str) -> Response:
        """GET tokens/{token}: the service_request_id once the case exists (empty while it is pending)."""
        token = request.path_params["token"]
        doc = await self.rt.store[TOKENS].find_one({"_id": token})
        if doc is not None and doc.get("rejected"):
            row = {
                "service_request_id": None,
                "token": token,
                "status": "rejected",
                "status_notes": f"the request was refused: {doc['rejected']}",
            }
            return render.body(fmt, "service_requests", [row])
        if doc is not None:
            return render.body(fmt, "service_requests", [{"service_request_id": doc["case_id"], "token": token}])
        if await self.rt.store[SUBMISSIONS].find_one({"_id": token}, {"_id": 1}) is None:
            raise Invalid(404, f"token: no such token {token[:64]}")
        return render.body(fmt, "service_requests", [{"service_request_id": None, "token": token}])

    async def unknown(self, request: Request, fmt: str) -> Response:
        """Anything else under /open311/v2/."""
        raise Invalid(404, "no such endpoint; see /open311/v2/services.json")


def routes(rt: Runtime) -> list[BaseRoute]:
    """The routes `services/intake/app.py` declares."""
    return Open311Api(rt).routes()
