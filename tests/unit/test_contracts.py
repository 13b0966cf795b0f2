"""Contracts: committed schemas match the models; examples validate; event ids are time-ordered."""

from __future__ import annotations

import json

from contracts import subjects
from contracts.envelope import derived_event_id, new_event_id
from contracts.export import SCHEMA_DIR, documents
from contracts.registry import decode, events, model_for
from contracts.streams import stream_for


def test_committed_schemas_match_the_models() -> None:
    docs = documents()
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.json")}
    drift = sorted(set(docs) ^ set(committed)) + sorted(n for n in docs if committed.get(n) != docs[n])
    assert not drift, f"schemas drifted from contracts/: {drift}; run `xiuhua docs` and commit"


def test_every_event_example_validates_and_round_trips() -> None:
    missing = [m.__name__ for m in events().values() if not m.example_fields]
    assert not missing, f"events without an example: {missing}"
    for model in events().values():
        event = model.model_validate(model.example())
        assert model.model_validate_json(event.to_json()) == event


def test_subjects_decode_to_their_models() -> None:
    assert model_for("case.v1.opened.CD").event_type == "case.opened"
    assert model_for("case.v1.dispatched.unknown").event_type == "case.dispatched"
    assert model_for("score.v1.unit_updated").event_type == "score.unit_updated"
    assert model_for("dlq.v1.scoring").event_type == "dlq.dead_letter"
    body = json.dumps(model_for("report.v1.rejected").example()).encode()
    assert decode("report.v1.rejected", body).raw_id == "raw-1"


def test_subject_tokens_are_safe_and_streams_capture_every_subject() -> None:
    assert subjects.case_subject("opened", "a.b c*") == "case.v1.opened.a_b_c_"
    assert subjects.case_subject("opened", None) == "case.v1.opened.unknown"
    for subject in (
        "report.v1.in.grid",
        "report.v1.rejected",
        "case.v1.opened.CD",
        "cmd.v1.case.acknowledge",
        "score.v1.unit_updated",
        "notify.v1.delivered",
        "bulletin.v1.published",
        "dlq.v1.intake",
    ):
        assert stream_for(subject).name.startswith("XH_")


def test_event_ids_are_unique_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(i[14] == "7" for i in ids)  # UUID version 7


def test_an_id_derived_from_a_cause_is_the_same_each_time_and_dated_as_the_cause() -> None:
    cause, later = new_event_id(), new_event_id()
    made = derived_event_id(cause, "U-1")
    assert made == derived_event_id(cause, "U-1")  # what a redelivery makes again
    assert len({made, derived_event_id(cause, "U-2"), derived_event_id(later, "U-1")}) == 3
    assert made[14] == "7" and made[:13] == cause[:13]  # a UUIDv7 of its cause's millisecond
    assert derived_event_id("e-1", "U-1")[14] == "7"  # a cause whose id is no UUID
