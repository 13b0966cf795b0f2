"""Character n-gram similarity (字符 n 元组): how close a text is to each label's examples. Pure, deterministic.

Chinese has no spaces and callers rarely use the catalogue's words, but they share characters and character
pairs with them (垃圾箱塞满了 / 垃圾桶满溢, 下水井的盖子 / 井盖). Every example (a catalogue name, a keyword, a
labelled work order) becomes a vector of its character 1-, 2- and 3-grams (Chinese characters only for
single characters), weighted `(1 + log tf) · idf` and L2-normalised; a label's centroid is the normalised sum
of its examples' vectors (Rocchio). A text's similarity to a label is the cosine with that centroid, computed
through an inverted index so that only the text's own n-grams are looked at.

Word segmentation (jieba) was measured as an extra feature and added nothing over character trigrams on
cross-validation of the labelled orders, so there is no segmenter and no dictionary to load.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

NGRAM_SIZES = (1, 2, 3)


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def ngrams(text: str) -> Counter[str]:
    """The character n-grams of a normalised text; spaces and `+` separate chunks that n-grams never cross."""
    out: Counter[str] = Counter()
    for chunk in text.replace("+", " ").split():
        for n in NGRAM_SIZES:
            for i in range(len(chunk) - n + 1):
                g = chunk[i : i + n]
                if n == 1 and not _is_han(g):
                    continue  # digits and latin letters alone say nothing about the matter
                out[g] += 1
    return out


class CentroidModel:
    """TF-IDF character n-gram centroids of labels, trained once from (text, label, weight) examples."""

    def __init__(self, examples: Iterable[tuple[str, str, float]]) -> None:
        rows = [(ngrams(text), label, w) for text, label, w in examples]
        df: Counter[str] = Counter()
        for grams, _, _ in rows:
            df.update(grams.keys())
        n = len(rows)
        # Smoothed idf: a gram in every example still weighs a little, an unseen one is ignored.
        self.idf: dict[str, float] = {g: math.log((n + 1) / (d + 1)) + 1.0 for g, d in df.items()}
        sums: dict[str, Counter[str]] = defaultdict(Counter)
        for grams, label, w in rows:
            for g, x in self._vector(grams).items():
                sums[label][g] += w * x
        self.labels: tuple[str, ...] = tuple(sorted(sums))
        # Inverted index gram → [(label, weight in that label's normalised centroid)].
        index: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for label in self.labels:
            vec = sums[label]
            norm = math.sqrt(sum(x * x for x in vec.values())) or 1.0
            for g in sorted(vec):
                index[g].append((label, vec[g] / norm))
        self.index: dict[str, tuple[tuple[str, float], ...]] = {g: tuple(p) for g, p in index.items()}

    def _vector(self, grams: Counter[str]) -> dict[str, float]:
        vec = {g: (1.0 + math.log(c)) * self.idf[g] for g, c in grams.items() if g in self.idf}
        norm = math.sqrt(sum(x * x for x in vec.values())) or 1.0
        return {g: x / norm for g, x in vec.items()}

    def similarities(self, text: str) -> dict[str, float]:
        """Cosine similarity of a normalised text with every label that shares an n-gram with it."""
        sims: dict[str, float] = defaultdict(float)
        for g, x in self._vector(ngrams(text)).items():
            for label, y in self.index.get(g, ()):
                sims[label] += x * y
        return dict(sims)
