"""Seed aggregation: mean, sample standard deviation and a Student-t 95% confidence interval of the mean (the t
quantile from scipy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

from scipy import stats


class SeedSummary(TypedDict):
    """A metric over seeds."""

    mean: float
    std: float | None  # n - 1 in the denominator; None for one seed or an infinite value
    ci95: float | None  # half-width of the 95% t interval of the mean; None for one seed or an infinite value
    n: int


def summarise_seeds(values: Sequence[float]) -> SeedSummary:
    """mean, std (n - 1), ci95 (half-width of the 95% t interval of the mean) and n. One seed has no interval, and
    neither has a mean that an infinite value makes infinite (the forward KL of a truncating decoder)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = math.fsum(values) / n
    if n == 1 or math.isinf(mean):
        return {"mean": mean, "std": None, "ci95": None, "n": n}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half_width = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": half_width, "n": n}
