"""`xiuhua classify learn`: the command centre's own decisions become labelled orders, and the model is trained
again (从指挥中心的处置中学习).

A case whose category the command centre set differs from the one intake's classifier chose is a labelled order:
a manual-triage case (9901) assigned to a category (人工分拣), a case returned by a unit (退单) and re-dispatched
in another category (改类), a transfer (转办) corrected to another outside matter or to a catalogue item
(`cmd.v1.case.correct_transfer`, 转办纠错). The text is the report's own, read from intake's raw archive; the final
category from dispatch's case, a corrected transfer's label from intake's record of the transfer. The orders are
appended to the city's `classifier_examples.jsonl` (each once) and the model is trained again from them and from
the files its card names (`xiuhua classify train --from`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from services.intake.cases import text_of
from services.intake.classifier import EXAMPLES_FILE
from services.intake.parsing import parse_inbound
from services.intake.transfer_corrections import label_of
from xiuhua.city import City
from xiuhua.settings import Settings, get_settings
from xiuhua_tools.commands import emit

CHUNK = 500


def corrections(
    raws: Iterable[Mapping[str, Any]], final: Mapping[str, str], codes: set[str], triage_code: str
) -> list[tuple[str, str, str]]:
    """(text, final category, why) for each classified report whose case ended in another catalogue item. `raws`
    are intake's raw documents (with `verdict`, `case_id`, `source`, `body`), `final` case id → category now."""
    out: list[tuple[str, str, str]] = []
    for raw in raws:
        verdict, case_id = raw.get("verdict"), raw.get("case_id")
        if not verdict or not case_id or verdict.get("kind") not in ("category", "triage"):
            continue
        now = final.get(case_id)
        if now is None or now == verdict.get("code") or now == triage_code or now not in codes:
            continue
        text = raw_text(raw)
        if text is None:
            continue
        why = "manual triage assigned" if verdict.get("kind") == "triage" else f"re-categorised from {verdict['code']}"
        out.append((text, now, why))
    return out


def raw_text(raw: Mapping[str, Any]) -> str | None:
    """What the classifier read of a raw report (its text and the hotline's own category); None when the body does
    not parse or says nothing."""
    body = raw.get("body")
    report = parse_inbound(str(raw.get("source", "")), bytes(body or b""), datetime.now(UTC))
    if isinstance(report, list):
        return None
    text = " ".join(filter(None, [text_of(report), getattr(report, "hotline_category", None)]))
    return text if text.strip() else None


def corrected_transfers(
    transfers: Iterable[Mapping[str, Any]], raws: Mapping[str, Mapping[str, Any]], labels: set[str]
) -> list[tuple[str, str, str]]:
    """(text, corrected label, why) for each corrected transfer whose raw report is kept. `transfers` are intake's
    records of transfers, `raws` its raw documents by id, `labels` what the city's model may learn."""
    out: list[tuple[str, str, str]] = []
    for t in transfers:
        correction, raw = t.get("correction"), raws.get(str(t.get("raw_id")))
        if not correction or raw is None or (label := label_of(correction)) not in labels:
            continue
        text = raw_text(raw)
        if text is not None:
            out.append((text, label, f"transfer to {t.get('department')} corrected"))
    return out


async def load_corrections(city: City, settings: Settings) -> list[tuple[str, str, str]]:
    """The command centre's decisions that differ from the classifier's, read from intake's and dispatch's
    databases."""
    from services.dispatch.store import CASES
    from services.intake.store import RAW, TRANSFERS

    if not settings.mongo_url:
        raise SystemExit("XIUHUA_MONGO_URL must name the store to learn from")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    try:
        raws = [
            d
            async for d in client[settings.database("intake")][RAW].find(
                {"status": "case", "verdict.kind": {"$in": ["category", "triage"]}},
                {"verdict": 1, "case_id": 1, "source": 1, "body": 1},
            )
        ]
        ids = sorted({d["case_id"] for d in raws if d.get("case_id")})
        final: dict[str, str] = {}
        cases = client[settings.database("dispatch")][CASES]
        for i in range(0, len(ids), CHUNK):
            async for doc in cases.find({"_id": {"$in": ids[i : i + CHUNK]}}, {"category_code": 1}):
                final[doc["_id"]] = doc["category_code"]
        intake = client[settings.database("intake")]
        moved = [
            d
            async for d in intake[TRANSFERS].find(
                {"correction": {"$exists": True}}, {"raw_id": 1, "department": 1, "correction": 1}
            )
        ]
        raw_ids = sorted({str(d["raw_id"]) for d in moved if d.get("raw_id")})
        moved_raws: dict[str, dict[str, Any]] = {}
        for i in range(0, len(raw_ids), CHUNK):
            async for doc in intake[RAW].find({"_id": {"$in": raw_ids[i : i + CHUNK]}}, {"source": 1, "body": 1}):
                moved_raws[doc["_id"]] = doc
    finally:
        await client.close()
    codes = {c.code for c in city.catalogue.items()}
    triage = city.intake.classifier.triage_code
    labels = (codes - {triage}) | {f"transfer:{t.id}" for t in city.intake.transfers}
    return corrections(raws, final, codes, triage) + corrected_transfers(moved, moved_raws, labels)


def append_examples(folder: Path, rows: Iterable[tuple[str, str]]) -> int:
    """Append labelled orders to the city's examples, each text once; how many were new."""
    path = folder / EXAMPLES_FILE
    seen = set()
    if path.exists():
        seen = {json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    new: list[tuple[str, str]] = []
    for t, label in rows:
        if t not in seen:
            seen.add(t)
            new.append((t, label))
    if new:
        with path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": t, "label": label}, ensure_ascii=False) + "\n" for t, label in new)
    return len(new)


def learn_command(args: argparse.Namespace, city: City) -> int:
    """Learn the command centre's decisions from the store and train the model again."""
    from services.intake.textmodel import MODEL_FILE, TextModel
    from xiuhua_tools.classification.model import train_command

    found = asyncio.run(load_corrections(city, get_settings()))
    lines = [f"{len(found)} decisions of the command centre differ from the classifier's:"]
    lines += [f"  {label}  {why}: {text[:50]}" for text, label, why in found[:20]]
    if args.dry_run:
        emit(args, "\n".join(lines), {"found": len(found), "written": 0})
        return 0
    added = append_examples(city.folder, [(t, label) for t, label, _ in found])
    lines.append(f"{added} new labelled orders appended to {city.folder / EXAMPLES_FILE}")
    model_path = city.folder / MODEL_FILE
    sources = []
    if model_path.exists():
        sources = [s for s in TextModel.load(model_path).card.source.split(", ") if s and Path(s).exists()]
    if not added:
        emit(args, "\n".join(lines), {"found": len(found), "written": 0})
        return 0
    print("\n".join(lines))
    args.from_files = sources or [str(city.folder / EXAMPLES_FILE)]
    args.no_city_examples = not sources
    return train_command(args, city)
