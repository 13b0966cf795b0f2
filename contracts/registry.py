"""Which model a subject carries: the one place that decodes bus messages.

Every `Event` subclass with an `event_type` in any module of this package is registered by discovery, so a
new contract module needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import contracts
from contracts.envelope import Event


class UnknownSubject(LookupError):
    """No model is registered for a subject."""


def _subclasses(cls: type[Event]) -> list[type[Event]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


@cache
def events() -> dict[str, type[Event]]:
    """event_type → model, for every event model in contracts/."""
    for mod in pkgutil.iter_modules(contracts.__path__):
        if mod.name not in {"export", "registry"}:
            importlib.import_module(f"contracts.{mod.name}")
    found: dict[str, type[Event]] = {}
    for model in _subclasses(Event):
        if model.event_type and model.__module__.startswith("contracts."):
            if model.event_type in found and found[model.event_type] is not model:
                raise TypeError(f"two models claim {model.event_type}: {found[model.event_type]} and {model}")
            found[model.event_type] = model
    return dict(sorted(found.items()))


def _key(subject: str) -> str:
    parts = subject.split(".")
    if parts[0] == "case" and len(parts) >= 3:
        return f"case.{parts[2]}"
    if parts[0] == "dlq":
        return "dlq.dead_letter"
    if len(parts) >= 3:
        return f"{parts[0]}.{'.'.join(parts[2:])}"
    return subject


def model_for(subject: str) -> type[Event]:
    """The event model carried on `subject`."""
    model = events().get(_key(subject))
    if model is None:
        raise UnknownSubject(subject)
    return model


def decode(subject: str, data: bytes) -> Event:
    """Parse and validate a message body; raises UnknownSubject or pydantic.ValidationError."""
    return model_for(subject).model_validate_json(data)
