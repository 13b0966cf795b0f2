"""Training the city's text model (模型训练) with scikit-learn: used by `xiuhua classify train` and `learn`, never
by the running intake (which reads the weights as plain arrays, `textmodel`).

A multinomial logistic regression (L2) over `textfeatures`; its softmax temperature is fitted by maximum
likelihood on out-of-fold scores of K-fold cross-validation (probability calibration on held-out folds, so a
confidence of 0.8 means about four in five on orders like the training ones); the same out-of-fold verdicts give
the cross-validated report per group. The final weights are fitted on every order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import sklearn
from scipy.optimize import minimize_scalar
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression

from services.intake.classifier import Classifier
from services.intake.evaluation import measure
from services.intake.model_classifier import decide, lead_roles
from services.intake.textfeatures import Featuriser, dictionary_of, idf_of
from services.intake.textmodel import ModelCard, TextModel, vectorise
from xiuhua.city import City

# Inverse L2 strength of the logistic regression, chosen on 5-fold cross-validation of the demo city's labelled
# orders among 10, 30 and 100 (100: best accuracy, best calibration error, the most decided automatically).
C = 100.0
FOLDS = 5
SEED = 7


def _matrix(vecs: Sequence[dict[str, float]], index: dict[str, int]) -> csr_matrix:
    rows, cols, vals = [], [], []
    for i, v in enumerate(vecs):
        for f, x in v.items():
            j = index.get(f)
            if j is not None:
                rows.append(i)
                cols.append(j)
                vals.append(x)
    return csr_matrix((vals, (rows, cols)), shape=(len(vecs), len(index)), dtype=np.float64)


def _fit(x: csr_matrix, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights (n_classes × features) and intercepts of every class; a class absent from `y` gets -30."""
    present = np.unique(y)
    coef = np.zeros((n_classes, x.shape[1]))
    intercept = np.full(n_classes, -30.0)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    lr = LogisticRegression(C=C, max_iter=2000)
    lr.fit(x, y)
    if len(present) == 2:  # scikit-learn keeps one row for two classes: the second's log-odds
        coef[present[1]] = lr.coef_[0]
        intercept[present] = [0.0, lr.intercept_[0]]
    else:
        coef[present] = lr.coef_
        intercept[present] = lr.intercept_
    return coef, intercept


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature that maximises the likelihood of the true labels (on held-out scores)."""

    def nll(t: float) -> float:
        p = _softmax(logits / t)[np.arange(len(y)), y]
        return float(-np.log(np.maximum(p, 1e-12)).mean())

    return round(float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x), 4)


def folds_of(n: int, k: int, seed: int = SEED) -> list[np.ndarray]:
    """K folds of row indices, shuffled with a fixed seed (the same folds every run)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [np.array(sorted(order[j::k])) for j in range(k)]


def train(
    city: City, rows: Sequence[tuple[str, str]], source: str = "", k: int = FOLDS
) -> tuple[TextModel, dict[str, Any]]:
    """A model of the city's labelled orders, and its cross-validated report (per group, calibration)."""
    if len(rows) < max(k, 10):
        raise ValueError(f"training needs at least {max(k, 10)} labelled orders ({len(rows)} given)")
    settings = city.intake.classifier
    rules = Classifier(city.catalogue, city.intake.transfers, settings)
    texts = [t for t, _ in rows]
    words = dictionary_of(texts, rules)
    feat = Featuriser(rules, words)
    prepared = [rules.prepare(t) for t in texts]
    counts = [feat.counts(t) for t in prepared]
    keywords = [feat.keywords(t) for t in prepared]
    idf = idf_of(counts)
    vecs = [vectorise(c, kw, idf) for c, kw in zip(counts, keywords, strict=True)]
    features = sorted(idf) + sorted({f for kw in keywords for f in kw})
    index = {f: i for i, f in enumerate(features)}
    x = _matrix(vecs, index)
    classes = sorted({label for _, label in rows})
    cls_index = {c: i for i, c in enumerate(classes)}
    y = np.array([cls_index[label] for _, label in rows])
    oof = np.zeros((len(rows), len(classes)))
    for test in folds_of(len(rows), k):
        mask = np.ones(len(rows), bool)
        mask[test] = False
        coef, intercept = _fit(x[mask], y[mask], len(classes))
        oof[test] = x[test] @ coef.T + intercept
    temperature = fit_temperature(oof, y)
    coef, intercept = _fit(x, y, len(classes))
    roles = {c: r for c, r in lead_roles(city).items() if c != settings.triage_code}
    transfers = {t.id: t for t in city.intake.transfers}
    probs = _softmax(oof / temperature)
    verdicts = [decide(dict(zip(classes, p.tolist(), strict=True)), roles, settings, transfers) for p in probs]
    report = measure([label for _, label in rows], verdicts, roles)
    report["temperature"] = temperature
    report["folds"] = k
    digest = hashlib.sha1(coef.astype(np.float16).tobytes() + "\n".join(features).encode()).hexdigest()[:8]
    today = date.today().isoformat()
    card = ModelCard(
        version=f"{city.folder.name}-{today}-{digest}",
        trained_on=len(rows),
        trained_at=today,
        temperature=temperature,
        library=f"scikit-learn {sklearn.__version__}",
        source=source,
        cv={key: report[key] for key in ("accuracy", "out_of_scope_to_unit_rate", "decided_share", "decided_right",
                                          "decided_right_unit", "decided_mean_confidence", "ece")},
    )
    idf_arr = np.array([idf.get(f, 1.0) for f in features], dtype=np.float32)
    return TextModel(classes, features, idf_arr, coef, intercept, words, card), report
