"""Decoding a case command (`cmd.v1.case.<action>`) for the service that applies it.

Commands are not events: a bad one that names its case is answered (`case.v1.command_rejected`, invalid), not
dead-lettered; only a body that is not JSON or names no case is poison, there being nobody to answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from contracts.commands import CaseCommand
from xiuhua.consumer import Poison

C = TypeVar("C", bound=CaseCommand)


@dataclass(frozen=True)
class InvalidCommand:
    """A command that breaks its schema but names its case: its service answers `command_rejected` (invalid)."""

    action: str
    case_id: str
    command_id: str
    detail: str


def decode_case_command(subject: str, data: bytes, model: type[C] | None) -> C | InvalidCommand:
    """The command as `model` (None: an action nobody knows, answered invalid); poison without JSON or a case id."""
    action = subject.rsplit(".", 1)[-1]
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Poison(f"command body is not JSON: {exc}") from exc
    case_id = body.get("case_id") if isinstance(body, dict) else None
    if not isinstance(case_id, str) or not case_id.strip():
        raise Poison(f"{action} command without a readable case_id")
    command_id = body.get("command_id")
    command_id = command_id if isinstance(command_id, str) and command_id else f"unknown:{subject}"
    if model is None:
        return InvalidCommand(action, case_id.strip(), command_id, f"unknown action {action!r}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        return InvalidCommand(action, case_id.strip(), command_id, detail[:1000])
