"""Seed aggregation: mean, sample standard deviation and a Student-t 95% confidence interval of the mean."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import TypedDict


def student_t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom (Simpson's rule on the density, 400 panels)."""
    if x < 0:
        return 1.0 - student_t_cdf(-x, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(t: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))

    # substitute t = tan(u) so that the heavy tail of df = 1 or 2 is integrated on a finite interval
    upper = math.atan(x)
    panels = 400
    h = upper / panels
    total = 0.0
    for i in range(panels + 1):
        u = i * h
        weight = 1 if i in (0, panels) else (4 if i % 2 else 2)
        total += weight * density(math.tan(u)) / math.cos(u) ** 2
    return 0.5 + total * h / 3


@cache
def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` degrees of freedom, by bisection."""
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        if student_t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


class SeedSummary(TypedDict):
    """A metric over seeds."""

    mean: float
    std: float | None  # n - 1 in the denominator; None for one seed
    ci95: float | None  # half-width of the 95% t interval of the mean; None for one seed
    n: int


def summarise_seeds(values: Sequence[float]) -> SeedSummary:
    """mean, std (n - 1), ci95 (half-width of the 95% t interval of the mean; None for one seed) and n."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarise")
    mean = math.fsum(values) / n
    if n == 1:
        return {"mean": mean, "std": None, "ci95": None, "n": 1}
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half_width = student_t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": half_width, "n": n}
