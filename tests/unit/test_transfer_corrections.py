"""Corrected transfers (转办纠错): the command's shape, which corrections intake refuses and why, what the
classifier learns from one, and dispatch leaving the command to intake."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.commands import CorrectTransfer
from services.dispatch.commands import NotDispatchs, decode_command
from services.intake.transfer_corrections import decode_correction, label_of, refusal
from xiuhua.city import City
from xiuhua.commands import InvalidCommand
from xiuhua.consumer import Poison
from xiuhua_tools.classification.learn import corrected_transfers

BASE = {
    "command_id": "fix-1",
    "case_id": "C-1",
    "at": "2026-11-23T03:00:00Z",
    "actor": {"unit_id": "XH-CC", "role": "command_centre", "name": "李敏"},
}
RECORD = {"_id": "C-1", "transfer_id": "transport", "department": "区交通运输局", "raw_id": "raw-1"}


def _fix(**to: str) -> CorrectTransfer:
    return CorrectTransfer.model_validate({**BASE, **to})


def test_a_correction_names_exactly_one_of_a_transfer_and_a_category() -> None:
    assert _fix(transfer_id="consumer").category_code is None
    assert _fix(category_code="0108").transfer_id is None
    with pytest.raises(ValidationError, match="exactly one"):
        _fix()
    with pytest.raises(ValidationError, match="exactly one"):
        _fix(transfer_id="consumer", category_code="0108")


def test_intake_refuses_what_it_cannot_apply_and_applies_the_rest(city: City) -> None:
    assert refusal(RECORD, _fix(transfer_id="consumer"), city) is None
    assert refusal(RECORD, _fix(category_code="0108"), city) is None
    assert refusal(None, _fix(category_code="0108"), city) == ("unknown_case", "no transferred case C-1")
    for role in ("hotline", "command_centre"):
        hotline = CorrectTransfer.model_validate(
            {**BASE, "actor": {"unit_id": "X", "role": role}, "transfer_id": "consumer"}
        )
        assert refusal(RECORD, hotline, city) is None
    unit = CorrectTransfer.model_validate(
        {**BASE, "actor": {"unit_id": "CD-SAN", "role": "sanitation"}, "transfer_id": "consumer"}
    )
    assert refusal(RECORD, unit, city) == (
        "wrong_role",
        "correct_transfer is for the command centre or the hotline, not role sanitation",
    )
    done = {**RECORD, "correction": {"command_id": "fix-0", "to": "0108"}}
    assert refusal(done, _fix(transfer_id="consumer"), city) == ("wrong_state", "corrected already by fix-0 (0108)")
    assert refusal(RECORD, _fix(transfer_id="nowhere"), city)[0] == "unknown_transfer"  # type: ignore[index]
    assert refusal(RECORD, _fix(transfer_id="transport"), city)[0] == "invalid"  # type: ignore[index]
    assert refusal(RECORD, _fix(category_code="0199"), city)[0] == "unknown_category"  # type: ignore[index]
    triage = city.intake.classifier.triage_code
    assert refusal(RECORD, _fix(category_code=triage), city)[0] == "unknown_category"  # type: ignore[index]


def test_a_bad_correction_is_answered_when_it_names_its_case_and_poison_when_it_does_not() -> None:
    subject = "cmd.v1.case.correct_transfer"
    bad = decode_correction(subject, json.dumps({**BASE, "transfer_id": "a", "category_code": "0108"}).encode())
    assert isinstance(bad, InvalidCommand) and (bad.case_id, bad.command_id) == ("C-1", "fix-1")
    assert "exactly one" in bad.detail
    assert decode_correction(subject, json.dumps({**BASE, "transfer_id": "consumer"}).encode()) == _fix(
        transfer_id="consumer"
    )
    with pytest.raises(Poison, match="not JSON"):
        decode_correction(subject, b"{")
    with pytest.raises(Poison, match="without a readable case_id"):
        decode_correction(subject, json.dumps({**BASE, "case_id": " "}).encode())


def test_dispatch_leaves_a_correction_to_intake_whatever_its_body() -> None:
    assert decode_command("cmd.v1.case.correct_transfer", b"{}") == NotDispatchs("correct_transfer")
    assert not isinstance(
        decode_command("cmd.v1.case.cancel", json.dumps({**BASE, "reason": "x"}).encode()), NotDispatchs
    )


def test_a_corrected_transfer_teaches_its_label_and_an_uncorrected_one_nothing() -> None:
    assert label_of({"kind": "category", "to": "0108"}) == "0108"
    assert label_of({"kind": "transfer", "to": "consumer"}) == "transfer:consumer"
    body = {
        "order_no": "T-1",
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "反映问题",
        "content": "公交站台的广告牌歪了",
    }
    raws = {
        f"raw-{i}": {"source": "hotline", "body": json.dumps(body, ensure_ascii=False).encode()} for i in (1, 2, 3, 4)
    }
    records: list[dict[str, Any]] = [
        {**RECORD, "correction": {"kind": "category", "to": "0108"}},
        {**RECORD, "raw_id": "raw-2", "correction": {"kind": "transfer", "to": "consumer"}},
        {**RECORD, "raw_id": "raw-3"},  # not corrected
        {**RECORD, "raw_id": "raw-4", "correction": {"kind": "category", "to": "0199"}},  # no longer in the city
        {**RECORD, "raw_id": "raw-gone", "correction": {"kind": "category", "to": "0108"}},  # its raw report purged
    ]
    got = corrected_transfers(records, raws, {"0108", "transfer:consumer"})
    why = "transfer to 区交通运输局 corrected"
    assert got == [
        ("反映问题 公交站台的广告牌歪了", "0108", why),
        ("反映问题 公交站台的广告牌歪了", "transfer:consumer", why),
    ]
