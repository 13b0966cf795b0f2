"""The AsyncAPI 3.0 document of the bus, generated from the models in contracts/ (`xiuhua docs` writes it).

Every subject of every service is a channel: inbound reports and commands (which Xiuhua receives), case
events per `case.v1.<event>.<street_code>` with the street as a parameter, scores, notifications, the
bulletin and dead letters (which Xiuhua sends). Each message carries its JSON Schema (from the pydantic
model, shared definitions under `components.schemas`) and an example that validates against it.
New event models are found by `contracts.registry.events()` (every subject version: `case.v2.opened` is its own
message and channel beside `case.opened`), new commands by `contracts.commands.COMMANDS`, new queries by
`contracts.queries.QUERIES`, so they appear here on the next regeneration; every model brings its example
(`example_fields`, see `contracts.envelope.Exampled`).

Scoring's queries (`score.query.v1.<query>`) are core NATS request/reply, not JetStream: their channels say
`x-nats-core: true` and name no stream, the request's operation (`receive`) has a `reply` naming the reply
channel (the requester's inbox, `address: null`) with the query's reply and the shared error reply.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

CONTRACTS_DIR = Path(__file__).parent
ASYNCAPI_JSON = CONTRACTS_DIR / "asyncapi.json"
ASYNCAPI_YAML = CONTRACTS_DIR / "asyncapi.yaml"
PUBLISHED_DIR = CONTRACTS_DIR / "published"
REGENERATE = "run `xiuhua docs` (or `python -m contracts.asyncapi`) and commit contracts/"

# Which service produces a subject family, and which consume it (README.md, "Architecture").
_FAMILIES: dict[str, tuple[str, str]] = {
    "report.in": ("external systems (patrol app, 12345, IoT, supervisors)", "intake"),
    "report.rejected": ("intake", "the source systems, operators"),
    "cmd": ("unit case systems, the command centre, hotline call-backs", "dispatch (correct_transfer: intake)"),
    "case": (
        "dispatch (opened, merged, transferred, transfer_corrected: intake)",
        "scoring, notify, unit case systems",
    ),
    "score": ("scoring", "notify, dashboards"),
    "notify": ("notify", "operators"),
    "bulletin": ("notify", "operators, the command centre"),
    "dlq": ("every service", "operators (`xiuhua dlq`)"),
    "score.query": (
        "outside systems (dashboards, the 12345 platform, unit case systems, `xiuhua scoring show`)",
        "scoring",
    ),
}
# Subjects other systems rely on that may not have a model yet: documented as channels all the same.
FIXED_SUBJECTS = ("bulletin.v1.published",)


@dataclass(frozen=True)
class MessageSpec:
    """One message on the bus: its name, model, subject pattern and direction."""

    name: str  # unique: case.dispatched, report.in.grid, cmd.case.resolve; a later version case.v2.dispatched
    model: type[BaseModel]
    address: str  # e.g. case.v1.dispatched.{street_code}
    parameters: tuple[tuple[str, str], ...]
    action: str  # "receive" (Xiuhua consumes it) or "send" (Xiuhua publishes it)
    version: int
    msg_id: str  # what Nats-Msg-Id is set from ("" on core NATS, which has no de-duplication)
    example: dict[str, Any]
    core: bool = False  # core NATS request/reply: no stream stores it
    replies: tuple[str, ...] = ()  # a request: the names of the messages that may answer it
    is_reply: bool = False  # sent to the requester's reply inbox; `address` is the request's subject

    @property
    def contract(self) -> str:
        """The name without its version (`case.v2.opened` → `case.opened`): versions of one message share it."""
        family, _, rest = self.name.partition(".")
        head, _, tail = rest.partition(".")
        return f"{family}.{tail}" if re.fullmatch(r"v\d+", head) else self.name

    @property
    def family(self) -> str:
        """The subject family (report.in, cmd, case, ...)."""
        name = self.contract
        if name.startswith("score.query."):
            return "score.query"
        if name.startswith("report.in."):
            return "report.in"
        return "report.rejected" if name == "report.rejected" else name.split(".")[0]


# What the `{name}` tokens of event subjects stand for.
PARAMETERS: dict[str, str] = {
    "street_code": "街道 code of the case's place (`unknown` when it has none); filter on it",
    "service": "The service that dead-lettered the message",
}


def _parameters(address: str) -> tuple[tuple[str, str], ...]:
    names = re.findall(r"\{(\w+)\}", address)
    missing = [n for n in names if n not in PARAMETERS]
    if missing:
        raise ValueError(f"subject parameter(s) {missing} of {address} have no description in asyncapi.PARAMETERS")
    return tuple((n, PARAMETERS[n]) for n in names)


def message_specs() -> list[MessageSpec]:
    """Every message of the bus, in a stable order: inbound reports, commands, events, then queries (each
    request followed by its reply, the shared error reply last)."""
    return [*_report_specs(), *_command_specs(), *_event_specs(), *_query_specs()]


def _report_specs() -> list[MessageSpec]:
    """The inbound report (上报) messages, one per source."""
    from contracts import reports, subjects
    from contracts.registry import subject_version

    out: list[MessageSpec] = []
    for source, model in reports.INBOUND_BY_SOURCE.items():
        address = subjects.report_subject(source)
        example = model.example()
        msg_id = f"`<source>:<source reference>` e.g. `{source}:{_ref(model, example)}`"
        out.append(
            MessageSpec(f"report.in.{source}", model, address, (), "receive", subject_version(address), msg_id, example)
        )
    return out


def _command_specs() -> list[MessageSpec]:
    """The case command (案件指令) messages, one per action."""
    from contracts import commands, subjects
    from contracts.registry import subject_version

    out: list[MessageSpec] = []
    for action, model in commands.COMMANDS.items():
        address = subjects.COMMAND.format(action=action)
        example = model.example()
        out.append(
            MessageSpec(
                f"cmd.case.{action}", model, address, (), "receive", subject_version(address), "`command_id`", example
            )
        )
    return out


def _event_specs() -> list[MessageSpec]:
    """The event (事件) messages, one per registered event."""
    from contracts.registry import events, subject_version

    out: list[MessageSpec] = []
    for name, model in events().items():
        address = model.subject_pattern()
        out.append(
            MessageSpec(
                name,
                model,
                address,
                _parameters(address),
                "send",
                subject_version(address),
                "`event_id`",
                model.example(),
            )
        )
    return out


def _query_specs() -> list[MessageSpec]:
    """The score query (考评查询) messages: each request followed by its reply, the shared error reply last."""
    from contracts import queries
    from contracts.registry import subject_version

    out: list[MessageSpec] = []
    error = "score.query.error"
    for name, query in queries.QUERIES.items():
        version = subject_version(query.subject)
        reply = f"score.query.{name}.reply"
        for spec_name, model, action, replies in (
            (f"score.query.{name}", query.request, "receive", (reply, error)),
            (reply, query.reply, "send", ()),
        ):
            out.append(
                MessageSpec(
                    spec_name,
                    model,
                    query.subject,
                    (),
                    action,
                    version,
                    "",
                    model.example(),
                    core=True,
                    replies=replies,
                    is_reply=not replies,
                )
            )
    error_model = queries.QueryErrorReply
    out.append(
        MessageSpec(
            error,
            error_model,
            queries.QUERY_ALL,
            (),
            "send",
            subject_version(queries.QUERY_ALL),
            "",
            error_model.example(),
            core=True,
            is_reply=True,
        )
    )
    return out


def _ref(model: Any, example: dict[str, Any]) -> str:
    try:
        return str(model.model_validate(example).source_ref())
    except Exception:  # an example that does not validate is reported by the tests, not here
        return "..."


def json_schema(spec: MessageSpec) -> dict[str, Any]:
    """The standalone JSON Schema (2020-12) of a message with its example, definitions under `$defs`."""
    schema = spec.model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    if spec.example:
        schema["examples"] = [spec.example]
    return schema


def _components_refs(node: Any) -> Any:
    """Point `#/$defs/X` references at `#/components/schemas/X` (where the document keeps them)."""
    if isinstance(node, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _components_refs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_components_refs(v) for v in node]
    return node


def _channel_id(address: str) -> str:
    return re.sub(r"[{}]", "", address).replace(".", "_").strip("_")


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict (deterministic: same contracts, same document)."""
    specs = message_specs()
    shared: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in specs:
        message = _message(spec, shared)
        messages[spec.name] = message
        if spec.is_reply:
            continue  # its channel is the requester's inbox, written with the request below
        if spec.core:
            _request_reply(spec, {s.name: s for s in specs}, message["summary"], channels, operations)
            continue
        channel_id = _channel_id(spec.address)
        channels[channel_id] = _stream_channel(spec)
        op_id = f"{spec.action}_{channel_id}"
        operations[op_id] = {
            "action": spec.action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": message["summary"],
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{spec.model.__name__}"}],
        }
    _add_unpublished_subjects(channels, operations)
    shared["Headers"] = _headers_schema()
    return {
        **_document_head(),
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": dict(sorted(shared.items())),
            "correlationIds": {
                "Report": {
                    "description": "The report (or command) that started the chain",
                    "location": "$message.payload#/correlation_id",
                }
            },
        },
    }


def _message(spec: MessageSpec, shared: dict[str, Any]) -> dict[str, Any]:
    """The components message of one spec; its schema's `$defs` go into `shared` (one definition per name)."""
    schema = copy.deepcopy(json_schema(spec))
    schema.pop("$schema", None)
    for def_name, definition in schema.pop("$defs", {}).items():
        definition = _components_refs(definition)
        if shared.setdefault(def_name, definition) != definition:
            raise ValueError(f"two different models are both named {def_name!r}; rename one")
    message: dict[str, Any] = {
        "name": spec.name,
        "title": spec.model.__name__,
        "summary": (spec.model.__doc__ or "").strip().splitlines()[0],
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/Headers"},
        "payload": _components_refs(schema),
        "examples": [{"name": spec.name, "payload": spec.example}],
        "x-xiuhua-schema-version": spec.version,
        "x-xiuhua-nats-msg-id": spec.msg_id,
    }
    if spec.core:
        # Core NATS: no JetStream, so no Nats-Msg-Id header and no de-duplication.
        del message["headers"], message["x-xiuhua-nats-msg-id"]
    elif spec.action == "send":
        message["correlationId"] = {"$ref": "#/components/correlationIds/Report"}
    return message


def _stream_channel(spec: MessageSpec) -> dict[str, Any]:
    """The channel of a JetStream message: its subject, stream, archives and subject parameters."""
    producer, consumers = _FAMILIES.get(spec.family, ("", ""))
    stream = _stream(spec.address)
    channel: dict[str, Any] = {
        "address": spec.address,
        "title": spec.name,
        "description": f"Published by {producer}; consumed by {consumers}. JetStream stream `{stream}`.",
        "messages": {spec.model.__name__: {"$ref": f"#/components/messages/{spec.name}"}},
        "x-jetstream-stream": stream,
    }
    if archives := _archives(spec.address):
        channel["x-jetstream-archives"] = archives
        channel["description"] += f" Archived in {', '.join(f'`{a}`' for a in archives)}."
    if spec.parameters:
        channel["parameters"] = {name: {"description": doc} for name, doc in spec.parameters}
    return channel


def _add_unpublished_subjects(channels: dict[str, Any], operations: dict[str, Any]) -> None:
    """Add a channel and send operation for each fixed subject whose message contract is not published yet."""
    for address in FIXED_SUBJECTS:
        channel_id = _channel_id(address)
        if channel_id not in channels:
            family = address.split(".")[0]
            producer, consumers = _FAMILIES.get(family, ("", ""))
            channels[channel_id] = {
                "address": address,
                "title": address,
                "description": f"Published by {producer}; consumed by {consumers}. JetStream stream "
                f"`{_stream(address)}`. Its message contract is not published yet.",
                "messages": {},
                "x-jetstream-stream": _stream(address),
            }
            operations[f"send_{channel_id}"] = {"action": "send", "channel": {"$ref": f"#/channels/{channel_id}"}}


def _headers_schema() -> dict[str, Any]:
    """The schema of the headers every JetStream message carries (core NATS queries carry none)."""
    return {
        "type": "object",
        "properties": {
            "Nats-Msg-Id": {
                "type": "string",
                "description": "JetStream de-duplicates on it within the stream's two-minute window: "
                "events use event_id, commands command_id, reports `<source>:<source reference>`",
            },
            "content-type": {"type": "string", "const": "application/json"},
        },
        "required": ["Nats-Msg-Id"],
    }


def _document_head() -> dict[str, Any]:
    """What the document says of the bus as a whole, before its channels and operations."""
    return {
        "asyncapi": "3.0.0",
        "id": "urn:xiuhua:bus",
        "info": {
            "title": "Xiuhua (绣花) event bus",
            "version": "1.0.0",
            "description": (
                "City refined-management event backbone: reports become cases, cases go to the units that must "
                "fix them, come back fixed, are verified, scored and reported. NATS JetStream subjects are "
                "versioned (`.v1.`); a breaking change is published on a new subject version, side by side "
                "with the old one. Generated from `contracts/`; " + REGENERATE + "."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {
                "host": "127.0.0.1:{port}",
                "protocol": "nats",
                "description": "`xiuhua up` prints the URL (var/endpoints.json); production sets XIUHUA_NATS_URL",
                "variables": {"port": {"default": "4222"}},
            }
        },
    }


def _request_reply(
    spec: MessageSpec,
    by_name: dict[str, MessageSpec],
    summary: str,
    channels: dict[str, Any],
    operations: dict[str, Any],
) -> None:
    """A core NATS request channel, its reply channel (the requester's inbox) and the `receive` operation
    whose `reply` names the messages that may come back."""
    from contracts.queries import QUEUE_GROUP

    producer, consumers = _FAMILIES[spec.family]
    channel_id = _channel_id(spec.address)
    reply_id = f"{channel_id}_reply"
    channels[channel_id] = {
        "address": spec.address,
        "title": spec.name,
        "description": (
            f"Requested by {producer}; answered by {consumers} (queue group `{QUEUE_GROUP}`). Core NATS "
            "request/reply: no JetStream stream captures the subject, nothing is stored, a request with no "
            "scoring instance running gets no responders."
        ),
        "messages": {spec.model.__name__: {"$ref": f"#/components/messages/{spec.name}"}},
        "x-nats-core": True,
        "x-nats-queue-group": QUEUE_GROUP,
    }
    replies = [by_name[name] for name in spec.replies]
    channels[reply_id] = {
        "address": None,
        "title": f"{spec.name} reply",
        "description": (
            f"The reply inbox the requester's NATS client sets on `{spec.address}` (`_INBOX_<user>.…`): the query's "
            "reply, or an error reply with a code."
        ),
        "messages": {r.model.__name__: {"$ref": f"#/components/messages/{r.name}"} for r in replies},
        "x-nats-core": True,
    }
    operations[f"receive_{channel_id}"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{spec.model.__name__}"}],
        "reply": {
            "channel": {"$ref": f"#/channels/{reply_id}"},
            "messages": [{"$ref": f"#/channels/{reply_id}/messages/{r.model.__name__}"} for r in replies],
        },
    }


def _stream(address: str) -> str:
    from contracts.streams import stream_for

    return stream_for(address).name


def _archives(address: str) -> list[str]:
    """Streams that keep a copy of the subject (longer than the stream it arrives on)."""
    from contracts.streams import ALL

    return [spec.name for spec in ALL for _, subject in spec.sources if subject == address]


def render_json(doc: dict[str, Any]) -> str:
    """The document as committed JSON."""
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def render_yaml(doc: dict[str, Any]) -> str:
    """The document as committed YAML (same content as the JSON)."""
    import yaml

    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120)


def frozen_schema(spec: MessageSpec) -> dict[str, Any]:
    """What `contracts/published/<message>/v<version>.json` keeps: the schema without its examples."""
    schema = json_schema(spec)
    schema.pop("examples", None)
    schema["x-xiuhua-subject"] = spec.address
    schema["x-xiuhua-schema-version"] = spec.version
    return schema


def published_path(spec: MessageSpec, root: Path = PUBLISHED_DIR) -> Path:
    """Where the frozen copy of a message's schema version lives."""
    return root / spec.contract / f"v{spec.version}.json"


def freeze_new_versions(root: Path = PUBLISHED_DIR) -> list[Path]:
    """Write the frozen copy of every message version that has none yet; never overwrite one."""
    written = []
    for spec in message_specs():
        path = published_path(spec, root)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(frozen_schema(spec), ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        written.append(path)
    return written


def compatibility_problems(root: Path = PUBLISHED_DIR) -> list[str]:
    """Each message version's current schema against its frozen copy under `root`; empty when nothing breaks.

    A version is compared only with itself: `case.v2.opened` is a new message beside `case.opened` (v1), not a
    breaking change of it. A frozen version with no model any more is a problem too (consumers rely on it).
    """
    from contracts.compat import breaking_changes

    problems = []
    specs = message_specs()
    for spec in specs:
        path = published_path(spec, root)
        if not path.exists():
            problems.append(f"{spec.name} v{spec.version} has no frozen copy at {_rel(path, root)}: {REGENERATE}")
            continue
        frozen = json.loads(path.read_text(encoding="utf-8"))
        if breaks := breaking_changes(frozen, frozen_schema(spec)):
            problems.append(
                f"{spec.name} v{spec.version} breaks its published schema ({_rel(path, root)}): {'; '.join(breaks)}. "
                "Keep the fields and add new ones as optional, or publish the new shape on a new subject version "
                "(e.g. case.v2....) beside the old one. If this version was never released, delete its frozen "
                "copy and run `xiuhua docs`."
            )
    current = {published_path(spec, root) for spec in specs}
    for path in sorted(root.glob("*/v*.json")):
        if path not in current:
            problems.append(
                f"published message {path.parent.name} {path.stem} ({_rel(path, root)}) no longer exists "
                "in contracts/: consumers rely on it"
            )
    return problems


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root.parent)) if path.is_relative_to(root.parent) else str(path)


def write(json_path: Path = ASYNCAPI_JSON, yaml_path: Path = ASYNCAPI_YAML) -> list[Path]:
    """Write the AsyncAPI document as JSON and YAML."""
    doc = document()
    json_path.write_text(render_json(doc), encoding="utf-8")
    yaml_path.write_text(render_yaml(doc), encoding="utf-8")
    return [json_path, yaml_path]


if __name__ == "__main__":
    for p in [*write(), *freeze_new_versions()]:
        print(p)
