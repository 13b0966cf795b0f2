"""Classification with the city's learnt model (学习模型分拣), decided by unit. Pure.

The model gives a calibrated probability to every label: catalogue items, transfer matters (`transfer:<id>`),
`out_of_scope` (outside city management, no department listed) and `triage` (nothing any unit can act on). What
matters to a caller is which unit acts, so the decision is taken by unit (按责任单位决策):

- a unit's confidence is the sum of the probabilities of the catalogue items whose lead role it is under the
  routing rules (an order surely the enforcement team's goes there even when 0101 and 0102 split);
- the matter's out-of-scope probability is the sum over the transfer matters and `out_of_scope`;
- the best unit gets the case when its confidence is at least `triage_below`, above the out-of-scope
  probability, and not tied with another unit; the case's category is that unit's most probable item;
- else the most probable transfer matter is transferred when its own probability is at least `transfer_at`;
- else manual triage (人工分拣), with the best catalogue item as a guess. Out of scope is the default for what
  the catalogue does not cover: an order is never sent to a unit on a guess.
"""

from __future__ import annotations

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
        r for r in city.routing.rules
        if not (r.match.areas or r.match.sources or r.match.urgency or r.match.hours)
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


def decide(
    probs: dict[str, float], roles: dict[str, str], settings: ClassifierSettings, transfers: dict[str, Transfer],
    model: str | None = None,
) -> Verdict:
    """The verdict for calibrated label probabilities: a unit's case, a transfer or manual triage (see above)."""
    units: dict[str, float] = {}
    for label, p in probs.items():
        if label in roles:
            units[roles[label]] = units.get(roles[label], 0.0) + p
    oos = sum(p for label, p in probs.items() if label.startswith("transfer:") or label == OUT_OF_SCOPE_LABEL)
    ranked_units = sorted(units.items(), key=lambda kv: (-kv[1], kv[0]))
    items = sorted(((x, p) for x, p in probs.items() if x in roles), key=lambda kv: (-kv[1], kv[0]))
    guess, guess_p = items[0] if items else (None, None)
    triage = settings.triage_code
    out_p = round(oos, 4)
    if ranked_units:
        role, unit_p = ranked_units[0]
        tied = len(ranked_units) > 1 and ranked_units[1][1] >= unit_p
        if unit_p >= settings.triage_below and unit_p > oos and not tied:
            code = next(x for x, _ in items if roles[x] == role)
            c = _confidence(unit_p)
            return Verdict("category", code, c, code, best_guess_confidence=_confidence(probs[code]),
                           unit_role=role, out_of_scope=out_p, model=model)
    moves = sorted(((x, p) for x, p in probs.items() if x.startswith("transfer:")), key=lambda kv: (-kv[1], kv[0]))
    if moves:
        label, p = moves[0]
        rival = moves[1][1] if len(moves) > 1 else 0.0
        t = transfers.get(label.split(":", 1)[1])
        if t is not None and p >= settings.transfer_at and p > rival:
            return Verdict("transfer", t.id, _confidence(p), None, (), t.department, t.matter,
                           unit_role=None, out_of_scope=out_p, model=model)
    best_unit = ranked_units[0][1] if ranked_units else 0.0
    return Verdict("triage", triage, _confidence(best_unit), guess,
                   best_guess_confidence=_confidence(guess_p) if guess_p is not None else None,
                   unit_role=COMMAND_CENTRE, out_of_scope=out_p, model=model)


class ModelClassifier:
    """The city's learnt model behind the same interface as the keyword classifier: `classify`, `candidates`."""

    def __init__(self, city: City, model: TextModel, rules: Classifier | None = None) -> None:
        self.settings = city.intake.classifier
        self.model = model
        self.rules = rules or Classifier(city.catalogue, city.intake.transfers, self.settings)
        self.featuriser = Featuriser(self.rules, model.words)
        self.roles = {c: r for c, r in lead_roles(city).items() if c != self.settings.triage_code}
        self.transfers = {t.id: t for t in city.intake.transfers}
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
        return decide(self.probabilities(text), self.roles, self.settings, self.transfers, self.version)
