"""Personal data never travels in clear: masked display forms and stable pseudonymous keys. Pure."""

from __future__ import annotations

import hashlib
import hmac
import re


def pseudonym(secret: str, value: str) -> str:
    """A stable key for a person: keyed hash, so the same caller links up without revealing who."""
    digest = hmac.new(secret.encode(), value.strip().encode(), hashlib.sha256).hexdigest()
    return f"p-{digest[:20]}"


def mask_phone(phone: str) -> str:
    """138****5678: keep the first three and last four digits."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_name(name: str) -> str:
    """张* / 欧阳** / J***: keep the first character."""
    name = name.strip()
    if not name:
        return ""
    return name[0] + "*" * max(1, len(name) - 1)


# Personal data typed into free text (a description, a note, an Open311 attribute): every shape seen in real
# reports. Each pattern stands alone (no digit, letter or dash glued to either side), so dates, amounts, order
# numbers and identifiers are left as they are.
_EDGE_L, _EDGE_R = r"(?<![0-9A-Za-z+\-.])", r"(?![0-9A-Za-z\-])"
_PATTERNS = (
    # 居民身份证号 resident ID: area, birth date, sequence, check digit
    (
        "id",
        re.compile(
            _EDGE_L + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _EDGE_R
        ),
    ),
    # mainland mobile: 13800135678, 138-0013-5678, 138 0013 5678, +86 138 0013 5678
    ("mobile", re.compile(_EDGE_L + r"(?:\+?86[\- ]?)?1[3-9]\d(?:[\- ]?\d{4}){2}" + _EDGE_R)),
    # 400 / 800 service numbers: 400-123-4567, 4001234567
    ("phone", re.compile(_EDGE_L + r"[48]00[\- ]?\d{3}[\- ]?\d{4}" + _EDGE_R)),
    # landline with area code: 010-12345678, 0571 8765 4321, (0571)87654321, 057187654321
    ("phone", re.compile(r"(?<![0-9A-Za-z\-.])(?:\(0\d{2,3}\)|0\d{2,3})[\- ]?\d{3,4}[\- ]?\d{4}" + _EDGE_R)),
    # North American: 773-636-0432, (773) 636-0432, 773.636.0432, 1-773-636-0432
    (
        "phone",
        re.compile(
            r"(?<![0-9A-Za-z\-.])(?:1[\-. ])?(?:\([2-9]\d{2}\)\s?|[2-9]\d{2}[\-. ])[2-9]\d{2}[\-. ]\d{4}" + _EDGE_R
        ),
    ),
    # any other international number, with its + and country code: +44 20 7946 0958, +1 (773) 636-0432
    ("phone", re.compile(r"(?<![0-9A-Za-z])\+\d{1,3}(?:[ .\-]?\(?\d{1,4}\)?){2,5}" + _EDGE_R)),
    ("email", re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")),  # ASCII: \w takes 汉字 too
)


def _mask(kind: str, text: str) -> str:
    if kind == "email":
        return text[0] + "***@" + text.split("@", 1)[1]
    if kind == "id":
        return text[:3] + "*" * 11 + text[-4:]
    if kind == "mobile":
        return mask_phone(re.sub(r"\D", "", text)[-11:])  # without the country code: 139****1111
    return mask_phone(text)


def scrub(text: str) -> str:
    """Free text with phone numbers (any shape), resident ID numbers and e-mail addresses masked: it travels."""
    for kind, pattern in _PATTERNS:
        text = pattern.sub(lambda m, k=kind: _mask(k, m.group()), text)  # type: ignore[misc]
    return text
