"""Free-text classification (智能分拣): Chinese report text → a catalogue item, an outside department (转办)
or manual triage (人工分拣), with a calibrated confidence. Pure and deterministic.

Two kinds of evidence are combined:

- **Phrases** (the rules a city writes): every catalogue item and every transfer matter has phrases (keywords)
  and negative phrases. A phrase may be a conjunction `A+B` (both words anywhere in the text, as callers say
  垃圾桶一直是满的 for 垃圾桶满). Colloquial synonyms are rewritten first (电瓶车 → 电动车; city data). A phrase
  found in the text scores by its length (0.5 per character, at most 3); a phrase whose words are all inside a
  stronger matched phrase of the same entry is not counted twice. An entry whose negative phrase is in the
  text is ruled out altogether.
- **Character n-grams** (`ngram.CentroidModel`): the text's cosine similarity with each label's examples — the
  catalogue's names and keywords, the transfer matters and the city's labelled work orders
  (`classifier_examples.jsonl` in the city folder, which may also teach a `triage` label for orders about
  nothing a unit can fix). This is what carries phrasing no keyword foresaw.

Each label gets the logit `TEMPERATURE · similarity + KEYWORD_WEIGHT · phrase score`; a softmax over all labels
gives the probabilities and the confidence is the best one's. TEMPERATURE was fitted by maximum likelihood
on 5-fold cross-validation of the labelled orders (`xiuhua classify --cv` prints the fit), so a confidence of
0.8 means about four in five are right on orders like those; KEYWORD_WEIGHT = 1 is set, not fitted (the
keywords were written from the same orders, so a fit would trust them far too much): one matched
two-character phrase multiplies a label's odds by e. Below `triage_below` the report goes to manual triage
with the best catalogue item as a guess for the command centre.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from services.intake.ngram import CentroidModel
from xiuhua.city.categories import Catalogue
from xiuhua.city.intake import ClassifierSettings, Transfer

MAX_WEIGHT = 3.0
# Softmax temperature of the n-gram similarity: the maximum-likelihood value on 5-fold cross-validation of the
# demo city's labelled orders (`xiuhua classify --cv`).
TEMPERATURE = 40.0
# Log-odds a phrase adds per unit of its score (0.5 per character): set, not fitted (see the module text).
KEYWORD_WEIGHT = 1.0
MAX_CONFIDENCE = 0.999
EXAMPLES_FILE = "classifier_examples.jsonl"
TRIAGE_LABEL = "triage"
# Outside city management with no department listed (非城市管理事项): learnt from examples, never a unit's.
OUT_OF_SCOPE_LABEL = "out_of_scope"

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

    @property
    def label(self) -> str:
        """The label of the evaluation files: a category code or `transfer:<id>`."""
        return self.code if self.kind == "category" else f"transfer:{self.code}"


@dataclass(frozen=True)
class Score:
    """How well one entry's phrases fit a text."""

    entry: Entry
    score: float
    matched: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    """One label with its probability, its n-gram similarity and the phrases it matched."""

    label: str
    probability: float
    similarity: float
    phrase_score: float
    matched: tuple[str, ...] = ()


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
    best_guess_confidence: float | None = None
    unit_role: str | None = None  # the lead role (牵头单位) the routing rules give the decided category
    out_of_scope: float | None = None  # the learnt model's probability that the matter is outside city management
    model: str | None = None  # the learnt model's version; None for the keyword and n-gram classifier

    @property
    def label(self) -> str:
        """The label the evaluation file uses: a category code, `transfer:<id>` or `triage`."""
        return {"category": self.code, "transfer": f"transfer:{self.code}", "triage": TRIAGE_LABEL}[self.kind]


def score_entry(entry: Entry, text: str) -> Score:
    """Score one entry against normalised text."""
    if any(matches(n, text) for n in entry.negatives):
        return Score(entry, 0.0, ())
    parts = {p: parts_of(p) for p in entry.phrases}
    return _kept(entry, [p for p in entry.phrases if matches(p, text)], parts)


def _kept(entry: Entry, hits: list[str], parts: dict[str, tuple[str, ...]]) -> Score:
    """The score of an entry's matched phrases: strongest first, a phrase inside a stronger kept one not again."""
    ordered = sorted(set(hits), key=lambda p: (-weight(p), "+" in p, -len(p), p))
    kept: list[str] = []
    for p in ordered:
        if not any(all(any(w in k for k in parts[longer]) for w in parts[p]) for longer in kept):
            kept.append(p)
    return Score(entry, sum(weight(p) for p in kept), tuple(kept))


def _confidence(p: float) -> float:
    """A probability as a verdict's confidence: three decimals, never 1 (certainty is a category the source named)."""
    return min(round(p, 3), MAX_CONFIDENCE)


def read_examples(folder: Path, labels: set[str]) -> list[tuple[str, str]]:
    """A city's labelled orders (`classifier_examples.jsonl`: `{"text", "label"}` lines), or none.

    A bad line or an unknown label raises ValueError naming file and line, like the rest of the city data."""
    path = Path(folder) / EXAMPLES_FILE
    if not path.exists():
        return []
    out: list[tuple[str, str]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row["label"]
            if not isinstance(text, str) or not isinstance(label, str):
                raise ValueError("needs string fields text and label")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: {exc}") from exc
        if label not in labels:
            raise ValueError(
                f"{path}:{n}: unknown label {label!r} (a catalogue code, transfer:<id>, out_of_scope or triage)"
            )
        out.append((text, label))
    return out


class TextClassifier(Protocol):
    """What intake asks of a classifier: a verdict for a text, and the name of what decided it."""

    @property
    def version(self) -> str:
        """The name of the classifier in use (on every case opened)."""
        ...

    def classify(self, text: str) -> Verdict:
        """A catalogue item, a transfer or manual triage."""
        ...


class Classifier:
    """Classifies text against a catalogue and the transfer matters of a city."""

    def __init__(
        self,
        catalogue: Catalogue,
        transfers: list[Transfer],
        settings: ClassifierSettings,
        examples: Sequence[tuple[str, str]] = (),
        temperature: float = TEMPERATURE,
    ) -> None:
        self.settings = settings
        self.temperature = temperature
        self.trained_on = len(examples)
        self.synonyms = sorted(
            ((normalise(k), normalise(v)) for k, v in settings.synonyms.items()), key=lambda kv: -len(kv[0])
        )
        items = [c for c in catalogue.items() if c.code != settings.triage_code]
        self.entries: list[Entry] = [
            Entry(
                "category",
                c.code,
                tuple(normalise(k) for k in c.keywords),
                tuple(normalise(k) for k in c.negative_keywords),
            )
            for c in items
            if c.keywords
        ]
        self.entries += [
            Entry(
                "transfer",
                t.id,
                tuple(normalise(k) for k in t.keywords),
                tuple(normalise(k) for k in t.negative_keywords),
                t,
            )
            for t in transfers
        ]
        self.by_label: dict[str, Entry] = {e.label: e for e in self.entries}
        # Every word of every phrase is looked for once per text, and only entries with a word present are scored:
        # classification is in intake's hot path.
        self._words = sorted({w for e in self.entries for p in (*e.phrases, *e.negatives) for w in parts_of(p)})
        self._entries_of: dict[str, set[int]] = {}
        for i, e in enumerate(self.entries):
            for p in (*e.phrases, *e.negatives):
                for w in parts_of(p):
                    self._entries_of.setdefault(w, set()).add(i)
        self._parts = {p: parts_of(p) for e in self.entries for p in (*e.phrases, *e.negatives)}
        docs: list[tuple[str, str, float]] = []
        for c in items:
            docs.append((self.prepare(c.name_zh), c.code, 1.0))
            docs += [(self.prepare(k), c.code, 1.0) for k in c.keywords]
        for t in transfers:
            label = f"transfer:{t.id}"
            docs.append((self.prepare(t.matter.split()[0]), label, 1.0))  # the Chinese half of `欠薪 wage arrears`
            docs += [(self.prepare(k), label, 1.0) for k in t.keywords]
        docs += [(self.prepare(text), label, 1.0) for text, label in examples]
        self.model = CentroidModel(docs)
        self._category_labels = {c.code for c in items}

    @property
    def version(self) -> str:
        """The keyword and n-gram classifier, with the number of labelled orders it learnt from."""
        return f"keywords-ngrams/{self.trained_on}"

    def prepare(self, text: str) -> str:
        """Normalised text with colloquial synonyms rewritten: what both kinds of evidence look at."""
        norm = normalise(text)  # a keyword's `+` stays: n-grams never cross it
        for word, canonical in self.synonyms:
            if word in norm:
                norm = norm.replace(word, canonical)
        return norm

    def phrase_scores(self, norm: str) -> tuple[list[Score], set[str]]:
        """Phrase scores of the entries that hit, and the labels a negative phrase rules out."""
        present = {w for w in self._words if w in norm}
        touched = sorted({i for w in present for i in self._entries_of[w]})
        scores: list[Score] = []
        ruled_out: set[str] = set()
        for i in touched:
            e = self.entries[i]
            if any(all(w in present for w in self._parts[n]) for n in e.negatives):
                ruled_out.add(e.label)
                continue
            hits = [p for p in e.phrases if all(w in present for w in self._parts[p])]
            if hits:
                scores.append(_kept(e, hits, self._parts))
        return scores, ruled_out

    def keyword_words(self) -> list[str]:
        """Every word of every phrase of the catalogue and the transfers, and the synonyms' targets."""
        return sorted({*self._words, *(v for _, v in self.synonyms)})

    def ranking(self, text: str) -> list[Score]:
        """Entries whose phrases fit the text, best first (the rule half of the evidence)."""
        scores, _ = self.phrase_scores(self.prepare(text))
        return sorted(scores, key=lambda s: (-s.score, s.entry.kind != "category", s.entry.code))

    def candidates(self, text: str) -> list[Candidate]:
        """Every label with its probability, most probable first (ties: catalogue items, then by label)."""
        norm = self.prepare(text)
        scores, ruled_out = self.phrase_scores(norm)
        phrase = {s.entry.label: s for s in scores}
        sims = self.model.similarities(norm)
        labels = [x for x in (*self.model.labels, *(set(phrase) - set(self.model.labels))) if x not in ruled_out]
        logits = {
            x: self.temperature * sims.get(x, 0.0) + KEYWORD_WEIGHT * (phrase[x].score if x in phrase else 0.0)
            for x in labels
        }
        if not logits:
            return []
        top = max(logits.values())
        exp = {x: math.exp(v - top) for x, v in logits.items()}
        total = sum(exp.values())
        out = [
            Candidate(
                x,
                exp[x] / total,
                round(sims.get(x, 0.0), 4),
                phrase[x].score if x in phrase else 0.0,
                phrase[x].matched if x in phrase else (),
            )
            for x in labels
        ]
        return sorted(out, key=lambda c: (-c.probability, c.label not in self._category_labels, c.label))

    def classify(self, text: str) -> Verdict:
        """A catalogue item, a transfer or manual triage, with a confidence in [0, 1]."""
        ranked = self.candidates(text)
        triage = self.settings.triage_code
        if not ranked or (ranked[0].similarity == 0.0 and ranked[0].phrase_score == 0.0):
            return Verdict("triage", triage, 0.0)  # nothing in the text that any label knows
        best = ranked[0]
        # A tie is no decision, whatever the threshold: the order of labels would be choosing the unit.
        tied = len(ranked) > 1 and ranked[1].probability >= best.probability
        guess = next((c for c in ranked if c.label in self._category_labels), None)
        guess_code = guess.label if guess else None
        guess_p = _confidence(guess.probability) if guess else None
        confidence = _confidence(best.probability)
        if best.label in (TRIAGE_LABEL, OUT_OF_SCOPE_LABEL):
            # Like orders the city triaged by hand, or outside city management with no department listed: the
            # best catalogue item is only a guess.
            return Verdict("triage", triage, guess_p or 0.0, guess_code, (), best_guess_confidence=guess_p)
        entry = self.by_label.get(best.label)
        if entry is not None and entry.kind == "transfer":
            if confidence >= self.settings.transfer_at and not tied:
                t = entry.transfer
                assert t is not None
                return Verdict("transfer", t.id, confidence, None, best.matched, t.department, t.matter)
            return Verdict("triage", triage, confidence, guess_code, best.matched, best_guess_confidence=guess_p)
        if confidence >= self.settings.triage_below and not tied:
            return Verdict(
                "category", best.label, confidence, best.label, best.matched, best_guess_confidence=confidence
            )
        return Verdict("triage", triage, confidence, best.label, best.matched, best_guess_confidence=confidence)
