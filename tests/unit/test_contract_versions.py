"""Two versions of one message side by side: a breaking change of `case.opened` published as `case.v2.opened`.

The v2 model lives here, not in contracts/: it stands for the next breaking change, whatever it will be, and
goes through the registry, the generated documents and the compatibility check as a real one would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

import jsonschema
import pytest
from pydantic import ValidationError

from contracts import asyncapi, export, registry, streams
from contracts.cases import CaseEvent, CaseOpened
from contracts.compat import breaking_changes
from contracts.registry import UnknownSubject
from tests.helpers.contract_versions import CaseOpenedV2, v1_event, v2_event


@pytest.fixture
def with_v2() -> object:
    with registry.registered(CaseOpenedV2):
        yield CaseOpenedV2


def test_subjects_carry_their_version() -> None:
    assert v1_event().subject_for() == "case.v1.opened.CD"
    assert v2_event().subject_for() == "case.v2.opened.CD"
    assert CaseOpenedV2.subject_pattern() == "case.v2.opened.{street_code}"
    assert v2_event().schema_version == 2 and CaseOpenedV2.example()["schema_version"] == 2


def test_registry_keeps_both_versions_and_decodes_each_subject_to_its_own(with_v2: object) -> None:
    found = registry.patterns()
    assert found["case.v1.opened.{street_code}"] is CaseOpened
    assert found["case.v2.opened.{street_code}"] is CaseOpenedV2
    assert registry.events()["case.opened"] is CaseOpened
    assert registry.events()["case.v2.opened"] is CaseOpenedV2
    for event in (v1_event(), v2_event()):
        decoded = registry.decode(event.subject_for(), event.to_json())
        assert type(decoded) is type(event) and decoded == event
    # A v2 body on the v1 subject is refused, not read as v1 with fields missing.
    with pytest.raises(ValidationError):
        registry.decode("case.v1.opened.CD", v2_event().to_json())


def test_a_version_is_only_known_while_registered() -> None:
    with registry.registered(CaseOpenedV2):
        assert registry.model_for("case.v2.opened.CD") is CaseOpenedV2
    with pytest.raises(UnknownSubject):
        registry.model_for("case.v2.opened.CD")
    assert "case.v2.opened" not in registry.events()
    assert registry.model_for("case.v1.opened.CD") is CaseOpened


def test_registry_refuses_two_models_on_one_subject_and_a_version_that_disagrees_with_its_body() -> None:
    class AnotherOpened(CaseEvent):
        """A second v1 shape of case.opened: must be refused."""

        event_type: ClassVar[str] = "case.opened"

    class V3WithV1Body(CaseEvent):
        """A v3 subject whose body would say schema_version 1."""

        event_type: ClassVar[str] = "case.opened"
        subject_version: ClassVar[int] = 3

    with pytest.raises(TypeError, match=r"two models claim case\.v1\.opened"):
        registry.register(AnotherOpened)
    with pytest.raises(TypeError, match="schema_version defaults to 1"):
        registry.register(V3WithV1Body)
    assert registry.model_for("case.v1.opened.CD") is CaseOpened


def test_streams_capture_the_new_version_beside_the_old() -> None:
    assert registry.stream_subjects(streams.CASES) == ["case.v1.>"]
    with registry.registered(CaseOpenedV2):
        assert registry.stream_subjects(streams.CASES) == ["case.v1.>", "case.v2.>"]
        assert registry.stream_subjects(streams.SCORES) == ["score.v1.>"]  # other families untouched
    assert streams.stream_for("case.v2.opened.CD") is streams.CASES
    with pytest.raises(KeyError):
        streams.stream_for("score.query.v1.unit")  # request/reply subjects stay outside every stream


def test_documents_list_both_versions_each_with_a_valid_example(with_v2: object) -> None:
    docs = export.documents()
    v1_schema, v2_schema = json.loads(docs["case.opened.json"]), json.loads(docs["case.v2.opened.json"])
    assert "source_ref" in v1_schema["properties"] and "reference" in v2_schema["properties"]
    for schema in (v1_schema, v2_schema):
        jsonschema.Draft202012Validator(schema).validate(schema["examples"][0])
    doc = asyncapi.document()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"case.v1.opened.{street_code}", "case.v2.opened.{street_code}"} <= addresses
    v2_message = doc["components"]["messages"]["case.v2.opened"]
    assert v2_message["x-xiuhua-schema-version"] == 2
    assert doc["components"]["messages"]["case.opened"]["x-xiuhua-schema-version"] == 1
    CaseOpenedV2.model_validate(v2_message["examples"][0]["payload"])
    # The committed documents (v1 only) are not what a generation with v2 gives: the drift test would ask
    # for a regeneration once such a model ships in contracts/.
    assert asyncapi.render_json(doc) != asyncapi.ASYNCAPI_JSON.read_text(encoding="utf-8")


def test_compatibility_check_treats_v2_as_a_new_message_not_a_break_of_v1(tmp_path: Path) -> None:
    published = tmp_path / "published"
    shutil.copytree(asyncapi.PUBLISHED_DIR, published)
    assert asyncapi.compatibility_problems(published) == []
    with registry.registered(CaseOpenedV2):
        spec = next(s for s in asyncapi.message_specs() if s.name == "case.v2.opened")
        # The same shape published as v1 would break its consumers ...
        frozen_v1 = json.loads((published / "case.opened" / "v1.json").read_text(encoding="utf-8"))
        breaks = breaking_changes(frozen_v1, asyncapi.frozen_schema(spec))
        assert "source_ref: removed" in breaks and "place: removed" in breaks
        # ... as v2 it is a new message: only its frozen copy is missing, then nothing.
        problems = asyncapi.compatibility_problems(published)
        assert len(problems) == 1 and problems[0].startswith("case.v2.opened v2 has no frozen copy"), problems
        written = asyncapi.freeze_new_versions(published)
        assert written == [published / "case.opened" / "v2.json"]
        assert asyncapi.compatibility_problems(published) == []
        # v1 stays guarded: the same check still catches a break of v1 while v2 exists.
        (published / "case.opened" / "v1.json").write_text(
            json.dumps({**frozen_v1, "properties": {**frozen_v1["properties"], "legacy": {"type": "string"}}}),
            encoding="utf-8",
        )
        assert any("case.opened v1" in p and "legacy: removed" in p for p in asyncapi.compatibility_problems(published))
    # Dropping v2 once it is published is a problem: its consumers rely on it.
    (published / "case.opened" / "v1.json").write_text(json.dumps(frozen_v1), encoding="utf-8")
    assert [p.split(" (")[0] for p in asyncapi.compatibility_problems(published)] == [
        "published message case.opened v2"
    ]
