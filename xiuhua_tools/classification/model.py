"""The learnt model's side of `xiuhua classify`: `--eval` figures, `--batch`, `--bench`, `train --from`.

Labelled files are JSONL `{"text", "label"}`; a city's export for `train` may be CSV or JSONL with configurable
field names, the label being a catalogue code, `transfer:<id>`, a transfer id, the name of a department the city
lists (→ that transfer), `out_of_scope`, `triage`, or another department's name (→ `out_of_scope`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from services.intake.classifier import OUT_OF_SCOPE_LABEL, TRIAGE_LABEL, TextClassifier, Verdict
from services.intake.evaluation import measure
from services.intake.model_classifier import COMMAND_CENTRE, ModelClassifier, lead_roles
from services.intake.textmodel import MODEL_FILE
from xiuhua.city import City
from xiuhua_tools.commands import emit


def classifier_for(city: City, engine: str) -> TextClassifier:
    """The classifier in use (`in-use`), the learnt model (`model`) or the keyword classifier (`rules`)."""
    from services.intake.cases import domain_of

    d = domain_of(city)
    if engine == "rules":
        return d.rules
    c = d.classifier
    if engine == "model" and not isinstance(c, ModelClassifier):
        raise SystemExit(f"{d.model_path}: no model ({d.model_error or 'no such file'}); train one first")
    return c


def roles_of(city: City) -> dict[str, str]:
    """Catalogue item → lead role, without manual triage."""
    return {c: r for c, r in lead_roles(city).items() if c != city.intake.classifier.triage_code}


def row_of(city: City, v: Verdict, roles: dict[str, str]) -> dict[str, Any]:
    """One `--batch` output line."""
    outcome = {"category": "case", "transfer": "transfer", "triage": "triage"}[v.kind]
    return {
        "outcome": outcome,
        "category_code": v.code if v.kind == "category" else None,
        "transfer_to": v.department if v.kind == "transfer" else None,
        "unit_role": v.unit_role
        or (roles.get(v.code) if v.kind == "category" else None)
        or (COMMAND_CENTRE if v.kind == "triage" else None),
        "confidence": v.confidence,
        "category_confidence": v.best_guess_confidence if v.kind == "category" else None,
        "suggested_category_code": v.best_guess if v.kind == "triage" else None,
        "out_of_scope": v.out_of_scope,
        "classifier_version": v.model,
    }


def _texts(stream: TextIO, name: str) -> Iterator[str]:
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
            if not isinstance(text, str):
                raise ValueError("text must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{name}:{n}: {exc}") from exc
        yield text


def batch(args: argparse.Namespace, city: City) -> int:
    """`--batch FILE`: one JSON line per input line, in order (`-` reads standard input)."""
    c = classifier_for(city, args.engine)
    roles = roles_of(city)
    version = c.version
    stream = sys.stdin if args.batch == "-" else Path(args.batch).open(encoding="utf-8")
    with stream:
        for text in _texts(stream, args.batch):
            row = row_of(city, c.classify(text), roles)
            row["classifier_version"] = version
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


def evaluate_file(city: City, path: Path, engine: str) -> dict[str, Any]:
    """Every figure of `services.intake.evaluation` for a labelled file, with the speed."""
    from xiuhua_tools.commands.classify import load_rows

    rows = load_rows(path)
    c = classifier_for(city, engine)
    started = time.perf_counter()
    verdicts = [c.classify(r["text"]) for r in rows]
    elapsed = time.perf_counter() - started
    result = measure([r["label"] for r in rows], verdicts, roles_of(city), [r["text"] for r in rows])
    result.update(file=str(path), classifier=c.version, items_per_s=round(len(rows) / elapsed, 1) if elapsed else 0.0)
    return result


def eval_lines(r: dict[str, Any], errors: int = 30) -> list[str]:
    """The human report of `evaluate_file`."""
    lines = [
        f"{r['file']} with {r['classifier']}: {r['total']} orders, accuracy {r['accuracy']:.1%}",
        f"out of scope sent to a unit: {r['out_of_scope_to_unit_rate']:.1%} "
        f"({r['out_of_scope_to_unit']}/{r['out_of_scope']})",
        f"automatic decisions (a catalogue item): {r['decided']} ({r['decided_share']:.1%}); right item "
        f"{r['decided_right']:.1%}, right unit {r['decided_right_unit']:.1%}; mean confidence "
        f"{r['decided_mean_confidence']:.3f} ({100 * (r['decided_mean_confidence'] - r['decided_right']):+.1f} points "
        "against right item)",
        f"transferred {r['transferred']} (right {r['transferred_right']:.1%}); manual triage {r['triaged']}",
        f"calibration of automatic decisions: ECE {r['ece']:.3f}",
        "  confidence      n   mean conf  item right  unit right",
    ]
    lines += [
        f"  [{b['from']:.2f}, {b['to']:.2f})  {b['count']:5d}   {b['confidence']:.3f}      {b['accuracy']:.3f}"
        f"       {b['unit_accuracy']:.3f}"
        for b in r["reliability"]
    ]
    lines.append(f"speed {r['items_per_s']:.0f} orders/s (one core)")
    lines.append("by group: " + "  ".join(f"{g} {c['correct']}/{c['total']}" for g, c in r["by_group"].items()))
    if r["errors"] and errors:
        lines.append(f"errors (first {errors}):")
        lines += [
            f"  {e['expected']:>22s} → {e['got']:<22s} ({e['confidence']:.2f}) {e.get('text', '')[:60]}"
            for e in r["errors"][:errors]
        ]
    return lines


def evaluate(args: argparse.Namespace, city: City) -> int:
    """`--eval FILE [FILE ...]`."""
    results = []
    for name in args.eval:
        path = Path(name)
        if not path.exists():
            raise SystemExit(f"{path}: no such file")
        results.append(evaluate_file(city, path, args.engine))
    human = "\n\n".join("\n".join(eval_lines(r, 0 if len(results) > 1 else 30)) for r in results)
    emit(args, human, results[0] if len(results) == 1 else results)
    return 0


def bench(args: argparse.Namespace, city: City) -> int:
    """`--bench`: orders per second of the keyword classifier and of the model, side by side, on ~400-character
    orders made from the labelled files (best of three passes each)."""
    files = args.bench_files or sorted(Path("tests/data").glob("hotline_blind_*.jsonl"))
    texts = [t for f in files for t in _texts(io.StringIO(Path(f).read_text(encoding="utf-8")), str(f))]
    orders = [(t * (400 // max(1, len(t)) + 1))[:400] for t in texts][: args.bench_n]
    engines: list[tuple[str, TextClassifier]] = [("keywords-ngrams", classifier_for(city, "rules"))]
    c = classifier_for(city, "in-use")
    if isinstance(c, ModelClassifier):
        engines.append((c.version, c))
    figures = {}
    for name, clf in engines:
        best = min(_timed(clf, orders) for _ in range(3))
        figures[name] = round(len(orders) / best, 1)
    lines = [f"{len(orders)} orders of 400 characters, one core, best of 3:"]
    lines += [f"  {name:32s} {v:8.0f} orders/s" for name, v in figures.items()]
    emit(args, "\n".join(lines), {"orders": len(orders), "orders_per_s": figures})
    return 0


def _timed(c: TextClassifier, texts: Iterable[str]) -> float:
    started = time.perf_counter()
    for t in texts:
        c.classify(t)
    return time.perf_counter() - started


def read_export(
    path: Path, city: City, text_field: str = "text", label_field: str = "label"
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """A city's export of past orders (CSV or JSONL by extension) as (text, label), and how many labels were
    read as what. A catalogue-like code the catalogue lacks raises SystemExit naming file and line."""
    codes = {c.code for c in city.catalogue.items()}
    transfers = {t.id: t.id for t in city.intake.transfers} | {t.department: t.id for t in city.intake.transfers}
    triage = city.intake.classifier.triage_code
    records: Iterable[tuple[int, dict[str, Any]]]
    with path.open(encoding="utf-8-sig", newline="") as f:
        if path.suffix.lower() == ".csv":
            records = list(enumerate(csv.DictReader(f), 2))
        else:
            try:
                records = [(n, json.loads(line)) for n, line in enumerate(f, 1) if line.strip()]
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}: not JSON lines ({exc})") from exc
    rows: list[tuple[str, str]] = []
    kinds: dict[str, int] = {}
    for n, rec in records:
        text, label = rec.get(text_field), rec.get(label_field)
        if not isinstance(text, str) or not text.strip():
            raise SystemExit(f"{path}:{n}: {text_field}: missing or empty")
        if not isinstance(label, str) or not label.strip():
            raise SystemExit(f"{path}:{n}: {label_field}: missing or empty")
        label = label.strip()
        if label == triage:
            label = TRIAGE_LABEL
        elif label.startswith("transfer:") and label[9:] in transfers:
            pass
        elif label in transfers:
            label = f"transfer:{transfers[label]}"
        elif label in codes or label in (TRIAGE_LABEL, OUT_OF_SCOPE_LABEL):
            pass
        elif label.isdigit() or label.startswith("transfer:"):
            raise SystemExit(f"{path}:{n}: {label_field}: {label!r} is not in the city's catalogue or transfers")
        else:
            label = OUT_OF_SCOPE_LABEL  # a department the city does not list: outside city management
        kind = "transfer" if label.startswith("transfer:") else ("category" if label in codes else label)
        kinds[kind] = kinds.get(kind, 0) + 1
        rows.append((text.strip(), label))
    return rows, kinds


def train_command(args: argparse.Namespace, city: City) -> int:
    """`train --from FILE ...`: a model of the files (and the city's labelled orders) into the city's folder."""
    from services.intake.classifier import read_examples
    from services.intake.training import train

    if not args.from_files:
        raise SystemExit("train needs --from FILE (CSV or JSONL of past orders)")
    rows: list[tuple[str, str]] = []
    kinds: dict[str, int] = {}
    for name in args.from_files:
        path = Path(name)
        if not path.exists():
            raise SystemExit(f"{path}: no such file")
        got, k = read_export(path, city, args.text_field, args.label_field)
        rows += got
        for key, v in k.items():
            kinds[key] = kinds.get(key, 0) + v
    if not args.no_city_examples:
        labels = {c.code for c in city.catalogue.items()} | {f"transfer:{t.id}" for t in city.intake.transfers}
        rows += read_examples(city.folder, labels | {TRIAGE_LABEL, OUT_OF_SCOPE_LABEL})
    rows = list(dict.fromkeys(rows))  # the same order twice teaches nothing new
    model, report = train(city, rows, source=", ".join(args.from_files), k=args.folds)
    out = Path(args.out) if args.out else city.folder / MODEL_FILE
    model.save(out)
    lines = [
        f"model {model.card.version}: {len(rows)} labelled orders ({', '.join(f'{k} {v}' for k, v in kinds.items())}"
        f" from the files), {len(model.features)} features, written to {out}",
        f"{report['folds']}-fold cross-validation, temperature {report['temperature']:g}, calibration "
        f"{report['calibration_method']} (ECE "
        + ", ".join(f"{m} {e:.3f}" for m, e in report["calibration_ece"].items())
        + f"), automatic decisions from confidence {report['decide_at']:g}:",
        *(
            "  " + line
            for line in eval_lines(
                {**report, "file": "cross-validation", "classifier": "held-out folds", "items_per_s": 0.0}, 0
            )
            if not line.startswith("speed")
        ),
    ]
    emit(args, "\n".join(lines), {"version": model.card.version, "path": str(out), "rows": len(rows), **report})
    return 0
