"""Free-text classification (智能分拣): Chinese report text → a catalogue item, an outside department (转办)
or manual triage (人工分拣), with a confidence. Pure.

A weighted phrase scorer: every catalogue item and every transfer matter has phrases (keywords) and negative
phrases. A phrase may be a conjunction `A+B` (both words anywhere in the text, as callers say 垃圾桶一直是满的
for 垃圾桶满). Colloquial synonyms are rewritten first (电瓶车 → 电动车; city data). A phrase found in the text
scores by its length (longer phrases say more: 0.5 per character, at most 3); a phrase whose words are all
inside a stronger matched phrase of the same entry is not counted twice; an entry whose negative phrase is in
the text scores nothing. Confidence compares the best entry with the runner-up:
`best / (best + runner_up + 0.6)`, so one clear two-character hit gives 0.62, a four-character phrase 0.77,
and two entries hit equally give at most 0.38. Below `triage_below` the report goes to manual triage.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from xiuhua.city.categories import Catalogue
from xiuhua.city.intake import ClassifierSettings, Transfer

PRIOR = 0.6  # the runner-up's floor: a lone weak hit never reaches certainty
MAX_WEIGHT = 3.0

Kind = Literal["category", "transfer", "triage"]


def normalise(text: str) -> str:
    """Full-width to half-width, lower case, no whitespace: what phrases are matched against."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return "".join(text.split())


def parts_of(phrase: str) -> tuple[str, ...]:
    """The words of a phrase: one, or several for a conjunction `A+B`."""
    return tuple(p for p in phrase.split("+") if p)


def weight(phrase: str) -> float:
    """A phrase's weight: 0.5 per character of its words, at most 3."""
    return min(MAX_WEIGHT, 0.5 * sum(len(p) for p in parts_of(phrase)))


def matches(phrase: str, text: str) -> bool:
    """Whether every word of the phrase is in the (normalised) text."""
    words = parts_of(phrase)
    return bool(words) and all(w in text for w in words)


@dataclass(frozen=True)
class Entry:
    """Something text can be classified as: a catalogue item or a transfer matter."""

    kind: Literal["category", "transfer"]
    code: str
    phrases: tuple[str, ...]
    negatives: tuple[str, ...]
    transfer: Transfer | None = None


@dataclass(frozen=True)
class Score:
    """How well one entry fits a text."""

    entry: Entry
    score: float
    matched: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    """The classifier's answer for one text."""

    kind: Kind
    code: str = field(metadata={"doc": "category code (the triage code when triaged) or transfer id"})
    confidence: float = 0.0
    best_guess: str | None = None
    matched: tuple[str, ...] = ()
    department: str | None = None
    matter: str | None = None

    @property
    def label(self) -> str:
        """The label the evaluation file uses: a category code, `transfer:<id>` or `triage`."""
        return {"category": self.code, "transfer": f"transfer:{self.code}", "triage": "triage"}[self.kind]


def score_entry(entry: Entry, text: str) -> Score:
    """Score one entry against normalised text."""
    if any(matches(n, text) for n in entry.negatives):
        return Score(entry, 0.0, ())
    hits = sorted({p for p in entry.phrases if matches(p, text)}, key=lambda p: (-weight(p), "+" in p, -len(p), p))
    kept: list[str] = []
    for p in hits:
        if not any(all(any(w in k for k in parts_of(longer)) for w in parts_of(p)) for longer in kept):
            kept.append(p)
    return Score(entry, sum(weight(p) for p in kept), tuple(kept))


class Classifier:
    """Classifies text against a catalogue and the transfer matters of a city."""

    def __init__(self, catalogue: Catalogue, transfers: list[Transfer], settings: ClassifierSettings) -> None:
        self.settings = settings
        self.synonyms = sorted(((normalise(k), normalise(v)) for k, v in settings.synonyms.items()),
                               key=lambda kv: -len(kv[0]))
        self.entries: list[Entry] = [
            Entry("category", c.code, tuple(normalise(k) for k in c.keywords),
                  tuple(normalise(k) for k in c.negative_keywords))
            for c in catalogue.items() if c.keywords
        ]
        self.entries += [
            Entry("transfer", t.id, tuple(normalise(k) for k in t.keywords),
                  tuple(normalise(k) for k in t.negative_keywords), t)
            for t in transfers
        ]

    def ranking(self, text: str) -> list[Score]:
        """Entries that fit the text, best first."""
        norm = normalise(text)
        for word, canonical in self.synonyms:
            if word in norm:
                norm = norm.replace(word, canonical)
        scores = [s for s in (score_entry(e, norm) for e in self.entries) if s.score > 0]
        return sorted(scores, key=lambda s: (-s.score, s.entry.kind != "category", s.entry.code))

    def classify(self, text: str) -> Verdict:
        """A catalogue item, a transfer or manual triage, with a confidence in [0, 1]."""
        ranked = self.ranking(text)
        if not ranked:
            return Verdict("triage", self.settings.triage_code, 0.0)
        best = ranked[0]
        runner_up = ranked[1].score if len(ranked) > 1 else 0.0
        confidence = round(best.score / (best.score + runner_up + PRIOR), 3)
        if best.entry.kind == "transfer":
            if confidence >= self.settings.transfer_at:
                t = best.entry.transfer
                assert t is not None
                return Verdict("transfer", t.id, confidence, None, best.matched, t.department, t.matter)
            guess = next((s.entry.code for s in ranked if s.entry.kind == "category"), None)
            return Verdict("triage", self.settings.triage_code, confidence, guess, best.matched)
        if confidence >= self.settings.triage_below:
            return Verdict("category", best.entry.code, confidence, best.entry.code, best.matched)
        return Verdict("triage", self.settings.triage_code, confidence, best.entry.code, best.matched)
