"""`xiuhua classify learn`: which of the command centre's decisions become labelled orders, and appending them."""

from __future__ import annotations

import json
from pathlib import Path

from xiuhua_tools.classification.learn import append_examples, corrections

CODES = {"0201", "0302", "0801", "9901"}


def _raw(case_id: str, kind: str, code: str, content: str, source: str = "hotline") -> dict:
    body = {
        "order_no": case_id,
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "反映问题",
        "content": content,
    }
    return {
        "case_id": case_id,
        "source": source,
        "verdict": {"kind": kind, "code": code},
        "body": json.dumps(body, ensure_ascii=False).encode(),
    }


def test_assigned_triage_and_recategorised_cases_are_learnt_and_nothing_else() -> None:
    raws = [
        _raw("C1", "triage", "9901", "小区门口那块地方乱糟糟的"),  # the command centre assigned 0201
        _raw("C2", "category", "0302", "路口的灯杆被车撞歪了"),  # returned, re-dispatched as 0801
        _raw("C3", "category", "0201", "垃圾桶满了"),  # unchanged: nothing to learn
        _raw("C4", "triage", "9901", "你们管不管"),  # still in manual triage
        _raw("C5", "category", "0201", "垃圾桶满了好几天"),  # no dispatch case (yet)
        {"case_id": "C6", "source": "hotline", "verdict": None, "body": b"{}"},  # the source named the category
        _raw("C7", "triage", "9901", "路灯坏了"),  # assigned a code the catalogue no longer has
        {**_raw("C8", "triage", "9901", "x"), "body": b"not json"},  # a body that does not parse
    ]
    final = {"C1": "0201", "C2": "0801", "C3": "0201", "C4": "9901", "C6": "0302", "C7": "0399", "C8": "0201"}
    got = corrections(raws, final, CODES, "9901")
    assert got == [
        ("反映问题 小区门口那块地方乱糟糟的", "0201", "manual triage assigned"),
        ("反映问题 路口的灯杆被车撞歪了", "0801", "re-categorised from 0302"),
    ]


def test_appended_orders_are_each_learnt_once(tmp_path: Path) -> None:
    path = tmp_path / "classifier_examples.jsonl"
    path.write_text(json.dumps({"text": "垃圾桶满了", "label": "0201"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert append_examples(tmp_path, [("垃圾桶满了", "0201"), ("路灯不亮", "0302"), ("路灯不亮", "0302")]) == 1
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"text": "垃圾桶满了", "label": "0201"}, {"text": "路灯不亮", "label": "0302"}]
    assert append_examples(tmp_path, [("路灯不亮", "0302")]) == 0
