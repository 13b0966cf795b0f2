"""Classification with the city's learnt model (学习模型分拣), decided by unit and judged by its item. Pure.

The model gives a calibrated probability to every label: catalogue items, transfer matters (`transfer:<id>`),
`out_of_scope` (outside city management, no department listed) and `triage` (nothing any unit can act on). What
matters to a caller is which unit acts, and to the command centre that the case's category is right, so:

- a unit's probability is the sum of the probabilities of the catalogue items whose lead role it is under the
  routing rules; the case's category is the best unit's most probable item;
- the matter's out-of-scope probability is the sum over the transfer matters and `out_of_scope`;
- the case's confidence is calibrated (`Calibration`): that item's probability mapped by a monotone curve fitted
  on held-out folds to the share of such decisions whose item was right, so a confidence says how often the
  case's category is right (a model trained before maps the unit's sum instead);
- the best unit gets the case when both its probability and the calibrated confidence are at least the threshold
  (`triage_below`, or the model's own `decide_at` when higher: the lowest at which held-out decisions were right
  often enough), its probability is above the out-of-scope probability, and it is not tied with another unit;
- else the most probable transfer matter is transferred when its own probability is at least `transfer_at`;
- else manual triage (人工分拣), with the best catalogue item as a guess. Out of scope is the default for what
  the catalogue does not cover: an order is never sent to a unit on a guess, nor on a guess between its items.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from services.dispatch.routing import category_matches
from services.intake.classifier import OUT_OF_SCOPE_LABEL, TRIAGE_LABEL, Classifier, Verdict
from services.intake.textfeatures import Featuriser
from services.intake.textmodel import TextModel
from xiuhua.city import City
from xiuhua.city.intake import ClassifierSettings, Transfer

MAX_CONFIDENCE = 0.999
COMMAND_CENTRE = "command_centre"


def lead_roles(city: City) -> dict[str, str]:
    """Each catalogue item's lead role under the routing rules that look at the category only (派遣规则)."""
    rules = [
        r for r in city.routing.rules if not (r.match.areas or r.match.sources or r.match.urgency or r.match.hours)
    ]
    out: dict[str, str] = {}
    for item in city.catalogue.items():
        best: tuple[int, int] | None = None
        role = str(item.lead_role)
        for r in rules:
            cat = category_matches(r.match.categories, item.code) if r.match.categories else 0
            if cat < 0 or (best is not None and (cat, r.priority) <= best):
                continue
            best = (cat, r.priority)
            lead = r.lead
            role = str(lead.role) if lead and lead.role else (f"unit:{lead.unit}" if lead else str(item.lead_role))
        out[item.code] = role
    return out


@dataclass(frozen=True)
class Ranked:
    """One label with its calibrated probability."""

    label: str
    probability: float


def _confidence(p: float) -> float:
    return min(round(p, 3), MAX_CONFIDENCE)


@dataclass(frozen=True)
class Calibration:
    """From a decision's probability to the share of automatic decisions whose catalogue item is right (校准曲线):
    a monotone, piecewise linear curve through (`xs`, `ys`), fitted on held-out folds (`training`). Without points
    it is the identity (a model trained before there was a curve).

    `on` says which probability the curve reads: `item`, the case's item (models trained now), or `unit`, the
    unit's sum (models trained before). The temperature alone calibrates every label, but a decision is judged by
    its item, and the unit's sum is surer than its item: two enforcement items that split are one sure unit and a
    coin toss between categories."""

    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    on: str = "unit"

    def of(self, unit_p: float, item_p: float) -> float:
        """The confidence of a decision whose unit has `unit_p` and whose item has `item_p`."""
        return self(item_p if self.on == "item" else unit_p)

    def __call__(self, p: float) -> float:
        xs, ys = self.xs, self.ys
        if not xs:
            return p
        i = bisect_right(xs, p)
        if i == 0:
            return ys[0]
        if i == len(xs):
            return ys[-1]
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (p - x0) / (x1 - x0)


def best_unit(probs: dict[str, float], roles: dict[str, str]) -> tuple[str, float, str, bool] | None:
    """The unit the probabilities point to: its role, its summed probability, its most probable item and whether
    another unit ties with it; None when no catalogue item has a probability."""
    units: dict[str, float] = {}
    for label, p in probs.items():
        if label in roles:
            units[roles[label]] = units.get(roles[label], 0.0) + p
    if not units:
        return None
    ranked = sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))
    role, unit_p = ranked[0]
    code = min((x for x in probs if roles.get(x) == role), key=lambda x: (-probs[x], x))
    return role, unit_p, code, len(ranked) > 1 and ranked[1][1] >= unit_p


def out_of_scope_of(probs: dict[str, float]) -> float:
    """The probability that the matter is outside city management: the transfer matters and `out_of_scope`."""
    return sum(p for label, p in probs.items() if label.startswith("transfer:") or label == OUT_OF_SCOPE_LABEL)


def _transfer_verdict(
    probs: dict[str, float],
    settings: ClassifierSettings,
    transfers: dict[str, Transfer],
    out_p: float,
    model: str | None,
) -> Verdict | None:
    """The transfer (转办) verdict when one transfer matter is at its threshold and ahead of the others, else None."""
    moves = sorted(((x, p) for x, p in probs.items() if x.startswith("transfer:")), key=lambda kv: (-kv[1], kv[0]))
    if moves:
        label, p = moves[0]
        rival = moves[1][1] if len(moves) > 1 else 0.0
        t = transfers.get(label.split(":", 1)[1])
        if t is not None and p >= settings.transfer_at and p > rival:
            return Verdict(
                "transfer",
                t.id,
                _confidence(p),
                None,
                (),
                t.department,
                t.matter,
                unit_role=None,
                out_of_scope=out_p,
                model=model,
            )
    return None


def decide(
    probs: dict[str, float],
    roles: dict[str, str],
    settings: ClassifierSettings,
    transfers: dict[str, Transfer],
    model: str | None = None,
    calibration: Calibration | None = None,
    decide_at: float = 0.0,
) -> Verdict:
    """The verdict for calibrated label probabilities: a unit's case, a transfer or manual triage (see above)."""
    calibrate = calibration or Calibration()
    threshold = max(settings.triage_below, decide_at)
    oos = out_of_scope_of(probs)
    unit = best_unit(probs, roles)
    items = sorted(((x, p) for x, p in probs.items() if x in roles), key=lambda kv: (-kv[1], kv[0]))
    guess, guess_p = items[0] if items else (None, None)
    triage = settings.triage_code
    out_p = round(oos, 4)
    if unit is not None:
        role, unit_p, code, tied = unit
        c = calibrate.of(unit_p, probs[code])
        # The curve may take a decision back to triage, never lift one out of it: a decision needs the unit's
        # probability at the threshold as well (where the curve is fitted on few held-out orders).
        if min(c, unit_p) >= threshold and unit_p > oos and not tied:
            return Verdict(
                "category",
                code,
                _confidence(c),
                code,
                best_guess_confidence=_confidence(probs[code]),
                unit_role=role,
                out_of_scope=out_p,
                model=model,
            )
    if (moved := _transfer_verdict(probs, settings, transfers, out_p, model)) is not None:
        return moved
    best = calibrate.of(unit[1], probs[unit[2]]) if unit is not None else 0.0
    return Verdict(
        "triage",
        triage,
        _confidence(best),
        guess,
        best_guess_confidence=_confidence(guess_p) if guess_p is not None else None,
        unit_role=COMMAND_CENTRE,
        out_of_scope=out_p,
        model=model,
    )


class ModelClassifier:
    """The city's learnt model behind the same interface as the keyword classifier: `classify`, `candidates`."""

    def __init__(self, city: City, model: TextModel, rules: Classifier | None = None) -> None:
        self.settings = city.intake.classifier
        self.model = model
        self.rules = rules or Classifier(city.catalogue, city.intake.transfers, self.settings)
        self.featuriser = Featuriser(self.rules, model.words)
        self.roles = {c: r for c, r in lead_roles(city).items() if c != self.settings.triage_code}
        self.transfers = {t.id: t for t in city.intake.transfers}
        self.calibration = Calibration(*model.card.calibration_curve, on=model.card.calibration_on)
        self.decide_at = model.card.decide_at
        known = set(self.roles) | {f"transfer:{t}" for t in self.transfers} | {OUT_OF_SCOPE_LABEL, TRIAGE_LABEL}
        unknown = sorted(set(model.classes) - known)
        if unknown:
            raise ValueError(f"the model knows labels the city does not: {', '.join(unknown[:5])} (train it again)")

    @property
    def version(self) -> str:
        """The model's version (on every case opened and in /health)."""
        return self.model.card.version

    def probabilities(self, text: str) -> dict[str, float]:
        """Every label's calibrated probability."""
        p = self.model.probabilities(self.model.vector(self.featuriser, text))
        return {c: float(x) for c, x in zip(self.model.classes, p, strict=True)}

    def candidates(self, text: str) -> list[Ranked]:
        """Labels by probability, most probable first."""
        probs = self.probabilities(text)
        return [Ranked(x, p) for x, p in sorted(probs.items(), key=lambda kv: (-kv[1], kv[0]))]

    def classify(self, text: str) -> Verdict:
        """A unit's case, a transfer or manual triage, with the confidence behind it."""
        return decide(
            self.probabilities(text),
            self.roles,
            self.settings,
            self.transfers,
            self.version,
            self.calibration,
            self.decide_at,
        )
