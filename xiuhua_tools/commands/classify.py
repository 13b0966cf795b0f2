"""`xiuhua classify "TEXT"` / `--eval FILE ...` / `--batch FILE` / `--bench` / `--cv K` / `train --from FILE` /
`learn`: the catalogue item (or transfer, or manual triage) for a text; the figures of the classifier in use on
labelled files (`xiuhua_tools.classification`); the keyword classifier's k-fold cross-validation with the fit of its
temperature; training and teaching the city's learnt model (`xiuhua_tools.classification`)."""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from services.intake.classifier import OUT_OF_SCOPE_LABEL, TRIAGE_LABEL, Classifier, read_examples
from services.intake.model_classifier import ModelClassifier
from xiuhua.city import City, load_city
from xiuhua.settings import get_settings
from xiuhua_tools.commands import emit


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser(
        "classify",
        help="classify a report text; measure on labelled files; classify a batch; train or teach the city's model",
    )
    p.add_argument(
        "text",
        nargs="*",
        help="the report text (Chinese); or `train --from FILE` (a model from past orders), or `learn` (the "
        "command centre's own decisions from the store)",
    )
    p.add_argument(
        "--eval",
        metavar="FILE",
        nargs="+",
        help='JSONL lines {"text": ..., "label": "0201" | "transfer:<id>" | "out_of_scope" | "triage"}',
    )
    p.add_argument(
        "--engine",
        choices=("in-use", "model", "rules"),
        default="in-use",
        help="the classifier in use (default), the city's learnt model, or the keyword and n-gram classifier",
    )
    p.add_argument(
        "--batch", metavar="FILE", help='JSONL lines {"text": ...} (`-`: standard input) → one JSON line each'
    )
    p.add_argument(
        "--bench",
        nargs="*",
        metavar="FILE",
        dest="bench_files",
        help="orders per second of the keyword classifier and the model side by side (default: the blind files)",
    )
    p.add_argument("--bench-n", type=int, default=1000, help="orders for --bench")
    p.add_argument(
        "--from",
        dest="from_files",
        action="append",
        metavar="FILE",
        help="train: a city's export of past orders, CSV or JSONL (repeatable)",
    )
    p.add_argument("--text-field", default="text", help="train: the column or field of the order's text")
    p.add_argument(
        "--label-field",
        default="label",
        help="train: the column or field of the category code or department that handled it",
    )
    p.add_argument(
        "--no-city-examples", action="store_true", help="train: leave out the city's classifier_examples.jsonl"
    )
    p.add_argument("--out", metavar="PATH", help="train: where to write the model (default: the city's folder)")
    p.add_argument("--folds", type=int, default=5, help="train: folds of the cross-validation")
    p.add_argument("--dry-run", action="store_true", help="learn: say what would be learnt, write nothing")
    p.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="K-fold cross-validation on the city's classifier_examples.jsonl (no other file is read)",
    )
    p.add_argument("--top", type=int, default=3, help="candidates to show for one text")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_classify)


def _classify(args: argparse.Namespace) -> int:
    from xiuhua_tools.classification import model as m

    city = load_city(get_settings().city_dir)
    words = args.text or []
    if words[:1] == ["train"]:
        return m.train_command(args, city)
    if words[:1] == ["learn"]:
        from xiuhua_tools.classification.learn import learn_command

        return learn_command(args, city)
    if args.eval:
        return m.evaluate(args, city)
    if args.batch:
        return m.batch(args, city)
    if args.bench_files is not None:
        return m.bench(args, city)
    if args.cv:
        return _cross_validate(args, city, args.cv)
    if not words:
        raise SystemExit("give a TEXT, --eval FILE, --batch FILE, --bench, train --from FILE or learn")
    text = " ".join(words)
    classifier = m.classifier_for(city, args.engine)
    if isinstance(classifier, ModelClassifier):
        return _show_model(args, city, classifier, text)
    assert isinstance(classifier, Classifier)
    return _show_rules(args, city, classifier, text)


def _show_rules(args: argparse.Namespace, city: City, classifier: Classifier, text: str) -> int:
    """Print the keyword classifier's (关键词分类) verdict and top candidates for one text; returns the exit code."""
    v = classifier.classify(text)
    ranked = classifier.candidates(text)[: args.top]
    name = _name(city, v.label, v.department)
    lines = [f"{v.label}  {name}  confidence {v.confidence:.2f}"]
    if v.kind == "triage" and v.best_guess:
        lines.append(
            f"  manual triage by the command centre; best guess {v.best_guess} {_name(city, v.best_guess)}"
            f" ({v.best_guess_confidence or 0:.2f})"
        )
    for c in ranked:
        lines.append(
            f"  {c.label:24s} p {c.probability:.2f}  n-gram similarity {c.similarity:.3f}  "
            f"phrases {c.phrase_score:3.1f} {'、'.join(c.matched)}"
        )
    emit(
        args,
        "\n".join(lines),
        {
            "classifier": classifier.version,
            "label": v.label,
            "kind": v.kind,
            "code": v.code,
            "name": name,
            "confidence": v.confidence,
            "best_guess": v.best_guess,
            "best_guess_confidence": v.best_guess_confidence,
            "department": v.department,
            "matter": v.matter,
            "matched": list(v.matched),
            "candidates": [
                {
                    "label": c.label,
                    "probability": round(c.probability, 4),
                    "similarity": c.similarity,
                    "phrase_score": c.phrase_score,
                    "matched": list(c.matched),
                }
                for c in ranked
            ],
        },
    )
    return 0


def _show_model(args: argparse.Namespace, city: City, classifier: ModelClassifier, text: str) -> int:
    v = classifier.classify(text)
    ranked = classifier.candidates(text)[: args.top]
    name = _name(city, v.label, v.department)
    lines = [
        f"{v.label}  {name}  confidence {v.confidence:.2f}  unit {v.unit_role or '-'}  "
        f"out of scope {v.out_of_scope or 0:.2f}  ({classifier.version})"
    ]
    if v.kind == "triage" and v.best_guess:
        lines.append(
            f"  manual triage by the command centre; best guess {v.best_guess} {_name(city, v.best_guess)}"
            f" ({v.best_guess_confidence or 0:.2f})"
        )
    lines += [f"  {c.label:24s} p {c.probability:.3f}  {classifier.roles.get(c.label, '')}" for c in ranked]
    data = {
        "classifier": classifier.version,
        "label": v.label,
        "kind": v.kind,
        "code": v.code,
        "name": name,
        "confidence": v.confidence,
        "unit_role": v.unit_role,
        "out_of_scope": v.out_of_scope,
        "best_guess": v.best_guess,
        "best_guess_confidence": v.best_guess_confidence,
        "department": v.department,
        "matter": v.matter,
        "candidates": [{"label": c.label, "probability": round(c.probability, 4)} for c in ranked],
    }
    emit(args, "\n".join(lines), data)
    return 0


def _name(city: City, label: str, department: str | None = None) -> str:
    if label.startswith("transfer:"):
        return f"转办 {department or label.split(':', 1)[1]}"
    if label == "triage":
        return "待人工分拣 manual triage"
    if label == OUT_OF_SCOPE_LABEL:
        return "非城市管理事项 out of scope"
    item = city.category(label)
    return item.name_zh if item else "?"


def evaluate(city: City, rows: list[dict[str, Any]], classifier: Classifier | None = None) -> dict[str, Any]:
    """Accuracy, per-label recall and errors, the confusion pairs and the speed on a labelled set."""
    from services.intake.cases import domain_of

    classifier = classifier or domain_of(city).rules
    per: dict[str, Counter[str]] = defaultdict(Counter)
    errors: list[dict[str, Any]] = []
    confusion: Counter[tuple[str, str]] = Counter()
    decided = decided_correct = 0
    started = time.perf_counter()
    verdicts = [classifier.classify(row["text"]) for row in rows]
    elapsed = time.perf_counter() - started
    for row, v in zip(rows, verdicts, strict=True):
        per[row["label"]]["total"] += 1
        if v.kind != "triage":
            decided += 1
            decided_correct += v.label == row["label"]
        if v.label == row["label"]:
            per[row["label"]]["correct"] += 1
        else:
            confusion[(row["label"], v.label)] += 1
            errors.append(
                {
                    "text": row["text"],
                    "expected": row["label"],
                    "got": v.label,
                    "confidence": v.confidence,
                    "matched": list(v.matched),
                }
            )
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
        "items_per_s": round(len(rows) / elapsed, 1) if elapsed > 0 else 0.0,
        "ms_per_item": round(1000 * elapsed / len(rows), 3) if rows else 0.0,
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


TEMPERATURES = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0)


def cross_validate(city: City, k: int, seed: int = 7) -> dict[str, Any]:
    """K-fold cross-validation on the city's labelled orders: each fold classified by a classifier trained on
    the other folds (and the catalogue), accuracy at the configured temperature, and the mean log-likelihood
    of the true label at each temperature of TEMPERATURES (the best one is what TEMPERATURE should be)."""
    from services.intake.cases import domain_of

    base = domain_of(city).rules
    labels = {c.code for c in city.catalogue.items()} | {f"transfer:{t.id}" for t in city.intake.transfers}

    rows = read_examples(city.folder, labels | {TRIAGE_LABEL})
    if len(rows) < k or k < 2:
        raise SystemExit(f"cross-validation needs K >= 2 and at least K labelled orders ({len(rows)} found)")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)  # fixed seed: the same folds every run
    folds = [[rows[i] for i in order[j::k]] for j in range(k)]
    loglik: dict[float, float] = dict.fromkeys(TEMPERATURES, 0.0)
    total = correct = decided = decided_correct = 0
    for j, test in enumerate(folds):
        train = [r for m, f in enumerate(folds) if m != j for r in f]
        c = Classifier(city.catalogue, city.intake.transfers, city.intake.classifier, train, base.temperature)
        for text, label in test:
            v = c.classify(text)
            total += 1
            correct += v.label == label
            if v.kind != "triage":
                decided += 1
                decided_correct += v.label == label
        for t in TEMPERATURES:
            c.temperature = t
            for text, label in test:
                p = next((x.probability for x in c.candidates(text) if x.label == label), 0.0)
                loglik[t] += math.log(max(p, 1e-6))
    best_t = max(TEMPERATURES, key=lambda t: loglik[t])
    return {
        "k": k,
        "total": total,
        "temperature": base.temperature,
        "accuracy": round(correct / total, 4),
        "decided_share": round(decided / total, 4),
        "decided_precision": round(decided_correct / decided, 4) if decided else 0.0,
        "mean_log_likelihood": {str(t): round(v / total, 4) for t, v in loglik.items()},
        "best_temperature": best_t,
    }


def _cross_validate(args: argparse.Namespace, city: City, k: int) -> int:
    r = cross_validate(city, k)
    lines = [
        f"{r['k']}-fold cross-validation on {r['total']} labelled orders of the city "
        f"(temperature {r['temperature']:g}): accuracy {r['accuracy']:.1%}, decided automatically "
        f"{r['decided_share']:.1%}, of which right {r['decided_precision']:.1%}",
        "mean log-likelihood of the true label by temperature:",
    ]
    lines += [f"  {t:>5s}  {v:.4f}" for t, v in r["mean_log_likelihood"].items()]
    lines.append(f"best temperature {r['best_temperature']:g}")
    emit(args, "\n".join(lines), r)
    return 0
