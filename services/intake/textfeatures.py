"""Features of a report's text for the learnt model (文本特征). Pure and deterministic.

Three kinds, in one sparse vector:

- **Words** (`w:` + word): jieba's segmentation (maximum-probability path over the dictionary's word graph, no
  HMM for unknown words) with the model's own dictionary: the words of two or more characters that the training
  orders used (segmented first with jieba's full dictionary) plus the catalogue's keywords. Carrying the
  dictionary in the model keeps start-up fast (no 20 MB dictionary to load) and keeps the words at prediction
  time exactly those the model was trained on. Words are what keep 机动车 apart from 非机动车. Cutting uses
  rjieba (the Rust implementation of jieba: the same algorithm, and the same cuts with the same dictionary,
  which a test checks) because jieba in Python takes longer than all the rest of the classification.
- **Character n-grams** (1 to 3 characters, single characters only for Chinese ones; no prefix, a feature name
  with a colon is never one), within runs of letters and digits (never across punctuation): they carry phrasing
  and words no dictionary foresaw.
- **Catalogue keywords** (`k:` + label, the phrase score of the city's keyword rules, and `x:` + label when a
  negative keyword rules the label out): the rules a city writes become evidence the model weighs, not a
  parallel scorer.

Words and n-grams are weighted `(1 + ln tf) · idf` and L2-normalised together; keyword features are added after
normalisation, scaled by KEYWORD_SCALE.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import rjieba

from services.intake.classifier import Classifier

NGRAM_SIZES = (1, 2, 3)
KEYWORD_SCALE = 0.5
# Runs of characters that n-grams may span: Chinese characters, latin letters and digits.
_RUN = re.compile(r"[\u4e00-\u9fff]+|[a-z0-9]+")


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def char_ngrams(runs: list[str]) -> Counter[str]:
    """Character 1-3-grams of the runs of a normalised text; single characters only when Chinese."""
    grams: list[str] = []
    for run in runs:
        grams += [ch for ch in run if _is_han(ch)]
        for n in NGRAM_SIZES[1:]:
            grams += [run[i : i + n] for i in range(len(run) - n + 1)]
    return Counter(grams)


def runs_of(norm: str) -> list[str]:
    """The runs of Chinese characters, or of latin letters and digits, of a normalised text."""
    return _RUN.findall(norm)


def tokenizer(words: dict[str, int]) -> rjieba.Jieba:
    """jieba's segmentation (rjieba) over a dictionary of word → frequency: built in milliseconds."""
    tk = rjieba.Jieba.empty()
    for w, f in sorted(words.items()):
        tk.add_word(w, max(1, f), None)
    return tk


def python_tokenizer(words: dict[str, int]) -> Any:
    """jieba in Python over the same dictionary: the reference the fast cutter is checked against."""
    import jieba  # a second of imports: only for training and the tests

    tk = jieba.Tokenizer()
    text = "".join(f"{w} {max(1, f)}\n" for w, f in sorted(words.items()))
    tk.FREQ, tk.total = tk.gen_pfdict(io.BytesIO(text.encode("utf-8")))
    tk.initialized = True
    return tk


def full_tokenizer() -> Any:
    """jieba with its full dictionary: used only when training, to find the words of the training orders (and
    their frequencies, which the model's dictionary keeps)."""
    import jieba

    jieba.setLogLevel(60)  # jieba logs its dictionary loading at INFO
    tk = jieba.Tokenizer()
    tk.initialize()
    return tk


class Featuriser:
    """Turns text into feature counts: words of the model's dictionary, character n-grams, keyword evidence."""

    def __init__(self, rules: Classifier, words: dict[str, int]) -> None:
        self.rules = rules
        self.words = words
        self._tk = tokenizer(words)

    def counts(self, norm: str) -> Counter[str]:
        """Raw word and n-gram counts of a prepared text (`rules.prepare`), before weighting."""
        runs = runs_of(norm)
        out = char_ngrams(runs)
        words = self.words
        out.update("w:" + w for run in runs for w in self._tk.cut(run, False) if len(w) > 1 and w in words)
        return out

    def keywords(self, norm: str) -> dict[str, float]:
        """Keyword evidence of a prepared text: `k:<label>` phrase score, `x:<label>` when a negative keyword
        rules it out."""
        scores, ruled_out = self.rules.phrase_scores(norm)
        out = {f"k:{s.entry.label}": s.score * KEYWORD_SCALE for s in scores}
        out.update({f"x:{label}": 1.0 for label in ruled_out})
        return out


def dictionary_of(texts: Iterable[str], rules: Classifier, min_count: int = 2) -> dict[str, int]:
    """The model's word dictionary: words of two or more characters that jieba's full dictionary finds in at
    least `min_count` training texts, plus every word of the catalogue's keywords and the synonyms' targets."""
    tk = full_tokenizer()
    df: Counter[str] = Counter()
    for text in texts:
        df.update({w for run in runs_of(rules.prepare(text)) for w in tk.cut(run, HMM=False) if len(w) > 1})
    words = {w: tk.FREQ.get(w) or c for w, c in df.items() if c >= min_count}
    for w in rules.keyword_words():
        if len(w) > 1 and _RUN.fullmatch(w):
            words.setdefault(w, tk.FREQ.get(w) or 10)
    return words


def weigh(counts: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    """`(1 + ln tf) · idf` of the known features, L2-normalised."""
    vec = {g: (1.0 + math.log(c)) * idf[g] for g, c in counts.items() if g in idf}
    norm = math.sqrt(sum(x * x for x in vec.values())) or 1.0
    return {g: x / norm for g, x in vec.items()}


def idf_of(rows: Sequence[Counter[str]], min_df: int = 2) -> dict[str, float]:
    """Smoothed idf `ln((1 + n) / (1 + df)) + 1` of the features in at least `min_df` rows."""
    df: Counter[str] = Counter()
    for r in rows:
        df.update(r.keys())
    n = len(rows)
    return {g: math.log((1 + n) / (1 + d)) + 1.0 for g, d in sorted(df.items()) if d >= min_df}
