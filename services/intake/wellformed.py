"""What every inbound payload must be, whatever its source (bus JSON, Open311 form, HJ 212 frame). Pure.

- nesting no deeper than `MAX_DEPTH` (a JSON document nested 50,000 levels deep exhausts the parser's stack);
- text without control characters: C0 (U+0000-U+001F) is refused except tab and line feed, and a carriage
  return only as part of a CR LF line break (12345 platforms running on Windows send those);
- numbers finite (JSON's `NaN`, `Infinity`, and `1e999`, which Python reads as infinity, are refused).

Each check names the offending field as a dotted path (`values.pm10`, `caller.name`, `content`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from contracts.reports import RejectionReason

MAX_DEPTH = 16  # the deepest real payload (a sensor's values, a location) is 2 levels below the top
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]|\r(?!\n)")
# What may hide a refused value in JSON text: C0 characters, raw or escaped (\\u0000, \\b, \\f, \\r),
# non-finite numbers, huge exponents. Text without any of them needs no walk over the parsed document.
_SUSPECT = re.compile(r"\\u00[01][0-9a-fA-F]|\\[bfr]|[\x00-\x08\x0b\x0c\x0e-\x1f\r]|NaN|Infinity|\d[eE]\+?\d{3}")
_TOKENS = re.compile(r'["\\{}\[\]:,]')


def control_at(text: str) -> int | None:
    """Index of the first refused control character in a text, or None."""
    m = CONTROL.search(text)
    return m.start() if m else None


def describe_control(text: str, at: int) -> str:
    """The refusal message for a control character at `at`."""
    return f"control character U+{ord(text[at]):04X} at position {at} (only tab and line breaks are allowed)"


def too_deep(text: str, limit: int = MAX_DEPTH) -> str | None:
    """Where a JSON text nests deeper than `limit` containers (dotted path; "" for the top), or None.

    Scans the text without parsing it: the parser itself would exhaust its stack first on hostile depths."""
    kinds: list[str] = []
    path: list[str | int] = []
    in_string = False
    start = escaped_at = -1
    last = ""
    for m in _TOKENS.finditer(text):
        c, i = m.group(), m.start()
        if in_string:
            if i == escaped_at:
                continue  # the character right after a backslash
            if c == "\\":
                escaped_at = i + 1
            elif c == '"':
                in_string, last = False, text[start:i]
            continue
        if c == '"':
            in_string, start = True, i + 1
        elif c in "{[":
            if len(kinds) >= limit:
                return ".".join(str(p) for p in path[:limit])
            kinds.append(c)
            path.append(0 if c == "[" else "")
        elif c in "}]":
            if kinds:
                kinds.pop()
                path.pop()
        elif c == ":" and kinds and kinds[-1] == "{":
            path[-1] = last
        elif c == "," and kinds and kinds[-1] == "[":
            path[-1] = int(path[-1]) + 1
    return None


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, str(k)  # a key is text too
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


def refusal(value: Any, path: tuple[str | int, ...] = ()) -> RejectionReason | None:
    """The first refused text or number in a parsed document, as a rejection reason naming its field."""
    for where, v in _walk(value, path):
        field = ".".join(str(p) for p in where) or None
        if isinstance(v, str) and (at := control_at(v)) is not None:
            return RejectionReason(code="control_character", field=field, message=describe_control(v, at))
        if isinstance(v, float) and not math.isfinite(v):
            return RejectionReason(code="not_finite", field=field, message=f"{v} is not a finite number")
    return None


def json_refusal(text: str, body: Any) -> RejectionReason | None:
    """`refusal` for a parsed JSON text, walking the document only when the text holds something suspect."""
    if _SUSPECT.search(text) is None:
        return None
    return refusal(body)
