"""BLEU and Self-BLEU, bit-for-bit equal to ``nltk.translate.bleu_score.sentence_bleu`` with
``weights=(1/n,)*n`` and ``SmoothingFunction().method1``, without comparing every hypothesis with every
reference.

nltk's score depends on the references only through (a) the largest count of each n-gram in any single
reference and (b) the reference length closest to the hypothesis length (ties to the shorter). Both are
indexed once, so scoring costs O(n-grams of the hypotheses). The final arithmetic repeats nltk's float
operations in the same order: int ``0`` when no unigram matches; ``0.1 / denominator`` for a zero count;
``log(numerator / denominator)`` otherwise; ``bp * exp(fsum(w * log p))``.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence

Sentence = Sequence[str]
_EPSILON = 0.1  # SmoothingFunction().method1


def _ngram_counts(sentence: Sentence, max_n: int) -> list[Counter]:
    """Counters of the 1..max_n-grams of ``sentence`` (index n-1)."""
    tokens = tuple(sentence)
    return [Counter(zip(*(tokens[i:] for i in range(n)), strict=False)) for n in range(1, max_n + 1)]


def _closest(lengths: Sequence[int], length: int) -> int:
    """The value in sorted ``lengths`` closest to ``length``, ties to the shorter (as nltk)."""
    i = bisect.bisect_left(lengths, length)
    if i < len(lengths) and lengths[i] == length:
        return length
    if i == 0:
        return lengths[0]
    if i == len(lengths):
        return lengths[-1]
    below, above = lengths[i - 1], lengths[i]
    return below if length - below <= above - length else above


def _score(numerators: Sequence[int], denominators: Sequence[int], hyp_len: int, ref_len: int, n: int) -> float:
    """nltk's sentence BLEU-n from clipped counts of orders 1..n (int 0 when nothing matches)."""
    if numerators[0] == 0:
        return 0
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    weight = 1 / n
    logs = []
    for i in range(n):
        num, den = numerators[i], denominators[i]
        logs.append(weight * math.log((num + _EPSILON) / den if num == 0 else num / den))
    return bp * math.exp(math.fsum(logs))


class ReferenceIndex:
    """Largest count of every n-gram (n <= ``max_n``) in any single reference, and the reference lengths."""

    def __init__(self, references: Iterable[Sentence], max_n: int = 5) -> None:
        self.max_n = max_n
        self.max_counts: list[dict[tuple, int]] = [{} for _ in range(max_n)]
        lengths = set()
        for reference in references:
            lengths.add(len(reference))
            for table, counts in zip(self.max_counts, _ngram_counts(reference, max_n), strict=True):
                for gram, count in counts.items():
                    if count > table.get(gram, 0):
                        table[gram] = count
        if not lengths:
            raise ValueError("BLEU needs at least one reference")
        self.lengths = sorted(lengths)

    def scores(self, hypotheses: Iterable[Sentence], orders: Sequence[int]) -> dict[int, list[float]]:
        """BLEU-n of every hypothesis for each n in ``orders`` (the counting is shared)."""
        if max(orders) > self.max_n:
            raise ValueError(f"index built for n <= {self.max_n}, asked for {max(orders)}")
        top = max(orders)
        result: dict[int, list[float]] = {n: [] for n in orders}
        for hypothesis in hypotheses:
            numerators, denominators = [], []
            for table, counts in zip(self.max_counts, _ngram_counts(hypothesis, top), strict=False):
                numerators.append(sum(min(c, table.get(g, 0)) for g, c in counts.items()))
                denominators.append(max(1, sum(counts.values())))
            ref_len = _closest(self.lengths, len(hypothesis))
            for n in orders:
                result[n].append(_score(numerators, denominators, len(hypothesis), ref_len, n))
        return result


def sentence_bleu_scores(hypotheses: Sequence[Sentence], references: Sequence[Sentence], n: int) -> list[float]:
    """For each hypothesis, nltk ``sentence_bleu(references, hypothesis, (1/n,)*n, method1)``."""
    return ReferenceIndex(references, max_n=n).scores(hypotheses, [n])[n]


def self_bleu_scores_by_order(
    samples: Sequence[Sentence], orders: Sequence[int], include_self: bool = False
) -> dict[int, list[float]]:
    """Self-BLEU-n of each sample against all the others (leave-one-out by position) for each n.

    A copy of a sample at another position still counts as a reference. ``include_self=True`` reproduces
    the official code, which keeps the sample among its own references (scores are then ~1).
    """
    if len(samples) < 2:
        raise ValueError("Self-BLEU needs at least two samples")
    if include_self:
        return ReferenceIndex(samples, max_n=max(orders)).scores(samples, orders)
    top = max(orders)
    sample_counts = [_ngram_counts(sample, top) for sample in samples]
    # per n-gram: (largest count in any sample, how many samples reach it, largest count below it)
    leaders: list[dict[tuple, list[int]]] = [{} for _ in range(top)]
    for counts in sample_counts:
        for table, order_counts in zip(leaders, counts, strict=True):
            for gram, c in order_counts.items():
                entry = table.get(gram)
                if entry is None:
                    table[gram] = [c, 1, 0]
                elif c > entry[0]:
                    entry[:] = [c, 1, entry[0]]
                elif c == entry[0]:
                    entry[1] += 1
                elif c > entry[2]:
                    entry[2] = c
    length_counts = Counter(len(sample) for sample in samples)
    lengths = sorted(length_counts)
    closest_other = {
        length: length if length_counts[length] >= 2 else _closest([x for x in lengths if x != length], length)
        for length in lengths
    }
    result: dict[int, list[float]] = {n: [] for n in orders}
    for sample, counts in zip(samples, sample_counts, strict=True):
        numerators, denominators = [], []
        for table, order_counts in zip(leaders, counts, strict=True):
            matched = 0
            for gram, c in order_counts.items():
                best, holders, runner_up = table[gram]
                others = best if (c < best or holders >= 2) else runner_up
                matched += min(c, others)
            numerators.append(matched)
            denominators.append(max(1, sum(order_counts.values())))
        ref_len = closest_other[len(sample)]
        for n in orders:
            result[n].append(_score(numerators, denominators, len(sample), ref_len, n))
    return result


def self_bleu_scores(samples: Sequence[Sentence], n: int, include_self: bool = False) -> list[float]:
    """Self-BLEU-n of each sample (see :func:`self_bleu_scores_by_order`)."""
    return self_bleu_scores_by_order(samples, [n], include_self)[n]
