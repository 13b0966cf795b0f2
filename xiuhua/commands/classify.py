"""`xiuhua classify "TEXT"` / `xiuhua classify --eval FILE`: the catalogue item (or transfer, or manual triage)
for a text; accuracy, per-class errors and a confusion summary on a labelled JSONL file."""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from xiuhua.city import City, load_city
from xiuhua.commands import emit
from xiuhua.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the command."""
    p = sub.add_parser("classify", help="classify a report text, or measure accuracy on a labelled file")
    p.add_argument("text", nargs="?", help="the report text (Chinese)")
    p.add_argument("--eval", metavar="FILE",
                   help='JSONL lines {"text": ..., "label": "0201" | "transfer:<id>" | "triage"}')
    p.add_argument("--top", type=int, default=3, help="candidates to show for one text")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_classify)


def _classify(args: argparse.Namespace) -> int:
    from services.intake.cases import domain_of

    city = load_city(get_settings().city_dir)
    classifier = domain_of(city).classifier
    if args.eval:
        return _evaluate(args, city, Path(args.eval))
    if not args.text:
        raise SystemExit("give a TEXT or --eval FILE")
    v = classifier.classify(args.text)
    ranked = classifier.ranking(args.text)[: args.top]
    name = _name(city, v.label, v.department)
    lines = [f"{v.label}  {name}  confidence {v.confidence:.2f}"]
    if v.kind == "triage" and v.best_guess:
        lines.append(f"  manual triage by the command centre; best guess {v.best_guess} {_name(city, v.best_guess)}")
    for s in ranked:
        label = s.entry.code if s.entry.kind == "category" else f"transfer:{s.entry.code}"
        lines.append(f"  {label:24s} score {s.score:4.1f}  matched {'、'.join(s.matched)}")
    emit(args, "\n".join(lines), {
        "label": v.label, "kind": v.kind, "code": v.code, "name": name, "confidence": v.confidence,
        "best_guess": v.best_guess, "department": v.department, "matter": v.matter, "matched": list(v.matched),
        "candidates": [{"entry": s.entry.code, "kind": s.entry.kind, "score": s.score, "matched": list(s.matched)}
                       for s in ranked],
    })
    return 0


def _name(city: City, label: str, department: str | None = None) -> str:
    if label.startswith("transfer:"):
        return f"转办 {department or label.split(':', 1)[1]}"
    if label == "triage":
        return "待人工分拣 manual triage"
    item = city.category(label)
    return item.name_zh if item else "?"


def evaluate(city: City, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, per-label recall and errors, and the confusion pairs of a labelled set."""
    from services.intake.cases import domain_of

    classifier = domain_of(city).classifier
    per: dict[str, Counter[str]] = defaultdict(Counter)
    errors: list[dict[str, Any]] = []
    confusion: Counter[tuple[str, str]] = Counter()
    decided = decided_correct = 0
    for row in rows:
        v = classifier.classify(row["text"])
        per[row["label"]]["total"] += 1
        if v.kind != "triage":
            decided += 1
            decided_correct += v.label == row["label"]
        if v.label == row["label"]:
            per[row["label"]]["correct"] += 1
        else:
            confusion[(row["label"], v.label)] += 1
            errors.append({"text": row["text"], "expected": row["label"], "got": v.label,
                           "confidence": v.confidence, "matched": list(v.matched)})
    total = sum(c["total"] for c in per.values())
    correct = sum(c["correct"] for c in per.values())
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for label, c in per.items():
        g = "transfer" if label.startswith("transfer:") else ("triage" if label == "triage" else label[:2])
        groups[g]["total"] += c["total"]
        groups[g]["correct"] += c["correct"]
    return {
        "total": total,
        "correct": correct,
        "accuracy": round(correct / total, 4) if total else 0.0,
        # Decided automatically (not left to manual triage), and how often those decisions are right.
        "decided": decided,
        "decided_share": round(decided / total, 4) if total else 0.0,
        "decided_precision": round(decided_correct / decided, 4) if decided else 0.0,
        "by_group": {g: {"total": c["total"], "correct": c["correct"]} for g, c in sorted(groups.items())},
        "by_label": {k: {"total": c["total"], "correct": c["correct"]} for k, c in sorted(per.items())},
        "errors": errors,
        "confusion": [{"expected": a, "got": b, "count": n} for (a, b), n in confusion.most_common()],
    }


def load_rows(path: Path) -> list[dict[str, Any]]:
    """A labelled JSONL file; a bad line names its number."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row.get("text"), str) or not isinstance(row.get("label"), str):
                raise ValueError("needs string fields text and label")
        except (ValueError, AttributeError) as exc:
            raise SystemExit(f"{path}:{n}: {exc}") from exc
        rows.append(row)
    return rows


def _evaluate(args: argparse.Namespace, city: City, path: Path) -> int:
    if not path.exists():
        raise SystemExit(f"{path}: no such file")
    result = evaluate(city, load_rows(path))
    lines = [f"accuracy {result['accuracy']:.1%} ({result['correct']}/{result['total']}) on {path}",
             f"decided automatically {result['decided_share']:.1%} ({result['decided']}), of which right "
             f"{result['decided_precision']:.1%}; the rest go to manual triage", "by group:"]
    for g, c in result["by_group"].items():
        lines.append(f"  {g:9s} {c['correct']:4d}/{c['total']:<4d} {c['correct'] / c['total']:.0%}")
    if result["errors"]:
        lines.append("errors:")
        for e in result["errors"]:
            lines.append(f"  {e['expected']:>22s} → {e['got']:<22s} ({e['confidence']:.2f}) {e['text']}")
        lines.append("confusion (expected → got: count):")
        for c in result["confusion"][:20]:
            lines.append(f"  {c['expected']} → {c['got']}: {c['count']}")
    emit(args, "\n".join(lines), result)
    return 0
