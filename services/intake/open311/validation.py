"""Validating an Open311 `POST requests` form into a submission, or the error the client gets. Pure.

Real clients are lenient in what they send: empty strings and "null" mean absent, `\\r\\n` is a line break,
`lng` is accepted for `long`, numbers arrive as strings, timestamps carry any offset.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo

from contracts.reports import RejectionReason
from contracts.values import CoordSystem
from services.intake import privacy, wellformed
from services.intake.open311.definitions import Attribute, Datatype, Open311Config, Service

MAX_BODY = 64 * 1024
MAX_FIELDS = 200
LIMITS = {
    "api_key": 200,
    "jurisdiction_id": 64,
    "service_code": 64,
    "description": 4000,
    "address_string": 500,
    "address_id": 128,
    "email": 254,
    "device_id": 128,
    "account_id": 128,
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "media_url": 2000,
    "coord_system": 10,
}
ATTRIBUTE_LIMITS = {Datatype.text: 4000, Datatype.string: 500}
MAX_CHOICES = 50
ABSENT = frozenset({"", "null", "none", "nil", "undefined", "(null)"})
_ATTR = re.compile(r"^attribute\[([^\[\]]{1,64})\](\[\])?$")
_PHONE = re.compile(r"^[0-9+()\- ]{3,40}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Invalid(Exception):
    """What the client did wrong: an HTTP status and a description that names the field."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description

    def reason(self) -> RejectionReason:
        """The same error as a machine-readable rejection reason (for `report.v1.rejected`)."""
        head, sep, _ = self.description.partition(": ")
        field = head if sep and " " not in head else None
        text = self.description
        if self.status == 404:
            code = "unknown_service" if field == "service_code" else "not_found"
        elif self.status == 415:
            code = "wrong_type"
        else:
            code = next((c for words, c in _REASON_CODES if any(w in text for w in words)), "invalid")
        return RejectionReason(code=code, field=field, message=text)


_REASON_CODES = (
    (("missing", "required", "one is required"), "missing_field"),
    (("longer than", "at most", "too many"), "too_long"),
    (("outside the city",), "out_of_city"),
    (("between",), "out_of_range"),
    (("not UTF-8",), "invalid_utf8"),
    (("control character",), "control_character"),
    (("more than once",), "duplicate_field"),
    (("not a number", "not a W3C", "not a finite"), "wrong_type"),
    (("is not one of", "takes one value", "unknown"), "not_allowed"),
)


@dataclass(frozen=True)
class Contact:
    """Personal data of the requester: stays in intake's store, never on the bus."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    device_id: str | None = None
    account_id: str | None = None

    def identity(self) -> str | None:
        """What makes the same person the same key: e-mail, phone, account, device, in that order."""
        for value in (self.email, self.phone, self.account_id, self.device_id):
            if value:
                return value.lower() if value is self.email else value
        return None


@dataclass(frozen=True)
class Submission:
    """A valid service request."""

    service: Service
    description: str = ""
    lat: float | None = None
    lng: float | None = None
    coord_system: CoordSystem = CoordSystem.wgs84
    address: str | None = None
    address_id: str | None = None
    attributes: dict[str, str | list[str]] = field(default_factory=dict)
    media_url: str | None = None
    contact: Contact = Contact()
    jurisdiction_id: str | None = None


def clean(value: str | None, name: str = "a field") -> str | None:
    """Line breaks made `\\n`, whitespace trimmed; empty and "null"-like values are absent; control characters
    (NUL and the rest of C0 but tab and line breaks) refused, naming the field."""
    if value is None:
        return None
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if (at := wellformed.control_at(text)) is not None:
        raise Invalid(400, f"{name[:80]}: {wellformed.describe_control(text, at)}")
    return None if text.lower() in ABSENT else text


def split_form(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str | None], dict[str, list[str]]]:
    """Plain fields and `attribute[CODE]` / `attribute[CODE][]` values; a plain field given twice is refused (which
    of two values a client meant cannot be guessed, and servers that take the first or the last disagree)."""
    plain: dict[str, str | None] = {}
    attrs: dict[str, list[str]] = {}
    count = 0
    for name, raw in pairs:
        count += 1
        if count > MAX_FIELDS:
            raise Invalid(400, f"too many form fields (at most {MAX_FIELDS})")
        if m := _ATTR.match(name):
            value = clean(raw, name)
            if value is not None:
                attrs.setdefault(m.group(1), []).append(value)
        elif name in plain:
            raise Invalid(400, f"{name[:80]}: given more than once")
        else:
            plain[name] = clean(raw, name)
    for name, value in plain.items():
        limit = LIMITS.get(name)
        if value is not None and limit is not None and len(value) > limit:
            raise Invalid(400, f"{name}: longer than {limit} characters")
    return plain, attrs


def check_api_key(plain: dict[str, str | None], config: Open311Config) -> str:
    """The client name of a valid api_key; 403 otherwise."""
    key = plain.get("api_key")
    if not key:
        raise Invalid(403, "api_key: missing; ask the city for a key")
    # Compared in constant time, every key, so the answer's timing says nothing about a near miss.
    client = None
    for known, name in config.api_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            client = name
    if client is None:
        raise Invalid(403, "api_key: not valid")
    return client


def check_jurisdiction(value: str | None, config: Open311Config) -> None:
    """jurisdiction_id is optional; when given it must be this city's."""
    if value and config.jurisdiction_id and value != config.jurisdiction_id:
        raise Invalid(404, f"jurisdiction_id: unknown jurisdiction {value[:64]}")


def parse_w3c(value: str, tz: tzinfo, name: str) -> datetime:
    """A W3C date or date-time; with no offset it is the city's local time."""
    text = value.strip().replace(" ", "T", 1) if "T" not in value else value.strip()
    try:
        if len(text) == 10:
            when = datetime.combine(date.fromisoformat(text), time())
        else:
            when = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(400, f"{name}: not a W3C date-time (e.g. 2026-11-23T10:00:00+08:00)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def _coordinate(plain: dict[str, str | None], names: tuple[str, ...], bound: float) -> float | None:
    name = next((n for n in names if plain.get(n) is not None), names[0])
    value = plain.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise Invalid(400, f"{name}: not a number") from None
    if not math.isfinite(number) or abs(number) > bound:
        raise Invalid(400, f"{name}: must be between -{bound:g} and {bound:g}")
    return number


def _attribute(attr: Attribute, values: list[str], tz: tzinfo) -> str | list[str]:
    label = f"attribute[{attr.code}]"
    if attr.datatype == Datatype.multivaluelist:
        if len(values) > MAX_CHOICES:
            raise Invalid(400, f"{label}: at most {MAX_CHOICES} values")
        keys = {v.key for v in attr.values}
        for v in values:
            if v not in keys:
                raise Invalid(400, f"{label}: {v[:100]} is not one of {', '.join(sorted(keys))}")
        return list(dict.fromkeys(values))
    if len(values) > 1:
        raise Invalid(400, f"{label}: takes one value")
    value = values[0]
    if attr.datatype == Datatype.singlevaluelist:
        keys = {v.key for v in attr.values}
        if value not in keys:
            raise Invalid(400, f"{label}: {value[:100]} is not one of {', '.join(sorted(keys))}")
    elif attr.datatype == Datatype.number:
        try:
            number = float(value)
        except ValueError:
            raise Invalid(400, f"{label}: not a number") from None
        if not math.isfinite(number):
            raise Invalid(400, f"{label}: not a finite number")
    elif attr.datatype == Datatype.datetime:
        return parse_w3c(value, tz, label).isoformat()
    else:
        limit = ATTRIBUTE_LIMITS[attr.datatype]
        if len(value) > limit:
            raise Invalid(400, f"{label}: longer than {limit} characters")
        if attr.datatype == Datatype.string and "\n" in value:
            value = " ".join(value.split())
        value = privacy.scrub(value)
    return value


def attributes_of(service: Service, given: dict[str, list[str]], tz: tzinfo) -> dict[str, str | list[str]]:
    """The answers to the service's attributes, checked by datatype; a required one missing is an error.

    Codes the service does not define are ignored (clients built against an older definition keep working).
    """
    out: dict[str, str | list[str]] = {}
    for attr in service.attributes:
        if not attr.variable:
            continue
        values = given.get(attr.code)
        if not values:
            if attr.required:
                raise Invalid(400, f"attribute[{attr.code}]: required ({attr.description})")
            continue
        out[attr.code] = _attribute(attr, values, tz)
    return out


def parse_submission(pairs: Iterable[tuple[str, str]], config: Open311Config, tz: tzinfo) -> Submission:
    """A POSTed form as a submission; raises Invalid with 403 (api_key), 404 (service) or 400 (a field)."""
    plain, attrs = split_form(pairs)
    check_api_key(plain, config)
    check_jurisdiction(plain.get("jurisdiction_id"), config)
    code = plain.get("service_code")
    if code is None:
        raise Invalid(400, "service_code: missing")
    service = config.services.get(code)
    if service is None:
        raise Invalid(404, f"service_code: no service {code[:64]}")
    lat = _coordinate(plain, ("lat",), 90)
    lng = _coordinate(plain, ("long", "lng", "lon"), 180)
    if (lat is None) != (lng is None):
        raise Invalid(400, "long: missing (lat given)" if lng is None else "lat: missing (long given)")
    if lat == 0 and lng == 0:
        lat = lng = None  # a phone without a fix sends 0,0 ("null island"): no location, not the Gulf of Guinea
    address, address_id = plain.get("address_string"), plain.get("address_id")
    address = privacy.scrub(address) if address else address
    if lat is None and address is None and address_id is None:
        raise Invalid(400, "lat/long, address_string or address_id: one is required")
    system = plain.get("coord_system") or "wgs84"
    try:
        coord_system = CoordSystem(system.lower())
    except ValueError:
        raise Invalid(400, "coord_system: one of wgs84, gcj02, bd09") from None
    media = plain.get("media_url")
    if media is not None and not media.lower().startswith(("http://", "https://")):
        raise Invalid(400, "media_url: must be an http(s) URL")
    email, phone = plain.get("email"), plain.get("phone")
    if email is not None and not _EMAIL.match(email):
        raise Invalid(400, "email: not an e-mail address")
    if phone is not None and not _PHONE.match(phone):
        raise Invalid(400, "phone: only digits, spaces, + - ( ) allowed")
    contact = Contact(
        email=email,
        first_name=plain.get("first_name"),
        last_name=plain.get("last_name"),
        phone=phone,
        device_id=plain.get("device_id"),
        account_id=plain.get("account_id"),
    )
    return Submission(
        service=service,
        description=privacy.scrub(plain.get("description") or ""),
        lat=lat,
        lng=lng,
        coord_system=coord_system,
        address=address,
        address_id=address_id,
        attributes=attributes_of(service, attrs, tz),
        media_url=media,
        contact=contact,
        jurisdiction_id=plain.get("jurisdiction_id"),
    )


def fingerprint(sub: Submission) -> str:
    """What makes two POSTs the same request: a client retrying after a timeout gets the same token back."""
    c = sub.contact
    parts = [
        sub.service.service_code,
        sub.description,
        sub.lat,
        sub.lng,
        sub.coord_system.value,
        sub.address,
        sub.address_id,
        sorted(sub.attributes.items()),
        sub.media_url,
        c.identity(),
        c.first_name,
        c.last_name,
    ]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, default=str).encode()).hexdigest()
