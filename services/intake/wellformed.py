"""What every inbound payload must be, whatever its source (bus JSON, Open311 form, HJ 212 frame). Pure.

- nesting no deeper than `MAX_DEPTH` (a JSON document nested 50,000 levels deep exhausts the parser's stack);
- text without control characters: C0 (U+0000-U+001F) is refused except tab and line feed, and a carriage
  return only as part of a CR LF line break (12345 platforms running on Windows send those);
- numbers finite (JSON's `NaN`, `Infinity`, and `1e999`, which Python reads as infinity, are refused).

Each check names the offending field as a dotted path (`values.pm10`, `caller.name`, `content`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from contracts.reports import RejectionReason

MAX_DEPTH = 16  # the deepest real payload (a sensor's values, a location) is 2 levels below the top
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]|\r(?!\n)")
# An escaped C0 character inside a JSON string (raw ones the strict parser refuses by itself).
_ESCAPED_C0 = re.compile(r"\\u00[01][0-9a-fA-F]|\\[bf]|\\r(?!\\n)")  # CR LF is a line break
MAX_INT_DIGITS = 300  # past this an integer is no measurement (and Python refuses 4,300 digits with a ValueError)
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


class Refused(ValueError):
    """A JSON document that parses but holds a refused value."""

    def __init__(self, reason: RejectionReason) -> None:
        super().__init__(reason.message)
        self.reason = reason


class _Suspect(Exception):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999, or 400 digits before the point
        raise _Suspect
    return value


def _int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise _Suspect
    return int(text)


def _constant(text: str) -> float:
    raise _Suspect  # NaN, Infinity, -Infinity


def _lenient_int(text: str) -> int | float:
    return int(text) if len(text) <= MAX_INT_DIGITS else math.inf


# The strict decoder is the fast path: a refused value stops it, and the lenient one reads the document again so
# that `refusal` can name the field (the cost falls on hostile payloads only).
_STRICT = json.JSONDecoder(parse_float=_finite, parse_int=_int, parse_constant=_constant)
_LENIENT = json.JSONDecoder(parse_int=_lenient_int, strict=False)


def loads(text: str) -> Any:
    """Parse a JSON text; raises `Refused` naming the field of a refused value, `json.JSONDecodeError` for bad
    syntax."""
    try:
        body = _STRICT.decode(text)
    except _Suspect:
        body = _LENIENT.decode(text)
    except json.JSONDecodeError as exc:
        if not exc.msg.startswith("Invalid control character"):
            raise
        body = _LENIENT.decode(text)
    else:
        if "\\" not in text or _ESCAPED_C0.search(text) is None:
            return body
    bad = refusal(body)
    if bad is not None:
        raise Refused(bad)
    return body
