"""The learnt text model of a city (学习模型): weights of a linear model over `textfeatures`, stored as plain arrays.

Stored in the city's folder as `classifier_model.npz`: NumPy arrays only (no pickle), so a model written with one
scikit-learn version loads with any other and intake never imports scikit-learn. What is stored: the label
classes, the feature names with their idf, the weights (float16: the model is a few MB, rounding moves a
probability by well under 0.001), the intercepts, the softmax temperature fitted on held-out folds, the word
dictionary, and a card (version, number of training orders, date, cross-validated figures, the decision's
calibration curve) as JSON.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.intake.textfeatures import Featuriser, weigh

MODEL_FILE = "classifier_model.npz"
FORMAT = 1


class ModelError(ValueError):
    """A model file that cannot be used, with the reason."""


@dataclass(frozen=True)
class ModelCard:
    """What a model is: shown in `/health`, on every case opened, by `xiuhua classify`."""

    version: str
    trained_on: int
    trained_at: str
    temperature: float
    library: str = ""
    source: str = ""
    cv: dict[str, Any] = field(default_factory=dict)
    # The decision's calibration curve (`model_classifier.Calibration`): the case's item's probability (`item`;
    # `unit`, the unit's summed probability, in a model trained before) → the share of held-out automatic
    # decisions whose item was right. Empty in a model trained before there was one.
    calibration: dict[str, list[float]] = field(default_factory=dict)
    # The lowest confidence at which the held-out folds' decisions were right often enough (0: the city's
    # `triage_below` alone, as in a model trained before there was one).
    decide_at: float = 0.0

    @property
    def calibration_on(self) -> str:
        """Which probability the curve reads: `item` or `unit`."""
        return "item" if "item" in self.calibration else "unit"

    @property
    def calibration_curve(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The curve's points (xs, ys), empty for none."""
        xs = self.calibration.get(self.calibration_on, ())
        return tuple(xs), tuple(self.calibration.get("item_right", ()))

    @property
    def summary(self) -> dict[str, Any]:
        """Name, size of the training data and date: what `/health` and `case.v1.opened` carry."""
        return {"version": self.version, "trained_on": self.trained_on, "trained_at": self.trained_at}


class TextModel:
    """Multinomial logistic weights over words, character n-grams and keyword evidence, with a temperature."""

    def __init__(
        self,
        classes: list[str],
        features: list[str],
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        words: dict[str, int],
        card: ModelCard,
    ) -> None:
        if coef.shape != (len(classes), len(features)) or idf.shape != (len(features),):
            raise ModelError(f"weights {coef.shape} do not fit {len(classes)} labels and {len(features)} features")
        self.classes = list(classes)
        self.features = list(features)
        self.index = {f: i for i, f in enumerate(features)}
        self.idf = {f: float(x) for f, x in zip(features, idf, strict=True) if not f.startswith(("k:", "x:"))}
        self.coef = np.asarray(coef, dtype=np.float32)
        # Features × classes: a text's few hundred features are rows to gather, not columns.
        self._by_feature = np.ascontiguousarray(self.coef.T)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.words = words
        self.card = card

    def vector(self, featuriser: Featuriser, text: str) -> dict[str, float]:
        """The text's feature values: weighted words and n-grams, then keyword evidence."""
        norm = featuriser.rules.prepare(text)
        return vectorise(featuriser.counts(norm), featuriser.keywords(norm), self.idf)

    def probabilities(self, vec: dict[str, float]) -> np.ndarray:
        """Calibrated probabilities of every class (order of `classes`)."""
        index = self.index
        pairs = [(j, x) for f, x in vec.items() if (j := index.get(f)) is not None]
        logits = self.intercept.copy()
        if pairs:
            cols, vals = zip(*pairs, strict=True)
            logits += np.asarray(vals, dtype=np.float32) @ self._by_feature[list(cols)]
        z = logits / self.card.temperature
        z = np.exp(z - z.max())
        return z / z.sum()

    def save(self, path: Path) -> None:
        """Write the model atomically (a running intake never reads half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        words = sorted(self.words)
        idf = np.array([self.idf.get(f, 1.0) for f in self.features], dtype=np.float32)
        np.savez_compressed(
            tmp,
            format=np.array(FORMAT),
            classes=np.array(self.classes),
            features=np.array(self.features),
            idf=idf,
            coef=self.coef.astype(np.float16),
            intercept=self.intercept,
            words=np.array(words),
            word_freq=np.array([self.words[w] for w in words], dtype=np.int64),
            card=np.array(json.dumps(asdict(self.card), ensure_ascii=False)),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> TextModel:
        """Read a model file; a file of another format or a damaged one raises ModelError naming the file."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                fmt = int(z["format"])
                if fmt != FORMAT:
                    raise ModelError(
                        f"{path}: model format {fmt}, this version reads {FORMAT}: train it again "
                        "(`xiuhua classify train --from FILE`)"
                    )
                card = ModelCard(**json.loads(str(z["card"])))
                words = {str(w): int(f) for w, f in zip(z["words"], z["word_freq"], strict=True)}
                return cls(
                    [str(c) for c in z["classes"]],
                    [str(f) for f in z["features"]],
                    z["idf"],
                    z["coef"],
                    z["intercept"],
                    words,
                    card,
                )
        except ModelError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"{path}: not a classifier model ({exc})") from exc


def vectorise(counts: Counter[str], keywords: dict[str, float], idf: dict[str, float]) -> dict[str, float]:
    """Weighted, normalised words and n-grams plus the keyword evidence: one row of the model's input."""
    vec = weigh(counts, idf)
    vec.update(keywords)
    return vec
