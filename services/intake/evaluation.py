"""How good a classifier's verdicts are on labelled orders (评估): the figures a city and the command centre
look at. Pure.

- **out of scope sent to a unit**: of the orders about matters outside city management (labels `transfer:<id>`
  and `out_of_scope`), the share decided as a catalogue item (a unit would get work that is not its own);
- **automatic decisions**: the orders decided as a catalogue item; how many are the right item, how many go to
  the right unit (lead role), and their mean confidence;
- **calibration** (校准): the reliability table of automatic decisions (bins of confidence: how many, mean
  confidence, share whose item is right, share whose unit is right) and the expected calibration error, the bins'
  mean gap between confidence and the share of right items weighted by their size. A confidence is the
  probability that the case's category (its item) is right.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from services.intake.classifier import OUT_OF_SCOPE_LABEL, TRIAGE_LABEL, Verdict

BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)


def is_out_of_scope(label: str) -> bool:
    """Whether a label is a matter outside city management."""
    return label.startswith("transfer:") or label == OUT_OF_SCOPE_LABEL


def group_of(label: str) -> str:
    """The group a label is reported in: the catalogue's two-digit group, `transfer`, `out_of_scope`, `triage`."""
    if label.startswith("transfer:"):
        return "transfer"
    if label in (OUT_OF_SCOPE_LABEL, TRIAGE_LABEL):
        return label
    return label[:2]


def _rate(n: int, d: int) -> float:
    return round(n / d, 4) if d else 0.0


def reliability(
    points: Sequence[tuple[float, bool]], bins: Sequence[float] = BINS
) -> tuple[list[dict[str, Any]], float]:
    """Reliability table (count, mean confidence, accuracy per confidence bin) and expected calibration error."""
    table: list[dict[str, Any]] = []
    gap = 0.0
    for lo, hi in pairwise(bins):
        inside = [(c, ok) for c, ok in points if lo <= c < hi]
        if not inside:
            continue
        conf = sum(c for c, _ in inside) / len(inside)
        acc = sum(ok for _, ok in inside) / len(inside)
        gap += len(inside) * abs(conf - acc)
        table.append(
            {
                "from": lo,
                "to": min(hi, 1.0),
                "count": len(inside),
                "confidence": round(conf, 4),
                "accuracy": round(acc, 4),
            }
        )
    return table, round(gap / len(points), 4) if points else 0.0


def _answer_of(label: str, v: Verdict) -> str:
    """The label the verdict (分类结果) counts as: triage of a probably out-of-scope order counts as out of scope."""
    return (
        OUT_OF_SCOPE_LABEL
        if v.kind == "triage" and label == OUT_OF_SCOPE_LABEL and v.out_of_scope and v.out_of_scope >= 0.5
        else v.label
    )


def _error_of(label: str, v: Verdict, text: str) -> dict[str, Any]:
    """One wrong verdict's row of the report: what was expected, what came, how sure, the order's text."""
    return {"expected": label, "got": v.label, "confidence": v.confidence, "text": text}


def measure(
    labels: Sequence[str], verdicts: Sequence[Verdict], roles: dict[str, str], texts: Sequence[str] | None = None
) -> dict[str, Any]:
    """Every figure of the module text for labelled orders and their verdicts (same order)."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    errors: list[dict[str, Any]] = []
    confusion: Counter[tuple[str, str]] = Counter()
    oos = oos_to_unit = decided = right = right_unit = transfers = transfers_right = 0
    conf_sum = 0.0
    points: list[tuple[float, bool]] = []
    unit_points: list[tuple[float, bool]] = []
    for i, (label, v) in enumerate(zip(labels, verdicts, strict=True)):
        g = per[group_of(label)]
        g["total"] += 1
        ok = _answer_of(label, v) == label
        g["correct"] += ok
        if not ok:
            confusion[(label, v.label)] += 1
            errors.append(_error_of(label, v, texts[i] if texts is not None else ""))
        oos += is_out_of_scope(label)
        if v.kind == "category":
            decided += 1
            oos_to_unit += is_out_of_scope(label)
            right += v.code == label
            unit_ok = label in roles and roles.get(v.code) == roles[label]
            right_unit += unit_ok
            conf_sum += v.confidence
            points.append((v.confidence, v.code == label))
            unit_points.append((v.confidence, unit_ok))
        elif v.kind == "transfer":
            transfers += 1
            transfers_right += v.label == label
    total = len(labels)
    table, ece = reliability(points)
    for row, unit_row in zip(table, reliability(unit_points)[0], strict=True):
        row["unit_accuracy"] = unit_row["accuracy"]
    return {
        "total": total,
        "correct": sum(c["correct"] for c in per.values()),
        "accuracy": _rate(sum(c["correct"] for c in per.values()), total),
        "out_of_scope": oos,
        "out_of_scope_to_unit": oos_to_unit,
        "out_of_scope_to_unit_rate": _rate(oos_to_unit, oos),
        "decided": decided,
        "decided_share": _rate(decided, total),
        "decided_right": _rate(right, decided),
        "decided_right_unit": _rate(right_unit, decided),
        "decided_mean_confidence": round(conf_sum / decided, 4) if decided else 0.0,
        "transferred": transfers,
        "transferred_right": _rate(transfers_right, transfers),
        "triaged": total - decided - transfers,
        "ece": ece,
        "reliability": table,
        "by_group": {k: {"total": c["total"], "correct": c["correct"]} for k, c in sorted(per.items())},
        "errors": errors,
        "confusion": [{"expected": a, "got": b, "count": n} for (a, b), n in confusion.most_common()],
    }
