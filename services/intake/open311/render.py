"""JSON and XML bodies in GeoReport v2's element names, and its error format. Pure."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from starlette.responses import Response

# A list under a plural element holds items under the singular one (<attributes><attribute>...).
_SINGULAR = {
    "attributes": "attribute",
    "values": "value",
    "services": "service",
    "errors": "error",
    "service_requests": "request",
}

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A stored time back as an aware datetime (some stores hand datetimes back as ISO strings)."""
    if value is None or isinstance(value, datetime):
        return value
    when = datetime.fromisoformat(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def w3c(when: datetime | str | None, tz: tzinfo) -> str | None:
    """A timestamp as W3C date-time with the city's offset, e.g. 2026-11-23T10:00:00+08:00."""
    when = as_datetime(when)
    if when is None:
        return None
    return when.astimezone(tz).isoformat(timespec="seconds")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _append(parent: ET.Element, name: str, value: Any) -> None:
    el = ET.SubElement(parent, name)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _append(el, k, v)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        child = _SINGULAR.get(name, "item")
        for v in value:
            _append(el, child, v)
    else:
        el.text = _text(value)


def to_xml(root: str, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """`<root><item>...</item>...</root>` with the spec's element names."""
    top = ET.Element(root)
    item = _SINGULAR[root]
    for row in rows:
        _append(top, item, row)
    return ET.tostring(top, encoding="utf-8", xml_declaration=True)


def body(fmt: str, root: str, rows: Sequence[Mapping[str, Any]], status: int = 200) -> Response:
    """The response in the asked format: a JSON array or an XML document under `root`."""
    if fmt == "xml":
        return Response(to_xml(root, rows), status_code=status, media_type=XML_TYPE)
    text = json.dumps(list(rows), ensure_ascii=False, separators=(",", ":"))
    return Response(text.encode("utf-8"), status_code=status, media_type=JSON_TYPE)


def errors(fmt: str, status: int, *descriptions: str) -> Response:
    """Errors as the spec gives them: `[{"code": 400, "description": "..."}]` or `<errors><error>...`."""
    rows = [{"code": status, "description": d} for d in descriptions]
    return body(fmt if fmt == "xml" else "json", "errors", rows, status)


def document(fmt: str, root: str, row: Mapping[str, Any]) -> Response:
    """One object (a service definition): a JSON object, or its fields directly under `root` in XML."""
    if fmt == "xml":
        top = ET.Element(root)
        for k, v in row.items():
            _append(top, k, v)
        return Response(ET.tostring(top, encoding="utf-8", xml_declaration=True), media_type=XML_TYPE)
    return Response(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), media_type=JSON_TYPE)
