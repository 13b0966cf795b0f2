"""The AsyncAPI 3.0 document of the bus, generated from the models in contracts/ (`xiuhua docs` writes it).

Every subject of every service is a channel: inbound reports and commands (which Xiuhua receives), case
events per `case.v1.<event>.<street_code>` with the street as a parameter, scores, notifications, the
bulletin and dead letters (which Xiuhua sends). Each message carries its JSON Schema (from the pydantic
model, shared definitions under `components.schemas`) and an example that validates against it.
New event models are found by `contracts.registry.events()`, so they appear here on the next regeneration.
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

_ENVELOPE_EXAMPLE = {
    "event_id": "01935d1e-7a4b-7c3d-8e9f-0123456789ab",
    "occurred_at": "2026-11-23T02:00:00Z",
    "schema_version": 1,
    "correlation_id": "grid:R-20261123-001",
}

# Inbound payloads have no `example()` of their own: these are what the source systems really send.
INBOUND_EXAMPLES: dict[str, dict[str, Any]] = {
    "grid": {
        "report_id": "R-20261123-001",
        "reported_at": "2026-11-23T09:58:00+08:00",
        "inspector_id": "G-017",
        "description": "解放路口垃圾箱满溢，垃圾散落",
        "category_code": "0201",
        "grid_code": "CD01-03",
        "location": {"lng": 120.1552, "lat": 30.2741, "coord_system": "gcj02"},
        "address": "城东街道 解放路 18 号",
        "photo_urls": ["https://img.example/before.jpg"],
        "handled_on_site": False,
    },
    "hotline": {
        "order_no": "12345-20261123-0042",
        "received_at": "2026-11-23T09:15:00+08:00",
        "channel": "12345",
        "title": "解放路夜间烧烤油烟扰民",
        "content": "解放路18号门口每晚有露天烧烤，油烟很大，影响居民休息",
        "address": "城东街道 解放路 18 号",
        "caller": {"name": "张三", "phone": "13800135678"},
        "hotline_category": "城乡建设/市容环境",
        "urgent": False,
        "reply_deadline": "2026-11-26T18:00:00+08:00",
    },
    "sensor": {
        "device_id": "DUST-CD-007",
        "device_type": "dust",
        "measured_at": "2026-11-23T10:00:00+08:00",
        "values": {"pm10": 182.0, "pm25": 95.0},
        "location": {"lng": 120.1601, "lat": 30.2558, "coord_system": "wgs84"},
        "site_id": "工地-金桥-03",
    },
    "inspection": {
        "finding_id": "DC-2026-118",
        "inspected_at": "2026-11-23T10:30:00+08:00",
        "team": "区城管委暗访组",
        "kind": "暗访",
        "description": "金桥路沿街商户跨门经营，占道堆放货物",
        "category_code": "0301",
        "address": "金桥街道 金桥路 66 号",
        "photo_urls": [],
    },
    "merchant_check": {
        "check_id": "MC-20261123-009",
        "merchant_id": "M-CD-0042",
        "checked_at": "2026-11-23T11:00:00+08:00",
        "inspector_id": "G-017",
        "items": {"hygiene": "pass", "order": "fail", "greenery": "pass"},
        "photo_urls": [],
        "note": "门前堆放纸箱",
    },
    "open311": {
        "request_id": "o311-5f2c9a",
        "reported_at": "2026-11-23T12:05:00+08:00",
        "service_code": "0201",
        "category_code": "0201",
        "description": "小区门口垃圾桶满了好几天没人清",
        "location": {"lng": 120.1552, "lat": 30.2741, "coord_system": "wgs84"},
        "address": "城东街道 解放路 18 号",
        "photo_urls": ["https://img.example/o311.jpg"],
        "reporter": {"kind": "citizen", "key": "c-9a8b7c", "display": "李*"},
    },
}

_COMMAND_BASE: dict[str, Any] = {
    "command_id": "CD-SAN-20261123-0001",
    "case_id": "C-01935d1e7a4b",
    "actor": {"unit_id": "CD-SAN", "role": "sanitation", "name": "王强"},
    "at": "2026-11-23T03:00:00Z",
}
_CENTRE = {"unit_id": "XH-CC", "role": "command_centre", "name": "李敏"}
# Per action, what a command adds to (or changes in) the fields every command carries.
COMMAND_EXAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "acknowledge": {},
    "return": {"reason": "不属于本单位职责，应由市场监管所处理"},
    "request_extension": {"hours": 16, "reason": "需协调产权单位更换井盖"},
    "approve_extension": {"actor": _CENTRE},
    "resolve": {"note": "已清运，周边已冲洗", "photo_urls": ["https://img.example/after.jpg"]},
    "verify": {"actor": _CENTRE, "passed": True, "note": "现场核查通过", "photo_urls": []},
    "close": {"actor": _CENTRE},
    "reopen": {"actor": _CENTRE, "reason": "问题复发"},
    "rate": {"actor": {"unit_id": "HOTLINE", "role": "hotline", "name": "12345 回访"}, "satisfaction": "satisfied"},
    "cancel": {"actor": _CENTRE, "reason": "虚假举报"},
    "assign": {"actor": _CENTRE, "unit_id": "CD-ENF", "cooperating_unit_ids": ["CD01"], "category_code": "0101",
               "reason": "分拣: 占道经营, 交城东综合执法队"},
}

# Which service produces a subject family, and which consume it (README "Architecture").
_FAMILIES: dict[str, tuple[str, str]] = {
    "report.in": ("external systems (patrol app, 12345, IoT, supervisors)", "intake"),
    "report.rejected": ("intake", "the source systems, operators"),
    "cmd": ("unit case systems, the command centre, hotline call-backs", "dispatch"),
    "case": ("dispatch (opened, merged, transferred: intake)", "scoring, notify, unit case systems"),
    "score": ("scoring", "notify, dashboards"),
    "notify": ("notify", "operators"),
    "bulletin": ("notify", "operators, the command centre"),
    "dlq": ("every service", "operators (`xiuhua dlq`)"),
}
# Subjects DESIGN.md §8 promises that may not have a model yet: documented as channels all the same.
FIXED_SUBJECTS = ("bulletin.v1.published",)


@dataclass(frozen=True)
class MessageSpec:
    """One message on the bus: its name, model, subject pattern and direction."""

    name: str  # e.g. case.dispatched, report.in.grid, cmd.case.resolve
    model: type[BaseModel]
    address: str  # e.g. case.v1.dispatched.{street_code}
    parameters: tuple[tuple[str, str], ...]
    action: str  # "receive" (Xiuhua consumes it) or "send" (Xiuhua publishes it)
    version: int
    msg_id: str  # what Nats-Msg-Id is set from
    example: dict[str, Any]

    @property
    def family(self) -> str:
        """The subject family (report.in, cmd, case, ...)."""
        head = self.name.split(".")[0]
        if self.name.startswith("report.in."):
            return "report.in"
        return "report.rejected" if self.name == "report.rejected" else head


def _subject_version(address: str) -> int:
    match = re.search(r"\.v(\d+)\.", address + ".")
    return int(match.group(1)) if match else 1


def _event_address(model: Any, example: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The subject pattern of an event: its example's subject with the variable token made a parameter."""
    from contracts.cases import CaseEvent
    from contracts.dead_letters import DeadLetter

    subject = model.model_validate(example).subject_for()
    if not subject:
        raise ValueError(f"{model.__name__} ({model.event_type}) has no subject: set subject_prefix or subject_for()")
    if issubclass(model, CaseEvent):
        base = subject.rsplit(".", 1)[0]
        return f"{base}.{{street_code}}", (
            ("street_code", "街道 code of the case's place (`unknown` when it has none); filter on it"),
        )
    if issubclass(model, DeadLetter):
        return "dlq.v1.{service}", (("service", "The service that dead-lettered the message"),)
    return subject, ()


def message_specs() -> list[MessageSpec]:
    """Every message of the bus, in a stable order: inbound reports, commands, then events."""
    from contracts import commands, reports, subjects
    from contracts.registry import events

    out: list[MessageSpec] = []
    for source, model in reports.INBOUND_BY_SOURCE.items():
        address = subjects.report_subject(source)
        example = _model_example(model) or INBOUND_EXAMPLES.get(source, {})
        out.append(MessageSpec(f"report.in.{source}", model, address, (), "receive", _subject_version(address),
                               f"`<source>:<source reference>` e.g. `{source}:{_ref(model, example)}`", example))
    for action, model in commands.COMMANDS.items():
        address = subjects.COMMAND.format(action=action)
        example = _model_example(model) or {**_COMMAND_BASE, **COMMAND_EXAMPLE_FIELDS.get(action, {})}
        out.append(MessageSpec(f"cmd.case.{action}", model, address, (), "receive", _subject_version(address),
                               "`command_id`", example))
    for name, model in events().items():
        example = model.example()
        address, params = _event_address(model, example)
        version = int(model.model_fields["schema_version"].default or 1)
        out.append(MessageSpec(name, model, address, params, "send", version, "`event_id`", example))
    return out


def _model_example(model: Any) -> dict[str, Any]:
    """The model's own example, when it declares one (`json_schema_extra={"examples": [...]}`)."""
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return dict(examples[0]) if examples else {}


def _ref(model: Any, example: dict[str, Any]) -> str:
    try:
        return str(model.model_validate(example).source_ref())
    except Exception:  # an example that does not validate is reported by the tests, not here
        return "..."


def json_schema(spec: MessageSpec) -> dict[str, Any]:
    """The standalone JSON Schema (2020-12) of a message, definitions under `$defs`."""
    schema = spec.model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _components_refs(node: Any) -> Any:
    """Point `#/$defs/X` references at `#/components/schemas/X` (where the document keeps them)."""
    if isinstance(node, dict):
        return {
            k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str)
                else _components_refs(v))
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
        schema = copy.deepcopy(json_schema(spec))
        schema.pop("$schema", None)
        for def_name, definition in schema.pop("$defs", {}).items():
            definition = _components_refs(definition)
            if shared.setdefault(def_name, definition) != definition:
                raise ValueError(f"two different models are both named {def_name!r}; rename one")
        producer, consumers = _FAMILIES.get(spec.family, ("", ""))
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
        if spec.action == "send":
            message["correlationId"] = {"$ref": "#/components/correlationIds/Report"}
        messages[spec.name] = message
        channel_id = _channel_id(spec.address)
        stream = _stream(spec.address)
        channel: dict[str, Any] = {
            "address": spec.address,
            "title": spec.name,
            "description": f"Published by {producer}; consumed by {consumers}. JetStream stream `{stream}`.",
            "messages": {spec.model.__name__: {"$ref": f"#/components/messages/{spec.name}"}},
            "x-jetstream-stream": stream,
        }
        if spec.parameters:
            channel["parameters"] = {name: {"description": doc} for name, doc in spec.parameters}
        channels[channel_id] = channel
        op_id = f"{spec.action}_{channel_id}"
        operations[op_id] = {
            "action": spec.action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": message["summary"],
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{spec.model.__name__}"}],
        }
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
    shared["Headers"] = {
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


def _stream(address: str) -> str:
    from contracts.streams import stream_for

    return stream_for(address).name


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
    return root / spec.name / f"v{spec.version}.json"


def freeze_new_versions(root: Path = PUBLISHED_DIR) -> list[Path]:
    """Write the frozen copy of every message version that has none yet; never overwrite one."""
    written = []
    for spec in message_specs():
        path = published_path(spec, root)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(frozen_schema(spec), ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                        encoding="utf-8")
        written.append(path)
    return written


def write(json_path: Path = ASYNCAPI_JSON, yaml_path: Path = ASYNCAPI_YAML) -> list[Path]:
    """Write the AsyncAPI document as JSON and YAML."""
    doc = document()
    json_path.write_text(render_json(doc), encoding="utf-8")
    yaml_path.write_text(render_yaml(doc), encoding="utf-8")
    return [json_path, yaml_path]


if __name__ == "__main__":
    for p in [*write(), *freeze_new_versions()]:
        print(p)
