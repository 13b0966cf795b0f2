"""Which model a subject carries: the one place that decodes bus messages.

Models are keyed by their full versioned subject pattern (`case.v1.opened.{street_code}`, `score.v1.unit_updated`,
`dlq.v1.{service}`), so two versions of one message live side by side: a breaking change is a new model on a new
subject version (docs/integrating/compatibility.md), and a subject decodes to the model of its own version. Every
`Event` subclass with an `event_type` in any module of this package is registered by discovery, so a new contract
module needs no edit here; `register()` / `registered()` add models defined elsewhere (a test, a migration in
progress).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import contracts
from contracts.envelope import Event

if TYPE_CHECKING:
    from contracts.streams import StreamSpec

_VERSION = re.compile(r"^v(\d+)$")


class UnknownSubject(LookupError):
    """No model is registered for a subject."""


def subject_version(pattern: str) -> int:
    """The version of a subject or pattern: its first `v<N>` token (1 when it has none)."""
    for part in pattern.split("."):
        if match := _VERSION.match(part):
            return int(match.group(1))
    return 1


def message_name(model: type[Event]) -> str:
    """The name documents use for an event: `case.opened` for v1 (as published since the start), the
    version after the family for a later one (`case.v2.opened`), so both versions have their own."""
    version = subject_version(model.subject_pattern())
    if version == 1:
        return model.event_type
    family, _, rest = model.event_type.partition(".")
    return f"{family}.v{version}.{rest}"


def _subclasses(cls: type[Event]) -> list[type[Event]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def _tokens(pattern: str) -> tuple[str | None, ...]:
    """A pattern's tokens, None where a `{name}` stands for any one token."""
    return tuple(None if t.startswith("{") and t.endswith("}") else t for t in pattern.split("."))


class Registry:
    """Subject pattern → event model, for the models in contracts/ and any registered besides."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._discovered: dict[str, type[Event]] | None = None
        self._extra: dict[str, type[Event]] = {}
        self._by_subject: dict[str, type[Event] | None] = {}

    def _discover(self) -> dict[str, type[Event]]:
        if self._discovered is None:
            for mod in pkgutil.iter_modules(contracts.__path__):
                if mod.name not in {"export", "registry", "asyncapi"}:
                    importlib.import_module(f"contracts.{mod.name}")
            found: dict[str, type[Event]] = {}
            for model in _subclasses(Event):
                if model.event_type and model.__module__.startswith("contracts."):
                    _add(found, model)
            self._discovered = found
        return self._discovered

    def patterns(self) -> dict[str, type[Event]]:
        """Subject pattern → model, sorted by pattern."""
        with self._lock:
            merged = dict(self._discover())
            for model in self._extra.values():
                _add(merged, model)
        return dict(sorted(merged.items()))

    def register(self, model: type[Event]) -> None:
        """Add a model defined outside contracts/ (checked like a discovered one)."""
        with self._lock:
            _add({**self._discover(), **self._extra}, model)
            self._extra[model.subject_pattern()] = model
            self._by_subject.clear()

    def unregister(self, model: type[Event]) -> None:
        """Remove a model added by `register`."""
        with self._lock:
            if self._extra.get(model.subject_pattern()) is model:
                del self._extra[model.subject_pattern()]
            self._by_subject.clear()

    def model_for(self, subject: str) -> type[Event]:
        """The model of the pattern `subject` matches; its version token must match too."""
        found = self._by_subject.get(subject, ...)
        if found is ...:
            parts = subject.split(".")
            found = None
            for pattern, model in self.patterns().items():
                tokens = _tokens(pattern)
                if len(tokens) == len(parts) and all(t is None or t == p for t, p in zip(tokens, parts, strict=True)):
                    found = model
                    break
            if len(self._by_subject) < 10_000:  # subjects carry street codes: a bounded, small set
                self._by_subject[subject] = found
        if found is None:
            raise UnknownSubject(subject)
        return found


def _add(into: dict[str, type[Event]], model: type[Event]) -> None:
    """Add `model` under its pattern, refusing two models on one pattern or one name, or a body whose
    `schema_version` says another version than its subject."""
    pattern = model.subject_pattern()
    if not model.event_type or not pattern:
        raise TypeError(f"{model.__name__} needs an event_type and a subject (subject_prefix or subject_pattern)")
    other = into.get(pattern)
    if other is not None and other is not model:
        raise TypeError(f"two models claim {pattern}: {other} and {model}; a new shape needs a new subject version")
    name = message_name(model)
    for existing in into.values():
        if existing is not model and message_name(existing) == name:
            raise TypeError(f"two models are named {name}: {existing} and {model}")
    version = subject_version(pattern)
    declared = model.model_fields["schema_version"].default
    if declared != version:
        raise TypeError(
            f"{model.__name__} is published on {pattern} (v{version}) but its schema_version defaults to "
            f"{declared}: declare `schema_version: int = Field(default={version}, ge=1)`"
        )
    into[pattern] = model


REGISTRY = Registry()


def patterns() -> dict[str, type[Event]]:
    """Subject pattern → event model, every version."""
    return REGISTRY.patterns()


def events() -> dict[str, type[Event]]:
    """Message name (`case.opened`, `case.v2.opened`) → model, for every event model, every version."""
    return dict(sorted((message_name(m), m) for m in REGISTRY.patterns().values()))


def register(model: type[Event]) -> None:
    """Add an event model defined outside contracts/."""
    REGISTRY.register(model)


@contextmanager
def registered(*models: type[Event]) -> Iterator[None]:
    """Models added for the duration of a block (tests of a new version before it ships)."""
    for model in models:
        register(model)
    try:
        yield
    finally:
        for model in models:
            REGISTRY.unregister(model)


def model_for(subject: str) -> type[Event]:
    """The event model carried on `subject` (of the subject's own version)."""
    return REGISTRY.model_for(subject)


def decode(subject: str, data: bytes) -> Event:
    """Parse and validate a message body; raises UnknownSubject or pydantic.ValidationError."""
    return model_for(subject).model_validate_json(data)


def stream_subjects(spec: StreamSpec) -> list[str]:
    """A stream's subjects for every version in use: `case.v1.>`, plus `case.v2.>` once a v2 case event is
    registered, so both versions are captured side by side while consumers move."""
    from contracts.streams import any_version

    out: list[str] = []
    for subject in spec.subjects:
        family = any_version(subject.removesuffix(">"))
        versions = {subject_version(subject)}
        versions |= {subject_version(p) for p in patterns() if any_version(p).startswith(family)}
        v1 = f"v{subject_version(subject)}"
        out += [".".join(f"v{n}" if t == v1 else t for t in subject.split(".")) for n in sorted(versions)]
    return out
