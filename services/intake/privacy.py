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
