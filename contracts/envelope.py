"""The envelope every event carries (docs/integrating/contracts.md)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_event_id() -> str:
    """A UUIDv7 string: unique and ordered by creation time (RFC 9562)."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same or earlier millisecond (clock step back): keep ids monotonic in this process.
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFF:
                ms += 1
                _seq = 0
        else:
            _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last_ms = ms
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    return str(uuid.UUID(int=value))


def derived_event_id(cause_id: str, *parts: str) -> str:
    """The id of an event caused by another, made from the cause's id and what tells its effects apart: the same
    each time it is made, so an effect emitted again for a redelivered cause carries its first emission's id and
    the bus drops the copy. A UUIDv7 dated as its cause (a cause whose id is no UUIDv7 dates it by the hash)."""
    digest = hashlib.sha256("\x1f".join((cause_id, *parts)).encode()).digest()
    try:
        cause = uuid.UUID(cause_id)
        ms = cause.int >> 80 if cause.version == 7 else int.from_bytes(digest[10:16], "big")
    except ValueError:
        ms = int.from_bytes(digest[10:16], "big")
    seq = int.from_bytes(digest[:2], "big") & 0xFFF
    rand = int.from_bytes(digest[2:10], "big") & ((1 << 62) - 1)
    return str(uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


# The envelope of every example event in the published documents.
EXAMPLE_ENVELOPE: dict[str, Any] = {
    "event_id": "01935d1e-7a4b-7c3d-8e9f-0123456789ab",
    "occurred_at": "2026-11-23T02:00:00Z",
    "schema_version": 1,
    "correlation_id": "grid:R-20261123-001",
}


class Exampled:
    """A message model with an example body for the published documents (validated against its schema and
    parsed by the model in tests/unit/test_asyncapi.py).

    A model declares only what is its own in `example_fields`; `example_base` holds what every message of its
    kind carries (the envelope of an event, the actor and case of a command), so it is written once.
    """

    example_base: ClassVar[dict[str, Any]] = {}
    example_fields: ClassVar[dict[str, Any]] = {}

    @classmethod
    def example(cls) -> dict[str, Any]:
        """The example body: the base and the model's own fields (a model that declares none gets an example the
        tests refuse, naming it)."""
        return {**cls.example_base, **cls.example_fields}


class Envelope(BaseModel):
    """Fields shared by every message on the bus."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    event_id: str = Field(default_factory=new_event_id, description="Unique, time-ordered (UUIDv7).")
    occurred_at: AwareDatetime = Field(default_factory=utcnow, description="When it happened, UTC.")
    schema_version: int = Field(default=1, ge=1)
    correlation_id: str = Field(default="", description="The id of the report (or command) that started the chain.")

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)


class Event(Exampled, Envelope):
    """A published fact, named in the past tense.

    `event_type` names the message; `subject_for()` gives the subject it is published on.
    """

    event_type: ClassVar[str] = ""
    subject_prefix: ClassVar[str] = ""
    example_base: ClassVar[dict[str, Any]] = EXAMPLE_ENVELOPE

    def subject_for(self) -> str:
        """The NATS subject this event is published on."""
        return self.subject_prefix

    @classmethod
    def subject_pattern(cls) -> str:
        """Every subject this event can be published on, `{name}` in place of a variable token, with its
        version token: `case.v1.opened.{street_code}`. The registry keys and decodes models by it."""
        return cls.subject_prefix

    def to_json(self) -> bytes:
        """The body as sent on the bus."""
        return self.model_dump_json(exclude_none=False).encode()

    @classmethod
    def example(cls) -> dict[str, Any]:
        """The example body, its `schema_version` the model's own (a v2 event's example says 2)."""
        body = super().example()
        if body:
            body["schema_version"] = cls.model_fields["schema_version"].default
        return body
