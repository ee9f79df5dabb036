"""Diversity statistics of tokenised samples."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def distinct_n(samples: Sequence[Sequence[str]], n: int) -> float:
    """Distinct-n: unique n-grams / all n-grams over the samples (0 when there are none)."""
    grams = [tuple(s[i : i + n]) for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def diversity_metrics(samples: Sequence[Sequence[str]], training: Iterable[Sequence[str]] | None = None) -> dict:
    """distinct-1..4, fraction of unique samples, mean length and (given training sentences) novelty:
    the fraction of samples that are not a training sentence."""
    joined = [" ".join(s) for s in samples]
    report = {f"distinct-{n}": distinct_n(samples, n) for n in range(1, 5)}
    report["unique_fraction"] = len(set(joined)) / len(joined)
    report["mean_length"] = sum(len(s) for s in samples) / len(samples)
    if training is not None:
        seen = {" ".join(s) for s in training}
        report["novelty"] = sum(j not in seen for j in joined) / len(joined)
    return report
