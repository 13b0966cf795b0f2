"""The AsyncAPI document: every subject covered, every example valid against its schema, committed files fresh,
published schema versions frozen and never broken."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from pydantic import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from contracts import asyncapi, commands, export, queries, reports, streams, subjects
from contracts.registry import events


@pytest.fixture(scope="module")
def doc() -> dict:
    return asyncapi.document()


def test_committed_asyncapi_documents_match_a_fresh_generation(doc: dict) -> None:
    fresh_json, fresh_yaml = asyncapi.render_json(doc), asyncapi.render_yaml(doc)
    stale = [
        p.name
        for p, fresh in ((asyncapi.ASYNCAPI_JSON, fresh_json), (asyncapi.ASYNCAPI_YAML, fresh_yaml))
        if not p.exists() or p.read_text(encoding="utf-8") != fresh
    ]
    assert not stale, f"contracts/{', '.join(stale)} differ from the models in contracts/: {asyncapi.REGENERATE}"
    assert yaml.safe_load(fresh_yaml) == json.loads(fresh_json)


def test_generation_is_deterministic(doc: dict) -> None:
    assert asyncapi.render_json(asyncapi.document()) == asyncapi.render_json(doc)


def test_every_subject_of_every_service_has_a_channel(doc: dict) -> None:
    addresses = {c["address"] for c in doc["channels"].values()}
    expected = {subjects.report_subject(s) for s in reports.INBOUND_BY_SOURCE}
    expected |= {subjects.COMMAND.format(action=a) for a in commands.COMMANDS}
    expected |= {
        "report.v1.rejected",
        "bulletin.v1.published",
        "dlq.v1.{service}",
        "score.v1.unit_updated",
        "notify.v1.delivered",
        "case.v1.opened.{street_code}",
        "case.v1.dispatched.{street_code}",
    }
    expected |= {f"case.v1.{name.split('.', 1)[1]}.{{street_code}}" for name in events() if name.startswith("case.")}
    expected |= {q.subject for q in queries.QUERIES.values()}
    assert expected <= addresses, sorted(expected - addresses)
    jetstream = [c for c in doc["channels"].values() if not c.get("x-nats-core")]
    assert {c["x-jetstream-stream"] for c in jetstream} == {s.name for s in streams.ALL if s.subjects}
    # Core NATS request/reply channels name no stream, and no stream may capture them: a stored request would be
    # answered by the stream's acknowledgement instead of by the service.
    core = [c for c in doc["channels"].values() if c.get("x-nats-core")]
    assert {c["address"] for c in core} == {q.subject for q in queries.QUERIES.values()} | {None}
    for channel in core:
        assert "x-jetstream-stream" not in channel and "x-jetstream-archives" not in channel, channel["title"]
        if channel["address"] is not None:
            with pytest.raises(KeyError):
                streams.stream_for(channel["address"])
    archived = {a for c in doc["channels"].values() for a in c.get("x-jetstream-archives", [])}
    assert archived == {s.name for s in streams.ALL if s.sources}
    case_channel = next(c for c in doc["channels"].values() if c["address"] == "case.v1.dispatched.{street_code}")
    assert set(case_channel["parameters"]) == {"street_code"}


def test_directions_and_references_resolve(doc: dict) -> None:
    for op_id, op in doc["operations"].items():
        channel_id = op["channel"]["$ref"].removeprefix("#/channels/")
        channel = doc["channels"][channel_id]
        expected = "receive" if channel["address"].startswith(("report.v1.in.", "cmd.", "score.query.")) else "send"
        assert op["action"] == expected, op_id
        for ref in op.get("messages", []):
            key = ref["$ref"].rsplit("/", 1)[-1]
            assert key in channel["messages"], ref
        if "reply" in op:
            reply_channel = doc["channels"][op["reply"]["channel"]["$ref"].removeprefix("#/channels/")]
            for ref in op["reply"]["messages"]:
                assert ref["$ref"].startswith(op["reply"]["channel"]["$ref"] + "/messages/"), ref
                assert ref["$ref"].rsplit("/", 1)[-1] in reply_channel["messages"], ref
    for channel in doc["channels"].values():
        for ref in channel["messages"].values():
            assert ref["$ref"].removeprefix("#/components/messages/") in doc["components"]["messages"]
    text = json.dumps(doc)
    assert "#/$defs/" not in text  # every shared definition lives under components.schemas


def test_each_query_is_a_request_answered_by_its_reply_or_the_error_reply(doc: dict) -> None:
    """Scoring's queries: a `receive` operation on `score.query.v1.<query>` whose `reply` is the query's reply
    model or the shared error reply, on the requester's inbox; no message of theirs claims a Nats-Msg-Id."""
    ops = {op["channel"]["$ref"].rsplit("/", 1)[-1]: op for op in doc["operations"].values()}
    messages = doc["components"]["messages"]
    for name, query in queries.QUERIES.items():
        channel_id = next(cid for cid, c in doc["channels"].items() if c["address"] == query.subject)
        op = ops[channel_id]
        assert op["action"] == "receive" and doc["channels"][channel_id]["x-nats-core"] is True
        reply_channel = doc["channels"][op["reply"]["channel"]["$ref"].removeprefix("#/channels/")]
        assert reply_channel["address"] is None and reply_channel["x-nats-core"] is True
        answered_by = {messages[r["$ref"].rsplit("/", 1)[-1]]["title"] for r in reply_channel["messages"].values()}
        assert answered_by == {query.reply.__name__, "QueryErrorReply"}, name
        for message in (f"score.query.{name}", f"score.query.{name}.reply", "score.query.error"):
            assert "headers" not in messages[message] and "x-xiuhua-nats-msg-id" not in messages[message]
    codes = messages["score.query.error"]["payload"]
    assert set(doc["components"]["schemas"]["QueryErrorBody"]["properties"]["code"]["enum"]) == set(queries.ERROR_CODES)
    assert codes["properties"]["error"]["$ref"] == "#/components/schemas/QueryErrorBody"


def _validator(doc: dict, message_name: str) -> jsonschema.Draft202012Validator:
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:xiuhua:bus", resource)
    schema = {"$ref": f"urn:xiuhua:bus#/components/messages/{message_name}/payload"}
    return jsonschema.Draft202012Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())


def test_every_message_has_an_example_that_validates_against_its_schema_and_parses_with_its_model(doc: dict) -> None:
    """Each message of the AsyncAPI document: its example against the schema in the document, against the
    committed JSON Schema file under contracts/schemas/ (whose own `examples` must hold the same example), and
    parsed by the pydantic model."""
    specs = {s.name: s for s in asyncapi.message_specs()}
    failures = []
    for name, message in doc["components"]["messages"].items():
        example = message["examples"][0]["payload"]
        if not example:
            failures.append(f"{name}: no example")
            continue
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in _validator(doc, name).iter_errors(example)]
        schema_file = json.loads((export.SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
        if schema_file.get("examples") != [example]:
            errors.append(f"contracts/schemas/{name}.json does not carry the example")
        errors += [
            e.message
            for e in jsonschema.Draft202012Validator(
                schema_file, format_checker=jsonschema.FormatChecker()
            ).iter_errors(example)
        ]
        try:
            specs[name].model.model_validate(example)
        except ValidationError as exc:
            errors += [f"model {specs[name].model.__name__}: {e['loc']}: {e['msg']}" for e in exc.errors()]
        if errors:
            failures.append(f"{name}: {errors}")
    assert set(doc["components"]["messages"]) == set(specs)
    assert not failures, (
        "examples that do not validate (give the model `example_fields`, see contracts.envelope.Exampled):\n"
        + "\n".join(failures)
    )


def test_every_command_and_inbound_source_is_documented_with_an_example(doc: dict) -> None:
    """A new command or source needs no edit of the generator: it is found through COMMANDS and
    INBOUND_BY_SOURCE, and its example through the model."""
    names = set(doc["components"]["messages"])
    assert {f"cmd.case.{a}" for a in commands.COMMANDS} <= names
    assert {f"report.in.{s}" for s in reports.INBOUND_BY_SOURCE} <= names
    for action, model in commands.COMMANDS.items():
        assert doc["components"]["messages"][f"cmd.case.{action}"]["examples"][0]["payload"] == model.example()


def test_a_bad_example_is_caught(doc: dict) -> None:
    example = dict(doc["components"]["messages"]["case.dispatched"]["examples"][0]["payload"])
    example["lead_unit"] = {"unit_id": "CD-SAN", "name": "x", "role": "no-such-role"}
    assert list(_validator(doc, "case.dispatched").iter_errors(example))


def test_published_versions_are_frozen_and_not_broken() -> None:
    """Each message's current schema against the frozen copy of its version (contracts/published/)."""
    problems = asyncapi.compatibility_problems()
    assert not problems, "\n".join(problems)
